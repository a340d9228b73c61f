"""Presentation of derived values in named spectral functionals (display only).

``present(de)`` rewrites ``de.value`` — never changing it — into the notation
of the literature (docs/math.md conventions, one ridge ``κ`` per unknown):

* ``R = (Σ+κ)⁻¹`` (``R_j`` for ``κ_j``),
* ``df_k(κ) = Tr[Σ^k (Σ+κ)^{-k}]``, cross version ``df₂(κ₁,κ₂) = Tr[Σ²R₁R₂]``,
* ``γ = df₂(κ)/m`` (``m`` the sample size of the unknown's equation),
  ``γ₁₂ = df₂(κ₁,κ₂)/m``,
* ridges that depend on an integration variable ``θ_j`` (contours, fractional
  powers) as named symbols ``z_j`` with their definitions.

The rules, each a small function below that states its identity:

1. :func:`resolvent_form_basis` / :func:`resolvent_trace_basis` — every
   functional of a single-ridge rational function of ``Σ`` is written in one
   basis (partial fractions), so that combinations that vanish identically
   (``uᵀ[Σ − Σ²R − κΣR]w = 0``) cancel exactly;
2. :func:`eliminate_ridge` — the self-consistent equation
   ``z = κ Π_j(1 − df₁(κ)/m_j)`` replaces the ridge ``z`` when that shortens
   the value;
3. :func:`introduce_gamma` — ``df₂ = m γ``; :func:`two_size_gamma` — for an
   equation with two sizes (random features) ``λ`` eliminated and
   ``m₁m₂ − (m₁+m₂)df₂ − df₁² + 2df₁df₂ = m₁(m₂ − df₂)(1 − γ)``;
4. :func:`shift_vectors` — bilinearity ``uᵀM(y + μ) = uᵀMy + uᵀMμ``: when the
   value depends on ``x`` and ``μ`` only through ``x − μ`` it is written so;
5. :func:`factor_display` — common factors pulled out (polynomial
   factorisation), :func:`compress_forms` (``uᵀΣ^aR^K w`` from its basis
   expansion), a leading sample-size coefficient divided out, factors
   ``(m − X)`` over ``m`` written ``(1 − X/m)``, forms collected; and, when
   shorter, partial fractions in ``γ`` (``P/(1−γ) = Q + r/(1−γ)``), also
   after :func:`df1_through_gamma` (``df₁ = mγ + κTr[ΣR²]``);
6. :func:`_integration_ridges` — a ridge ``g(θ) = a + b·h(θ)`` along an
   integration variable is named ``z_j`` (``h(θ) ↦ (z_j − a)/b``) and a
   compound factor shared by ``a`` and ``b`` (the edge ``x₊`` of a contour)
   is named too; on a default ellipse (Joukowski image of the circle
   ``ζ_j = ρe^{iθ_j}``) ``ζ_j``, ``ρ`` and the shape ``A`` are named and
   ``e^{±iθ_j}`` is written through ``ζ_j``; integrands get rules 1, 3 and per-factor tidying only, so
   that ``g(z)`` such as ``(1 − ηz)^t`` is never expanded.

Each optional rewriting is kept only if it is shorter (``count_ops``). Unknowns
of other kinds (correlated samples: ``κ, ν``) and functionals of several
matrices are shown as derived.
The result is display-only; :attr:`Presentation.expanded` is the presented
value with every definition substituted back (``Tr``/``Form`` of ``Σ`` and the
unknowns), which compiles with ``de``'s equations and equals ``de.value`` on
the solution of those equations (tests check it at random points to 1e-12).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import sympy as sp
from sympy import Identity, Inverse, MatAdd, MatMul, MatPow, MatrixSymbol, Transpose

from ..objects import Form, Tr

#: above this size (``count_ops``) a rational piece is only collected, not factored:
#: multivariate factorisation is exponential in the worst case
FACTOR_MAX_OPS = 400

_S = sp.Symbol("s", positive=True)      # eigenvalue variable of Σ


# ============================================================ display objects
class DF(sp.Function):
    """``DF(k, κ) = df_k(κ) = Tr[Σ^k(Σ+κ)^{-k}]``; ``DF(2, κ₁, κ₂) = Tr[Σ²(Σ+κ₁)⁻¹(Σ+κ₂)⁻¹]``
    (display symbol; its definition is listed below a presented result)."""

    is_commutative = True

    @classmethod
    def eval(cls, *args):
        return None

    def _latex(self, printer):
        k, *ks = self.args
        return r"\mathrm{df}_{%s}\left(%s\right)" % (printer._print(k), ", ".join(printer._print(x) for x in ks))

    def _sympystr(self, printer):
        k, *ks = self.args
        return "df%s(%s)" % (k, ", ".join(printer._print(x) for x in ks))

    def _pretty(self, printer):
        return printer._print_seq([sp.Symbol(self._sympystr(printer))])


class Named(sp.Symbol):
    """A display symbol with a fixed LaTeX form (``γ``, ``γ₁₂``, ``z₁`` …)."""

    def __new__(cls, name, tex, **assumptions):
        obj = sp.Symbol.__new__(cls, name, **assumptions)
        obj._tex = tex
        return obj

    def __getnewargs_ex__(self):
        return ((self.name, self._tex), self.assumptions0)

    def _hashable_content(self):
        return super()._hashable_content() + (self._tex,)

    def _latex(self, printer):
        return self._tex


def _index(kappa):
    """``κ`` → ``''``, ``κ_3`` → ``'3'``."""
    name = kappa.name
    return name.split("_", 1)[1] if "_" in name else ""


def resolvent_symbol(kappa, d):
    i = _index(kappa)
    return MatrixSymbol(f"R_{i}" if i else "R", d, d)


def gamma_symbol(kappas):
    idx = "".join(_index(k) for k in kappas)
    sub = ",".join(_index(k) for k in kappas) if any(len(_index(k)) > 1 for k in kappas) else idx
    return Named("gamma" + (f"_{idx}" if idx else ""), r"\gamma" + (f"_{{{sub}}}" if sub else ""), real=True)


def zeta_symbol(kappa):
    """``ζ_j = ρe^{iθ_j}``: the point on the circle whose Joukowski image is ``z_j``."""
    i = _index(kappa)
    return Named(f"zeta_{i}" if i else "zeta", rf"\zeta_{{{i}}}" if i else r"\zeta")


def ridge_symbol(kappa):
    i = _index(kappa)
    return Named(f"z_{i}" if i else "z", f"z_{{{i}}}" if i else "z")


# ============================================================ spectral functions
def eigen_function(M, Sigma, s=_S):
    """The scalar function ``m(s)`` with ``M = m(Σ)`` for ``M`` built from
    ``Σ``, the identity, scalars, sums, products, inverses and powers only
    (all such matrices commute, and ``e_jᵀMe_j = m(s_j)`` on an eigenvector);
    ``None`` if ``M`` involves another matrix."""
    if M == Sigma:
        return s
    if isinstance(M, Identity):
        return sp.S.One
    if isinstance(M, MatMul):
        parts = [eigen_function(a, Sigma, s) if isinstance(a, sp.MatrixExpr) else a for a in M.args]
        return None if any(p is None for p in parts) else sp.Mul(*parts)
    if isinstance(M, MatAdd):
        parts = [eigen_function(a, Sigma, s) for a in M.args]
        return None if any(p is None for p in parts) else sp.Add(*parts)
    if isinstance(M, Inverse):
        p = eigen_function(M.arg, Sigma, s)
        return None if p is None else 1 / p
    if isinstance(M, MatPow):
        p = eigen_function(M.base, Sigma, s)
        return None if p is None else p ** M.exp
    if isinstance(M, Transpose):
        return eigen_function(M.arg, Sigma, s)
    if not isinstance(M, sp.MatrixExpr):
        return M
    return None


def _ridges(f, s, unknowns):
    """The unknowns ``κ`` for which ``f`` has a pole at ``s = −κ``, or ``None``
    if the denominator of ``f`` is not a product of such factors (and
    constants)."""
    out = []
    for fac in sp.Mul.make_args(f):          # fast path: a product of powers
        b, e = fac.as_base_exp()
        if not b.has(s) or b == s:
            continue
        k = sp.expand(b - s)
        if isinstance(b, sp.Add) and e.is_Integer and e < 0 and k in unknowns:
            out.append(k)
            continue
        break
    else:
        return out
    num, den = sp.fraction(sp.together(f))
    out = []
    for b, e in sp.factor_list(den, s)[1]:
        if not b.has(s):
            continue
        k = sp.expand(b - s)
        if sp.Poly(b, s).degree() != 1 or k not in unknowns:
            return None
        out.append(k)
    return out


def _partial_fractions(f, s, kappa):
    """``f(s) = p(s) + Σ_k a_k (s+κ)^{-k}``: returns ``(p, {k: a_k})``
    (exact: the numerator expanded in powers of ``t = s + κ``)."""
    fast = _monomial_fractions(f, s, kappa)
    if fast is not None:
        return fast
    num, den = sp.fraction(sp.cancel(sp.together(f)))
    dp = sp.Poly(den, s)
    K = dp.degree()
    lc = dp.LC()
    if sp.expand(den - lc * (s + kappa) ** K) != 0:
        raise ValueError(f"internal: {den} is not a power of (s + {kappa})")
    t = sp.Dummy("t")
    coeffs = sp.Poly(sp.expand(num.subs(s, t - kappa)), t).all_coeffs()[::-1]
    poly, fracs = sp.S.Zero, {}
    for j, a in enumerate(coeffs):
        a = sp.cancel(a / lc)
        if a == 0:
            continue
        if j >= K:
            poly += a * (s + kappa) ** (j - K)
        else:
            fracs[K - j] = fracs.get(K - j, 0) + a
    return sp.expand(poly), fracs


def _monomial_fractions(f, s, kappa):
    """Fast path of :func:`_partial_fractions` for ``f = c·s^a(s+κ)^{-b}``:
    ``s^a = Σ_j C(a, j)(s+κ)^j(−κ)^{a−j}``."""
    c, a, b = sp.S.One, 0, 0
    for fac in sp.Mul.make_args(f):
        base, e = fac.as_base_exp()
        if not fac.has(s):
            c *= fac
        elif base == s and e.is_Integer and e > 0:
            a += int(e)
        elif base == s + kappa and e.is_Integer and e < 0:
            b -= int(e)
        else:
            return None
    poly, fracs = sp.S.Zero, {}
    for j in range(a + 1):
        coef = c * sp.binomial(a, j) * (-kappa) ** (a - j)
        if j >= b:
            poly += coef * (s + kappa) ** (j - b)
        else:
            fracs[b - j] = fracs.get(b - j, 0) + coef
    return sp.expand(poly), fracs


def resolvent_form_basis(u, f, w, kappa, Sigma, R):
    """``uᵀ f(Σ) w`` in the basis ``uᵀΣ^i w`` (``i ≥ 0``), ``uᵀΣR^k w`` (``k ≥ 1``).

    Identity: partial fractions ``f = p(s) + Σ_k a_k (s+κ)^{-k}`` and
    ``(s+κ)^{-k} = [(s+κ)^{-(k−1)} − s(s+κ)^{-k}]/κ`` (from ``Σ + κ = R⁻¹``),
    applied down to ``(s+κ)^0 = 1``."""
    poly, fracs = _partial_fractions(f, _S, kappa)
    # coefficients in the basis: "P", i -> uᵀΣ^i w ; "F", k -> uᵀΣR^k w
    coeff = {}

    def add(key, c):
        coeff[key] = coeff.get(key, 0) + c

    for i, c in enumerate(sp.Poly(poly, _S).all_coeffs()[::-1] if poly != 0 else []):
        add(("P", i), c)

    def inv_power(k, c):          # c (s+κ)^{-k}
        if k == 0:
            add(("P", 0), c)
            return
        add(("F", k), -c / kappa)
        inv_power(k - 1, c / kappa)

    for k, c in fracs.items():
        inv_power(k, c)
    out = sp.S.Zero
    for (kind, i), c in coeff.items():
        c = sp.cancel(c)
        if c == 0:
            continue
        if kind == "P":
            M = Sigma ** i if i else None
        else:
            M = Sigma * R ** i if i > 1 else Sigma * R
        out += c * _form(u, M, w)
    return out


def _form(u, M, w):
    """``Form(uᵀMw)`` with ``u, w`` in a fixed order (``M`` symmetric)."""
    u, w = sorted((u, w), key=sp.default_sort_key)
    return Form(u.T * w) if M is None else Form(u.T * M * w)


def resolvent_trace_basis(f, kappa, Sigma, dim):
    """``Tr f(Σ)`` in the basis ``d = Tr I``, ``Tr Σ^i`` and ``df_k(κ)``.

    Identity: with ``t = s/(s+κ)``, ``(s+κ)^{-1} = (1 − t)/κ``, so every
    ``(s+κ)^{-k}`` is a polynomial in ``t`` and ``Tr[t(Σ)^k] = df_k(κ)``."""
    poly, fracs = _partial_fractions(f, _S, kappa)
    t = sp.Dummy("t")
    out = sp.S.Zero
    if poly != 0:
        for i, c in enumerate(sp.Poly(poly, _S).all_coeffs()[::-1]):
            out += c * (dim if i == 0 else Tr(Sigma ** i))
    inner = sp.Add(*[c * ((1 - t) / kappa) ** k for k, c in fracs.items()])
    if inner != 0:
        for j, c in enumerate(sp.Poly(sp.expand(inner), t).all_coeffs()[::-1]):
            c = sp.cancel(c)
            if c != 0:
                out += c * (dim if j == 0 else DF(j, kappa))
    return out


# ============================================================ functionals
def _resolvent_display(M, Sigma, Rs):
    """``M`` with every ``(Σ+κ_j)^{-k}`` written ``R_j^k`` (display)."""
    if isinstance(M, (Inverse, MatPow)):
        base = M.arg if isinstance(M, Inverse) else M.base
        e = sp.S.NegativeOne if isinstance(M, Inverse) else M.exp
        f = eigen_function(base, Sigma)
        if f is not None:
            k = sp.expand(f - _S)
            if k in Rs and e.is_integer and e < 0:
                return Rs[k] ** (-e) if e != -1 else Rs[k]
        if isinstance(M, Inverse):
            return Inverse(_resolvent_display(base, Sigma, Rs))
        return MatPow(_resolvent_display(base, Sigma, Rs), e)
    if isinstance(M, (MatMul, MatAdd, Transpose)):
        args = [_resolvent_display(a, Sigma, Rs) if isinstance(a, sp.MatrixExpr) else a for a in M.args]
        return M.func(*args).doit(deep=False) if not isinstance(M, Transpose) else Transpose(args[0])
    return M


def _parse_form(F):
    """``(c, u, M, w)`` for ``F = c·uᵀMw`` (``M`` ``None`` for the identity), else ``None``."""
    arg = F.arg
    parts = list(arg.args) if isinstance(arg, MatMul) else [arg]
    c = sp.S.One
    while parts and not isinstance(parts[0], sp.MatrixExpr):
        c, parts = c * parts[0], parts[1:]
    if len(parts) < 2:
        return None
    left, right = parts[0], parts[-1]
    if not (isinstance(left, Transpose) and isinstance(left.arg, MatrixSymbol) and left.arg.shape[1] == 1
            and isinstance(right, MatrixSymbol) and right.shape[1] == 1):
        return None
    mid = MatMul(*parts[1:-1]).doit() if len(parts) > 2 else None
    return c, left.arg, mid, right


def _presents_kappa(g):
    """Whether the group's law is shown as one ``κ`` with ``κ Π_j(1 − df₁/m_j) = z``
    (``Law.presents_kappa`` of its family in the registry; an unregistered kind: no)."""
    from .laws import FAMILIES
    law = FAMILIES.get(g.kind)
    return bool(law is not None and law.presents_kappa)


class _Context:
    """Per-presentation state: unknowns, their ``Σ``, sizes, display symbols."""

    def __init__(self, de):
        self.groups = list(de.groups)
        self.kappas = [g.unknowns[0] for g in self.groups if _presents_kappa(g)]
        self.group_of = {g.unknowns[0]: g for g in self.groups}
        sig = {g.Sigma for g in self.groups}
        self.Sigma = sig.pop() if len(sig) == 1 else None
        self.d = self.Sigma.shape[0] if self.Sigma is not None else None
        self.R = {k: resolvent_symbol(k, self.d) for k in self.kappas} if self.Sigma is not None else {}
        self.cache = {}
        self.contour_names = {}
        self.zetas = {}
        self.rich = True
        self.gamma_defs = {}
        self._index_maps = None
        self.eq_checked = {}

    def functional(self, A):
        """One ``Tr``/``Form`` atom rewritten (rules 1) — cached."""
        if A not in self.cache:
            self.cache[A] = self._functional(A)
        return self.cache[A]

    def _functional(self, A):
        Sigma = self.Sigma
        if Sigma is None:
            return A
        if isinstance(A, Form):
            p = _parse_form(A)
            if p is None:
                expanded = A.arg.expand() if hasattr(A.arg, "expand") else A.arg
                if isinstance(expanded, MatAdd):
                    from ..objects.functionals import split_linear
                    parts = split_linear(Form, expanded)
                    if parts != A:
                        return parts.xreplace({F: self.functional(F) for F in parts.atoms(Form)})
                return self._display(A)
            c, u, M, w = p
            f = sp.S.One if M is None else eigen_function(M, Sigma)
            if f is None:
                return self._display(A)
            ks = _ridges(f, _S, self.kappas)
            if ks is None:
                return self._display(A)
            if len(set(ks)) == 0:
                poly = sp.Poly(sp.expand(f), _S)
                return c * sp.Add(*[ci * _form(u, Sigma ** i if i else None, w)
                                    for i, ci in enumerate(poly.all_coeffs()[::-1]) if ci != 0])
            if len(set(ks)) == 1:
                k = ks[0]
                return c * resolvent_form_basis(u, f, w, k, Sigma, self.R[k])
            return self._display(A)
        # trace
        f = eigen_function(A.arg, Sigma)
        if f is None:
            return self._display(A)
        if not f.has(_S):                 # M = c·I: Tr M = c · (its size)
            return f.xreplace({B: self.functional(B) for B in f.atoms(Tr, Form)}) * A.arg.shape[0]
        ks = _ridges(f, _S, self.kappas)
        if ks is None:
            return self._display(A)
        if len(set(ks)) == 1:
            return resolvent_trace_basis(f, ks[0], Sigma, self.d)
        if len(ks) == 2 and len(set(ks)) == 2 and set(sp.Mul.make_args(f)) == {
                _S ** 2, 1 / (_S + ks[0]), 1 / (_S + ks[1])}:
            return DF(2, *sorted(ks, key=sp.default_sort_key))
        return self._display(A)

    def _display(self, A):
        return A.func(_resolvent_display(A.arg, self.Sigma, self.R)) if self.R else A


# ============================================================ rules 2–5
def eliminate_ridge(e, group, kappa):
    """Rule 2: replace the ridge ``z`` (a symbol) by the left side of its
    equation, ``z = κ Π_j (1 − df₁(κ)/m_j)``."""
    z = group.z
    lhs = kappa * sp.Mul(*[(1 - DF(1, kappa) / m) for m in group.sizes])
    return e.xreplace({z: lhs})


def _forms_by_vector(e):
    out = {}
    for F in e.atoms(Form):
        p = _parse_form(F)
        if p is not None:
            out[F] = p
    return out


def shift_vectors(e):
    """Rule 4: for vectors ``x, μ`` with ``e`` a function of ``x − μ`` only,
    write every form through ``y = x − μ`` (displayed as ``(x − μ)``):
    ``aᵀMx = aᵀMy + aᵀMμ`` (bilinearity); kept only if ``μ`` drops out."""
    forms = _forms_by_vector(e)
    vecs = sorted({v for (_, u, _, w) in forms.values() for v in (u, w)}, key=sp.default_sort_key)
    for x in reversed(vecs):
        for mu in vecs:
            if x == mu:
                continue
            y = MatrixSymbol(f"({x.name}-{mu.name})", *x.shape)
            rep = {}
            for F, (c, u, M, w) in forms.items():
                if x not in (u, w):
                    continue
                ul = [(y, 1), (mu, 1)] if u == x else [(u, 1)]
                wl = [(y, 1), (mu, 1)] if w == x else [(w, 1)]
                rep[F] = c * sp.Add(*[a * b * _form(uu, M, ww) for uu, a in ul for ww, b in wl])
            if not rep:
                continue
            new = sp.expand(e.xreplace(rep))
            if not any(mu in (p[1], p[3]) for p in _forms_by_vector(new).values()):
                return _shifted_display(new, y, x, mu)
    return e


def _shifted_display(e, y, x, mu):
    """``y`` → the matrix expression ``x − μ`` inside the forms (display)."""
    rep = {}
    for F in e.atoms(Form):
        if y in F.arg.atoms(MatrixSymbol):
            rep[F] = Form(F.arg.xreplace({y: _VecDiff(x, mu)}))
    return e.xreplace(rep)


_PAIRS = {}


class _VecDiff(MatrixSymbol):
    """Display of ``x − μ`` as one vector inside a form."""

    def __new__(cls, name, n=None, m=None):
        if isinstance(name, MatrixSymbol):        # _VecDiff(x, mu)
            x, mu = name, n
            key = f"{x.name}-{mu.name}"
            _PAIRS[key] = (x, mu)
            return MatrixSymbol.__new__(cls, key, *x.shape)
        return MatrixSymbol.__new__(cls, name, n, m)

    @property
    def pair(self):
        return _PAIRS[self.name]

    def _latex(self, printer):
        x, mu = self.pair
        return r"\left(%s - %s\right)" % (printer._print(x), printer._print(mu))

    def _sympystr(self, printer):
        x, mu = self.pair
        return f"({printer._print(x)} - {printer._print(mu)})"

    def as_explicit_difference(self):
        x, mu = self.pair
        return x - mu


def _normal_sign(b):
    """Orientation of a linear factor: ``(a − 1) → −(1 − a)`` (constant first
    and positive, as in ``1 − γ``); a factor of sizes only with its sizes
    positive (``1 − n → −(n − 1)``)."""
    if isinstance(b, sp.Add):
        c, rest = b.as_coeff_add()
        if all(getattr(x, "is_integer", False) for x in b.free_symbols):
            if all(t.as_coeff_Mul()[0] < 0 for t in rest):
                return -1, -b
            return 1, b
        if c.is_number and c < 0 and all(t.as_coeff_Mul()[0] > 0 for t in rest):
            return -1, -b
    return 1, b


def factor_display(e, generators, ctx=None):
    """Rule 5: ``e = c · P/Q`` with the common factors of the numerator and
    denominator pulled out (``sympy.factor``), the forms in ``P`` compressed
    (:func:`compress_forms`) and collected, ``P`` normalised to a leading
    coefficient 1 and factors ``(m − X)`` over ``m`` written ``(1 − X/m)``;
    exact (polynomial factorisation and collection)."""
    if sp.count_ops(e) > FACTOR_MAX_OPS:
        return e      # expanding a large rational expression can take minutes: shown as derived
    e = _frozen(lambda x: sp.factor(sp.cancel(sp.together(x))), e)
    sign, parts = 1, []
    for a in sp.Mul.make_args(e):
        b, x = a.as_base_exp()
        if isinstance(b, sp.Add) and x.is_integer:
            s, b = _normal_sign(b)
            sign *= s ** x
            if generators and any(b.has(g) for g in generators) and x > 0:
                b, lead = _collect_normalised(b, generators, ctx)
                parts.append(lead ** x)
            parts.append(b ** x)
        else:
            parts.append(a)
    return sign * _per_size(parts, ctx)


def _integral_key(I):
    """A cheap deterministic order of integrals (and ``re`` of them): by their
    integration variables, which are unique per integral."""
    return tuple(str(l[0]) for J in sp.preorder_traversal(I) if isinstance(J, sp.Integral) for l in J.limits)[:2]


def _frozen(fn, e):
    """``fn(e)`` with functionals and display functions frozen as plain
    symbols (SymPy's rational algebra is much faster on symbols)."""
    atoms = sorted(e.atoms(Form, Tr, DF), key=sp.default_sort_key) + sorted(
        e.atoms(sp.re, sp.Integral), key=_integral_key)
    if not atoms:
        return fn(e)
    rep = {a: sp.Dummy(f"f{i}") for i, a in enumerate(atoms)}
    return fn(e.xreplace(rep)).xreplace({v: k for k, v in rep.items()})


def _sizes(ctx):
    """The sample sizes (symbols) of the unknowns' equations."""
    out = set()
    for g in (ctx.groups if ctx is not None else ()):
        out |= {m for m in g.sizes if isinstance(m, sp.Symbol)}
        out |= {a for m in g.sizes for a in sp.sympify(m).free_symbols}
    if ctx is not None and ctx.d is not None and isinstance(ctx.d, sp.Symbol):
        out.add(ctx.d)
    return out


def _per_size(parts, ctx):
    """``(m − X)^{±k} m^{∓j}`` → ``(1 − X/m)^{±k} m^{∓(j−k)}`` for a size symbol
    ``m`` (``j ≥ k``): ``m − X = m(1 − X/m)``."""
    sizes = _sizes(ctx)
    power = {}
    for a in parts:
        b, x = a.as_base_exp()
        if b in sizes and x.is_integer:
            power[b] = power.get(b, 0) + x
    out = []
    for a in parts:
        b, x = a.as_base_exp()
        if isinstance(b, sp.Add) and x.is_integer:
            for m in sorted(sizes, key=sp.default_sort_key):
                if m in b.args and -x * power.get(m, 0) >= x * x:     # opposite signs, |power| ≥ |x|
                    power[m] = power.get(m, 0) + x
                    a = sp.Add(*[t / m for t in b.args]) ** x * m ** x
                    break
        out.append(a)
    return sp.Mul(*out)


def _form_basis_index(F, ctx):
    """``(u, w, κ, k)`` if ``F = uᵀΣR^k w`` (a basis form), else ``None``."""
    if ctx is None or ctx.Sigma is None:
        return None
    p = _parse_form(F)
    if p is None or p[0] != 1 or p[2] is None:
        return None
    _, u, M, w = p
    Rinv = {R: k for k, R in ctx.R.items()}
    if isinstance(M, MatMul) and len(M.args) == 2 and M.args[0] == ctx.Sigma:
        r = M.args[1]
        if isinstance(r, MatrixSymbol):
            R, k = r, 1
        elif isinstance(r, MatPow) and r.exp.is_Integer and r.exp >= 1:
            R, k = r.base, int(r.exp)
        else:
            return None
        if R in Rinv:
            return u, w, Rinv[R], k
    return None


def _forms_by_pair(P, ctx):
    """``{(u, w, κ): {k: uᵀΣR^k w}}``: the forms of ``P`` in the resolvent basis, by vector pair and ridge."""
    pairs = {}
    for F in P.atoms(Form):
        i = _form_basis_index(F, ctx)
        if i is not None:
            pairs.setdefault((i[0], i[1], i[2]), {})[i[3]] = F
    return pairs


def compress_forms(P, ctx):
    """Rule 5a: the linear combination ``Σ_k Q_k uᵀΣR^k w`` of one pair of
    vectors rewritten greedily with single forms ``uᵀΣ^aR^K w`` (``a ≤ K``):
    ``s^a/(s+κ)^K = Σ_{j<a} C(a−1, j)(−κ)^j s/(s+κ)^{K−a+1+j}``; at each
    step the ``a`` that cancels most coefficients (smallest on ties)."""
    if ctx is None or not isinstance(P, sp.Add):
        return P
    pairs = _forms_by_pair(P, ctx)
    for (u, w, kappa), byk in sorted(pairs.items(), key=lambda t: sp.default_sort_key(tuple(t[1].values()))):
        if len(byk) < 2:
            continue
        gens = [byk[k] for k in sorted(byk)]
        try:
            poly = sp.Poly(P, *gens)
        except sp.PolynomialError:
            continue
        if poly.total_degree() > 1:
            continue
        Q = {k: poly.coeff_monomial(byk[k]) for k in byk}
        rest = sp.expand(P - sum(Q[k] * byk[k] for k in byk))
        new = sp.S.Zero
        while any(q != 0 for q in Q.values()):
            K = max(k for k, q in Q.items() if q != 0)
            best = None
            for a in range(1, K + 1):
                exps = {K - a + 1 + j: sp.binomial(a - 1, j) * (-kappa) ** j for j in range(a)}
                c = sp.expand(Q[K] / exps[K])
                newQ = {k: sp.expand(Q.get(k, 0) - c * exps.get(k, 0)) for k in set(Q) | set(exps)}
                zeros = sum(1 for q in newQ.values() if q == 0)
                if best is None or zeros > best[0]:
                    best = (zeros, a, c, newQ)
            _, a, c, Q = best
            R = ctx.R[kappa]
            M = (ctx.Sigma ** a if a > 1 else ctx.Sigma) * (R ** K if K > 1 else R)
            new += c * _form(u, M, w)
        P = rest + new
    return P


def _collect_normalised(P, generators, ctx=None):
    """``P = lead · P̃``: forms compressed, ``P̃`` with the coefficient of its
    leading form monomial 1 (when that coefficient is a monomial in symbols),
    collected by the form that occurs most often. Returns ``(P̃, lead)``."""
    P = compress_forms(P, ctx)
    gens = sorted(P.atoms(Form), key=sp.default_sort_key)
    lead = sp.S.One
    if gens:
        poly = sp.Poly(P, *gens)
        terms = sorted(poly.terms(), key=lambda t: (-sum(t[0]), t[0]))
        c = terms[0][1]
        if not c.is_number and c.free_symbols <= _sizes(ctx) and all(
                not isinstance(f, sp.Add) for f in sp.Mul.make_args(c)):
            lead = c
            P = sp.Add(*[sp.factor(cc / c) * sp.Mul(*[g ** e for g, e in zip(gens, m)]) for m, cc in poly.terms()])
    counts = {g: sum(1 for t in sp.Add.make_args(P) if t.has(g)) for g in gens}
    gens.sort(key=lambda g: (-counts[g], sp.default_sort_key(g)))
    if gens and counts[gens[0]] > 1:
        P = sp.collect(P, gens[:1])
    return P, lead


# ============================================================ two sizes: γ of a random-feature law
#: above this size (``count_ops``) the two-size rule is not tried (presentation must stay fast)
TWO_SIZE_MAX_OPS = 4000


def _to_field(e, K, gens):
    """``e`` (a rational expression in plain symbols) as an element of the
    rational-function field ``K`` — memoised over the expression DAG, so that
    shared subexpressions are converted once (exact; ``ValueError`` on a
    non-rational node)."""
    cache = {}

    def conv(x):
        r = cache.get(x)
        if r is not None:
            return r
        if x.is_Symbol:
            r = gens[x]
        elif x.is_Rational:
            r = K(x)
        elif x.is_Add:
            r = K(0)
            for a in x.args:
                r = r + conv(a)
        elif x.is_Mul:
            r = K(1)
            for a in x.args:
                r = r * conv(a)
        elif x.is_Pow and x.exp.is_Integer:
            r = conv(x.base) ** int(x.exp)
        else:
            raise ValueError(x)
        cache[x] = r
        return r
    return conv(e)


def two_size_gamma(e, ctx):
    """Rule 3b, an unknown whose equation has two sizes ``m₁, m₂`` (linear
    random features: ``m₁ = n`` samples, ``m₂ = p`` features),
    ``z = κ(1 − df₁/m₁)(1 − df₁/m₂)`` with ``z`` a symbol (``λ``):

    * ``z`` is eliminated by that equation and the value brought to one exact
      reduced fraction (rational-function field arithmetic; terms whose
      coefficient is a multiple of ``z − κ(1 − df₁/m₁)(1 − df₁/m₂)`` — e.g. those
      of the ridgeless ``κ₀`` of the feature law — vanish here, exactly on the
      solution set);
    * a denominator factor ``D = m₁m₂ − (m₁+m₂)df₂ − df₁² + 2df₁df₂`` is written
      ``D = m₁(m₂ − df₂)(1 − γ)`` with
      ``γ = df₂/m₁ + (df₁ − df₂)²/(m₁(m₂ − df₂))`` (expand: identical);
    * the rest, linear in the forms, is written form by form, each coefficient
      reduced (``cancel``/``factor``), the forms of one pair of vectors in the
      shortest of the bases ``{ΣR, ΣR²}``, ``{ΣR, Σ²R²}``, ``{ΣR², Σ²R²}``
      (``Σ²R² = ΣR − κΣR²``); a coefficient that is a multiple of
      ``m₂df₂ + df₁² − 2df₁df₂ = m₁(m₂ − df₂)γ`` is written through ``γ`` when
      shorter; a common factor of all coefficients (polynomial gcd, with the
      pure size powers of the denominator) is pulled out.

    Returns ``None`` when the rule does not apply."""
    if e.has(sp.Integral) or _size(e) > TWO_SIZE_MAX_OPS:
        return None
    for g in ctx.groups:
        if not _presents_kappa(g) or len(g.sizes) != 2 or not isinstance(g.z, sp.Symbol) or not e.has(g.z):
            continue
        if _equation_display(g, g.equations[0], ctx, {}) is None:
            continue
        try:
            out = _two_size(e, ctx, g)
        except (ValueError, KeyError, ZeroDivisionError, sp.PolynomialError, sp.polys.polyerrors.CoercionFailed):
            out = None          # not a rational function of the supported atoms: shown by the other rules
        if out is not None:
            return out
    return None


def _two_size(e, ctx, g):
    """:func:`two_size_gamma` for the group ``g`` (``None``: no factor ``D``)."""
    k, (m1, m2), z = g.unknowns[0], g.sizes, g.z
    if not (isinstance(m1, sp.Symbol) and isinstance(m2, sp.Symbol)):
        return None
    atoms = sorted(e.atoms(Form, Tr, DF), key=sp.default_sort_key)
    rep = {a: sp.Dummy(f"f{i}") for i, a in enumerate(atoms)}
    for D in (DF(1, k), DF(2, k)):
        rep.setdefault(D, sp.Dummy(str(D)))
    back = {v: a for a, v in rep.items()}
    f1, f2 = rep[DF(1, k)], rep[DF(2, k)]
    fe = e.xreplace(rep)
    syms = sorted(fe.free_symbols | {f1, f2} | {m1, m2, k}, key=sp.default_sort_key)
    try:
        K, *gs = sp.field(syms, sp.ZZ)
        gens = dict(zip(syms, gs))
        r = _to_field(fe, K, gens)
    except (ValueError, KeyError, sp.PolynomialError):
        return None
    sub = {z: k * (1 - f1 / m1) * (1 - f1 / m2)}
    try:
        r = _to_field(r.numer.as_expr().xreplace(sub), K, gens) / _to_field(r.denom.as_expr().xreplace(sub), K, gens)
    except (ValueError, KeyError, ZeroDivisionError):
        return None
    Df = gens[m1] * gens[m2] - (gens[m1] + gens[m2]) * gens[f2] - gens[f1] ** 2 + 2 * gens[f1] * gens[f2]
    Dp = Df.numer
    den, x = r.denom, 0
    while True:
        q, rem = den.div([Dp])
        q = q[0]
        if rem != 0:
            break
        den, x = q, x + 1
    if x == 0:
        return None
    G = gamma_symbol((k,))
    ctx.gamma_defs[G] = (DF(2, k) / m1 + (DF(1, k) - DF(2, k)) ** 2 / (m1 * (m2 - DF(2, k))), 1)
    rest = r * Df ** x / (gens[m1] * (gens[m2] - gens[f2])) ** x
    num, dn = rest.numer.as_expr(), rest.denom.as_expr()
    fdum = [rep[a] for a in atoms if isinstance(a, Form)]
    P = sp.Poly(num, *fdum) if fdum else None
    common = sp.S.One
    if P is None or P.total_degree() > 1:
        terms = [(sp.S.One, sp.factor(num / dn))]
    else:
        # common factor of the form coefficients (polynomial gcd) and the pure size
        # powers of the denominator pulled out: Σ_j (g c_j/(m^a q)) F_j = (g/m^a) Σ_j (c_j/q) F_j
        g0 = functools.reduce(sp.gcd, [c for _, c in P.terms()])
        g0 = sp.factor(g0).as_coeff_Mul()[1]
        msz = sp.Mul(*[b ** ex for b, ex in sp.factor_list(dn)[1] if b in (m1, m2)])
        common = g0 / msz
        terms = [(sp.Mul(*[f ** i for f, i in zip(fdum, mono)]), sp.factor(sp.cancel(c / (g0 * dn / msz))))
                 for mono, c in P.terms()]
    # a coefficient with the factor m₁(m₂ − df₂)γ = m₂df₂ + df₁² − 2df₁df₂ written through γ, when shorter
    gexpr = f2 / m1 + (f1 - f2) ** 2 / (m1 * (m2 - f2))
    for i, (f, c) in enumerate(terms):
        if c.has(f2):
            cg = G * sp.factor(sp.cancel(c / gexpr))
            if _size(cg) < _size(c):
                terms[i] = (f, cg)
    body = sp.Add(*[(c * f).xreplace(back) for f, c in terms])
    body = _shortest_form_basis(body, ctx)
    if common != 1:
        parts = []
        for a in sp.Mul.make_args(sp.factor(common)):
            b, ex = a.as_base_exp()
            if isinstance(b, sp.Add) and ex.is_integer:
                sg, b = _normal_sign(b)
                a = sg ** ex * b ** ex
            parts.append(a)
        common = _per_size(sp.Mul.make_args(sp.Mul(*parts)), ctx)
    return common.xreplace(back) * body.xreplace(back) / (1 - G) ** x


def _shortest_form_basis(P, ctx):
    """``Q₁uᵀΣRw + Q₂uᵀΣR²w`` in the shortest of the bases ``{ΣR, ΣR²}``,
    ``{ΣR, Σ²R²}`` (``Q₁ − Q₂/κ``, ``−Q₂/κ``) and ``{ΣR², Σ²R²}``
    (``Q₂ + κQ₁``, ``Q₁``), by ``Σ²R² = ΣR − κΣR²``; coefficients reduced
    with ``cancel``/``factor`` (exact); a negative coefficient counts as two
    more operations (sums of positive terms read better)."""
    if ctx is None or not isinstance(P, sp.Add):
        return P
    pairs = _forms_by_pair(P, ctx)
    red = lambda c: _frozen(lambda y: sp.factor(sp.cancel(y)), c)  # noqa: E731
    for (u, w, kappa), byk in sorted(pairs.items(), key=lambda t: sp.default_sort_key(tuple(t[1].values()))):
        if set(byk) != {1, 2}:
            continue
        F1, F2 = byk[1], byk[2]
        try:
            poly = sp.Poly(P, F1, F2)
        except sp.PolynomialError:
            continue
        if poly.total_degree() > 1:
            continue
        Q1, Q2 = poly.coeff_monomial(F1), poly.coeff_monomial(F2)
        rest = sp.Add(*[t for t in sp.Add.make_args(P) if not (t.has(F1) or t.has(F2))])
        R = ctx.R[kappa]
        S2R2 = _form(u, ctx.Sigma ** 2 * R ** 2, w)
        cands = [((red(Q1), F1), (red(Q2), F2)),
                 ((red(Q1 + Q2 / kappa), F1), (red(-Q2 / kappa), S2R2)),
                 ((red(Q2 + kappa * Q1), F2), (red(Q1), S2R2))]

        def cost(c):      # coefficients' operations; a negative one counts 2 more (the sign of a difference)
            return sum(sp.count_ops(q) + (2 if q.could_extract_minus_sign() else 0) + (q != 0) for q, _ in c)
        best = min(cands, key=lambda c: (cost(c), cands.index(c)))
        P = rest + sp.Add(*[q * F for q, F in best])
    return P


# ============================================================ integrals and contours
def _integration_ridges(ctx):
    """Ridges that depend on an integration variable ``θ_j``, ``g(θ_j) = a + b·h(θ_j)``:
    named ``z_j``. Returns ``{κ_j: (z_j, h(θ_j), (z_j − a)/b, g(θ_j), θ_j)}``; the
    substitution ``h(θ_j) ↦ (z_j − a)/b`` is exact given ``z_j = g(θ_j)``. A
    compound factor common to ``a`` and ``b`` (the spectral edge
    ``x₊ = ‖Σ‖(1+√(d/n))²`` of a contour) is named too (``ctx.contour_names``)."""
    from .spectral_fn import ContourScale
    out, names, shape, zetas = {}, {}, {}, {}
    for g in ctx.groups:
        if not _presents_kappa(g):
            continue
        z = g.z
        thetas = [t for t in z.free_symbols if t.name.startswith("_theta") or isinstance(t, sp.Dummy)]
        if len(thetas) != 1:
            continue
        a, rest = z.as_independent(thetas[0], as_Add=True)
        b, h = rest.as_independent(thetas[0], as_Add=False)
        if b == 0 or h == 1:
            continue
        common = set(sp.Mul.make_args(a)) & set(sp.Mul.make_args(b))
        E = sp.Mul(*[f for f in common if not f.is_number])
        if E != 1 and not E.is_Atom:
            names.setdefault(E, Named("x_edge" if not names else f"x_edge{len(names)}", r"x_{+}"))
        zs = ridge_symbol(g.unknowns[0])
        out[g.unknowns[0]] = (zs, h, (zs - a) / b, z, thetas[0])
        if z.atoms(ContourScale):     # an ellipse (Joukowski map of the circle ζ = ρe^{iθ})
            A = sorted(z.atoms(ContourScale), key=sp.default_sort_key)[0]
            zetas[thetas[0]] = (zeta_symbol(g.unknowns[0]), A + sp.sqrt(A ** 2 - 1))
        # a default ellipse's shape A (ContourScale) and ρ = A + √(A² − 1) are named too
        for A in sorted(z.atoms(ContourScale), key=sp.default_sort_key):
            k = sum(1 for v in shape.values() if v.name.startswith("rho_c"))
            sfx = "" if not k else str(k)
            shape.setdefault(A + sp.sqrt(A ** 2 - 1), Named(f"rho_c{sfx}", r"\varrho" + (f"_{{{sfx}}}" if sfx else "")))
            shape.setdefault(A, Named(f"A_c{sfx}", "A" + (f"_{{{sfx}}}" if sfx else "")))
    # outermost first: ρ and A contain the edge, so they are substituted before it
    ctx.contour_names = {sym: val for val, sym in list(shape.items()) + list(names.items())}
    ctx.zetas = zetas
    return out


def _zeta_display(e, ctx):
    """On an ellipse ``z = a + b(ζ + 1/ζ)``, ``ζ = ρe^{iθ}``: ``e^{±iθ}`` written
    through ``ζ`` (after ``ρ`` is named), so the integrand reads in ``ζ``."""
    rep = {}
    for th, (zeta, rho) in getattr(ctx, "zetas", {}).items():
        rho = _rho_symbol(ctx, rho)
        rep[sp.exp(sp.I * th)] = zeta / rho
        rep[sp.exp(-sp.I * th)] = rho / zeta
    return e.xreplace(rep) if rep else e


def _rho_symbol(ctx, rho):
    return next(sym for sym, val in ctx.contour_names.items() if val == rho)


def _tidy_factors(e, zs):
    """Each factor of a product that involves a named ridge ``z_j``, rewritten by
    ``cancel``/``factor`` when that is shorter (exact rational simplification)."""
    e = sp.factor_terms(e)
    if isinstance(e, sp.Add):
        return sp.Add(*[_tidy_factors(t, zs) for t in e.args])
    parts = []
    for f in sp.Mul.make_args(e):
        b, x = f.as_base_exp()
        if isinstance(b, sp.Add) and not b.has(sp.Integral) and sp.count_ops(b) < 80:
            c = _frozen(lambda y: sp.factor(sp.cancel(y)), b)
            if sp.count_ops(c) <= sp.count_ops(b):
                sign, cparts = 1, []
                for g in sp.Mul.make_args(c):
                    gb, gx = g.as_base_exp()
                    if isinstance(gb, sp.Add) and gx.is_integer:
                        sg, gb = _normal_sign(gb)
                        sign *= sg ** gx
                    cparts.append(gb ** gx)
                f = (sign * sp.Mul(*cparts)) ** x
        parts.append(f)
    return sp.Mul(*parts)


# ============================================================ driver
@dataclass
class Presentation:
    """A derived value in named functionals (display), with definitions.

    ``value`` (display objects), ``definitions`` (list of ``(symbol, meaning)``
    pairs, display), ``equations`` (display), ``expanded`` (``value`` with the
    definitions substituted back: the engine's objects, compilable)."""

    value: sp.Expr
    definitions: list = field(default_factory=list)
    equations: list = field(default_factory=list)
    rules: dict = None                  # display symbol → engine expression (None: value is raw)

    @property
    def expanded(self):
        """``value`` with every definition substituted back (computed once)."""
        if "_expanded" not in self.__dict__:
            self.__dict__["_expanded"] = self.value if self.rules is None else \
                expand_definitions(self.value, self.rules)
        return self.__dict__["_expanded"]

    def __str__(self):
        lines = [sp.sstr(self.value)]
        for eq in self.equations:
            lines.append(f"  {sp.sstr(eq.lhs)} = {sp.sstr(eq.rhs)}")
        for s, m in self.definitions:
            lines.append(f"  {sp.sstr(s)} := {sp.sstr(m)}")
        return "\n".join(lines)

    def latex(self):
        from ..faces.latex import latex
        return latex(self.value)


def _size(e):
    return sp.count_ops(e)


def _present_piece(e, ctx, ridges, light=False):
    """Rules 1–5 on an expression whose integrals are already presented
    (``light``: integrands — rules 1 and 3 and ``factor_terms`` only, so that
    ``g(z(θ))`` such as ``(1 − ηz)^t`` is never expanded)."""
    # 1. functionals
    e = e.xreplace({A: ctx.functional(A) for A in e.atoms(Tr, Form)})
    # named integration ridges
    free = e.free_symbols
    hrep = {h: hz for (zs, h, hz, z, th) in ridges.values() if th in free}
    if hrep:
        e = e.xreplace(hrep)
    frozen = {}
    for I in sorted(e.atoms(sp.Integral), key=_integral_key):
        frozen[I] = sp.Dummy("I")
    e = e.xreplace(frozen)
    if light:
        e = introduce_gamma(e, ctx)
        # contour names first: the factors to tidy are then small (ρ, A, x₊ as symbols)
        for sym, val in ctx.contour_names.items():
            e = e.subs(val, sym)
        e = _zeta_display(e, ctx)
        if ctx.rich:
            e = _tidy_factors(e, [r[0] for r in ridges.values()])
        return e.xreplace({v: k for k, v in frozen.items()})
    # 3b. an equation with two sizes (random features): λ eliminated, γ of the two sizes
    two = two_size_gamma(e, ctx) if not frozen else None
    if two is not None:
        return two
    # 3. γ, 4. vectors through their difference (before factoring: one factorisation)
    e = introduce_gamma(e, ctx)
    if _size(e) <= FACTOR_MAX_OPS:
        e = shift_vectors(e)
    gens = sorted(e.atoms(Form), key=sp.default_sort_key)
    if len(frozen) > 8:      # a sum of many integrals: left as it is, not factored (speed)
        return e.xreplace({v: k for k, v in frozen.items()})
    best = factor_display(e, gens, ctx)
    # 2. eliminate ridges that are plain symbols (λ, σ²) when shorter
    for g in ctx.groups:
        if not _presents_kappa(g):
            continue
        k = g.unknowns[0]
        z = ridges[k][0] if k in ridges else g.z
        if not (isinstance(z, sp.Symbol) and best.has(z)) or _equation_display(g, g.equations[0], ctx, {}) is None:
            continue          # only with the equation checked to be z = κ Π_j(1 − df₁(κ)/m_j)
        gg = g if z is g.z else _with_z(g, z)
        cand = factor_display(introduce_gamma(eliminate_ridge(best, gg, k), ctx), gens, ctx)
        if _size(cand) < _size(best):
            best = cand
    # 5b. partial fractions in γ: P/(1−γ) = Q + r/(1−γ) when that is shorter
    if 15 < _size(best) <= FACTOR_MAX_OPS // 4:
        for G in sorted((a for a in best.free_symbols if isinstance(a, Named) and a.name == "gamma"), key=str):
            try:
                parts = sp.Add.make_args(_frozen(lambda x: sp.apart(x, G), best))
            except (sp.PolynomialError, NotImplementedError):
                continue
            if len(parts) < 2:
                continue
            cand = sp.Add(*[factor_display(t, gens, ctx) for t in parts])
            if _size(cand) < _size(best):
                best = cand
    # 5c. df₁ through γ (the estimator norm's textbook form), when shorter
    if 15 < _size(best) <= FACTOR_MAX_OPS // 4:
        cand = df1_through_gamma(best, ctx, gens)
        if cand is not None and _size(cand) < _size(best):
            best = cand
    return best.xreplace({v: k for k, v in frozen.items()})


def df1_through_gamma(e, ctx, gens):
    """Rule 5c: ``df₁(κ) = m γ + κ Tr[ΣR²]`` (``df₁ − df₂ = Tr[Σ(Σ+κ)⁻¹ −
    Σ²(Σ+κ)⁻²] = κ Tr[Σ(Σ+κ)⁻²]``), then partial fractions in ``γ``: the part
    free of ``γ`` is written in the shortest form basis, each ``r/(1−γ)^j``
    factored. This turns ``‖ŵ‖²`` into ``w̄ᵀΣ²R²w̄ + Tr[ΣR²]/n · E_g``.
    Returns ``None`` when the rule does not apply."""
    for G in sorted((a for a in e.free_symbols if isinstance(a, Named) and a.name.startswith("gamma")), key=str):
        D, m = ctx.gamma_defs.get(G, (None, None))
        if not isinstance(D, DF) or len(D.args) != 2:
            continue
        k = D.args[1]
        if not e.has(DF(1, k)) or k not in ctx.R:
            continue
        cand = e.xreplace({DF(1, k): m * G + k * Tr(ctx.Sigma * ctx.R[k] ** 2)})
        try:
            parts = sp.Add.make_args(_frozen(lambda x: sp.apart(x, G), cand))
        except (sp.PolynomialError, NotImplementedError):
            continue
        free = sp.Add(*[t for t in parts if not t.has(G)])
        frac = [t for t in parts if t.has(G)]
        free = _shortest_form_basis(sp.expand(free), ctx)
        return free + sp.Add(*[factor_display(t, gens, ctx) for t in frac])
    return None


def introduce_gamma(e, ctx):
    """Rule 3: ``df₂(κ) = m γ`` and ``df₂(κ₁,κ₂) = m γ₁₂`` for every unknown
    with one size ``m`` in its equation (one traversal; the definitions of the
    ``γ``'s are recorded in ``ctx.gamma_defs``)."""
    dfs = [a for a in e.atoms(DF) if a.args[0] == 2]
    if not dfs:
        return e
    rep = {}
    for g in ctx.groups:
        if not _presents_kappa(g) or len(g.sizes) != 1:
            continue
        k, m = g.unknowns[0], g.sizes[0]
        pairs = [tuple(a.args[1:]) for a in dfs if len(a.args) == 3 and a.args[1] == k]
        G = gamma_symbol((k,))
        ctx.gamma_defs[G] = (DF(2, k), m)
        rep[DF(2, k)] = m * G
        for k1, k2 in pairs:
            G = gamma_symbol((k1, k2))
            ctx.gamma_defs[G] = (DF(2, k1, k2), m)
            rep[DF(2, k1, k2)] = m * G
    return e.xreplace(rep)


def _with_z(g, z):
    from dataclasses import replace
    return replace(g, z=z)


def _present(e, ctx, ridges, light=False):
    if isinstance(e, sp.Integral):
        return sp.Integral(_present(e.function, ctx, ridges, light=True), *e.limits)
    # outermost integrals: present each one, then the rest around them
    rep = {I: _present(I, ctx, ridges) for I in _outermost(e)}
    return _present_piece(e.xreplace(rep), ctx, ridges, light)


def _outermost(e):
    out = []
    if isinstance(e, sp.Integral):
        return [e]
    for a in e.args:
        out.extend(_outermost(a))
    return out


def present(de):
    """The :class:`Presentation` of ``de.value`` (rules in the module docstring)."""
    ctx = _Context(de)
    ridges = _integration_ridges(ctx)
    #: many integrals (double integrals of variances): integrands are only renamed
    ctx.rich = sum(1 for a in sp.preorder_traversal(de.value) if isinstance(a, sp.Integral)) <= 8
    value = _present(sp.sympify(de.value), ctx, ridges)
    defs, exp_rules = _definitions(value, ctx, ridges)
    eqs = []
    needed = _needed_unknowns(value, defs, ctx.groups) if value is not de.value else set(de.unknowns)
    for g in ctx.groups:
        if not needed & set(g.unknowns):
            continue          # an unknown the presented value no longer needs (its terms vanish on the equations)
        for eq in g.equations:
            shown = _equation_display(g, eq, ctx, ridges) if _presents_kappa(g) else None
            eqs.append(shown if shown is not None else eq)
    if eqs:       # functionals that only the equations use (df₁ once the value is in γ) are defined too
        shown_eqs = sp.Tuple(*[x for eq in eqs for x in (getattr(eq, "lhs", eq), getattr(eq, "rhs", 0))])
        if shown_eqs.atoms(DF) - value.atoms(DF):
            defs, exp_rules = _definitions(sp.Tuple(value, shown_eqs), ctx, ridges)
    return Presentation(value, _compact(defs, ctx), _compact(eqs, ctx), exp_rules)


def _needed_unknowns(value, defs, groups):
    """The unknowns the presented value uses, directly, through a definition,
    or through the equations of a needed unknown (a fixpoint)."""
    free = set(value.free_symbols).union(*(sp.sympify(m).free_symbols for _, m in defs))
    needed = {u for g in groups for u in g.unknowns if u in free}
    while True:
        more = {u for g in groups if needed & set(g.unknowns) for u in g.unknowns}
        more |= {u for g in groups if needed & set(g.unknowns) for eq in g.equations
                 for h in groups for u in h.unknowns if eq.has(u)}
        if more <= needed:
            return needed
        needed |= more


def _equation_display(g, eq, ctx, ridges):
    """``κ Π_j(1 − df₁(κ)/m_j) = z`` for a one-unknown group, kept only if it is
    the engine's equation (checked: ``df₁`` expanded, the difference expands to 0);
    ``None`` otherwise."""
    if len(g.unknowns) != 1 or len(g.equations) != 1:
        return None
    k = g.unknowns[0]
    z = ridges[k][0] if k in ridges else g.z
    lhs = k * sp.Mul(*[(1 - DF(1, k) / m) for m in g.sizes])
    if k not in ctx.eq_checked:
        ok = ctx.Sigma is not None
        if ok:
            df1 = Tr(ctx.Sigma * (ctx.Sigma + k * Identity(ctx.d)).inverse())
            D = sp.Dummy("df1")
            got = (eq.lhs - eq.rhs).xreplace({df1: D})
            ok = _frozen(sp.expand, lhs.xreplace({DF(1, k): D}) - g.z - got) == 0
        ctx.eq_checked[k] = ok
    return sp.Eq(lhs, z, evaluate=False) if ctx.eq_checked[k] else None


def _index_maps(ctx):
    """``(generic replacement, {object: index})`` for the indexed unknowns, once per context."""
    if getattr(ctx, "_index_maps", None) is None:
        from ..objects.symbols import Scalar
        kj, rj, zj = Scalar("kappa_j", positive=True), MatrixSymbol("R_j", ctx.d, ctx.d), Named("z_j", "z_{j}")
        zetaj = Named("zeta_j", r"\zeta_{j}")
        rep, idx = {}, {}
        for k in ctx.kappas:
            i = _index(k)
            if not i:
                continue
            objs = [(k, kj), (ridge_symbol(k), zj), (zeta_symbol(k), zetaj)] + ([(ctx.R[k], rj)] if k in ctx.R else [])
            for o, g in objs:
                rep[o] = g
                idx[o] = i
        ctx._index_maps = (rep, idx)
    return ctx._index_maps


def _generic(e, ctx):
    """``e`` with every indexed object (``κ_i``, ``R_i``, ``z_i``, ``θ_i``) at a generic index ``j``."""
    rep = dict(_index_maps(ctx)[0])
    for a in sp.sympify(e).free_symbols:
        if isinstance(a, sp.Dummy) and a.name.lstrip("_").startswith("theta"):
            rep[a] = sp.Symbol("theta_j")
    return e.xreplace(rep)


def _indices(pair, ctx):
    """The indices of the unknowns that ``pair`` involves (through ``κ_i``, ``R_i``, ``z_i``)."""
    idx = _index_maps(ctx)[1]
    out = set()
    for x in pair:
        x = sp.sympify(x)
        for o in x.free_symbols | x.atoms(MatrixSymbol):
            if o in idx:
                out.add(idx[o])
    return out


def _compact(items, ctx):
    """Definitions or equations that differ only by the index of the unknown
    (``R_1 = (Σ+κ₁)⁻¹``, ``R_2 = …``; ``κ_j(1 − df₁(κ_j)/n) = z_j``) shown once,
    at a generic index ``j``, when there are three or more."""
    if len(ctx.kappas) < 3:
        return items
    groups, order = {}, []
    for it in items:
        pair = (it.lhs, it.rhs) if isinstance(it, sp.Eq) else it
        g = tuple(_generic(x, ctx) for x in pair)
        key = g if (g[0] != pair[0] or g[1] != pair[1]) and len(_indices(pair, ctx)) == 1 else ("id", pair)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(it)
    out = []
    for key in order:
        members = groups[key]
        if key[0] != "id" and len(members) >= 3:
            out.append(sp.Eq(*key, evaluate=False) if isinstance(members[0], sp.Eq) else key)
        else:
            out.extend(members)
    return out


def _definitions(value, ctx, ridges):
    """Display definitions of the named objects in ``value`` and the rules that
    expand them back (``symbol → engine expression``)."""
    Sigma, d = ctx.Sigma, ctx.d
    defs, rules = [], {}
    atoms = value.atoms(DF, Named, Form, Tr)
    dfs = sorted((a for a in atoms if isinstance(a, DF)), key=sp.default_sort_key)
    gammas = sorted((a for a in atoms if isinstance(a, Named) and a.name.startswith("gamma")), key=sp.default_sort_key)
    zs = sorted((a for a in atoms if isinstance(a, Named) and a.name.startswith("z")), key=sp.default_sort_key)
    mats = set()
    for F in atoms:
        if isinstance(F, (Form, Tr)):
            mats |= F.arg.atoms(MatrixSymbol)
    used_R = mats & set(ctx.R.values())
    for k, R in ctx.R.items():
        if R in used_R:
            inv = (Sigma + k * Identity(d)).inverse()
            defs.append((R, inv))
            rules[R] = inv
    for g in gammas:
        D, m = ctx.gamma_defs[g]
        defs.append((g, D / m))
        dfs = sorted(set(dfs) | ({D} if isinstance(D, DF) else D.atoms(DF)), key=sp.default_sort_key)
    df_defs = []
    for D in dfs:
        k, *ks = D.args
        if len(ks) == 1:
            M = Sigma ** k * (Sigma + ks[0] * Identity(d)) ** (-k) if k > 1 else Sigma * (Sigma + ks[0] * Identity(d)).inverse()
        else:
            M = Sigma ** 2 * (Sigma + ks[0] * Identity(d)).inverse() * (Sigma + ks[1] * Identity(d)).inverse()
        df_defs.append((D, Tr(M)))
        rules[D] = Tr(M)
    defs = df_defs + defs
    for g in gammas:
        rules[g] = next(m for s, m in defs if s == g).xreplace(rules)
    for kappa, (zs_, h, hz, z, th) in ridges.items():
        if zs_ in zs:
            zd = z
            for sym, val in ctx.contour_names.items():
                zd = zd.subs(val, sym)
            defs.append((zs_, _zeta_display(zd, ctx)))
            rules[zs_] = z
            if th in getattr(ctx, "zetas", {}):
                zeta, rho = ctx.zetas[th]
                defs.append((zeta, _rho_symbol(ctx, rho) * sp.exp(sp.I * th)))
                rules[zeta] = rho * sp.exp(sp.I * th)
    items = list(ctx.contour_names.items())
    for i, (sym, val) in enumerate(items):
        shown = val.args[0] if type(val).__name__ == "ContourScale" else val    # the marker is the identity
        for s2, v2 in items[i + 1:]:      # later names inside earlier definitions (ρ in terms of A)
            shown = shown.subs(v2, s2)
        defs.append((sym, shown))
        rules[sym] = val
    return defs, rules


def expand_definitions(value, rules):
    """``value`` with every display symbol replaced by its definition (the
    engine's ``Tr``/``Form`` of ``Σ`` and unknowns)."""
    mats = {k: v for k, v in rules.items() if isinstance(k, MatrixSymbol)}
    scal = {k: v for k, v in rules.items() if not isinstance(k, MatrixSymbol)}

    def fix(A):
        M = A.arg.xreplace(mats)
        diffs = [a for a in M.atoms(MatrixSymbol) if isinstance(a, _VecDiff)]
        if diffs:
            M = M.xreplace({D: D.as_explicit_difference() for D in diffs})
            from ..objects.functionals import split_linear
            return split_linear(A.func, sp.expand(M) if not isinstance(M, sp.MatrixExpr) else M.expand())
        return A.func(M)

    out = value.xreplace({A: fix(A) for A in value.atoms(Tr, Form)})
    return out.xreplace(scal).xreplace(scal)
