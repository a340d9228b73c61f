"""Presentation layer (``symrmt/equivalence/present.py``): ``de.pretty()``,
the default ``repr`` and ``latex()`` in named spectral functionals.

The presented value must equal the raw value. Checks:

* at random points — random spectrum, vectors, sizes and a random ``κ``, the
  ridge ``λ`` (or ``σ²``) set from the self-consistent equation at that ``κ`` —
  the raw value and the presentation (its definitions substituted back) are
  evaluated with dense NumPy (``tests/dense_reference.py``, no code shared with
  ``symrmt.numerics``) and must agree to 1e-12 relative;
* for values with integrals (sampling map, gradient descent), both are compiled
  (``de.compile()``, κ solved at every node) and must agree to 1e-12;
* the ridge risk's presented form against the closed form
  ``(κ²w̄ᵀΣ(Σ+κ)⁻²w̄ + σ²)/(1 − df₂/n)`` computed with NumPy (κ by bisection);
* structure: the ridge risk contains ``1/(1−γ)`` and no ``λ``; the diffusion
  variance is ``κ²/(m(1−γ))`` times forms of ``M = ΣR²`` and ``x − μ``.
"""
import pathlib
import sys

import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.equivalence.present import DF, Named, present
from symrmt.objects import Form

from .dense_reference import kappa_bisection, scal

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "derivations"))
import diffusion_consistency as dc  # noqa: E402

n, d = sr.dims("n d")
lam, s2, lr = sr.scalar("lam"), sr.scalar("sigma2"), sr.scalar("lr")
Sigma = sr.Covariance("Sigma", d)
w = sr.Vector("w", d)
X = sr.GaussianData("X", n, Sigma)
eps = sr.GaussianNoise("eps", n, s2)
G = (X.T * X / n + lam * sr.I(d)).inverse()
W_HAT = G * X.T * (X * w + eps) / n
Y = X * w + eps
TRAIN = (Y - X * W_HAT).T * (Y - X * W_HAT) / n


def gd_risk(t=7):
    """Full-batch gradient descent from 0 on least squares (tests/test_contour.py)."""
    Sh = X.T * X / n
    wt = sr.matrix_function(lambda x: (1 - (1 - lr * x) ** t) / x, Sh) * X.T * (X * w + eps) / n
    return (wt - w).T * Sigma * (wt - w) + s2


RIDGE = {
    "ridge risk": (W_HAT - w).T * Sigma * (W_HAT - w) + s2,
    "training error": TRAIN,
    "GCV": TRAIN / (1 - sr.ntr(X.T * X / n * G) * d / n) ** 2,
    "norm": W_HAT.T * W_HAT,
}
DIFFUSION = ["population", "denoiser/known", "denoiser/estimated", "variance/known", "variance/estimated",
             "covariance/known", "split/known"]
INTEGRALS = ["map/known", "map/estimated"]


@pytest.fixture(scope="module")
def model():
    return dc.Model()


@pytest.fixture(scope="module")
def diffusion(model):
    e = model.expressions()
    return {k: sr.deterministic_equivalent(e[k]) for k in DIFFUSION + INTEGRALS}


@pytest.fixture(scope="module")
def ridge():
    return {k: sr.deterministic_equivalent(e) for k, e in RIDGE.items()}


def _as_equivalent(de, value):
    return sr.DeterministicEquivalent(expr=de.expr, value=value, groups=list(de.groups))


def _random_env(de, rng, D=7):
    """Random bindings for every symbol of ``de``; unknowns at random values and
    each ridge set from its equation (``z = lhs(κ)``) — a point of the solution set."""
    N = int(rng.integers(D + 3, 3 * D))
    env = {"_dims": {}}
    syms = set(sp.sympify(de.value).free_symbols)
    mats = set()
    for a in sp.preorder_traversal(de.value):
        if isinstance(a, (sp.MatrixSymbol,)):
            mats.add(a)
    for eq in de.equations:
        syms |= eq.lhs.free_symbols | eq.rhs.free_symbols
        mats |= eq.lhs.atoms(sp.MatrixSymbol)
    for s in syms:
        if s.name == "n":
            env["_dims"][s] = N
        elif s.name == "d":
            env["_dims"][s] = D
    for M in mats:
        if M.shape[1] == 1:
            env[M] = rng.standard_normal((D, 1))
        elif M.name == "Sigma":
            env[M] = np.diag(rng.uniform(0.1, 2.0, D))
    for g in de.groups:
        (k,) = g.unknowns
        env[k] = float(rng.uniform(0.2, 2.0))
        assert isinstance(g.z, sp.Symbol)
        env[g.z] = scal(g.equations[0].lhs, env)
    for s in syms:
        if s not in env and s not in env["_dims"] and not isinstance(s, sp.Dummy):
            env[s] = float(rng.uniform(0.1, 1.5))
    return env


def _check_random_points(de, points=3, seed=0):
    p = de.pretty()
    assert p.expanded is not None
    rng = np.random.default_rng(seed)
    for _ in range(points):
        env = _random_env(de, rng)
        raw, shown = scal(de.value, env), scal(p.expanded, env)
        assert abs(shown - raw) <= 1e-12 * abs(raw), (de.expr, raw, shown)
    return p


# ------------------------------------------------------------ value never changes
@pytest.mark.parametrize("name", list(RIDGE))
def test_ridge_presentations_equal_raw_at_random_points(ridge, name):
    _check_random_points(ridge[name])


@pytest.mark.parametrize("name", DIFFUSION)
def test_diffusion_presentations_equal_raw_at_random_points(diffusion, name):
    _check_random_points(diffusion[name])


def _check_compiled(de, bindings):
    p = de.pretty()
    a = np.asarray(de.compile()(**bindings))
    b = np.asarray(_as_equivalent(de, p.expanded).compile()(**bindings))
    assert np.max(np.abs(a - b) / np.abs(a)) <= 1e-12, (a, b)
    return p


@pytest.mark.parametrize("name", INTEGRALS)
def test_sampling_map_presentation_equals_raw(diffusion, name):
    rng = np.random.default_rng(1)
    D = 10
    b = dict(Sigma=rng.uniform(0.1, 2, D), n=30, sigma2=np.array([0.05, 0.4, 1.3]), sigmaT2=5.0,
             mu=rng.standard_normal(D), v=rng.standard_normal(D), x=rng.standard_normal(D))
    p = _check_compiled(diffusion[name], b)
    zs = [s for s, _ in p.definitions if str(s).startswith("z")]
    assert zs and all(z in p.value.free_symbols for z in zs)       # ridges along the path, named


def test_gradient_descent_risk_presentation_equals_raw():
    de = sr.deterministic_equivalent(gd_risk())
    rng = np.random.default_rng(2)
    D = 10
    s = rng.uniform(0.1, 1.0, D)
    p = _check_compiled(de, dict(Sigma=s, n=25, w=rng.standard_normal(D), sigma2=0.3, lr=0.5, d=D))
    # the contour: named points z_j and the edge, listed below the result
    names = {str(s_) for s_, _ in p.definitions}
    assert any(x.startswith("z_") for x in names) and "x_edge" in names
    assert not any(isinstance(a, sp.exp) for a in p.value.atoms(sp.Function))   # e^{iθ} only in definitions


# ------------------------------------------------------------ textbook forms
def _gamma_denominators(e):
    """``γ`` symbols that occur as ``(1 − γ)^{-k}`` factors of ``e``."""
    out = set()
    for a in sp.preorder_traversal(e):
        if isinstance(a, sp.Pow) and a.exp.is_negative and isinstance(a.base, sp.Add):
            c, rest = a.base.as_coeff_add()
            if c == 1 and len(rest) == 1 and isinstance(-rest[0], Named) and (-rest[0]).name.startswith("gamma"):
                out.add(-rest[0])
    return out


def test_ridge_risk_reads_as_textbook(ridge):
    de = ridge["ridge risk"]
    p = de.pretty()
    (gamma,) = _gamma_denominators(p.value)
    assert lam not in p.value.free_symbols
    (k,) = de.unknowns
    defs = dict(p.definitions)
    assert defs[gamma] == DF(2, k) / n
    # numerator: κ² w̄ᵀΣR²w̄ + σ²
    num = sp.expand(p.value * (1 - gamma))
    (F,) = num.atoms(Form)
    assert sp.expand(num - (k ** 2 * F + s2)) == 0 and str(F) == "(w.T*Sigma*R**2*w)"
    # GCV is asymptotically the risk: the very same presented form
    assert ridge["GCV"].pretty().value == p.value
    # training error = (1 − df₁/n)² × risk
    assert sp.simplify(ridge["training error"].pretty().value / p.value - (1 - DF(1, k) / n) ** 2) == 0
    tex = de.latex()
    assert r"\frac{\kappa^{2} w^{T} \Sigma R^{2} w + \sigma^{2}}{1 - \gamma}" in tex
    assert r"\gamma &= \frac{\mathrm{df}_{2}\left(\kappa\right)}{n}" in tex


def test_ridge_norm_reads_as_textbook(ridge):
    """``‖ŵ‖² ≃ w̄ᵀΣ²R²w̄ + Tr[ΣR²]/n · (κ²w̄ᵀΣR²w̄ + σ²)/(1 − γ)`` (rule 5c)."""
    de = ridge["norm"]
    p = de.pretty()
    (gamma,) = _gamma_denominators(p.value)
    (k,) = de.unknowns
    R = sp.MatrixSymbol("R", d, d)
    F2, F3 = Form(w.T * Sigma * R ** 2 * w), Form(w.T * Sigma ** 2 * R ** 2 * w)
    T = sr.Tr(Sigma * R ** 2)
    assert sp.expand(p.value - (F3 + T / n * (k ** 2 * F2 + s2) / (1 - gamma))) == 0
    assert dict(p.definitions)[DF(1, k)] is not None      # df₁ of the equation is defined


def test_ridge_norm_against_closed_form():
    """The presented norm vs ``w̄ᵀΣ²R²w̄ + Tr[ΣR²]/n · E_g`` in NumPy (κ by bisection)."""
    de = sr.deterministic_equivalent(RIDGE["norm"])
    rng = np.random.default_rng(5)
    D, N = 40, 30
    s, wv = rng.uniform(0.05, 3.0, D), rng.standard_normal(D)
    for lv, nv in [(0.01, 0.1), (0.3, 1.0), (2.0, 0.5)]:
        k = kappa_bisection(s, N, lv)
        eg = (k ** 2 * np.sum(s * wv ** 2 / (s + k) ** 2) + nv) / (1 - np.sum(s ** 2 / (s + k) ** 2) / N)
        closed = np.sum(s ** 2 * wv ** 2 / (s + k) ** 2) + np.sum(s / (s + k) ** 2) / N * eg
        shown = _as_equivalent(de, de.pretty().expanded).compile()(Sigma=s, w=wv, n=N, lam=lv, sigma2=nv)
        raw = de.compile()(Sigma=s, w=wv, n=N, lam=lv, sigma2=nv)
        assert abs(shown - closed) <= 1e-10 * closed and abs(raw - closed) <= 1e-10 * closed


def test_ridge_risk_against_closed_form():
    """The presented ridge risk vs ``(κ²w̄ᵀΣ(Σ+κ)⁻²w̄ + σ²)/(1 − df₂/n)`` in NumPy
    (κ by bisection) — independent of the engine and the compiler."""
    de = sr.deterministic_equivalent(RIDGE["ridge risk"])
    rng = np.random.default_rng(3)
    D, N = 40, 60
    s, wv = rng.uniform(0.05, 3.0, D), rng.standard_normal(D)
    for lv, nv in [(0.01, 0.1), (0.3, 1.0), (2.0, 0.5)]:
        k = kappa_bisection(s, N, lv)
        closed = (k ** 2 * np.sum(s * wv ** 2 / (s + k) ** 2) + nv) / (1 - np.sum(s ** 2 / (s + k) ** 2) / N)
        shown = _as_equivalent(de, de.pretty().expanded).compile()(Sigma=s, w=wv, n=N, lam=lv, sigma2=nv)
        raw = de.compile()(Sigma=s, w=wv, n=N, lam=lv, sigma2=nv)
        assert abs(shown - closed) <= 1e-10 * closed and abs(raw - closed) <= 1e-10 * closed


def test_diffusion_variance_factorises(diffusion):
    """scale × anisotropy × inhomogeneity + second Wick pairing, from the engine:
    ``κ²/(m(1−γ))·[vᵀMv·((x−μ)ᵀM(x−μ) + c₀) + (vᵀM(x−μ))² + …]``, ``M = ΣR²``."""
    for case, m in (("known", n), ("estimated", n - 1)):
        de = diffusion[f"variance/{case}"]
        p = de.pretty()
        (gamma,) = _gamma_denominators(p.value)
        (k,) = de.unknowns
        assert dict(p.definitions)[gamma] == DF(2, k) / m
        scale = k ** 2 / (m * (1 - gamma))
        rest = sp.expand(p.value / scale)
        names = {str(F) for F in rest.atoms(Form)}
        assert {"(v.T*Sigma*R**2*v)", "((x - mu).T*Sigma*R**2*(x - mu))", "((x - mu).T*Sigma*R**2*v)"} <= names
        assert not any("mu.T" in x or ".T*Sigma*R**2*mu" in x for x in names)       # μ only through x − μ
        A, B, C = (next(F for F in rest.atoms(Form) if str(F) == x) for x in
                   ("(v.T*Sigma*R**2*v)", "((x - mu).T*Sigma*R**2*(x - mu))", "((x - mu).T*Sigma*R**2*v)"))
        poly = sp.Poly(rest, A, B, C)
        assert poly.coeff_monomial(A * B) == 1 and poly.coeff_monomial(C ** 2) == 1
        c0 = sp.factor(poly.coeff_monomial(A))
        assert c0 == (0 if case == "known" else (n - 1) / n)


# ------------------------------------------------------------ faces
def test_repr_and_latex_use_the_presentation(ridge):
    de = ridge["ridge risk"]
    r = repr(de)
    assert "value     ≃ (kappa**2*(w.T*Sigma*R**2*w) + sigma2)/(1 - gamma)" in r
    assert "where     : gamma = df2(kappa)/n" in r and "raw value :" in r
    assert "kappa*(1 - Tr(Sigma*(kappa*I + Sigma)**(-1))/n) = lam" in r     # raw equation kept
    raw_tex = __import__("symrmt.faces.latex", fromlist=["x"]).equivalent_latex(de, raw=True)
    assert r"\mathrm{df}" not in raw_tex and r"\mathrm{df}" in de.latex()
    assert de.value.has(lam)          # the raw value is untouched


def test_presentation_is_fast_enough_to_be_the_default(ridge, diffusion):
    """Not a timing test (benchmarks/derive.py measures): a cached presentation
    is returned on the second call."""
    de = ridge["norm"]
    assert de.pretty() is de.pretty()


def test_unsupported_parts_are_shown_raw():
    """Correlated samples (two unknowns κ, ν): the functionals stay as derived
    and the value is unchanged."""
    K = sr.Covariance("K", n)
    Xk = sr.GaussianData("X", n, Sigma, K=K)
    de = sr.deterministic_equivalent(sr.ntr(Sigma * (Xk.T * Xk / n + lam * sr.I(d)).inverse()))
    p = de.pretty()
    assert sp.simplify(p.expanded - de.value) == 0


# ------------------------------------------------------------ other engine results
def _other_models():
    p = sr.dims("p")
    mu2 = sr.scalar("mu2")
    A = sr.Deterministic("A", d, d)
    u = sr.Vector("u", d)
    Sh = X.T * X / n
    G2 = (Sh + mu2 * sr.I(d)).inverse()
    F = sr.RandomFeatures("F", d, p)
    Gf = (F.T * Sh * F + lam * sr.I(p)).inverse()
    return {
        "two ridges (cross df2, gamma_12)": sr.ntr(Sigma * G * Sigma * G2),
        "form at two ridges": w.T * G * Sigma * G2 * w,
        "Gram resolvent": sr.ntr((X * X.T / n + lam * sr.I(n)).inverse()),
        "covariance of two forms": sr.cov(w.T * G * w, u.T * G * u),
        "sandwich with A": sr.ntr(A * G * A.T * G),
        "random features trace": sr.ntr(F.T * Sigma * F * Gf),
        "random features form": w.T * F * Gf * F.T * w,
        "exp(-Sigma_hat), contour": sr.ntr(sr.matrix_function(lambda x: sp.exp(-x), Sh)),
    }


OTHER = _other_models()


@pytest.mark.parametrize("name", list(OTHER))
def test_other_presentations_equal_raw(name):
    de = sr.deterministic_equivalent(OTHER[name])
    rng = np.random.default_rng(4)
    D = 10
    b = dict(Sigma=rng.uniform(0.1, 2, D), A=rng.standard_normal((D, D)), w=rng.standard_normal(D),
             u=rng.standard_normal(D), n=25, d=D, p=15, lam=np.array([0.2, 1.0]), mu2=0.5)
    names = {s.name for s in de.value.free_symbols | {a for eq in de.equations for a in eq.free_symbols}}
    names |= {a.name for a in de.value.atoms(sp.MatrixSymbol)} | {"Sigma"}
    p = _check_compiled(de, {k: v for k, v in b.items() if k in names})
    if name == "Gram resolvent":          # (1/n)Tr[(XXᵀ/n + λ)⁻¹] = (1 − df₁/n)/λ = 1/κ
        assert p.value == 1 / de.unknowns[0]
    if name.startswith("random features"):  # product S-transform: κ(1 − df₁/n)(1 − df₁/p) = λ, λ eliminated
        (eq,) = p.equations
        assert eq.lhs.has(DF(1, de.unknowns[0])) and len(sp.Mul.make_args(eq.lhs)) == 3


# ------------------------------------------------------------ linear random features (two sizes n, p)
p_dim = sr.dims("n d p")[2]
F_RF = sr.RandomFeatures("F", d, p_dim)
Z_RF = X * F_RF
A_RF = (Z_RF.T * Z_RF / n + lam * sr.I(p_dim)).inverse() * Z_RF.T * Y / n
TRAIN_RF = (Y - Z_RF * A_RF).T * (Y - Z_RF * A_RF) / n
RF = {
    "rf risk": (F_RF * A_RF - w).T * Sigma * (F_RF * A_RF - w) + s2,
    "rf training error": TRAIN_RF,
    "rf GCV": TRAIN_RF / (1 - sr.ntr(Z_RF.T * Z_RF / n * (Z_RF.T * Z_RF / n + lam * sr.I(p_dim)).inverse())
                          * p_dim / n) ** 2,
    "rf variance": (F_RF * (Z_RF.T * Z_RF / n + lam * sr.I(p_dim)).inverse() * Z_RF.T * eps / n).T * Sigma
    * (F_RF * (Z_RF.T * Z_RF / n + lam * sr.I(p_dim)).inverse() * Z_RF.T * eps / n),
    "rf norm": A_RF.T * A_RF,
}


@pytest.fixture(scope="module")
def rf():
    return {k: sr.deterministic_equivalent(e) for k, e in RF.items()}


def _rf_env(de, rng, D=7):
    """Random spectrum, ``w``, sizes ``n, p``, random ``κ₁`` with ``λ`` set from
    ``κ₁(1 − df₁/n)(1 − df₁/p) = λ``; the ridgeless ``κ₂`` of the feature law at a
    random value too (its equation is not imposed: the presented form has no
    ``κ₂``, so this also checks that its terms in the raw value vanish whenever
    ``λ`` satisfies ``κ₁``'s equation)."""
    env = {"_dims": {n: int(rng.integers(D + 3, 3 * D)), d: D, p_dim: int(rng.integers(D + 3, 3 * D))}}
    env[Sigma] = np.diag(rng.uniform(0.1, 2.0, D))
    env[w] = rng.standard_normal((D, 1))
    env[s2] = float(rng.uniform(0.1, 1.5))
    for g in de.groups:
        (k,) = g.unknowns
        env[k] = float(rng.uniform(0.2, 2.0))
        if isinstance(g.z, sp.Symbol):
            env[g.z] = scal(g.equations[0].lhs, env)
    return env


@pytest.mark.parametrize("name", list(RF))
def test_rf_presentations_equal_raw_at_random_points(rf, name):
    de = rf[name]
    pr = de.pretty()
    rng = np.random.default_rng(5)
    for _ in range(3):
        env = _rf_env(de, rng)
        raw, shown = scal(de.value, env), scal(pr.expanded, env)
        assert abs(shown - raw) <= 1e-12 * abs(raw), (name, raw, shown)


def test_rf_risk_reads_as_textbook(rf):
    """``E_g = [κ²wᵀΣR²w + κ(df₁−df₂)/(p−df₂)·wᵀΣ²R²w + σ²]/(1−γ)``,
    ``γ = df₂/n + (df₁−df₂)²/(n(p−df₂))``; training error ``(1 − df₁/n)² E_g``,
    GCV ``= E_g``; no ``λ`` and no ``κ₂``."""
    de = rf["rf risk"]
    pr = de.pretty()
    (gamma,) = _gamma_denominators(pr.value)
    k1, k2 = de.unknowns
    assert not ({lam, k2} & pr.value.free_symbols)
    df1, df2 = DF(1, k1), DF(2, k1)
    assert sp.simplify(dict(pr.definitions)[gamma] - (df2 / n + (df1 - df2) ** 2 / (n * (p_dim - df2)))) == 0
    num = sp.expand(pr.value * (1 - gamma))
    forms = {str(F): F for F in num.atoms(Form)}
    assert set(forms) == {"(w.T*Sigma*R_1**2*w)", "(w.T*Sigma**2*R_1**2*w)"}
    A, B = forms["(w.T*Sigma*R_1**2*w)"], forms["(w.T*Sigma**2*R_1**2*w)"]
    assert sp.simplify(num - (k1 ** 2 * A + k1 * (df1 - df2) / (p_dim - df2) * B + s2)) == 0
    assert rf["rf GCV"].pretty().value == pr.value
    assert sp.simplify(rf["rf training error"].pretty().value / pr.value - (1 - df1 / n) ** 2) == 0
    assert r"{1 - \gamma_{1}}" in de.latex()
    # variance: σ²γ/(1−γ)
    pv = rf["rf variance"].pretty()
    (gv,) = _gamma_denominators(pv.value)
    assert sp.simplify(pv.value - s2 * gv / (1 - gv)) == 0


def test_rf_risk_against_closed_form(rf):
    """The presented RF risk, compiled, vs the closed form of linear random-feature
    ridge regression in NumPy (``tests/test_random_features.py::closed_form``, κ by
    bisection), for p < d and p > d, n < p and n > p."""
    from .test_random_features import closed_form, problem
    de = rf["rf risk"]
    f = _as_equivalent(de, de.pretty().expanded).compile()
    ev, wv = problem(50)
    for N, P in [(25, 100), (100, 25), (75, 60)]:
        for lv in (0.05, 0.5):
            shown = float(f(Sigma=ev, w=wv, n=N, p=P, lam=lv, sigma2=0.3))
            ref = closed_form(ev, wv, N, P, lv, 0.3)["risk"]
            assert abs(shown - ref) <= 1e-10 * ref, (N, P, lv, shown, ref)
