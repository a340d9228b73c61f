"""Spectral functions of a sample covariance as integrals over resolvents
(MATH.md §Spectral functions), each mapped onto ``θ ∈ [0, π/2]`` so the
compiled quadrature sees a finite interval:

* ``(x+a)^{−u}``, ``0<u<1``: ``(sin πu/π) ∫₀^∞ t^{−u} (x+a+t)⁻¹ dt`` with
  ``t = c tan²θ`` (``c = 1 + a``), weight ``(sin πu/π) 2 c^{1−u} tan^{1−2u}θ sec²θ``;
  integer parts of exponents stay as resolvents / bare cores.
* ``((x+a)/(x+b))^q``, ``0<q<1``: ``1 − (sin πq/π) ∫₀^{π/2}
  2(b−a) sin^{2q+1}θ cos^{1−2q}θ (x + a + (b−a) sin²θ)⁻¹ dθ`` — the branch
  cut ``[−b, −a]`` parametrised so the integrand is smooth; valid for either
  order of ``a`` and ``b``.
* an analytic ``g`` (``An`` letter): the Cauchy integral
  ``g(x) = ∮ g(z)(z − x)⁻¹ dz/2πi`` with ``(z − x)⁻¹ = −(x − z)⁻¹``, i.e. the
  resolvent at ``λ = −z``, on the circle ``z(θ) = c₀ + r e^{iθ}``,
  ``θ ∈ [0, 2π]``: weight ``−(r/2π) e^{iθ} g(z(θ))``. By default the circle
  encloses ``[0, x₊]`` with ``x₊ = ‖Σ‖‖K‖(1 + √(d/m))²`` ≥ the edge of the
  limiting spectrum: ``c₀ = x₊/2``, ``r = 0.6 x₊`` (it crosses the real
  axis at ``−0.1x₊`` and ``1.1x₊``).

Each returns ``(constant part, integral part)`` so the engine can apply the
one-/two-point equivalents under the integral sign.
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity

from ..rewrite.canonical import integer_letters
from ..rewrite.letters import An, Det, Res


def representation(letter, theta):
    """Replace the ``Fn`` letter: returns ``(consts, integral)`` with
    ``consts`` a list of ``(coeff, letters)`` and ``integral`` either ``None``
    or ``(weight(θ), letters_with_resolvent)``; the function equals
    ``Σ coeff·letters + ∫₀^{π/2} weight · letters dθ``."""
    if isinstance(letter, An):
        return [], contour(letter, theta)
    core, factors = letter.core, letter.factors
    frac = [(a, s) for a, s in factors if not sp.sympify(s).is_integer]
    ints = [(a, s) for a, s in factors if sp.sympify(s).is_integer]
    if len(frac) == 1:
        a, s = frac[0]
        k = sp.floor(s) + 1          # s = k + r with r ∈ (−1, 0)
        r = s - k
        u = -r
        c = 1 + a
        t = c * sp.tan(theta) ** 2
        w = sp.sin(sp.pi * u) / sp.pi * 2 * c ** (1 - u) * sp.tan(theta) ** (1 - 2 * u) / sp.cos(theta) ** 2
        pre = integer_letters(core, tuple(ints) + (((a, k),) if k != 0 else ()))
        return [], [(w * cp, lp + (Res(core, a + t),)) for cp, lp in pre]
    if len(frac) == 2 and sp.sympify(frac[0][1] + frac[1][1]).is_integer:
        (a, sa), (b, sb) = frac
        q = sa - sp.floor(sa)        # ((x+a)/(x+b))^q, q ∈ (0, 1)
        rest = tuple(ints) + tuple((x, e) for x, e in ((a, sa - q), (b, sb + q)) if e != 0)
        pre = integer_letters(core, rest)
        z = a + (b - a) * sp.sin(theta) ** 2
        w = -sp.sin(sp.pi * q) / sp.pi * 2 * (b - a) * sp.sin(theta) ** (2 * q + 1) * sp.cos(theta) ** (1 - 2 * q)
        return pre, [(w * cp, lp + (Res(core, z),)) for cp, lp in pre]
    raise NotImplementedError(
        f"spectral function {letter}: only a single fractional power (x+a)^s or a ratio "
        "((x+a)/(x+b))^q (times integer powers) has an integral representation here")


def upper_limit(letter):
    """The integration variable runs over ``[0, upper_limit]``."""
    return 2 * sp.pi if isinstance(letter, An) else sp.pi / 2


def contour(letter, theta):
    """``[(weight(θ), (Res(core, −z(θ)),))]`` for the ``An`` letter, on its
    circle (``An.circle``)."""
    c0, r = letter.circle()
    e = sp.exp(sp.I * theta)
    z = c0 + r * e
    w = -r / (2 * sp.pi) * e * letter.g(z)
    return [(w, (Res(letter.core, -z),))]


def new_theta(i):
    return sp.Dummy(f"theta{i}", real=True)


def identity_word(core):
    return (Det(Identity(core.dim)),)
