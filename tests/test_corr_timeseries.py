"""The time-series test point of ridge with correlated samples (Atanasov,
Zavatone-Veth, Pehlevan 2024; derivations/corr_gcv.py): the test point is the
next sample of the training process.

Model: training rows ``X = K^{1/2} Z Σ^{1/2}`` (``n × d``); the test point
``x̃`` has ``Cov(x̃, x_t) = k_t Σ``, ``Var x̃ = Σ`` (``[K k; kᵀ 1]`` = the
process' correlation at ``n + 1`` samples). Gaussian conditioning:
``x̃ | X ~ N(Xᵀa, sΣ)``, ``a = K⁻¹k``, ``s = 1 − kᵀK⁻¹k``, hence the test error
averaged over ``x̃`` and the test label noise is

* white noise (``ε̃`` independent): ``(aᵀX(ŵ − w))² + s(ŵ − w)ᵀΣ(ŵ − w) + σ²``;
* noise from the same process (``[ε; ε̃] ~ N(0, σ²[K k; kᵀ 1])``):
  ``(aᵀ(y − Xŵ))² + s[(ŵ − w)ᵀΣ(ŵ − w) + σ²]``,

whose equivalents the engine derives (rank-one sandwich ``Xᵀ a aᵀ X`` through
the sample-side lift, equivalence/sample_side.py).

Checks, both plain NumPy (not ``sr.monte_carlo``):
1. variance-reduced: per draw of ``X`` the test error averaged EXACTLY over
   the label noise and ``x̃ | X`` (formula above), at d = 60, 120 (240 slow);
2. raw: the (n+1)-sample process drawn through the Cholesky factor of the
   extended correlation (fresh last-row innovations give exact draws of
   ``x̃ | X`` and ``ε̃ | ε`` without the conditioning formula), squared errors
   of actual test points — this checks the conditioning identity itself.
Kernels: AR(1) (Markov: ``a = ρ e_n``) and a non-Markov Cauchy kernel
``1/(1 + (i−j)²/4)``. Tolerance ``k·sem + c·|th|/d``, k = 4, c = 2
(relative errors measured ≤ 1 % at d = 60, O(1/d) trend).
"""
import numpy as np
import pytest

import symrmt as sr

LAM, SIGMA2, RHO = 1e-3, 0.1, 0.5
K_SEM, C_REL = 4.0, 2.0

n, d = sr.dims("n d")
lam, s2 = sr.scalar("lam"), sr.scalar("sigma2")
Sigma = sr.Covariance("Sigma", d)
Kc = sr.Covariance("K", n)
X = sr.GaussianData("X", n, Sigma, K=Kc)
w = sr.Vector("w", d)
k = sr.Vector("k", n)


def ts_error(noise):
    eps = sr.GaussianNoise("eps", n, s2, K=Kc) if noise == "K" else sr.GaussianNoise("eps", n, s2)
    y = X * w + eps
    wh = (X.T * X / n + lam * sr.I(d)).inverse() * X.T * y / n
    a = Kc.inverse() * k
    s = 1 - k.T * Kc.inverse() * k
    excess = (wh - w).T * Sigma * (wh - w)
    if noise == "K":
        r = y - X * wh
        return r.T * a * a.T * r + s * (excess + s2)
    return (wh - w).T * X.T * a * a.T * X * (wh - w) + s * excess + s2


_FN = {}


def theory(noise, Sv, wv, Ke):
    if noise not in _FN:
        _FN[noise] = sr.deterministic_equivalent(ts_error(noise)).compile()
    N = Ke.shape[0] - 1
    return float(_FN[noise](Sigma=Sv, w=wv, n=N, K=Ke[:N, :N], k=Ke[:N, N], lam=LAM, sigma2=SIGMA2))


def problem(D, q, kernel):
    N = int(q * D)
    Sv = np.arange(1, D + 1, dtype=float) ** -1.5
    wv = np.arange(1, D + 1, dtype=float) ** -1.0
    i = np.arange(N + 1)
    Ke = (RHO ** np.abs(i[:, None] - i[None, :]) if kernel == "ar1"
          else 1.0 / (1.0 + (i[:, None] - i[None, :]) ** 2 / 4.0))
    return Sv, wv / np.linalg.norm(wv), Ke


def dense_conditional(noise, Sv, wv, Ke, trials, seed):
    """Mean and sem over draws of X of E[(ỹ − x̃ᵀŵ)² | X] (exact average over
    ε, ε̃ and x̃ | X ~ N(Xᵀa, sΣ))."""
    N, D = Ke.shape[0] - 1, len(Sv)
    K, kv = Ke[:N, :N], Ke[:N, N]
    a = np.linalg.solve(K, kv)
    s = 1.0 - kv @ a
    L = np.linalg.cholesky(K)
    Kn = K if noise == "K" else np.eye(N)
    rng = np.random.default_rng(seed)
    vals = np.empty(trials)
    for j in range(trials):
        Xm = L @ rng.standard_normal((N, D)) * np.sqrt(Sv)
        B = np.linalg.solve(Xm.T @ Xm / N + LAM * np.eye(D), Xm.T / N)      # ŵ = B y
        m = B @ (Xm @ wv) - wv
        C = SIGMA2 * B @ Kn @ B.T
        excess = m @ (Sv * m) + Sv @ np.diag(C)
        if noise == "K":
            ra = a - B.T @ (Xm.T @ a)
            vals[j] = (ra @ (Xm @ wv)) ** 2 + SIGMA2 * ra @ Kn @ ra + s * (excess + SIGMA2)
        else:
            u = Xm.T @ a
            vals[j] = (u @ m) ** 2 + u @ C @ u + s * excess + SIGMA2
    return vals.mean(), vals.std(ddof=1) / np.sqrt(trials)


def raw_joint(noise, Sv, wv, Ke, trials, tests, seed):
    """Mean and sem over draws of X of the average squared error of ``tests``
    actual test points: the process drawn as ``L_ext ζ`` with ``L_ext`` the
    Cholesky factor of the (n+1)×(n+1) correlation (lower triangular, so the
    first n rows use only ζ_1..ζ_n and fresh ζ_{n+1} give exact conditional
    draws of the next sample)."""
    N, D = Ke.shape[0] - 1, len(Sv)
    Le = np.linalg.cholesky(Ke)
    rng = np.random.default_rng(seed)
    vals = np.empty(trials)
    for j in range(trials):
        Zt = rng.standard_normal((N, D))
        Xm = Le[:N, :N] @ Zt * np.sqrt(Sv)
        xi = rng.standard_normal(N)
        eps = Le[:N, :N] @ xi * np.sqrt(SIGMA2) if noise == "K" else rng.standard_normal(N) * np.sqrt(SIGMA2)
        wh = np.linalg.solve(Xm.T @ Xm / N + LAM * np.eye(D), Xm.T @ (Xm @ wv + eps) / N)
        Zn = rng.standard_normal((tests, D))
        xt = (Le[N, :N] @ Zt + Le[N, N] * Zn) * np.sqrt(Sv)                 # tests × D
        if noise == "K":
            et = (Le[N, :N] @ xi + Le[N, N] * rng.standard_normal(tests)) * np.sqrt(SIGMA2)
        else:
            et = rng.standard_normal(tests) * np.sqrt(SIGMA2)
        vals[j] = np.mean((xt @ (wv - wh) + et) ** 2)
    return vals.mean(), vals.std(ddof=1) / np.sqrt(trials)


def assert_close(th, mean, sem, D, what):
    tol = K_SEM * sem + C_REL * abs(th) / D
    assert abs(mean - th) <= tol, f"{what}: theory {th:.6g} vs MC {mean:.6g} ± {sem:.2g} (tol {tol:.2g})"


@pytest.mark.parametrize("noise", ["white", "K"])
@pytest.mark.parametrize("kernel", ["ar1", "cauchy"])
@pytest.mark.parametrize("q", [0.5, 2.0])
@pytest.mark.parametrize("D", [60, 120])
def test_variance_reduced_dense(D, q, kernel, noise):
    Sv, wv, Ke = problem(D, q, kernel)
    th = theory(noise, Sv, wv, Ke)
    mean, sem = dense_conditional(noise, Sv, wv, Ke, trials=120 if D == 60 else 60, seed=D)
    assert_close(th, mean, sem, D, (D, q, kernel, noise))


@pytest.mark.parametrize("noise", ["white", "K"])
def test_raw_test_points_check_the_conditioning(noise):
    """Actual test points drawn from the joint process agree with the theory
    (and so with the conditional formula the engine derives from)."""
    Sv, wv, Ke = problem(40, 2.0, "cauchy")
    th = theory(noise, Sv, wv, Ke)
    mean, sem = raw_joint(noise, Sv, wv, Ke, trials=150, tests=400, seed=5)
    assert_close(th, mean, sem, 40, ("raw", noise))


def test_uncorrelated_test_point_is_the_risk():
    """k = 0 (a fresh test point): the time-series error is the out-of-sample
    risk (ŵ − w)ᵀΣ(ŵ − w) + σ², exactly, in theory."""
    Sv, wv, Ke = problem(50, 2.0, "ar1")
    N = Ke.shape[0] - 1
    Ke0 = Ke.copy()
    Ke0[:N, N] = Ke0[N, :N] = 0.0
    eps = sr.GaussianNoise("eps", n, s2)
    wh = (X.T * X / n + lam * sr.I(d)).inverse() * X.T * (X * w + eps) / n
    risk = sr.deterministic_equivalent((wh - w).T * Sigma * (wh - w) + s2).compile()
    r = float(risk(Sigma=Sv, w=wv, n=N, K=Ke[:N, :N], lam=LAM, sigma2=SIGMA2))
    assert abs(theory("white", Sv, wv, Ke0) - r) <= 1e-10 * r
    assert theory("white", Sv, wv, Ke) < r          # the next point of the series is easier (optimism)


@pytest.mark.slow
@pytest.mark.parametrize("noise", ["white", "K"])
@pytest.mark.parametrize("kernel", ["ar1", "cauchy"])
@pytest.mark.parametrize("q", [0.5, 2.0])
def test_variance_reduced_dense_d240(q, kernel, noise):
    Sv, wv, Ke = problem(240, q, kernel)
    th = theory(noise, Sv, wv, Ke)
    mean, sem = dense_conditional(noise, Sv, wv, Ke, trials=200, seed=240)
    assert_close(th, mean, sem, 240, (240, q, kernel, noise))
