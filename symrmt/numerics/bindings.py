"""Validation of bindings and the common eigenbasis (docs/api.md, Evaluating).

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

from .._bindings import (BindingError, check_grid, check_invertible, check_unique_names, matrix_role,
                         scalar_kind, validate_matrix, validate_scalar)
from ..objects.matrices import Covariance
from .catalog import Catalog
from .kernels import dense_diag


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


def _exact(value, kind, arr, backend):
    """For the mpmath backend: the binding as given (``mpf``, ``Fraction``,
    ``Decimal``, strings and ints keep their precision); NumPy: ``arr``."""
    if backend.name != "mpmath":
        return arr
    a = np.asarray(value, dtype=object)
    if a.ndim == 2 and a.shape[1] == 1 and arr.ndim == 1 and kind == "full":   # a column vector
        a = a[:, 0]
    if kind == "diag" and a.ndim == 2:
        a = np.array([a[i, i] for i in range(a.shape[0])], dtype=object)
    if a.shape != arr.shape:      # symmetrised or otherwise transformed: the validated values
        return arr
    return a


def bind(cat: Catalog, backend, bindings: dict, symmetric=(), inverted=()) -> Bound:
    """Validate ``bindings`` (rules of :mod:`symrmt._bindings`) against the
    catalog; ``symmetric``/``inverted``: names of matrices the expression
    takes fractional powers of / inverts."""
    check_unique_names(cat.scalars, cat.matrices)
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
        kind, arr, shp = validate_matrix(name, matrix_role(sym, symmetric), sym.shape, bindings[name])
        if name in inverted:
            check_invertible(name, kind, arr)
        arr = _exact(bindings[name], kind, arr, backend)
        mats[name] = (kind, arr.reshape(-1, 1) if shp[1] == 1 and kind == "full" and arr.ndim == 1 else arr)
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
        kind = "dim" if name in cat.dims else _kind(cat.scalars[name])
        a = validate_scalar(name, bindings[name], kind)
        if name in inferred and not (a == inferred[name]).all():
            raise BindingError(
                f"binding {name!r}: got {name} = {_num(a.ravel()[0]) if a.size == 1 else a}, but the bound matrix "
                f"{origin[name]!r} has {name} = {inferred[name]}")
        values[name] = (a, _exact(bindings[name], "scalar", a, backend))
    for name, size in inferred.items():
        if name not in values:
            values[name] = (np.asarray(float(size)),) * 2

    missing = sorted(n for n in cat.required if n not in values and n not in mats)
    if missing:
        desc = ", ".join(f"{n} ({cat.role(n)})" for n in missing)
        raise BindingError(f"missing binding(s): {desc}. Valid bindings: {cat.describe()}")

    shape = check_grid({k: v[0] for k, v in values.items()})
    size = int(np.prod(shape)) if shape else 1

    for name, (a, ex) in values.items():
        if a.ndim == 0:
            values[name] = backend.asarray(ex, np.iscomplexobj(a))[()]
        else:
            values[name] = backend.asarray(np.broadcast_to(ex, shape).reshape(-1), np.iscomplexobj(a))

    sizes = {space: _space_size(space, values, inferred) for space in cat.spaces}

    mats = _common_basis(cat, backend, mats)
    return Bound(shape=tuple(shape), size=size, values=values, mats=mats, sizes=sizes)


def _num(v):
    v = v.item()
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _kind(symbols):
    kinds = {scalar_kind(s) for s in symbols}
    for k in ("dim", "positive", "real", "complex", "any"):
        if k in kinds:
            return k
    return "any"


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
