"""Random-feature ridge regression by nested conditioning (issue 12, item 3).

The estimator is written raw, ``â = (FᵀΣ̂F + λ)⁻¹FᵀXᵀy/n``, ``y = Xw + ε``,
and the engine derives its test risk, training error, GCV, norm and the
bias/variance split (symrmt/equivalence/features.py). Checks:

* against the closed form of linear random-feature ridge regression,
  evaluated here with NumPy and an independent bisection for κ
  (κ(1 − df₁/n)(1 − df₁/p) = λ, R = (Σ+κ)⁻¹, df₂ = Tr[Σ²R²]):

      E_g = [κ² wᵀΣR²w + κ (df₁−df₂)/(p−df₂) · wᵀΣ²R²w + σ²] / (1 − γ),
      γ   = df₂/n + (df₁−df₂)²/(n(p−df₂)),

  (Bach 2023, "High-dimensional analysis of double descent for linear
  regression with random projections"; Atanasov–Zavatone-Veth–Pehlevan,
  arXiv:2405.00592, linear random features), training error
  ``(1 − df₁/n)² E_g``, GCV ``→ E_g``, bias ``E_g − σ²/(1−γ)`` at σ² = 0 and
  variance ``σ²γ/(1−γ)``;
* against Monte Carlo of the same expressions at p/d, n/d ∈ {0.5, 2} and two
  sizes (slow tests), tolerance ``4·sem + c·|theory|/d`` with c stated.
"""
import numpy as np
import pytest

import symrmt as sr

from .mc_check import check

n, d, p = sr.dims("n d p")
lam, s2 = sr.scalar("lam"), sr.scalar("sigma2")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
F = sr.RandomFeatures("F", d, p)
w = sr.Vector("w", d)
eps = sr.GaussianNoise("eps", n, s2)
ShF = F.T * X.T * X * F / n
G = (ShF + lam * sr.I(p)).inverse()
y = X * w + eps
a_hat = G * F.T * X.T * y / n
risk = (F * a_hat - w).T * Sigma * (F * a_hat - w) + s2
resid = y - X * F * a_hat
train = resid.T * resid / n
gcv = train / (1 - sr.ntr(ShF * G) * p / n) ** 2
norm = a_hat.T * a_hat
a_bias = G * F.T * X.T * X * w / n
a_var = G * F.T * X.T * eps / n
bias = (F * a_bias - w).T * Sigma * (F * a_bias - w)
variance = (F * a_var).T * Sigma * (F * a_var)

REGIMES = [(2.0, 2.0), (0.5, 2.0), (2.0, 0.5), (0.5, 0.5)]   # (n/d, p/d)
_DE = {}


def de(name):
    if name not in _DE:
        _DE[name] = sr.deterministic_equivalent(globals()[name]).compile()
    return _DE[name]


def problem(D, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.linspace(0.2, 2.0, D)
    wv = rng.normal(size=D) / np.sqrt(D)
    return ev, wv


def closed_form(ev, wv, N, P, lam_, sigma2):
    """The linear random-feature ridge formulas (module docstring), with κ by
    bisection on the physical branch df₁ < min(n, p)."""
    lo, hi = lam_, lam_ + 10 * (ev.sum() * (1 / N + 1 / P) + lam_ + ev.max())
    for _ in range(300):
        k = 0.5 * (lo + hi)
        df1 = np.sum(ev / (ev + k))
        below = df1 >= min(N, P) or k * (1 - df1 / N) * (1 - df1 / P) < lam_
        lo, hi = (k, hi) if below else (lo, k)
    k = 0.5 * (lo + hi)
    df1, df2 = np.sum(ev / (ev + k)), np.sum(ev ** 2 / (ev + k) ** 2)
    wSR2w = np.sum(wv ** 2 * ev / (ev + k) ** 2)
    wS2R2w = np.sum(wv ** 2 * ev ** 2 / (ev + k) ** 2)
    gamma = df2 / N + (df1 - df2) ** 2 / (N * (P - df2))
    bias_ = (k ** 2 * wSR2w + k * (df1 - df2) / (P - df2) * wS2R2w) / (1 - gamma)
    Eg = bias_ + sigma2 / (1 - gamma)
    return dict(risk=Eg, train=(1 - df1 / N) ** 2 * Eg, gcv=Eg, bias=bias_,
                variance=sigma2 * gamma / (1 - gamma))


@pytest.mark.parametrize("name", ["risk", "train", "gcv", "bias", "variance"])
def test_against_closed_form(name):
    D = 50
    ev, wv = problem(D)
    for q, r in REGIMES:
        for lam_ in (0.05, 0.5):
            N, P = int(q * D), int(r * D)
            extra = {"bias": {"w": wv}, "variance": {"sigma2": 0.3}}.get(name, {"w": wv, "sigma2": 0.3})
            th = float(de(name)(Sigma=ev, n=N, p=P, lam=lam_, **extra))
            ref = closed_form(ev, wv, N, P, lam_, 0.3)[name]
            assert abs(th - ref) <= 1e-9 * abs(ref), (name, q, r, lam_, th, ref)


def test_two_resolvents_of_a_feature_core():
    """``Tr G_F²/p = −∂_λ Tr G_F/p``: the nested two-point value against a
    central difference of the one-point value (a different rule)."""
    two = sr.deterministic_equivalent(sr.ntr(G * G)).compile()
    one = sr.deterministic_equivalent(sr.ntr(G)).compile()
    ev, _ = problem(40)
    for N, P in ((80, 20), (20, 80), (80, 80)):
        lam_, h = 0.3, 1e-5
        fd = -(one(Sigma=ev, n=N, p=P, lam=lam_ + h) - one(Sigma=ev, n=N, p=P, lam=lam_ - h)) / (2 * h)
        val = two(Sigma=ev, n=N, p=P, lam=lam_)
        assert abs(val - fd) <= 1e-7 * abs(fd)


# deep linear chain x ↦ F F2 a (two layers), p2 features at the top
p2 = sr.dims("p2")
F2 = sr.RandomFeatures("F2", p, p2)
C2 = F * F2
G2 = (C2.T * X.T * X * C2 / n + lam * sr.I(p2)).inverse()
a2 = G2 * C2.T * X.T * y / n
deep_risk = (C2 * a2 - w).T * Sigma * (C2 * a2 - w) + s2


def test_deep_chain_two_resolvents():
    """Two layers: ``Tr G²`` (nested conditioning, layer by layer) against a
    central difference of ``Tr G`` (the product-of-S-transforms rule)."""
    two = sr.deterministic_equivalent(sr.ntr(G2 * G2)).compile()
    one = sr.deterministic_equivalent(sr.ntr(G2)).compile()
    ev, _ = problem(40)
    for N, P, P2 in ((80, 20, 60), (20, 80, 40), (80, 80, 80)):
        b = dict(Sigma=ev, n=N, p=P, p2=P2)
        lam_, h = 0.3, 1e-5
        fd = -(one(lam=lam_ + h, **b) - one(lam=lam_ - h, **b)) / (2 * h)
        assert abs(two(lam=lam_, **b) - fd) <= 1e-7 * abs(fd)


def test_gram_form_trace_exact_identity():
    """``Tr_n (X𝔉𝔉ᵀXᵀ/n + λ)⁻¹ = Tr_p (𝔉ᵀXᵀX𝔉/n + λ)⁻¹ + (n − p)/λ`` exactly
    (same non-zero spectrum): the Gram form against the one-point rule."""
    Gn = (X * F * F.T * X.T / n + lam * sr.I(n)).inverse()
    gram = sr.deterministic_equivalent(sr.ntr(Gn)).compile()
    one = sr.deterministic_equivalent(sr.ntr(G)).compile()
    ev, _ = problem(40)
    for N, P in ((80, 20), (20, 80), (80, 80)):
        ref = (P * one(Sigma=ev, n=N, p=P, lam=0.3) + (N - P) / 0.3) / N
        assert abs(gram(Sigma=ev, n=N, p=P, lam=0.3) - ref) <= 1e-10 * abs(ref)


def test_refusals_name_the_problem():
    DE = sr.deterministic_equivalent
    # variances over the features are second order: refused
    with pytest.raises(NotImplementedError, match="random features|feature"):
        DE(sr.var(sr.ntr(G)))
    # two feature resolvents with a test matrix other than Σ between the features
    A = sr.Deterministic("A", d, d)
    with pytest.raises(NotImplementedError, match="M ≠ Σ"):
        DE(sr.ntr(F.T * A * F * G * F.T * A * F * G))
    # a layer of a deep chain used alone next to the data
    with pytest.raises(NotImplementedError, match="outside the full chain"):
        DE(w.T * X.T * X * F * G2 * G2 * F2.T * w / n)
    # a cube of the bare feature core (Tr[FᵀΣ̂F]³ needs a third moment): refused by name, not a RecursionError
    # (Tr[FᵀΣ̂F] itself derives: tests/test_feat_rf_pieces.py)
    with pytest.raises(NotImplementedError, match="feature-space term"):
        DE(sr.Tr((F.T * X.T * X * F / n) ** 3))
    # additive feature noise derives with one layer, XF + Ξ (tests/test_noise_engine.py); inside a
    # deeper chain, XF₁F₂ + Ξ, it is refused by name
    Xi2 = sr.GaussianData("Xi2", n, sr.I(F2.shape[1]))
    Z = X * F * F2 + Xi2
    with pytest.raises(NotImplementedError, match="additive feature noise"):
        DE(sr.ntr((Z.T * Z / n + lam * sr.I(F2.shape[1])).inverse()))


def test_gram_form_two_resolvents_around_data():
    """``yᵀ(X𝔉𝔉ᵀXᵀ/n + λ)⁻²y/n`` (two Gram resolvents around the data; derived
    since the Gram side is rewritten through the data side) equals
    ``−∂_λ yᵀ(X𝔉𝔉ᵀXᵀ/n + λ)⁻¹y/n`` (central difference of the one-resolvent
    value). A dense Monte Carlo check (d = 40, 80; n = 2d, p = 1.5d) gave theory
    6.7490 vs 6.7692 ± 0.0545 and 7.0686 vs 7.0194 ± 0.0382."""
    DE = sr.deterministic_equivalent
    Gn = (X * F * F.T * X.T / n + lam * sr.I(n)).inverse()
    two = DE(y.T * Gn * Gn * y / n).compile()
    one = DE(y.T * Gn * y / n).compile()
    ev, wv = problem(40)
    h = 1e-4
    for N, P in ((80, 60), (30, 80)):
        b = dict(Sigma=ev, w=wv, n=N, p=P, sigma2=0.3)
        fd = -(one(lam=0.3 + h, **b) - one(lam=0.3 - h, **b)) / (2 * h)
        assert abs(two(lam=0.3, **b) - fd) <= 1e-6 * abs(fd)


# ------------------------------------------------------------- Monte Carlo
@pytest.mark.slow
@pytest.mark.parametrize("sizes", [(2.0, 2.0, 2.0), (0.5, 2.0, 1.0), (2.0, 0.5, 1.0), (2.0, 2.0, 0.5)])
def test_deep_chain_risk_monte_carlo(sizes):
    """Two-layer linear chain risk vs Monte Carlo at d = 60, 120 (n/d, p/d,
    p2/d as given; 4·sem + 6·|theory|/d)."""
    q, r, r2 = sizes
    for D in (60, 120):
        ev, wv = problem(D)
        th, mc, sem = check(deep_risk, d=D, trials=150, seed=D, k=4.0, c=6.0, Sigma=ev, w=wv,
                            n=int(q * D), p=int(r * D), p2=int(r2 * D), lam=0.1, sigma2=0.3)
        print(f"RF-MC deep n/d={q} p/d={r} p2/d={r2} d={D}: theory {float(th):.5f} MC {float(mc):.5f} ± {float(sem):.5f}")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["risk", "train", "gcv", "norm"])
@pytest.mark.parametrize("q,r", REGIMES)
def test_monte_carlo_two_sizes(name, q, r):
    """Theory vs Monte Carlo of the same expression at d = 60 and 120
    (4·sem + c·|theory|/d, c = 6: the n = d/2 cells are small)."""
    expr = globals()[name]
    for D in (60, 120):
        ev, wv = problem(D)
        th, mc, sem = check(expr, d=D, trials=150, seed=D, k=4.0, c=6.0,
                            Sigma=ev, w=wv, n=int(q * D), p=int(r * D), lam=0.1, sigma2=0.3)
        print(f"RF-MC {name} n/d={q} p/d={r} d={D}: theory {float(th):.5f} MC {float(mc):.5f} ± {float(sem):.5f}")
