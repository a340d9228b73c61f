"""Light, safe tidying of derived values.

Spectral functionals are frozen as symbols, the value is expanded,
collected by products of functionals and each coefficient factored.
Contour integrals (``re(∮ …)``, analytic matrix functions) are frozen whole:
expanding ``g(z(θ))``, e.g. ``(1 − η z(θ))^t``, would blow up and lose digits. The
result is kept only if it is not longer than the input; the tidy form is
always mathematically identical (no identity between functionals is used).

Speed (issue 12): sizes are measured by :func:`count_ops` — ``sympy.count_ops``
memoised over the repeated sub-trees of derived values, with an early exit
over a limit — and a collected form that a cheap lower bound on its size
proves too long is not built (:func:`_collected_ops_lower_bound`). The
result is the same as without these short-cuts.
"""
from __future__ import annotations

import sympy as sp
from sympy.core.function import Derivative, _coeff_isneg
from sympy.core.operations import LatticeOp
from sympy.simplify.radsimp import fraction as _fraction

from ..objects import Form, Tr


#: above this size (``count_ops``) the value is returned as derived: expanding and
#: collecting it costs minutes (pooled-groups risk: 39 s of a 55 s derivation) and
#: the presentation layer (``de.pretty()``) does the reading work instead
TIDY_MAX_OPS = 4000


def count_ops(expr, limit=None):
    """``sympy.count_ops(expr)`` (``visual=False``), computed with a memo on
    repeated sub-expressions; with ``limit``, the count stops as soon as it
    exceeds ``limit`` and some number ``> limit`` is returned (exact otherwise).

    ``count_ops`` is additive over the tree it walks: each visited node adds
    its own operations (≥ 0) and pushes sub-expressions that are counted
    independently. Derived values repeat the same large ``Tr[…]``/``Form``
    atoms and denominators hundreds of times (5-point trace: 1.75·10⁵ ops,
    3.7 s), so counting each distinct sub-expression once gives the same
    integer in a fraction of the time, and a partial sum over ``limit`` proves
    the total is over it. Anything other than a plain ``Expr`` (and a
    recursion-depth overflow) falls back to SymPy's function."""
    if not isinstance(expr, sp.Expr) or expr.is_Relational:
        return sp.count_ops(expr)
    budget = [float("inf") if limit is None else limit]
    try:
        return _ops(expr, {}, {}, budget)
    except _OverLimit:
        return limit + 1
    except RecursionError:
        return sp.count_ops(expr)


class _OverLimit(Exception):
    pass


def _ops(a, memo, seen, budget):
    """Operations of ``a`` and of what ``sympy.count_ops`` pushes for it
    (a line-by-line transcription of its ``Expr`` branch, SymPy 1.14, with
    every operation weighted 1, ``SUB − ADD`` 0 and ``o·(k−1)`` ``k − 1``).
    ``seen`` memoises by identity (no structural comparison of large equal
    trees), ``memo`` by value; ``budget`` is the limit minus the running total
    (every count is ≥ 0, so a negative budget proves the total is over it)."""
    r = seen.get(id(a))
    if r is None:
        r = memo.get(a)
        if r is not None:
            seen[id(a)] = (r, a)
    else:
        r = r[0]
    if r is not None:       # a repeated sub-tree: its whole count joins the running total
        budget[0] -= r
        if budget[0] < 0:
            raise _OverLimit
        return r
    key = a
    n, push = 0, []
    while True:         # one pass of count_ops' loop body; ``continue`` → break
        if a.is_Rational:
            if a is not sp.S.One:
                n += (a.p < 0) + (a.q != 1)
                break
        elif a.is_Mul or a.is_MatMul:
            if _coeff_isneg(a):
                n += 1
                if a.args[0] is sp.S.NegativeOne:
                    a = a.as_two_terms()[1]
                else:
                    a = -a
            num, den = _fraction(a)
            if num.is_Integer:
                n += 2 if num < 0 else 1
                push.append(den)
                break
            elif den is not sp.S.One:
                if not den.is_Integer:
                    push.append(den)
                n += 1
                push.append(num)
                break
        elif a.is_Add or a.is_MatAdd:
            aargs = list(a.args)
            negs = 0
            for i, ai in enumerate(aargs):
                if _coeff_isneg(ai):
                    negs += 1
                    push.append(-ai)
                else:
                    push.append(ai)
                n += i > 0
            if negs == len(aargs):
                n += 1
            break
        if a.is_Pow and a.exp is sp.S.NegativeOne:
            n += 1
            push.append(a.base)
            break
        if a == sp.S.Exp1:
            n += 1
            break
        if a.is_Pow and a.base == sp.S.Exp1:
            n += 1
            push.append(a.exp)
            break
        if a.is_Mul or isinstance(a, LatticeOp):
            n += len(a.args) - 1
        elif a.args and (a.is_Pow or a.is_Function or isinstance(a, (Derivative, sp.Integral, sp.Sum))):
            n += 1
        if not a.is_Symbol:
            push.extend(a.args)
        break
    budget[0] -= n
    if budget[0] < 0:
        raise _OverLimit
    total = n
    for c in push:
        total += _ops(c, memo, seen, budget)
    memo[key] = total
    seen[id(key)] = (total, key)
    return total


def tidy(value):
    if count_ops(value, TIDY_MAX_OPS) > TIDY_MAX_OPS:
        return value
    contours = {e for e in sp.preorder_traversal(value)
                if isinstance(e, sp.re) or (isinstance(e, sp.Integral) and e.limits[-1][2] == 2 * sp.pi)}
    if contours:
        frozen = {e: sp.Dummy(f"c{i}") for i, e in enumerate(sorted(contours, key=sp.default_sort_key))}
        out = tidy(value.xreplace(frozen))
        return out.xreplace({v: k for k, v in frozen.items()})
    atoms = sorted(value.atoms(Tr, Form), key=sp.default_sort_key)
    if not atoms:
        return sp.factor(sp.together(value)) if value.free_symbols else value
    syms = sp.symbols(f"_t0:{len(atoms)}")
    v = value.xreplace(dict(zip(atoms, syms)))
    try:
        num, den = sp.fraction(sp.together(v))
        if _expanded_terms(num) > TIDY_MAX_TERMS:
            return value    # expanding would take minutes (nested fractions, e.g. trace fluctuations)
        if den.free_symbols & set(syms):
            # denominators with functionals (1 − γ): collect over the numerator only
            num = sp.expand(num)
            atom_ops = {x: count_ops(a) for x, a in zip(syms, atoms)}
            if SKIP_BY_BOUND and _collected_ops_lower_bound(num, syms, atom_ops) > count_ops(value):
                return value    # the collected form would be rejected below: skip collecting it
            out = sp.collect(num, syms, evaluate=True) / _factor(den)
        else:
            col = sp.collect(sp.expand(v), syms, evaluate=False)
            out = sp.Add(*[_factor(sp.together(c)) * (k if k != 1 else 1) for k, c in col.items()])
    except Exception:  # tidying must never break a derivation
        return value
    out = out.xreplace(dict(zip(syms, atoms)))
    return out if count_ops(out) <= count_ops(value) else value


#: skip collecting when :func:`_collected_ops_lower_bound` proves the result would be
#: rejected (random-feature ridge risk: half of its derivation time); ``False`` only in
#: ``benchmarks/derive.py``'s baseline
SKIP_BY_BOUND = True


def _collected_ops_lower_bound(num, syms, atom_ops=None):
    """A lower bound on ``count_ops(collect(num, syms) / D)`` for an expanded ``num``
    and any non-numeric ``D``, without collecting.

    The terms ``T = m_T·r_T`` of an expanded sum are distinct products (``m_T`` the
    monomial in ``syms``); ``collect`` groups them by ``m_T`` into ``Σ_m m·(Σ r_T)``,
    keeping every ``r_T`` (two equal ``r_T`` in one group would be one term of
    ``num``). That form has ``#T − 1`` ADD/SUB, each ``r_T`` (or ``−r_T`` after a
    SUB) at least once — multiplying in ``m`` never lowers a product's count — and
    the division by ``D`` one DIV: ``≥ #T + Σ_T min(ops(r_T), ops(−r_T))``. Putting
    the functionals back for ``syms`` (``atom_ops``: symbol → ops of its functional)
    adds their operations at least once per distinct monomial that contains them
    (the ``r_T`` contain no ``syms``)."""
    memo = {}
    total = 0
    keys = set()
    for t in sp.Add.make_args(num):
        r, m = t.as_independent(*syms, as_Add=False)
        keys.add(m)
        total += 1 + min(_ops(r, memo, {}, [float("inf")]), _ops(-r, memo, {}, [float("inf")]))
    if atom_ops is not None:
        total += sum(atom_ops[x] for m in keys for x in m.free_symbols if x in atom_ops)
    return total


#: above this many terms in the expanded numerator (estimated without expanding) the
#: value is returned as derived: a variance of Tr[G(λ)G(μ)] next to two-point means
#: estimated 8e5 terms and took 94 s in ``sp.expand``
TIDY_MAX_TERMS = 20000


def _expanded_terms(e):
    """Upper bound on the number of terms of ``sp.expand(e)`` (cheap, no expansion)."""
    if isinstance(e, sp.Add):
        return sum(_expanded_terms(a) for a in e.args)
    if isinstance(e, sp.Mul):
        out = 1
        for a in e.args:
            out *= _expanded_terms(a)
        return out
    if isinstance(e, sp.Pow) and e.exp.is_Integer and e.exp > 0:
        return _expanded_terms(e.base) ** int(e.exp)
    return 1


#: multivariate factorisation is exponential in the worst case: integrands of
#: double integrals (variances of fractional powers) took over a minute
_FACTOR_MAX_OPS = 120


def _factor(e):
    if e.has(sp.Integral) or count_ops(e, _FACTOR_MAX_OPS) > _FACTOR_MAX_OPS:
        return e
    return sp.factor(e)


# ----------------------------------------------------------------- shared-tree walks
# Derived values are trees with massive sharing (the same ``Tr[…]`` atom and the same
# denominators recur hundreds of times); SymPy's ``atoms`` and ``xreplace`` walk every
# occurrence. These walk each distinct node (by identity) once: same results.
def xreplace_shared(expr, rule):
    """``expr.xreplace(rule)`` rebuilding each distinct sub-tree once (classes
    that define their own ``_xreplace`` are delegated to it)."""
    if not rule:
        return expr
    memo = {}
    base = sp.Basic._xreplace

    def rec(x):
        k = id(x)
        r = memo.get(k)
        if r is not None:
            return r[0], r[1]
        if type(x)._xreplace is not base:
            out = x._xreplace(rule)
        elif x in rule:
            out = (rule[x], True)
        else:
            args, changed = [], False
            for a in x.args:
                if getattr(a, "_xreplace", None) is not None:
                    a2, c = rec(a)
                    args.append(a2)
                    changed |= c
                else:
                    args.append(a)
            out = (x.func(*args), True) if changed else (x, False)
        memo[k] = (out[0], out[1], x)
        return out

    return rec(expr)[0]
