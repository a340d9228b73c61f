"""Validation of the bindings and the common eigenbasis (part of the
generated runtime; conventions of docs/api.md §Evaluating)."""
import numpy as np

from ..._bindings import BindingError, _fail, check_grid, check_invertible, validate_matrix, validate_scalar
from .matrices import _M, _dense
from .spec import SPEC

__all__ = ["BindingError", "_prepare"]
# ---- RUNTIME BEGINS ----
#: kinds of scalars in SPEC -> validate_scalar's (older modules wrote "scalar")
_KINDS = {"scalar": "real"}


def _matrix(name, role, shape, value):
    """A validated matrix binding (shared rules) as an :class:`_M` over a batch of 1."""
    if role == "deterministic":
        role = dict(SPEC.get("symmetric", {})).get(name, role)
    kind, a, got = validate_matrix(name, role, shape, value)
    if name in SPEC.get("inverted", ()):
        check_invertible(name, kind, a)
    if role == "vector":
        return _M("full", a.reshape(1, -1, 1)), got
    return _M(kind, a[None]), got


class _State:
    """Validated bindings: grid ``shape``, flat scalar arrays, matrices."""

    def __init__(self, shape, scalars, mats, dim, dense):
        self.shape, self.scalars, self.mats, self.dim, self.dense = shape, scalars, mats, dim, dense
        self.size = int(np.prod(shape)) if shape else 1


def _prepare(bindings):
    spec = SPEC
    valid = sorted(set(spec["scalars"]) | set(spec["matrices"]))
    both = sorted(set(spec["scalars"]) & set(spec["matrices"]))
    if both:
        _fail(both[0], f"the name {both[0]!r} is used for both a scalar and a matrix in the expression")
    for k in bindings:
        if k in spec["randoms"]:
            _fail(k, f"{k} is a random {spec['randoms'][k]}: it is sampled by Monte Carlo, not bound")
        if k not in valid:
            raise BindingError(f"unknown binding {k!r}; valid bindings: {', '.join(valid)}")
    mats, inferred = {}, {}
    for name, (role, shape) in spec["matrices"].items():
        if name not in bindings:
            continue
        m, got = _matrix(name, role, shape, bindings[name])
        for dim, size in zip(shape, got):
            if isinstance(dim, int):
                if dim != size:
                    _fail(name, f"expected size {dim} along one axis, got {size}")
            elif inferred.setdefault(dim, (size, name))[0] != size:
                _fail(name, f"gives {dim} = {size}, but {inferred[dim][1]!r} gives {dim} = {inferred[dim][0]}")
        mats[name] = m
    values = {}
    for name, kind in spec["scalars"].items():
        if name not in bindings:
            continue
        a = validate_scalar(name, bindings[name], _KINDS.get(kind, kind))
        if name in inferred and np.any(a != inferred[name][0]):
            _fail(name, f"the bound matrix {inferred[name][1]!r} has {name} = {inferred[name][0]}")
        values[name] = a
    for name, (size, _) in inferred.items():
        values.setdefault(name, np.asarray(float(size)))
    missing = [n for n in spec["required"] if n not in values and n not in mats]
    if missing:
        raise BindingError(f"missing binding(s): {', '.join(missing)}")
    shape = check_grid(values)
    flat = {k: np.broadcast_to(a, shape).reshape(-1) for k, a in values.items()}
    mats = _common_basis(spec, mats)
    dim = max([s for s, _ in inferred.values()] or [1])
    dense = any(m.kind == "full" and min(m.a.shape[-2:]) > 1 for m in mats.values())
    return _State(tuple(shape), flat, mats, dim, dense)


def _common_basis(spec, mats):
    """Diagonalise each space's pivot covariance when it is bound 2-D and
    rotate everything on that space with it: traces and forms are invariant,
    and the resolvents of the pivot become diagonal."""
    rot = {}
    for space, pivot in spec["bases"].items():
        if pivot in mats and mats[pivot].kind == "full":
            w, U = np.linalg.eigh(mats[pivot].a[0])
            mats[pivot] = _M("diag", np.clip(w, 0, None)[None, :])
            rot[space] = (U, pivot)
    if not rot:
        return mats
    for name, m in list(mats.items()):
        rows, cols = SPEC["matrices"][name][1]
        r, c = rot.get(rows), rot.get(cols)
        if (r is None and c is None) or name in {p for _, p in rot.values()}:
            continue
        a = _dense(m, m.a.shape[-1])[0]
        if r is not None:
            a = r[0].T @ a
        if c is not None:
            a = a @ c[0]
        mats[name] = _M("full", a[None])
    return mats
