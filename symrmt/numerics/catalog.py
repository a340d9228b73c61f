"""What a deterministic equivalent can be bound with: names, roles, spaces.

Built once at compile time from the user's expression, the value and the
groups. A binding name refers to every symbol of that name (scalars,
dimensions, deterministic matrices); random objects are never bound.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy import MatrixSymbol

from ..objects.matrices import Covariance, Vector

#: keyword arguments of the compiled function that are options, not bindings
OPTIONS = ("on_failure", "raise_on_failure", "maxiter", "xtol", "eta")


@dataclass
class Catalog:
    scalars: dict = field(default_factory=dict)    # name -> [Symbol, ...]
    dims: set = field(default_factory=set)         # names of dimension symbols
    matrices: dict = field(default_factory=dict)   # name -> deterministic MatrixSymbol
    randoms: dict = field(default_factory=dict)    # name -> random MatrixSymbol
    required: set = field(default_factory=set)     # names the numbers depend on
    spaces: dict = field(default_factory=dict)     # space (sympy dim) -> pivot matrix name or None

    @property
    def names(self):
        return sorted(set(self.scalars) | set(self.matrices))

    def role(self, name):
        if name in self.matrices:
            m = self.matrices[name]
            return type(m).__name__
        return "dimension" if name in self.dims else "scalar"

    def describe(self):
        return ", ".join(f"{n} ({self.role(n)})" for n in self.names)


def _bound_variables(expr):
    out = set()
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Integral, sp.Sum)):
            out |= {lim[0] for lim in node.limits}
        elif isinstance(node, sp.Lambda):      # a matrix function's variable
            out |= set(node.variables)
    return out


def _walk(expr, cat, skip, needed=None):
    """Record symbols of ``expr``; with ``needed`` also the names it needs."""
    if expr is None:
        return
    for node in sp.preorder_traversal(expr):
        if isinstance(node, MatrixSymbol):
            if getattr(node, "is_random", False):
                cat.randoms[node.name] = node
                continue
            prev = cat.matrices.get(node.name)
            if prev is not None and prev != node:
                raise ValueError(f"two different matrices are named {node.name!r}: {prev!r} and {node!r}")
            cat.matrices[node.name] = node
            for dim in node.shape:
                for s in sp.sympify(dim).free_symbols:
                    cat.dims.add(s.name)
            if needed is not None:
                needed.add(node.name)
        elif isinstance(node, sp.Symbol) and node not in skip:
            cat.scalars.setdefault(node.name, [])
            if node not in cat.scalars[node.name]:
                cat.scalars[node.name].append(node)
            if node.is_integer:
                cat.dims.add(node.name)
            if needed is not None:
                needed.add(node.name)


def build_catalog(de):
    unknowns = set(de.unknowns)
    bound_vars = _bound_variables(de.value)
    skip = unknowns | bound_vars
    cat = Catalog()
    _walk(de.expr, cat, skip)
    needed = set()
    _walk(de.value, cat, skip, needed)
    for g in de.groups:
        for e in g.equations:
            _walk(e, cat, skip, needed)
        for part in (g.Sigma, g.K, g.m, sp.sympify(g.z), *map(sp.sympify, g.sizes)):
            _walk(part, cat, skip, needed)
    # random objects' laws were walked through their args; their dims are bindable too
    for r in cat.randoms.values():
        for dim in r.shape:
            for s in sp.sympify(dim).free_symbols:
                cat.dims.add(s.name)
                cat.scalars.setdefault(s.name, [])
                if s not in cat.scalars[s.name]:
                    cat.scalars[s.name].append(s)
    clash = {u.name for u in unknowns} & set(cat.names)
    if clash:
        raise ValueError(f"unknowns {sorted(clash)} have the same names as bindable symbols")
    # options live in their own namespace (symrmt._bindings.split_options): no name is reserved
    # a dimension is needed when any matrix of that size is needed (shape checks)
    for name in list(needed):
        if name in cat.matrices:
            for dim in cat.matrices[name].shape:
                needed |= {s.name for s in sp.sympify(dim).free_symbols}
    cat.required = needed
    # the basis of each space is the eigenbasis of the group's covariance
    for g in de.groups:
        for P in (g.Sigma, g.K):
            if isinstance(P, Covariance) and not isinstance(P, Vector):
                cat.spaces.setdefault(P.shape[0], P.name)
    for m in cat.matrices.values():
        for dim in m.shape:
            if dim != 1:
                cat.spaces.setdefault(dim, None)
    return cat
