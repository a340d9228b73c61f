"""Validation of bindings and the common eigenbasis (API.md, Evaluating).

Rules: bindings are keyed by symbol names; scalars and dimensions are numbers
or arrays (broadcast together into one grid); a deterministic matrix bound
to a 1-D array is diagonal in one common basis, to a 2-D array it is the
full matrix in that basis; a vector is 1-D coordinates in that basis.

Each space (a dimension such as ``d`` or ``n``) has one basis. When the
covariance that drives a group (``Σ``, or ``K``) is bound 2-D it is
diagonalised once, ``Σ = U diag(s) Uᵀ``, and every other matrix and vector
of that space is rotated into its eigenbasis (``Uᵀ A U``, ``Uᵀ w``). A 2-D
binding that is exactly diagonal is stored as its diagonal.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from ..objects.matrices import Covariance, Vector
from .catalog import Catalog
from .kernels import dense_diag
from .result import BindingError


@dataclass
class Bound:
    """Validated bindings, flattened onto a grid of ``size`` points."""

    shape: tuple
    size: int
    values: dict                       # scalar/dim name -> scalar or 1-D array (size,)
    mats: dict                         # matrix name -> ("diag"|"full", array)
    sizes: dict                        # space (sympy dim) -> int
    _compressed: dict = field(default_factory=dict)

    @property
    def signature(self):
        return tuple(sorted((k, v[0]) for k, v in self.mats.items()))

    def entries(self, space, names, compress=True):
        """Diagonal entries of the ``names`` matrices of ``space``; with
        ``compress``, repeated rows are merged: returns (dict, weights|None)."""
        key = (space, tuple(names), compress)  # compressed rows must not leak into dense use
        if key in self._compressed:
            return self._compressed[key]
        ent = {n: self.mats[n][1] for n in names}
        weights = None
        if compress and names:
            stacked = np.stack([np.asarray(ent[n], dtype=float) if ent[n].dtype != object
                                else np.array([float(v) for v in ent[n]]) for n in names], axis=1)
            uniq, first, counts = np.unique(stacked, axis=0, return_index=True, return_counts=True)
            # only worth it when it at least halves the work
            if len(uniq) * 2 <= len(stacked):
                ent = {n: ent[n][first] for n in names}
                weights = counts.astype(float)
        self._compressed[key] = (ent, weights)
        return ent, weights


def _fail(name, what):
    raise BindingError(f"binding {name!r}: {what}")


def _as_real_array(name, value, what="values"):
    try:
        a = np.asarray(value)
    except Exception as exc:  # pragma: no cover - numpy's own message is clear
        _fail(name, f"cannot be read as an array ({exc})")
    if a.dtype == object:
        try:
            a = a.astype(complex) if any(isinstance(v, complex) or getattr(v, "imag", 0) for v in a.ravel()) \
                else a.astype(float)
        except (TypeError, ValueError):
            _fail(name, f"{what} must be numbers, got {a.dtype}")
    if a.dtype.kind not in "biufc":
        _fail(name, f"{what} must be numbers, got dtype {a.dtype}")
    if a.dtype.kind == "b":
        _fail(name, f"{what} must be numbers, got booleans")
    return a


def _check_finite(name, a):
    bad = ~np.isfinite(a)
    if bad.any():
        i = np.argwhere(bad)[0]
        where = f" at index {tuple(int(j) for j in i)}" if a.ndim else ""
        _fail(name, f"contains {a[tuple(i)].item()}{where}; values must be finite")


def _validate_matrix(name, sym, value):
    a = _as_real_array(name, value, "entries")
    if np.iscomplexobj(a):
        _fail(name, "complex matrices are not supported; bind a real array")
    _check_finite(name, a)
    rows, cols = sym.shape
    square = rows == cols
    if isinstance(sym, Vector):
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1:
            _fail(name, f"a vector ({rows}×1) is bound to 1-D coordinates, got shape {a.shape}")
        return "full", a.reshape(-1, 1), (a.shape[0],)
    if a.ndim == 1:
        if not square:
            _fail(name, f"a 1-D array means a diagonal matrix, but {name} is {rows}×{cols} (not square); "
                        "bind the full 2-D matrix")
        if isinstance(sym, Covariance) and (a < 0).any():
            i = int(np.nonzero(a < 0)[0][0])
            _fail(name, f"covariance eigenvalues must be ≥ 0, got {a[i].item()} at index {i}")
        return "diag", a, (a.shape[0], a.shape[0])
    if a.ndim != 2:
        _fail(name, f"expected a 1-D (diagonal) or 2-D array, got {a.ndim}-D of shape {a.shape}")
    if square and a.shape[0] != a.shape[1]:
        _fail(name, f"{name} is square ({rows}×{cols}) but the array has shape {a.shape}")
    if isinstance(sym, Covariance):
        scale = max(float(np.abs(a).max()), np.finfo(float).tiny)
        asym = float(np.abs(a - a.T).max())
        if asym > 1e-10 * scale:
            _fail(name, f"a covariance must be symmetric; max |A − Aᵀ| = {asym:.3g} (scale {scale:.3g})")
        a = (a + a.T) / 2
        w = np.linalg.eigvalsh(a)
        if w[0] < -1e-10 * max(w[-1], 0.0) - np.finfo(float).tiny:
            _fail(name, f"a covariance must be positive semi-definite; smallest eigenvalue {w[0]:.3g}")
    if square and not np.count_nonzero(a - np.diag(np.diag(a))):
        return "diag", np.diag(a).copy(), a.shape
    return "full", a, a.shape


def _validate_scalar(name, value, is_dim):
    a = _as_real_array(name, value)
    _check_finite(name, a)
    if is_dim:
        if np.iscomplexobj(a):
            _fail(name, "a dimension must be a positive integer, got a complex value")
        if (a <= 0).any():
            _fail(name, f"a dimension must be a positive integer, got {a[a <= 0].ravel()[0].item()}")
        if (a != np.round(a)).any():
            bad = a[a != np.round(a)].ravel()[0].item()
            _fail(name, f"a dimension must be a positive integer, got {bad}")
    return a


def bind(cat: Catalog, backend, bindings: dict) -> Bound:
    valid = set(cat.names)
    unknown = [k for k in bindings if k not in valid]
    for k in unknown:
        if k in cat.randoms:
            raise BindingError(
                f"binding {k!r}: {k} is a random {type(cat.randoms[k]).__name__}; it is sampled by "
                f"Monte Carlo, not bound. Valid bindings: {cat.describe()}")
    if unknown:
        raise BindingError(f"unknown binding(s) {sorted(unknown)}; valid bindings: {cat.describe()}")

    mats, inferred, origin = {}, {}, {}
    for name, sym in cat.matrices.items():
        if name not in bindings:
            continue
        kind, arr, shp = _validate_matrix(name, sym, bindings[name])
        mats[name] = (kind, arr)
        for dim, size in zip(sym.shape, shp):
            dim = sp.sympify(dim)
            if dim.is_Symbol:
                if dim.name in inferred and inferred[dim.name] != size:
                    raise BindingError(
                        f"binding {name!r}: {name} is {sym.shape[0]}×{sym.shape[1]} so {dim.name} = {size}, "
                        f"but {origin[dim.name]!r} gives {dim.name} = {inferred[dim.name]}")
                inferred[dim.name] = size
                origin.setdefault(dim.name, name)
            elif dim.is_number and int(dim) != size:
                raise BindingError(f"binding {name!r}: expected size {dim} along one axis, got {size}")

    values = {}
    for name in cat.scalars:
        if name not in bindings:
            continue
        a = _validate_scalar(name, bindings[name], name in cat.dims)
        if name in inferred and not (a == inferred[name]).all():
            raise BindingError(
                f"binding {name!r}: got {name} = {a.ravel()[0].item() if a.size == 1 else a}, but the bound matrix "
                f"{origin[name]!r} has {name} = {inferred[name]}")
        values[name] = a
    for name, size in inferred.items():
        if name not in values:
            values[name] = np.asarray(float(size))

    missing = sorted(n for n in cat.required if n not in values and n not in mats)
    if missing:
        desc = ", ".join(f"{n} ({cat.role(n)})" for n in missing)
        raise BindingError(f"missing binding(s): {desc}. Valid bindings: {cat.describe()}")

    try:
        shape = np.broadcast_shapes(*[np.shape(a) for a in values.values()])
    except ValueError:
        shapes = {k: np.shape(values[k]) for k in sorted(values) if np.ndim(values[k])}
        raise BindingError(f"array-valued bindings do not broadcast together: {shapes}") from None
    size = int(np.prod(shape)) if shape else 1

    for name, a in values.items():
        if a.ndim == 0:
            values[name] = backend.asarray(a, np.iscomplexobj(a))[()]
        else:
            values[name] = backend.asarray(np.broadcast_to(a, shape).reshape(-1), np.iscomplexobj(a))

    sizes = {space: _space_size(space, values, inferred) for space in cat.spaces}

    mats = _common_basis(cat, backend, mats)
    return Bound(shape=tuple(shape), size=size, values=values, mats=mats, sizes=sizes)


def _space_size(space, values, inferred):
    space = sp.sympify(space)
    if space.is_number:
        return int(space)
    sub = {}
    for s in space.free_symbols:
        if s.name in inferred:
            sub[s] = inferred[s.name]
        elif s.name in values and np.ndim(values[s.name]) == 0:
            sub[s] = int(values[s.name])
        elif s.name in values:
            v = np.unique(np.asarray(values[s.name], dtype=float))
            if len(v) > 1:
                raise BindingError(f"binding {s.name!r}: {s.name} sets the size of a matrix, so it cannot vary "
                                   f"over the grid")
            sub[s] = int(v[0])
        else:
            return None
    val = sp.sympify(space.xreplace(sub))
    return int(val) if val.is_number else None


def _common_basis(cat, backend, mats):
    """Rotate every matrix into the eigenbasis of its spaces' pivots."""
    rot, pivots = {}, set()
    for space, pivot in cat.spaces.items():
        in_space = [n for n, m in cat.matrices.items() if n in mats and space in m.shape]
        cand = pivot if pivot in mats else None
        if cand is None:
            # no group covariance bound here: diagonalise a 2-D covariance, unless
            # that would turn an already diagonal binding into a full one
            if any(mats[n][0] == "diag" for n in in_space):
                continue
            cand = next((n for n in in_space if isinstance(cat.matrices[n], Covariance)), None)
        if cand is None or mats[cand][0] == "diag":
            continue
        w, U = backend.eigh(backend.asarray(mats[cand][1]))
        w = np.where(np.asarray(w, dtype=float) < 0, 0 * w, w)  # PSD up to rounding
        mats[cand] = ("diag", w)
        rot[space] = U
        pivots.add(cand)
    out = {}
    for name, (kind, arr) in mats.items():
        arr = backend.asarray(arr)
        rows, cols = cat.matrices[name].shape
        if name in pivots or not (rows in rot or cols in rot):
            out[name] = (kind, arr)
            continue
        A = dense_diag(arr) if kind == "diag" else arr
        if rows in rot:
            A = rot[rows].T @ A
        if cols in rot:
            A = A @ rot[cols]
        out[name] = ("full", A)
    return out
