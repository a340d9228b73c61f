"""Light, safe tidying of derived values.

Spectral functionals are frozen as symbols, the value is expanded,
collected by products of functionals and each coefficient factored.
Contour integrals (``re(∮ …)``, analytic matrix functions) are frozen whole:
expanding ``g(z(θ))``, e.g. ``(1 − η z(θ))^t``, would blow up and lose digits. The
result is kept only if it is not longer than the input; the tidy form is
always mathematically identical (no identity between functionals is used).
"""
from __future__ import annotations

import sympy as sp

from ..objects import Form, Tr


#: above this size (``count_ops``) the value is returned as derived: expanding and
#: collecting it costs minutes (pooled-groups risk: 39 s of a 55 s derivation) and
#: the presentation layer (``de.pretty()``) does the reading work instead
TIDY_MAX_OPS = 4000


def tidy(value):
    if sp.count_ops(value) > TIDY_MAX_OPS:
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
            out = sp.collect(sp.expand(num), syms, evaluate=True) / _factor(den)
        else:
            col = sp.collect(sp.expand(v), syms, evaluate=False)
            out = sp.Add(*[_factor(sp.together(c)) * (k if k != 1 else 1) for k, c in col.items()])
    except Exception:  # tidying must never break a derivation
        return value
    out = out.xreplace(dict(zip(syms, atoms)))
    return out if sp.count_ops(out) <= sp.count_ops(value) else value


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
    if e.has(sp.Integral) or sp.count_ops(e) > _FACTOR_MAX_OPS:
        return e
    return sp.factor(e)
