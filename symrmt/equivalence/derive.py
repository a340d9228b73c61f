"""``deterministic_equivalent(expr)``: the public entry point."""
from __future__ import annotations

import sympy as sp
from sympy import MatAdd, MatMul, Transpose
from sympy.matrices.expressions.matexpr import MatrixExpr

from ..objects import Form, Tr
from ..objects.matrices import GaussianData, random_symbols
from ..objects.ops import Cov, Var, as_scalar
from .covariance import cov_value, mean_value
from . import sample_side
from .engine import ASSUMPTIONS, Derivation
from .result import DeterministicEquivalent
from ..objects.walk import atoms_shared
from .simplify import tidy, xreplace_shared


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
    solving ``κ = λ S_W(−df/d)`` (docs/math.md); products of two resolvents by the
    two-point equivalent; variances by the second-order rule.

    Raises ``NotImplementedError`` naming the sub-expression the engine cannot
    derive — it never returns a formula it cannot justify.
    """
    e, roots = sample_side.extract_roots(as_scalar(expr))     # sr.df_inverse(K, t): placeholders
    e = pull_random_scalars(e)
    vmode = _variance_mode(e)
    eng = Derivation(variance_mode=vmode)        # the state of this derivation (engine.Derivation)
    atoms = random_atoms(e)
    value = _value(eng, e, atoms)
    if roots:
        value, e = sample_side.resolve_roots(
            eng, value, e, roots, lambda t: _value(eng, pull_random_scalars(t), random_atoms(pull_random_scalars(t))))
    _drop_orphan_groups(eng, value, e)
    naming = eng.reg.naming()
    value = tidy(xreplace_shared(value, naming))    # = value.xreplace(naming), each shared sub-tree once
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
    _guard_deterministic(value, groups)
    return DeterministicEquivalent(expr=e, value=value, groups=groups, assumptions=assumptions)


def _drop_orphan_groups(eng, value, expr):
    """Unknowns at an integration variable that the value no longer contains
    (their integrals cancelled exactly: means of same-copy products against
    cross-copy ones, ``covariance.mean_value``) are dropped with their
    equations; groups at parameters of the expression are always kept."""
    groups = eng.reg._groups
    used = set(atoms_shared(value, sp.Symbol))
    for g in groups.values():      # an unknown another group's equations use is kept
        g = g["group"]
        for ex in (*g.equations, sp.sympify(g.z)):
            used |= ex.atoms(sp.Symbol) - set(g.unknowns)
    params = expr.atoms(sp.Symbol)
    for key in list(groups):
        g = groups[key]["group"]
        z_vars = sp.sympify(g.z).atoms(sp.Symbol) - params
        if z_vars and not (set(g.unknowns) & used):
            del groups[key]


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
    """``c·E[Π atoms]``.

    Several forms are one form: ``(uᵀAv)(xᵀBy) = uᵀA v xᵀB y`` (``1×1``
    matrices), so a power or product of forms takes exactly the path of the
    matrix product the user could have written, keeping the two-point
    (second-order) terms in which copies are compared. Where that merged word
    is not derivable outside variance mode, the product of the equivalents
    (concentration, first order) is used. In variance mode a product of two
    random traces is ``E a · E b + Cov(a, b)`` (trace fluctuations, O(1)):
    differences of copies cancel the first term exactly.
    """
    if not atoms:
        return c
    forms = [a for a in atoms if isinstance(a, Form)]
    if len(forms) >= 2:
        others = [a for a in atoms if not isinstance(a, Form)]
        merged = Form(MatMul(*[f.arg for f in forms]))
        try:
            return _monomial(eng, c, others + [merged])
        except NotImplementedError:
            if eng.variance_mode:
                raise
    traces = [a for a in atoms if isinstance(a, Tr)]
    if eng.variance_mode and traces and len(atoms) >= 2:
        if len(atoms) > 2:
            raise NotImplementedError(
                f"product of {len(atoms)} random traces/forms ({sp.Mul(*atoms)}) while independent copies are "
                "compared: only second-order products of two are derivable")
        a, b = atoms
        return c * (_monomial(eng, sp.S.One, [a]) * _monomial(eng, sp.S.One, [b]) + cov_value(eng, a, b))
    return _product_of_words(eng, c, atoms)


def _product_of_words(eng, c, atoms):
    lists = [eng.atom_words(a) for a in atoms]
    total = sp.S.Zero
    import itertools
    for combo in itertools.product(*lists):
        coeff = c
        words = []
        for ci, wi in combo:
            coeff *= ci
            words.append(wi)
        # variance mode: same-copy products as means + connected parts (covariance.mean_value)
        total += mean_value(eng, coeff, words) if eng.variance_mode else eng.term_value(coeff, words)
    return total


def pull_random_scalars(e):
    """Random scalars written inside a trace or form come out by linearity:
    ``Tr[(c A + B)] = c Tr A + Tr B`` and ``uᵀ(c A)v = c uᵀAv`` for a scalar
    ``c`` (itself a trace, form, variance…). A random scalar that does not
    enter linearly (inside an inverse, a power, a matrix function) is refused."""
    def fix(x):
        if isinstance(x, (Tr, Form)):
            inner = _inner_scalars(x.arg)
            if not inner:
                return x
            dums = {a: sp.Dummy(f"s{i}") for i, a in enumerate(inner)}
            out = sp.Add(*[c * type(x)(m) for c, m in _linear_terms(x.arg.xreplace(dums))])
            for node in sp.preorder_traversal(out):
                if isinstance(node, (Tr, Form)) and node.arg.free_symbols & set(dums.values()):
                    bad = [a for a, s in dums.items() if s in node.arg.free_symbols]
                    raise NotImplementedError(
                        f"random scalar {bad[0]} enters {x} non-linearly: not derivable")
            return fix(out.xreplace({s: fix(a) for a, s in dums.items()}))
        if isinstance(x, MatrixExpr) or not x.args:
            return x
        if isinstance(x, (Var, Cov)):
            return type(x)(*[fix(a) for a in x.args])
        return x.func(*[fix(a) if isinstance(a, sp.Basic) else a for a in x.args])
    return fix(e)


def _linear_terms(M):
    """``M`` as ``Σ c_i M_i`` (scalars ``c_i`` pulled out of products, sums
    distributed); the ``M_i`` keep any non-linear sub-expression whole."""
    if isinstance(M, MatAdd):
        return [t for a in M.args for t in _linear_terms(a)]
    if isinstance(M, MatMul):
        c, mats = M.as_coeff_matrices()
        out = [(c, ())]
        for m in mats:
            out = [(c1 * c2, w + (m2,)) for c1, w in out for c2, m2 in _linear_terms(m)]
        return [(c1, MatMul(*w) if len(w) > 1 else w[0]) for c1, w in out]
    if isinstance(M, Transpose):
        return [(c, m.T) for c, m in _linear_terms(M.arg)]
    return [(sp.S.One, M)]


def _inner_scalars(M):
    """Scalar random nodes (traces, forms, variances) inside a matrix expression."""
    out = []
    for node in sp.preorder_traversal(M):
        if isinstance(node, (Tr, Form, Var, Cov)) and (isinstance(node, (Var, Cov)) or random_symbols(node.arg)):
            if node not in out:
                out.append(node)
    # outermost only
    return [a for a in out if not any(a != b and b.has(a) for b in out)]


def _guard_deterministic(value, groups):
    """Final guard: a derived value or equation must not contain a random
    object (that would be a 'formula' depending on the draw)."""
    for where, ex in [("value", value)] + [("equation", eq) for g in groups for eq in g.equations]:
        rs = random_symbols(ex)
        if rs:
            bad = sorted(rs, key=str)[0]
            node = next((t for t in sp.preorder_traversal(ex)
                         if isinstance(t, (Tr, Form)) and bad in random_symbols(t.arg)), bad)
            raise NotImplementedError(
                f"the derived {where} still contains the random {bad} (in {node}): not derivable")
