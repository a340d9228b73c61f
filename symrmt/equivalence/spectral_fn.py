"""Spectral functions of a sample covariance as integrals over resolvents
(docs/math.md §Spectral functions), each mapped onto ``θ ∈ [0, π/2]`` so the
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
  resolvent at ``λ = −z``, ``θ ∈ [0, 2π]``. By default on the ellipse
  (:func:`ellipse`) ``z(θ) = m + h(ρe^{iθ} + e^{−iθ}/ρ)/2`` with foci ``0``
  and ``x₊`` (``m = h = x₊/2``), weight ``−(h/4π)(ρe^{iθ} − e^{−iθ}/ρ) g(z(θ))``,
  ``x₊`` a bound on the edge of the limiting spectrum computed from ``Σ``
  (``An.circle``: iid rows ``x₊ = u(1 + Tr[Σ(u−Σ)⁻¹]/m)``,
  ``u = ‖Σ‖ + √(Tr Σ²/m)``, exact for ``Σ = sI``; with ``K`` the cruder
  ``‖Σ‖‖K‖(1+√(d/m))²``); ``ρ`` is chosen from ``g`` so that ``g`` stays
  within ``e^GROWTH`` of its maximum on ``[0, x₊]`` — for gradient descent
  ``|1 − ηz|^t`` stays bounded, the contour approaching the segment as
  ``1/(ηt)`` near its ends (where ``|1 − ηx| ≈ 1``) and the node count growing
  like ``√t``. Given ``contour=(c₀, r)``, or where ``g`` carries the engine's
  pole subtraction (a ``Piecewise`` deciding "inside" by ``An.circle``), the
  circle ``z(θ) = c₀ + r e^{iθ}``, weight ``−(r/2π) e^{iθ} g(z(θ))``.
  Quadrature nodes are evaluated in chunks of bounded size
  (``numerics.quadrature.POINTS``); a whole grid of ``t``, ``η`` on one
  contour: :func:`symrmt.numerics.contour.curve`.

The Cauchy integral is exact only when ``g`` is analytic on and inside the
circle. :func:`check_analytic` proves that or refuses (``NotImplementedError``
naming ``g``): entire building blocks (polynomials, ``exp``, ``sin``, ``cos``,
``sinh``, ``cosh``, ``erf``) are accepted anywhere; poles (zeros of a
denominator, after cancelling removable ones such as ``(1 − (1 − ηx)^t)/x``
at ``0``) and branch points with their principal cuts (fractional powers and
``log`` of a real linear or Möbius function of ``x``) must provably lie
outside the closed disc (for the default ellipse, the disc around its
centre through its vertices, which contains it), and a given circle must
provably enclose ``[0, x₊]``;
anything else (``Abs``, ``sign``, ``Piecewise``, ``re``, ``tan`` …) is refused.
A ``g`` that is exactly ``C·Π(p_i x + q_i)^{s_i}`` with ``p_i > 0``,
``q_i ≥ 0`` and a fractional exponent (``sqrt``, ``x^{1/3}``,
``√((x+a)/(x+b))``) is not a contour integral at all: it is routed to the
fractional-power representations above (it agrees with ``g`` on the
spectrum ``x ≥ 0``, where ``(p x + q)^s = p^s (x + q/p)^s``).

Each returns ``(constant part, integral part)`` so the engine can apply the
one-/two-point equivalents under the integral sign.

Pooled/shifted cores (``letters.PooledCore``: ``M = Σ_k c_k X_kᵀX_k/n_k + B``,
from ``sr.vstack`` or sums, ``B`` a deterministic PSD shift): the same
representations, with the resolvent ``(M + z)⁻¹`` under the integral the
``GRes`` letter of the general one-point law (docs/math.md), averaged at the
complex node (its lift for products). The default ellipse has foci ``0`` and
``x₊ = Σ_k c_k‖Σ_k‖‖K_k‖(1+√(d/n_k))² + ‖B‖`` (``PooledCore.edge``: triangle
inequality and Bai–Yin), its node written compactly as :class:`ContourPoint`.
"""
from __future__ import annotations

import sympy as sp
from sympy import Identity

from ..rewrite.canonical import integer_letters
from ..rewrite.letters import An, Det, resolvent_letter


def representation(letter, theta):
    """Replace the ``Fn`` letter: returns ``(consts, integral)`` with
    ``consts`` a list of ``(coeff, letters)`` and ``integral`` either ``None``
    or ``(weight(θ), letters_with_resolvent)``; the function equals
    ``Σ coeff·letters + ∫₀^{π/2} weight · letters dθ``."""
    if isinstance(letter, An):
        routed = as_power(letter)
        if routed is None:
            return [], contour(letter, theta)
        scale, letter = routed
        consts, integral = representation(letter, theta)
        return [(scale * c, w) for c, w in consts], [(scale * c, w) for c, w in integral]
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
        return [], [(w * cp, lp + (resolvent_letter(core, a + t),)) for cp, lp in pre]
    if len(frac) == 2 and sp.sympify(frac[0][1] + frac[1][1]).is_integer:
        (a, sa), (b, sb) = frac
        q = sa - sp.floor(sa)        # ((x+a)/(x+b))^q, q ∈ (0, 1)
        rest = tuple(ints) + tuple((x, e) for x, e in ((a, sa - q), (b, sb + q)) if e != 0)
        pre = integer_letters(core, rest)
        z = a + (b - a) * sp.sin(theta) ** 2
        w = -sp.sin(sp.pi * q) / sp.pi * 2 * (b - a) * sp.sin(theta) ** (2 * q + 1) * sp.cos(theta) ** (1 - 2 * q)
        return pre, [(w * cp, lp + (resolvent_letter(core, z),)) for cp, lp in pre]
    raise NotImplementedError(
        f"spectral function {letter}: only a single fractional power (x+a)^s or a ratio "
        "((x+a)/(x+b))^q (times integer powers) has an integral representation here")


def upper_limit(letter):
    """The integration variable runs over ``[0, upper_limit]``."""
    return 2 * sp.pi if isinstance(letter, An) and as_power(letter) is None else sp.pi / 2


def contour(letter, theta):
    """``[(weight(θ), (Res(core, −z(θ)),))]`` for the ``An`` letter: on the
    given circle, or by default on the ellipse of :func:`ellipse` (the
    circle of ``An.circle`` where ``g`` carries the engine's pole
    subtraction, whose ``Piecewise`` decides "inside" by that circle)."""
    if letter.contour is None and not letter.g.expr.has(sp.Piecewise) and not letter.core.chain:
        m, h, rho = ellipse(letter)
        check_analytic(letter, m, h * (rho + 1 / rho) / 2)
        e = sp.exp(sp.I * theta)
        if getattr(letter.core, "pooled", False):
            # compact node: the general law's R = (Σ_k c_kρ_kΣ_k + B − z)⁻¹ repeats z in every trace
            z = ContourPoint(e, 2 * m, ellipse_scale(letter)[2])
        else:
            z = m + h * (rho * e + 1 / (rho * e)) / 2
        w = -h / (4 * sp.pi) * (rho * e - 1 / (rho * e)) * letter.g(z)
        return [(w, (resolvent_letter(letter.core, -z),))]
    c0, r = letter.circle()
    check_analytic(letter, c0, r)
    e = sp.exp(sp.I * theta)
    z = c0 + r * e
    w = -r / (2 * sp.pi) * e * letter.g(z)
    return [(w, (resolvent_letter(letter.core, -z),))]


#: growth allowed on the default contour, in nats: ``max|g|`` on it is at most
#: ``e^GROWTH`` times its maximum on the segment ``[0, x₊]`` (per factor).
GROWTH = 2
#: the widest default ellipse, ``(ρ + 1/ρ)/2 − 1``: ``ρ = 2``.
A_MAX = sp.Rational(1, 4)


def ellipse(letter):
    """``(m, h, ρ)`` of the default contour ``z(θ) = m + h(ρe^{iθ} + e^{−iθ}/ρ)/2``:
    the Joukowski image of ``|ζ| = ρ``, an ellipse with foci ``0`` and ``x₊``
    (``m = h = x₊/2``, ``x₊`` the bound of ``An.circle`` on the edge of the
    limiting spectrum, which lies in ``[0, x₊]``). The map ``ζ ↦ z`` takes
    ``|ζ| > 1`` conformally onto the plane cut along ``[0, x₊]`` and opens
    the square-root edges of the density, so the periodic rule converges like
    ``ρ^{−N}``, limited only by the spectrum itself.

    ``ρ`` is chosen so that ``g`` stays bounded on the contour: with
    ``A = (ρ + 1/ρ)/2`` (semi-major axis ``hA``), for each factor
    ``(α + βx)^k`` of ``g`` (``k`` a positive integer, symbolic allowed: the
    ``(1 − ηx)^t`` of gradient descent) ``max_ellipse|α + βz| = |α'| + |β'|A``
    with ``α' = α + βm``, ``β' = βh`` (an affine image of the ellipse; on the
    segment ``A = 1``), so ``k·log`` of their ratio is at most ``GROWTH`` when
    ``A − 1 ≤ (1 + |α'|/|β'|)(e^{GROWTH/k} − 1)``; for ``e^{βx}``,
    ``A − 1 ≤ GROWTH/(|β|h)``. ``1/(A − 1)`` is the sum of ``1/A_MAX`` and the
    reciprocals of these bounds (so it obeys each). Near the edges the
    contour's distance to the segment is ``≈ h(A − 1)``, ``∝ 1/(ηt)`` for
    gradient descent (where ``|1 − ηx| ≈ 1``), while the ζ-plane distance is
    ``ρ − 1 ≈ √(2(A − 1))``: the node count grows like ``√t``."""
    m, h, A = ellipse_scale(letter)
    rho = A + sp.sqrt(A ** 2 - 1)
    return m, h, rho


def ellipse_scale(letter):
    """``(m, h, A)`` of :func:`ellipse` (``A = ContourScale(…)``, ``ρ = A + √(A²−1)``)."""
    c0, _ = letter.circle()
    m = h = c0                       # An.circle centres [0, x₊] at x₊/2
    x, body = letter.g.variables[0], letter.g.expr
    inv = 1 / A_MAX
    for bound in _growth_bounds(body, x, m, h):
        inv += 1 / bound
    return m, h, ContourScale(1 + 1 / inv)


class ContourScale(sp.Function):
    """``A = (ρ + 1/ρ)/2`` of a default ellipse (:func:`ellipse`): numerically
    the identity. It marks the contour's shape, which depends on parameters
    of ``g`` (``t``, ``η``), so that an evaluator over a whole grid
    (:func:`symrmt.numerics.contour.curve`) can put every grid point on one
    contour (the narrowest, valid for all of them: ``max|g|`` on a smaller
    ellipse is smaller) and reuse ``κ`` on its nodes."""
    nargs = 1

    @classmethod
    def eval(cls, a):
        if a.is_Number:
            return a

    def _eval_evalf(self, prec):
        return self.args[0].evalf(sp.core.evalf.prec_to_dps(prec))

    def _eval_is_positive(self):
        return self.args[0].is_positive

    def _eval_is_real(self):
        return self.args[0].is_real

    def _numpycode(self, printer):
        # parenthesised: a Function prints as an atom, so ``A**2`` must not read ``1 + …**2``
        return "(" + printer._print(self.args[0]) + ")"

    _mpmathcode = _pythoncode = _lambdacode = _numpycode


class ContourPoint(sp.Function):
    """The node ``z = x₊/2 + x₊(ρe + 1/(ρe))/4`` (``ρ = A + √(A² − 1)``,
    ``e = e^{iθ}``) of the default ellipse (:func:`ellipse`: foci ``0`` and
    ``x₊``, ``m = h = x₊/2``) as one compact node ``ContourPoint(e, x₊, A)``:
    used for pooled/shifted cores, whose resolvent equivalent
    ``(Σ_k c_kρ_kΣ_k + B − z)⁻¹`` carries ``z`` into every trace of the
    derived integrand (written out, it multiplies the size of the value).
    Numerically and in LaTeX it is the explicit formula."""
    nargs = 3

    @classmethod
    def eval(cls, e, xp, A):
        if e.is_Number and xp.is_Number and A.is_Number:
            return cls._formula(e, xp, A)

    @staticmethod
    def _formula(e, xp, A):
        rho = A + sp.sqrt(A ** 2 - 1)
        return xp / 2 + xp * (rho * e + 1 / (rho * e)) / 4

    def explicit(self):
        return self._formula(*self.args)

    def _eval_evalf(self, prec):
        return self.explicit().evalf(sp.core.evalf.prec_to_dps(prec))

    def _numpycode(self, printer):
        return "(" + printer._print(self.explicit()) + ")"

    _mpmathcode = _pythoncode = _lambdacode = _numpycode

    def _latex(self, printer):
        return printer._print(self.explicit())


class ContourRe(sp.re):
    """``re(·)`` of an outer contour integral (the engine takes the real part of
    a real word's Cauchy integral, ``Derivation.contour_of``): numerically, in
    print and for ``isinstance(·, sp.re)`` it is ``re``. Its evaluation leaves
    an integral (or a sum with one) unevaluated instead of asking SymPy whether
    it is real or imaginary: those queries walk the whole integrand, repeated
    sub-trees included, several times per construction (about 50 s of the
    derivation of the pooled gradient-descent risk, t = 3, whose integrands
    repeat the node ``z(θ)`` in every trace); the value is unchanged, ``re``
    of it is taken numerically."""

    @classmethod
    def eval(cls, arg):
        if isinstance(arg, sp.Integral) or (isinstance(arg, sp.Add) and
                                            any(isinstance(a, sp.Integral) for a in arg.args)):
            return None
        return super().eval(arg)


def _growth_bounds(e, x, m, h):
    """Bounds on ``A − 1`` from the growing factors of ``e`` (:func:`ellipse`)."""
    out = []
    for p in sp.preorder_traversal(e):
        if isinstance(p, sp.Pow) and p.base.has(x) and not p.exp.has(x):
            k = p.exp
            if not (k.is_integer and k.is_positive) or (k.is_number and k < 2):
                continue
            if not p.base.is_polynomial(x) or sp.Poly(p.base, x).degree() != 1:
                continue
            beta, alpha = sp.Poly(p.base, x).all_coeffs()
            a1, b1 = sp.Abs(alpha + beta * m), sp.Abs(beta * h)
            out.append((1 + a1 / b1) * (sp.exp(sp.Integer(GROWTH) / k) - 1))
        elif isinstance(p, sp.exp) and p.args[0].has(x):
            arg = p.args[0]
            if arg.is_polynomial(x) and sp.Poly(arg, x).degree() == 1:
                beta = sp.Poly(arg, x).all_coeffs()[0]
                out.append(sp.Integer(GROWTH) / (sp.Abs(beta) * h))
    return out


def new_theta(i):
    return sp.Dummy(f"theta{i}", real=True)


def identity_word(core):
    return (Det(Identity(core.dim)),)


# ------------------------------------------------------------------ analyticity
#: Entire functions: analytic everywhere, so only their arguments matter.
_ENTIRE = (sp.exp, sp.sin, sp.cos, sp.sinh, sp.cosh, sp.erf, sp.erfc, sp.erfi)


class _Lazy:
    """``_name(letter)`` formatted only when a message is built."""

    def __init__(self, letter):
        self.letter = letter

    def __format__(self, spec):
        return _name(self.letter)


def _name(letter):
    x = letter.g.variables[0]
    return "x ↦ " + sp.sstr(letter.g.expr.xreplace({x: sp.Symbol("x")}))


def as_power(letter):
    """``(scale, Fn letter)`` when ``g(x) = C·Π(p_i x + q_i)^{s_i}`` with
    ``p_i > 0``, ``q_i ≥ 0`` (provably), ``C`` free of ``x`` and a non-integer
    ``s_i`` that the fractional-power representations accept (one, or two
    adding up to an integer); else ``None``. On ``x ≥ 0`` (the spectrum of
    the core) ``(p x + q)^s = p^s (x + q/p)^s`` for every real ``s``."""
    from ..rewrite.letters import Fn
    x, body = letter.g.variables[0], letter.g.expr
    if all(e.is_integer for e in (p.exp for p in body.atoms(sp.Pow) if p.has(x))):
        return None                      # no fractional power of x: nothing to route
    leaves = []

    def walk(e, s):              # e^s as Π leaf^{exponent}; valid as every leaf is > 0 on x > 0
        for f in sp.Mul.make_args(e):
            base, k = f.as_base_exp()
            if k.has(x) or not (k * s).is_real or not k.is_number:
                return False
            if base.is_Mul or (base.is_Pow and base != f):
                if not walk(base, s * k):
                    return False
            else:
                leaves.append((base, s * k))
        return True

    if not walk(sp.together(body), sp.S.One):
        return None
    scale, factors = sp.S.One, {}
    for b, e in leaves:
        if not b.has(x):
            if not b.is_positive:
                return None
            scale *= b ** e
            continue
        poly = sp.Poly(b, x) if b.is_polynomial(x) else None
        if poly is None or poly.degree() != 1:
            return None
        p, q = poly.all_coeffs()
        if not (p.is_positive and (q / p).is_nonnegative):
            return None
        a = sp.simplify(q / p)
        scale *= p ** e
        factors[a] = factors.get(a, 0) + e
    factors = {a: e for a, e in factors.items() if e != 0}
    frac = [a for a, e in factors.items() if not sp.sympify(e).is_integer]
    if not frac or len(frac) > 2 or (len(frac) == 2 and not sp.Add(*[factors[a] for a in frac]).is_integer):
        return None
    if any(e.is_negative and sp.sympify(e).is_integer and a == 0 for a, e in factors.items()):
        return None                       # x⁻¹ on a possibly singular core: no resolvent at 0
    return scale, Fn(letter.core, tuple(sorted(factors.items(), key=sp.default_sort_key)), letter.tag)


def _opaque(e):
    """Contains spectral functionals (``Tr``, ``Norm``): ``simplify`` can hang there."""
    from ..objects.functionals import Form, Norm, Tr
    return e.has(Tr, Norm, Form)


def _decide(e):
    """``True`` when ``e > 0`` is provable (cheaply), else ``False``."""
    e = sp.sympify(e)
    if e.is_positive:
        return True
    if _opaque(e) or sp.count_ops(e) > 200:
        return False
    try:
        return bool(sp.simplify(e).is_positive)
    except Exception:  # simplify is best effort
        return False


def _zero(e):
    """``e == 0`` provable (cheaply); ``False`` when unknown."""
    e = sp.expand(sp.sympify(e))
    if e == 0:
        return True
    if _opaque(e) or sp.count_ops(e) > 200:
        return sp.cancel(e) == 0 if not _opaque(e) else False
    try:
        return sp.simplify(e) == 0
    except Exception:  # simplify is best effort
        return False


def _outside(point, c0, r, facts=()):
    """``point`` provably outside the closed disc ``|z − c₀| ≤ r`` — or, from a
    ``Piecewise`` branch taken only when ``|E| ≥ r`` with ``E = ±(point − c₀)``
    (the engine's pole subtraction, ``canonical.step``), not inside it."""
    A = sp.Dummy("A")
    dist = {sp.Abs(point - c0): A, sp.Abs(c0 - point): A, sp.Abs(sp.expand(point - c0)): A,
            sp.Abs(sp.expand(c0 - point)): A}
    for f in facts:
        if isinstance(f, (sp.GreaterThan, sp.StrictGreaterThan)):
            e = f.lhs - f.rhs
        elif isinstance(f, (sp.LessThan, sp.StrictLessThan)):
            e = f.rhs - f.lhs
        else:
            continue
        e = sp.expand(e).xreplace(dist)      # e ≥ 0 with e = α|point − c₀| + β
        if not e.has(A) or not e.is_polynomial(A) or sp.Poly(e, A).degree() != 1:
            continue
        alpha, beta = sp.Poly(e, A).all_coeffs()
        if alpha.is_positive and _zero(beta / alpha + r):
            return True
    re_, im_ = point.as_real_imag()
    if im_ == 0 or im_.is_zero:
        return _decide(c0 - r - re_) or _decide(re_ - c0 - r)
    return _decide((re_ - c0) ** 2 + im_ ** 2 - r ** 2)


def _roots(poly_expr, x, what, letter):
    poly = sp.Poly(poly_expr, x)
    roots = sp.roots(poly)
    if sum(roots.values()) != poly.degree():
        raise NotImplementedError(
            f"matrix_function({_name(letter)}): cannot locate the zeros of {what} {poly_expr}; "
            "analyticity inside the contour is not proven")
    return list(roots)


def _singularities(e, x, letter, out):
    """Walk ``e``; append ``(kind, point, base)`` for poles and branch points
    (``kind`` ``"pole"`` or ``"branch"``); refuse non-analytic pieces."""
    if not e.has(x) or e == x:
        return
    name = _Lazy(letter)
    if isinstance(e, (sp.Add, sp.Mul)):
        for a in e.args:
            _singularities(a, x, letter, out)
        return
    if isinstance(e, sp.Pow):
        base, s = e.args
        if s.has(x):
            if base.has(x) or not base.is_positive:
                raise NotImplementedError(f"matrix_function({name}): {e} is not analytic (variable exponent)")
            _singularities(s, x, letter, out)
            return
        _singularities(base, x, letter, out)
        if s.is_integer and s.is_nonnegative or isinstance(base, sp.exp):
            return                            # exp never vanishes: exp(·)^s is entire
        num, den = sp.fraction(sp.together(base))
        if s.is_integer:
            if not num.is_polynomial(x):
                raise NotImplementedError(f"matrix_function({name}): cannot locate the poles of {e}")
            out += [("pole", z, base) for z in _roots(num, x, "the denominator", letter)]
            return
        out.append(("branch", None, base))
        return
    if isinstance(e, sp.log):
        _singularities(e.args[0], x, letter, out)
        out.append(("branch", None, e.args[0]))
        return
    if isinstance(e, _ENTIRE):
        for a in e.args:
            _singularities(a, x, letter, out)
        return
    raise NotImplementedError(
        f"matrix_function({name}): {type(e).__name__} ({sp.sstr(e.xreplace({x: sp.Symbol('x')}))}) is not analytic on and inside the contour "
        "(the Cauchy-integral route needs f analytic there); write fractional powers with sr.power/sr.sqrt")


def _branch_ok(base, x, c0, r):
    """Principal branch cut ``{base(x) ∈ (−∞, 0]}`` provably misses the disc:
    ``base`` a real Möbius function (degree ≤ 1 over degree ≤ 1) maps the real
    axis to itself, so its cut is real and the condition is ``base > 0`` on
    ``[c₀ − r, c₀ + r]``: zero and pole outside the disc, ``base(c₀) > 0``."""
    num, den = sp.fraction(sp.together(base))
    for b in (num, den):
        if not b.is_polynomial(x) or sp.Poly(b, x).degree() > 1:
            return False
        if any(c.is_real is not True for c in sp.Poly(b, x).all_coeffs()):
            return False
        if sp.Poly(b, x).degree() == 1:
            z = sp.solve(b, x)[0]
            if not _outside(z, c0, r):
                return False
    return _decide(base.subs(x, c0))


def check_analytic(letter, c0, r):
    """Refuse (``NotImplementedError`` naming ``g``) unless ``g`` is provably
    analytic on and inside the circle ``|z − c₀| ≤ r``, real on the real axis,
    and the circle provably encloses ``[0, x₊]`` (``x₊`` the engine's bound on
    the spectral edge). A zero of a polynomial denominator is no pole where the
    numerator vanishes to its order (``(1 − (1 − ηx)^t)/x`` at ``0``); a
    ``Piecewise`` in parameters only (the engine's pole subtraction
    ``(g(x) − g(−z)[−z inside])/(x+z)``) is checked branch by branch."""
    x, body = letter.g.variables[0], letter.g.expr
    name = _Lazy(letter)
    _check_real(letter)
    if letter.contour is not None:
        # the bound ‖Σ‖‖K‖(1+√(d/m))² ≥ the edge: enclosing [0, it] suffices
        from ..objects.functionals import Norm
        if getattr(letter.core, "pooled", False):
            edge = letter.core.edge_bound()      # Σ_k c_k‖Σ_k‖‖K_k‖(1+√(d/n_k))² + ‖B‖
        else:
            X = letter.core.data
            edge = Norm(X.Sigma) * Norm(X.K) * (1 + sp.sqrt(X.d / letter.core.m)) ** 2
        if not (_decide(r - c0) and (_decide(c0 + r - edge) or _zero(c0 + r - edge))):
            raise NotImplementedError(
                f"matrix_function({name}): the contour (center {c0}, radius {r}) is not provably enclosing "
                f"[0, {edge}] (the bound on the spectrum of {letter.core}); give it in terms of sr.Norm(Sigma)")
    body = sp.piecewise_fold(body)
    branches = body.args if isinstance(body, sp.Piecewise) else ((body, sp.true),)
    facts = []
    for expr, cond in branches:
        if cond.has(x):
            raise NotImplementedError(f"matrix_function({name}): a Piecewise definition in x is not analytic")
        _check_branch(letter, expr, c0, r, facts + [cond])
        facts.append(sp.Not(cond))


def _check_branch(letter, body, c0, r, facts):
    x, name = letter.g.variables[0], _Lazy(letter)
    num, den = sp.fraction(sp.together(body))
    # factors of the denominator that are not polynomials (exp(x) …) go up as powers −1
    polys = [f for f in sp.Mul.make_args(den) if f.is_polynomial(x)]
    num = num * sp.Mul(*[f ** -1 for f in sp.Mul.make_args(den) if not f.is_polynomial(x)])
    den = sp.Mul(*polys)
    found = []
    if den.has(x):
        if not den.is_polynomial(x):
            raise NotImplementedError(f"matrix_function({name}): cannot locate the poles of {body}")
        poly = sp.Poly(den, x)
        roots = sp.roots(poly)
        if sum(roots.values()) != poly.degree():
            raise NotImplementedError(f"matrix_function({name}): cannot locate the zeros of the denominator {den}")
        for z, k in roots.items():
            # removable (e.g. (1 − (1 − ηx)^t)/x at 0): the numerator vanishes to the pole's order
            if all(_zero(sp.diff(num, x, j).subs(x, z)) for j in range(k)):
                continue
            found.append(("pole", z, den))
    _singularities(num, x, letter, found)
    for kind, z, base in found:
        ok = _outside(z, c0, r, facts) if kind == "pole" else _branch_ok(base, x, c0, r)
        if not ok:
            bx = sp.sstr(base.xreplace({x: sp.Symbol("x")}))
            where = f"a pole at x = {z}" if kind == "pole" else f"the branch cut of ({bx})^s or log({bx})"
            raise NotImplementedError(
                f"matrix_function({name}): {where} is not provably outside the contour "
                f"(center {c0}, radius {r}); f must be analytic on and inside it. Give an explicit "
                "contour=(center, radius) that excludes it, or use sr.power / sr.sqrt for fractional powers")


def _check_real(letter):
    """``g`` real on the real axis (the engine takes the real part of the
    outer contour integral): checked at random real points and parameters."""
    import random
    x, body = letter.g.variables[0], letter.g.expr
    rng = random.Random(20261127)
    syms = sorted(body.free_symbols - {x}, key=sp.default_sort_key)
    for _ in range(3):
        at = {s: (sp.Integer(rng.randint(2, 9)) if s.is_integer else sp.Float(rng.uniform(0.3, 1.7), 30))
              for s in syms}
        at[x] = sp.Float(rng.uniform(0.05, 3.0), 30)
        try:
            v = complex(body.xreplace(at).evalf(30))
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if abs(v.imag) > 1e-20 * (1 + abs(v)):
            raise NotImplementedError(f"matrix_function({_name(letter)}): f is not real on the real axis")
