"""SGD learning curves in the form of Atanasov, Bordelon, Zavatone-Veth, Paquette, Pehlevan,
*Two-point deterministic equivalence for stochastic gradient dynamics in linear models*
(arXiv:2502.05074), coded independently in plain NumPy (no symrmt import) — the reference the
recipe ``sgd_two_point.py`` is audited against.

Model (the paper's linear regression): ``x ~ N(0, Σ)``, ``y = xᵀw* + ε``, ``ε ~ N(0, σ²)``,
minibatch SGD ``v_{t+1} = v_t − (η/B)Σ_{b∈batch} x_b(x_bᵀv_t − y_b)``, ``v_0 = 0``, test risk
``R(v) = (w* − v)ᵀΣ(w* − v) + σ²`` (the noise included).

(V1) one-pass SGD (fresh batch each step) — the paper's Volterra form of the loss,
``R(t) = F(t) + (η²/B) Σ_{s<t} K(t−1−s) R(s)``, with forcing ``F(t) = σ² + Σ_k λ_k a_k^t (w*_k)²``
and kernel ``K(τ) = Σ_k λ_k² a_k^τ`` in the eigenbasis of Σ. For Gaussian data
(Isserlis: ``E[xxᵀAxxᵀ] = 2ΣAΣ + Σ Tr(ΣA)``) the per-mode factor is exactly
``a_k = (1 − ηλ_k)² + η²λ_k²/B``, so (V1) is exact at every d; the high-dimensional form
``a_k = (1 − ηλ_k)²`` (``gaussian_term=False``) drops the ``η²λ_k²/B`` term (O(η²λ²/B) per step).
(V2) full-batch GD on ``n`` samples (multi-pass, ``B = n``): ``w_t = g_t(Σ̂)Xᵀy/n``,
``g_t(x) = (1 − (1 − ηx)^t)/x``, simulated densely (:func:`gd_dense_mc`) to check the engine's
proportional-limit equivalent at two sizes d.
"""
from __future__ import annotations

import numpy as np

__all__ = ["onepass_volterra", "gd_dense_mc"]


def _eigbasis(Sigma, w):
    S = np.asarray(Sigma, dtype=float)
    if S.ndim == 1:
        return S, np.asarray(w, dtype=float)
    lam, U = np.linalg.eigh(S)
    return lam, U.T @ np.asarray(w, dtype=float)


def onepass_volterra(Sigma, w, sigma2, lr, batch, steps, gaussian_term=True):
    """(V1) ``E[R(t)]`` on the step grid ``steps`` by the discrete Volterra equation (solved
    forward in t, the convolution sum evaluated directly)."""
    lam, ww = _eigbasis(Sigma, w)
    if lr <= 0 or int(batch) != batch or batch < 1:
        raise ValueError(f"lr > 0 and an integer batch >= 1 are needed, got lr={lr}, batch={batch}")
    steps = np.asarray(steps, dtype=int)
    T = int(steps.max())
    a = (1 - lr * lam) ** 2 + ((lr * lam) ** 2 / batch if gaussian_term else 0.0)
    powers = a[None, :] ** np.arange(T + 1)[:, None]                 # (T+1) × d
    F = sigma2 + powers @ (lam * ww * ww)
    K = powers @ (lam * lam)
    R = np.empty(T + 1)
    c = lr * lr / batch
    for t in range(T + 1):
        R[t] = F[t] + c * np.dot(K[t - 1::-1][:t], R[:t]) if t else F[0]
    return R[steps]


def gd_dense_mc(s, w, sigma2, n, lr, steps, trials, seed=0):
    """(V2) Dense Monte Carlo of full-batch GD: for each of ``trials`` data sets
    (``X`` rows ``N(0, diag(s))``), ``w_t = V diag(g_t(λ)) Vᵀ Xᵀy/n`` from one ``eigh`` of
    ``Σ̂ = XᵀX/n``; returns mean and sem of ``R(w_t)`` over the data sets."""
    rng = np.random.default_rng(seed)
    s, w = np.asarray(s, dtype=float), np.asarray(w, dtype=float)
    d = s.size
    steps = np.asarray(steps, dtype=int)
    out = np.empty((trials, steps.size))
    for i in range(trials):
        X = rng.standard_normal((n, d)) * np.sqrt(s)
        y = X @ w + np.sqrt(sigma2) * rng.standard_normal(n)
        ev, V = np.linalg.eigh(X.T @ X / n)
        b = V.T @ (X.T @ y / n)
        ev = np.clip(ev, 0.0, None)
        for j, t in enumerate(steps):
            with np.errstate(divide="ignore", invalid="ignore"):
                g = np.where(ev > 1e-14 * ev.max(), (1 - (1 - lr * ev) ** t) / ev, lr * t)
            u = w - V @ (g * b)
            out[i, j] = u @ (s * u) + sigma2
    return out.mean(axis=0), out.std(axis=0, ddof=1) / np.sqrt(trials)
