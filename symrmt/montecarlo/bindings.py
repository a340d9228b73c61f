"""Bindings (``n=800, Sigma=eigs, lam=grid``) checked against an expression.

Conventions of API.md: scalars and dimensions are bound by their names; a
deterministic matrix by its name, a 1-D array meaning *diagonal in one
common basis* (for a ``Vector``: its coordinates), a 2-D array the full
matrix. Dimensions not bound explicitly are inferred from array shapes, and
every shape is checked. Array-valued scalars broadcast together (NumPy
rules); internally the grid is flattened to one batch axis of length ``N``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy import MatrixSymbol
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..objects.matrices import Covariance, Vector


@dataclass
class Bound:
    """Checked numeric bindings of one expression (picklable)."""

    dims: dict  # name -> int
    scalars: dict  # name -> float64 array, () or (N,) on the flattened grid
    matrices: dict  # name -> float64 array as bound (1-D diagonal / coordinates, or 2-D)
    batch_shape: tuple = ()
    symbols: dict = field(default_factory=dict)  # name -> SymPy symbol / matrix symbol

    @property
    def size(self):
        """Number of grid points ``N`` (1 without array-valued bindings)."""
        return int(np.prod(self.batch_shape, dtype=int))

    @property
    def batched(self):
        """Names of the array-valued scalar bindings."""
        return frozenset(k for k, v in self.scalars.items() if v.ndim)

    def largest_dim(self):
        """``(name, value)`` of the largest matrix dimension bound."""
        if not self.dims:
            return None, None
        name = max(sorted(self.dims), key=lambda k: self.dims[k])
        return name, self.dims[name]

    def dim_value(self, expr):
        v = sp.sympify(expr).xreplace({self.symbols[k]: v for k, v in self.dims.items()})
        return int(v)


def collect(expr):
    """Dimensions, scalar symbols, deterministic and random matrix symbols
    appearing anywhere in ``expr`` (including inside random objects' laws)."""
    dims, symbols, det, rand = {}, {}, {}, set()
    bound_vars = {v for node in sp.preorder_traversal(expr) if isinstance(node, sp.Lambda)
                  for v in node.variables}     # a matrix function's variable is not bound
    for node in sp.preorder_traversal(expr):
        if isinstance(node, MatrixExpr):
            for s in node.shape:
                for sym in sp.sympify(s).free_symbols:
                    _register(dims, sym.name, sym, "dimension")
        if isinstance(node, MatrixSymbol):
            if getattr(node, "is_random", False):
                rand.add(node)
            else:
                _register(det, node.name, node, "matrix")
        elif isinstance(node, sp.Symbol) and node not in bound_vars:
            _register(symbols, node.name, node, "symbol")
    scalars = {k: v for k, v in symbols.items() if k not in dims}
    for k in scalars:
        if k in det:
            raise ValueError(f"the name {k!r} is used for both a scalar and a matrix")
    return dims, scalars, det, rand


def _register(table, name, obj, what):
    if name in table and table[name] != obj:
        plural = {"matrix": "matrices"}.get(what, what + "s")
        raise ValueError(f"two different {plural} are named {name!r} ({table[name]!r} and {obj!r}); "
                         "bindings are by name, so names must be unique")
    table[name] = obj


def bind(expr, bindings, caller="monte_carlo"):
    """Check ``bindings`` against ``expr`` and convert them to float64 arrays."""
    dims, scalars, det, rand = collect(expr)
    valid = set(dims) | set(scalars) | set(det)
    random_names = {r.name for r in rand}
    unknown = sorted(set(bindings) - valid)
    if unknown:
        hint = [u for u in unknown if u in random_names]
        msg = f"{caller}: unknown binding(s) {unknown}; valid names are {sorted(valid)}"
        if hint:
            msg += f" ({hint} {'is' if len(hint) == 1 else 'are'} random: sampled, not bound)"
        raise ValueError(msg)
    missing = sorted(k for k in list(scalars) + list(det) if k not in bindings)
    if missing:
        raise ValueError(f"{caller}: missing binding(s) {missing} (expression needs {sorted(valid)})")

    known = {k: _as_dim(bindings[k], k, caller) for k in dims if k in bindings}
    matrices, equations = {}, []
    for name, M in det.items():
        a = _as_array(bindings[name], name, caller)
        shape = _implied_shape(M, a, name, caller)
        matrices[name] = a.reshape(-1) if isinstance(M, Vector) else a
        equations += [(M.shape[0], shape[0], name, "rows"), (M.shape[1], shape[1], name, "columns")]
    inferred, source = dict(known), {k: "bound explicitly" for k in known}
    for expr_, value, name, what in equations:
        if isinstance(expr_, sp.Symbol) and expr_.name not in inferred:
            inferred[expr_.name], source[expr_.name] = value, f"inferred from {name!r}"
    unbound = sorted(set(dims) - set(inferred))
    if unbound:
        raise ValueError(f"{caller}: dimension(s) {unbound} are not bound and cannot be inferred from "
                         f"the array bindings; bind them, e.g. {unbound[0]}=...")
    subs = {dims[k]: v for k, v in inferred.items()}
    for expr_, value, name, what in equations:
        want = sp.sympify(expr_).xreplace(subs)
        if want != value:
            why = ", ".join(f"{s.name}={inferred[s.name]} {source[s.name]}"
                            for s in sorted(sp.sympify(expr_).free_symbols, key=str))
            raise ValueError(f"{caller}: binding {name!r} has {value} {what}, but the expression needs "
                             f"{expr_} = {want} ({why})")
    for name, M in det.items():
        _check_content(M, matrices[name], name, caller)

    values, shapes = {}, {}
    for k in scalars:
        v = _as_array(bindings[k], k, caller)
        values[k] = v
        if v.ndim:
            shapes[k] = v.shape
    try:
        batch = np.broadcast_shapes(*shapes.values()) if shapes else ()
    except ValueError:
        raise ValueError(f"{caller}: array-valued bindings do not broadcast together: "
                         + ", ".join(f"{k} {s}" for k, s in shapes.items())) from None
    flat = {k: (np.broadcast_to(v, batch).reshape(-1).copy() if v.ndim else v) for k, v in values.items()}
    symbols = {**dims, **scalars, **det}
    return Bound(dims=inferred, scalars=flat, matrices=matrices, batch_shape=tuple(batch), symbols=symbols)


def _as_dim(v, name, caller):
    a = np.asarray(v)
    if a.ndim or a.dtype.kind not in "iuf" or not np.isfinite(a) or a != np.round(a) or a <= 0:
        raise ValueError(f"{caller}: dimension {name} must be a single positive integer, got {v!r}"
                         + ("; to scan sizes call it once per size" if a.ndim else ""))
    return int(a)


def _as_array(v, name, caller):
    try:
        a = np.asarray(v)
    except Exception as exc:  # noqa: BLE001 - report any conversion failure by name
        raise TypeError(f"{caller}: binding {name!r} is not numeric: {exc}") from None
    if a.dtype.kind == "c":
        raise NotImplementedError(f"{caller}: binding {name!r} is complex; complex bindings are not "
                                  "supported by the Monte Carlo layer")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{caller}: binding {name!r} must be numeric, got dtype {a.dtype}")
    if a.size == 0:
        raise ValueError(f"{caller}: binding {name!r} is empty")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{caller}: binding {name!r} contains NaN or inf")
    return a


def _implied_shape(M, a, name, caller):
    square = M.shape[0] == M.shape[1] and not isinstance(M, Vector)
    if isinstance(M, Vector):
        if a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 1):
            return (a.shape[0], 1)
        raise ValueError(f"{caller}: vector {name!r} must be bound to a 1-D array of coordinates, "
                         f"got shape {a.shape}")
    if a.ndim == 1:
        if not square:
            raise ValueError(f"{caller}: {name!r} is {M.shape[0]}×{M.shape[1]}, not square; a 1-D "
                             "binding (a diagonal) is only allowed for square matrices")
        return (a.shape[0], a.shape[0])
    if a.ndim == 2:
        return a.shape
    raise ValueError(f"{caller}: matrix {name!r} must be bound to a 1-D (diagonal) or 2-D array, "
                     f"got {a.ndim}-D")


def _check_content(M, a, name, caller):
    if not isinstance(M, Covariance):
        return
    if a.ndim == 1:
        if np.any(a < 0):
            raise ValueError(f"{caller}: covariance {name!r} has a negative eigenvalue ({a.min():.3g})")
        return
    if not np.allclose(a, a.T, rtol=1e-10, atol=1e-12 * np.max(np.abs(a))):
        raise ValueError(f"{caller}: covariance {name!r} is not symmetric")
    e = np.linalg.eigvalsh((a + a.T) / 2)
    if e[0] < -1e-10 * max(abs(e[-1]), 1e-300):
        raise ValueError(f"{caller}: covariance {name!r} has a negative eigenvalue ({e[0]:.3g})")
