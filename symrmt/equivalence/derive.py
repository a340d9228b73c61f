"""``deterministic_equivalent(expr)``: the public entry point."""
from __future__ import annotations

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..objects import Form, Tr
from ..objects.matrices import GaussianData, random_symbols
from ..objects.ops import Cov, Var, as_scalar
from .covariance import cov_value
from .engine import ASSUMPTIONS, Engine
from .result import DeterministicEquivalent
from .simplify import tidy


def random_atoms(e):
    """Outermost ``Tr``/``Form``/``Var``/``Cov`` nodes containing randomness."""
    out = []

    def visit(x):
        if isinstance(x, (Var, Cov)):
            out.append(x)
            return
        if isinstance(x, (Tr, Form)):
            if random_symbols(x.arg):
                out.append(x)
            return
        for a in x.args:
            if isinstance(a, sp.Basic) and not isinstance(a, MatrixExpr):
                visit(a)
            elif isinstance(a, MatrixExpr) and random_symbols(a):
                raise TypeError(f"matrix-valued random sub-expression outside a trace or form: {a}")

    visit(e)
    seen, uniq = set(), []
    for a in out:
        if a not in seen:
            seen.add(a)
            uniq.append(a)
    return uniq


def _variance_mode(expr):
    """Two independent data sets of one law in one expression: the user is
    comparing copies, so same-copy products keep both Wick pairings."""
    laws = {}
    for s in random_symbols(expr):
        if isinstance(s, GaussianData):
            laws.setdefault(s.law_key(), set()).add(s.uid)
    return any(len(u) > 1 for u in laws.values())


def deterministic_equivalent(expr) -> DeterministicEquivalent:
    """Deterministic equivalent of a scalar random-matrix expression.

    ``expr`` is a scalar (or ``1×1``) SymPy expression built from symrmt
    objects: traces (``sr.ntr``), quadratic forms, resolvents
    ``(Σ̂ + λI)⁻¹`` of sample covariances (``XᵀX/n``, ``XXᵀ/n``, feature
    chains, ``sr.sample_covariance``), noise, sample means, ``sr.var`` and
    ``sr.cov``. Each resolvent is replaced by ``(κ/λ)(Σ+κ)⁻¹`` with ``κ``
    solving ``κ = λ S_W(−df/d)`` (MATH.md); products of two resolvents by the
    two-point equivalent; variances by the second-order rule.

    Raises ``NotImplementedError`` naming the sub-expression the engine cannot
    derive — it never returns a formula it cannot justify.
    """
    e = as_scalar(expr)
    vmode = _variance_mode(e)
    eng = Engine(variance_mode=vmode)
    atoms = random_atoms(e)
    value = _value(eng, e, atoms)
    naming = eng.reg.naming()
    value = tidy(value.xreplace(naming))
    groups = []
    for g in eng.reg.groups():
        groups.append(type(g)(tuple(naming.get(u, u) for u in g.unknowns),
                              tuple(eq.xreplace(naming) for eq in g.equations),
                              g.z, g.kind, g.Sigma, g.sizes, g.K, g.m))
    assumptions = list(ASSUMPTIONS)
    if vmode:
        assumptions.append("independent copies of one law are compared: products within a copy keep both "
                           "Wick pairings (second order, real Gaussian data)")
    if any(isinstance(a, (Var, Cov)) for a in atoms):
        assumptions.append("variances/covariances at second order: both Wick pairings for real Gaussian data")
    return DeterministicEquivalent(expr=e, value=value, groups=groups, assumptions=assumptions)


def _value(eng, e, atoms):
    if not atoms:
        return e
    syms = sp.symbols(f"_a0:{len(atoms)}")
    sub = dict(zip(atoms, syms))
    poly = e.xreplace(sub)
    lin_atoms = [s for a, s in sub.items() if not isinstance(a, (Var, Cov))]
    varpart = {s: cov_value(eng, *( (a.args[0], a.args[0]) if isinstance(a, Var) else a.args))
               for a, s in sub.items() if isinstance(a, (Var, Cov))}
    poly = poly.xreplace(varpart)
    if lin_atoms and poly.is_polynomial(*lin_atoms):
        total = sp.S.Zero
        for term in sp.Add.make_args(sp.expand(poly)):
            c, rest = term.as_independent(*lin_atoms, as_Add=False)
            factors = []
            for base, k in rest.as_powers_dict().items():
                if base == 1:
                    continue
                factors += [atoms[syms.index(base)]] * int(k)
            total += _monomial(eng, c, factors)
        return total
    # non-polynomial: concentration, each atom separately
    vals = {s: _monomial(eng, sp.S.One, [atoms[syms.index(s)]]) for s in lin_atoms}
    return poly.xreplace(vals)


def _monomial(eng, c, atoms):
    if not atoms:
        return c
    lists = [eng.atom_words(a) for a in atoms]
    total = sp.S.Zero
    import itertools
    for combo in itertools.product(*lists):
        coeff = c
        words = []
        for ci, wi in combo:
            coeff *= ci
            words.append(wi)
        total += eng.term_value(coeff, words)
    return total
