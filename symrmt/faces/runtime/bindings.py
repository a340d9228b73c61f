"""Validation of the bindings and the common eigenbasis (part of the
generated runtime; conventions of API.md §Evaluating)."""
import numpy as np

from .matrices import _M, _dense
from .spec import SPEC
# ---- RUNTIME BEGINS ----
class BindingError(ValueError):
    """A binding is missing, unknown or malformed."""


def _fail(name, what):
    raise BindingError(f"binding {name!r}: {what}")


def _numbers(name, value, what="values"):
    try:
        a = np.asarray(value)
    except Exception as exc:
        _fail(name, f"cannot be read as an array ({exc})")
    if a.dtype == object:
        try:
            a = a.astype(complex if any(isinstance(v, complex) for v in a.ravel()) else float)
        except (TypeError, ValueError):
            _fail(name, f"{what} must be numbers")
    if a.dtype.kind not in "iufc":
        _fail(name, f"{what} must be numbers, got dtype {a.dtype}")
    if not np.all(np.isfinite(a)):
        _fail(name, f"{what} must be finite")
    return a.astype(complex) if a.dtype.kind == "c" else a.astype(float)


def _matrix(name, role, shape, value):
    a = _numbers(name, value, "entries")
    if np.iscomplexobj(a):
        _fail(name, "complex matrices are not supported")
    if role == "vector":
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1:
            _fail(name, f"a vector is bound to 1-D coordinates, got shape {a.shape}")
        return _M("full", a.reshape(1, -1, 1)), (a.shape[0], 1)
    square = shape[0] == shape[1]
    if a.ndim == 1:
        if not square:
            _fail(name, f"a 1-D array means a diagonal matrix but {name} is {shape[0]}×{shape[1]}; "
                        "bind the full 2-D matrix")
        if role == "covariance" and np.any(a < 0):
            _fail(name, f"covariance eigenvalues must be ≥ 0, got {a.min():.3g}")
        return _M("diag", a[None, :]), (a.shape[0], a.shape[0])
    if a.ndim != 2:
        _fail(name, f"expected a 1-D (diagonal) or 2-D array, got shape {a.shape}")
    if square and a.shape[0] != a.shape[1]:
        _fail(name, f"{name} is square but the array has shape {a.shape}")
    if role == "covariance":
        scale = max(float(np.abs(a).max()), np.finfo(float).tiny)
        if float(np.abs(a - a.T).max()) > 1e-10 * scale:
            _fail(name, "a covariance must be symmetric")
        a = (a + a.T) / 2
        if np.linalg.eigvalsh(a)[0] < -1e-10 * scale:
            _fail(name, "a covariance must be positive semi-definite")
    if square and not np.count_nonzero(a - np.diag(np.diag(a))):
        return _M("diag", np.diag(a)[None, :].copy()), a.shape
    return _M("full", a[None]), a.shape


class _State:
    """Validated bindings: grid ``shape``, flat scalar arrays, matrices."""

    def __init__(self, shape, scalars, mats, dim, dense):
        self.shape, self.scalars, self.mats, self.dim, self.dense = shape, scalars, mats, dim, dense
        self.size = int(np.prod(shape)) if shape else 1


def _prepare(bindings):
    spec = SPEC
    valid = sorted(set(spec["scalars"]) | set(spec["matrices"]))
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
        a = _numbers(name, bindings[name])
        if kind != "complex" and np.iscomplexobj(a):
            _fail(name, "must be real")
        if kind == "dim" and (np.any(a <= 0) or np.any(a != np.round(a))):
            _fail(name, "a dimension must be a positive integer")
        if name in inferred and np.any(a != inferred[name][0]):
            _fail(name, f"the bound matrix {inferred[name][1]!r} has {name} = {inferred[name][0]}")
        values[name] = a
    for name, (size, _) in inferred.items():
        values.setdefault(name, np.asarray(float(size)))
    missing = [n for n in spec["required"] if n not in values and n not in mats]
    if missing:
        raise BindingError(f"missing binding(s): {', '.join(missing)}")
    try:
        shape = np.broadcast_shapes(*[a.shape for a in values.values()])
    except ValueError:
        raise BindingError("array-valued bindings do not broadcast together: "
                           + ", ".join(f"{k} {a.shape}" for k, a in values.items() if a.ndim)) from None
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
