"""Bindings (``n=800, Sigma=eigs, lam=grid``) checked against an expression.

Conventions of docs/api.md: scalars and dimensions are bound by their names; a
deterministic matrix by its name, a 1-D array meaning *diagonal in one
common basis* (for a ``Vector``: its coordinates), a 2-D array the full
matrix. Dimensions not bound explicitly are inferred from array shapes, and
every shape is checked. Array-valued scalars broadcast together (NumPy
rules); internally the grid is flattened to one batch axis of length ``N``.
Values are validated by the one binding layer shared with ``compile`` and
the generated module (:mod:`symrmt._bindings`): same rules, same
:class:`~symrmt._bindings.BindingError`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy import MatrixSymbol
from sympy.matrices.expressions.matexpr import MatrixExpr

from .._bindings import (BindingError, check_grid, check_invertible, check_unique_names, matrix_role,
                         scalar_kind, structural_roles, validate_matrix, validate_scalar)
from ..objects.matrices import Vector


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
    check_unique_names(scalars, det)
    return dims, scalars, det, rand


def _register(table, name, obj, what):
    if name in table and table[name] != obj:
        plural = {"matrix": "matrices"}.get(what, what + "s")
        raise BindingError(f"two different {plural} are named {name!r} ({table[name]!r} and {obj!r}); "
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
        raise BindingError(msg)
    missing = sorted(k for k in list(scalars) + list(det) if k not in bindings)
    if missing:
        raise BindingError(f"{caller}: missing binding(s) {missing} (expression needs {sorted(valid)})")

    symmetric, inverted = structural_roles(expr)
    known = {k: _as_dim(bindings[k], k, caller) for k in dims if k in bindings}
    matrices, equations = {}, []
    for name, M in det.items():
        kind, a, shape = validate_matrix(name, matrix_role(M, symmetric), M.shape, bindings[name])
        if name in inverted:
            check_invertible(name, kind, a)
        matrices[name] = a
        equations += [(M.shape[0], shape[0], name, "rows"), (M.shape[1], shape[1], name, "columns")]
    inferred, source = dict(known), {k: "bound explicitly" for k in known}
    for expr_, value, name, what in equations:
        if isinstance(expr_, sp.Symbol) and expr_.name not in inferred:
            inferred[expr_.name], source[expr_.name] = value, f"inferred from {name!r}"
    unbound = sorted(set(dims) - set(inferred))
    if unbound:
        raise BindingError(f"{caller}: dimension(s) {unbound} are not bound and cannot be inferred from "
                         f"the array bindings; bind them, e.g. {unbound[0]}=...")
    subs = {dims[k]: v for k, v in inferred.items()}
    for expr_, value, name, what in equations:
        want = sp.sympify(expr_).xreplace(subs)
        if want != value:
            why = ", ".join(f"{s.name}={inferred[s.name]} {source[s.name]}"
                            for s in sorted(sp.sympify(expr_).free_symbols, key=str))
            raise BindingError(f"{caller}: binding {name!r} has {value} {what}, but the expression needs "
                             f"{expr_} = {want} ({why})")

    values = {}
    for k, sym in scalars.items():
        values[k] = validate_scalar(k, bindings[k], scalar_kind(sym), allow_complex=False)
    batch = check_grid(values)
    flat = {k: (np.broadcast_to(v, batch).reshape(-1).copy() if v.ndim else v) for k, v in values.items()}
    symbols = {**dims, **scalars, **det}
    return Bound(dims=inferred, scalars=flat, matrices=matrices, batch_shape=tuple(batch), symbols=symbols)


def _as_dim(v, name, caller):
    a = validate_scalar(name, v, "dim")
    if a.ndim:
        raise BindingError(f"binding {name!r}: {caller}: dimension {name} must be a single positive integer, "
                           f"got an array; sampling needs one size per run (call once per size)")
    return int(a)


def sized_grid(expr, bindings):
    """Whether a dimension of ``expr`` is bound to an array (a grid of sizes)."""
    dims = collect(expr)[0]
    return any(k in bindings and np.ndim(bindings[k]) > 0 for k in dims)


def per_size(run, expr, bindings, trials, **kw):
    """Monte Carlo over a grid that includes array-valued dimensions
    (``n=[50, 100, 200]``), as ``compile`` accepts them: one run of
    ``run(expr, trials=..., **kw, **sub_bindings)`` per distinct combination
    of sizes on the broadcast grid, each on the grid points with those sizes;
    the estimates are put back on the whole grid. The same ``seed`` is used
    for every size (estimates at different sizes are then not independent)."""
    from .result import MonteCarloResult, MonteCarloSeries
    dims, scalars, _, _ = collect(expr)
    grid_names = [k for k in list(dims) + list(scalars) if k in bindings]
    values = {k: validate_scalar(k, bindings[k], "dim" if k in dims else scalar_kind(scalars[k]),
                                 allow_complex=False) for k in grid_names}
    shape = check_grid(values)
    size = int(np.prod(shape, dtype=int))
    flat = {k: np.broadcast_to(v, shape).reshape(-1) for k, v in values.items()}
    sized = [k for k in dims if k in values and np.ndim(values[k])]
    keys = np.stack([flat[k] for k in sized], axis=1)
    combos = np.unique(keys, axis=0)
    parts = []
    for combo in combos:
        idx = np.nonzero((keys == combo).all(axis=1))[0]
        sub = dict(bindings)
        for k, v in zip(sized, combo):
            sub[k] = int(v)
        for k, v in values.items():
            if k not in sized and np.ndim(v):
                sub[k] = flat[k][idx]
        res = run(expr, trials=trials, **kw, bindings=sub)
        parts.append((idx, res))
    series = isinstance(parts[0][1], MonteCarloSeries)
    grid = {k: np.broadcast_to(v, shape).copy() for k, v in values.items() if np.ndim(v)}

    def assemble(i):
        mean, sem, std = (np.full(size, np.nan) for _ in range(3))
        nonfinite, first = 0, None
        for idx, res in parts:
            r = res[i] if series else res
            first = first or r
            for out, a in ((mean, r.mean), (sem, r.sem), (std, r.std)):
                out[idx] = np.broadcast_to(np.asarray(a, dtype=float), idx.shape)
            nonfinite += r.nonfinite
        return MonteCarloResult(first.expr, mean.reshape(shape), sem.reshape(shape), std.reshape(shape),
                                trials=first.trials, seed=first.seed, grid=grid, shape=shape,
                                nonfinite=nonfinite, method=first.method)

    if series:
        return MonteCarloSeries([assemble(i) for i in range(len(parts[0][1]))])
    return assemble(0)
