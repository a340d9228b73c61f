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
(V3) multi-pass minibatch SGD (``B < n`` distinct rows drawn uniformly and independently each step,
as the recipe's model): the first and second moments over the batch sampling conditional on one data
set, EXACT (:func:`multipass_moments`, ``closure="exact"``: the noise covariance
``c_B[(1/n)Σ_μ E r_μ² z_μz_μᵀ − ḡḡᵀ − Σ̂CΣ̂]`` is closed in the moments) or with the Gaussian /
homogenized closure the equivalent uses; averaged over data sets (and ``F``) by
:func:`multipass_exact_mc`; checked against a dense SGD simulation (:func:`multipass_sgd_sim`).
(V4) the first step ``E[R(1)]`` from ``v_0 = 0`` (:func:`first_step_exact`): exact for every ``n``.

Sources: the paper's text and its authors' code were not reachable from this workspace (no
repository of arXiv:2502.05074 in the code index); (V3)/(V4) are derived from the model's definition
(first principles), not transcribed, and the paper's conventions (loss 1/2, step-size scaling, batch
sampling with/without replacement across steps) could not be confirmed against its text.
"""
from __future__ import annotations

import numpy as np

__all__ = ["onepass_volterra", "gd_dense_mc", "multipass_moments", "multipass_problem", "multipass_exact_mc",
           "multipass_sgd_sim", "first_step_exact"]


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


def multipass_moments(Z, y, SigmaF, FSw, wSw, sigma2, lr, batch, steps, closure="exact"):
    """(V3) Multi-pass minibatch SGD on one data set ``(Z, y)`` (``Z = XF``: ``n×p`` features,
    ``F = I`` linear), ``B`` distinct rows drawn uniformly and independently at every step,
    ``v_{t+1} = v_t − (η/B)Z_Sᵀ(Z_S v_t − y_S)``, ``v_0 = 0``: first and second moments over the
    batch sampling, by dense ``p×p`` recursions in the original basis.

    Sampling ``B`` of ``n``: ``E[S] = (B/n)I``, ``E[S A S] = αA + β diag A`` with
    ``α = B(B−1)/(n(n−1))``, ``β = B/n − α``. So the mean ``v̄`` is full-batch GD and the update
    noise has covariance ``c_B[(1/n)Σ_μ m_μ z_μz_μᵀ − ḡḡᵀ − Σ̂CΣ̂]``, ``c_B = η²(n−B)/(B(n−1))``,
    ``ḡ = Zᵀ(Zv̄ − y)/n``, ``C = Cov(v)``, ``m_μ = E r_μ² = (z_μᵀv̄ − y_μ)² + z_μᵀCz_μ``:

    - ``closure="exact"``: that covariance as is — the exact second moment (no approximation);
    - ``closure="gaussian"``: ``(1/n)Σ_μ m_μ z_μz_μᵀ ≈ LΣ̂ + 2(ḡḡᵀ + Σ̂CΣ̂)`` (``L = Σ_μ m_μ/n``);
    - ``closure="homogenized"``: ``≈ LΣ̂ + ḡḡᵀ + Σ̂CΣ̂`` (noise ``c_B LΣ̂``).

    Returns ``(E R(t), E L(t))`` on ``steps``: ``R = w*ᵀΣw* − 2(FᵀΣw*)ᵀv̄ + v̄ᵀΣ_Fv̄ + Tr(Σ_F C) + σ²``,
    ``L = Σ_μ m_μ/n``."""
    Z, y = np.asarray(Z, float), np.asarray(y, float)
    n, p = Z.shape
    B = int(batch)
    if not 1 <= B <= n or B != batch:
        raise ValueError(f"batch: an integer 1 <= B <= n = {n} is needed, got {batch!r}")
    if closure not in ("exact", "gaussian", "homogenized"):
        raise ValueError(f"closure: 'exact', 'gaussian' or 'homogenized', got {closure!r}")
    steps = np.asarray(steps, dtype=int)
    cB = lr * lr * (n - B) / (B * (n - 1))
    # work in the eigenbasis of Σ̂ = ZᵀZ/n = V diag(s) Vᵀ (an orthogonal change of variables: P and
    # Σ̂CΣ̂ become elementwise); C, v, Σ_F, FᵀΣw* rotated, Z → ZV
    s, V = np.linalg.eigh(Z.T @ Z / n)
    if lr * s.max() >= 2:
        raise ValueError(f"lr: η·max eig(Σ̂) = {lr * s.max():.4g} >= 2 on this data set: gradient descent diverges")
    Zr = Z @ V
    SFr, FSwr = V.T @ SigmaF @ V, V.T @ FSw
    q = 1 - lr * s
    qq, ss = np.outer(q, q), np.outer(s, s)
    v = np.zeros(p)
    C = np.zeros((p, p))
    R = np.empty(len(steps))
    L = np.empty(len(steps))
    T = int(steps.max())
    want, record = {}, set(steps.tolist())
    for t in range(T + 1):
        r = Zr @ v - y
        m = r * r + np.einsum("np,np->n", Zr @ C, Zr)
        if t in record:
            want[t] = (float(wSw - 2 * FSwr @ v + v @ SFr @ v + np.sum(SFr * C) + sigma2), float(m.mean()))
        if t == T:
            break
        g = Zr.T @ r / n
        if closure == "exact":
            noise = (Zr.T * m) @ Zr / n - np.outer(g, g) - ss * C
        elif closure == "gaussian":
            noise = np.diag(m.mean() * s) + np.outer(g, g) + ss * C
        else:
            noise = np.diag(m.mean() * s)
        C = qq * C + cB * noise
        C = 0.5 * (C + C.T)
        v = v - lr * g
    for j, t in enumerate(steps):
        R[j], L[j] = want[int(t)]
    return R, L


def multipass_problem(s, w, sigma2, n, p, rng):
    """One draw of the data set (``X`` rows ``N(0, diag(s))``, ``y = Xw* + ε``) and, for ``p`` not
    None, of ``F`` (iid ``N(0, 1/p)``): returns ``(Z, y, Σ_F, FᵀΣw*, w*ᵀΣw*, X, ε, F)``."""
    s, w = np.asarray(s, float), np.asarray(w, float)
    d = s.size
    X = rng.standard_normal((n, d)) * np.sqrt(s)
    eps = np.sqrt(sigma2) * rng.standard_normal(n)
    y = X @ w + eps
    if p is None:
        F, Z, SF, FSw = None, X, np.diag(s), s * w
    else:
        F = rng.standard_normal((d, p)) / np.sqrt(p)
        Z, SF, FSw = X @ F, (F.T * s) @ F, F.T @ (s * w)
    return Z, y, SF, FSw, float(w @ (s * w)), X, eps, F


def multipass_exact_mc(s, w, sigma2, n, p, lr, batch, steps, trials, seed=0, closure="exact"):
    """(V3) ``E[R(t)]`` of multi-pass SGD averaged over ``trials`` data sets (and draws of ``F``):
    the exact conditional moments (:func:`multipass_moments`) per draw; returns mean and sem."""
    rng = np.random.default_rng(seed)
    out = np.empty((trials, len(steps)))
    for i in range(trials):
        Z, y, SF, FSw, wSw = multipass_problem(s, w, sigma2, n, p, rng)[:5]
        out[i] = multipass_moments(Z, y, SF, FSw, wSw, sigma2, lr, batch, steps, closure)[0]
    return out.mean(axis=0), out.std(axis=0, ddof=1) / np.sqrt(trials)


def multipass_sgd_sim(Z, y, SigmaF, FSw, wSw, sigma2, lr, batch, steps, runs, seed=0):
    """Dense simulation of multi-pass SGD on one data set (``runs`` independent batch sequences,
    ``B`` distinct rows per step): mean and sem of ``R(v_t)`` — checks :func:`multipass_moments`."""
    rng = np.random.default_rng(seed)
    n, p = Z.shape
    B = int(batch)
    V = np.zeros((runs, p))
    steps = np.asarray(steps, dtype=int)
    out = np.empty((runs, len(steps)))
    cur = 0
    for j in np.argsort(steps, kind="stable"):
        while cur < steps[j]:
            idx = np.argsort(rng.random((runs, n)), axis=1)[:, :B]
            zb, yb = Z[idx], y[idx]                                   # (runs, B, p), (runs, B)
            res = np.einsum("rbp,rp->rb", zb, V) - yb
            V = V - (lr / B) * np.einsum("rbp,rb->rp", zb, res)
            cur += 1
        out[:, j] = wSw - 2 * V @ FSw + np.einsum("rp,pq,rq->r", V, SigmaF, V) + sigma2
    return out.mean(axis=0), out.std(axis=0, ddof=1) / np.sqrt(runs)


def first_step_exact(s, w, sigma2, lr, batch, p=None, draws=400, seed=0):
    """(V4) ``E[R(1)]`` of multi-pass SGD from ``v_0 = 0``, EXACTLY, for any ``n ≥ B``: the first
    batch is ``B`` distinct rows of an iid data set, i.e. ``B`` fresh samples, so
    ``E[R(1)]`` is the one-pass value (:func:`onepass_volterra` at ``t = 1``). Random features
    (``p`` not None, ``F`` iid ``N(0, 1/p)``): given ``F`` the model is linear with
    ``Σ_F = FᵀΣF``, ``v* = Σ_F⁺FᵀΣw*``, noise ``σ² + w*ᵀΣw* − v*ᵀΣ_Fv*``; averaged over ``draws``
    draws of ``F``. Returns ``(value, sem)`` (sem 0 for the linear model)."""
    s, w = np.asarray(s, float), np.asarray(w, float)
    if p is None:
        return float(onepass_volterra(s, w, sigma2, lr, batch, [1])[0]), 0.0
    rng = np.random.default_rng(seed)
    d = s.size
    out = np.empty(draws)
    for i in range(draws):
        F = rng.standard_normal((d, p)) / np.sqrt(p)
        SF = (F.T * s) @ F
        lam, U = np.linalg.eigh(SF)
        lam = np.clip(lam, 0, None)
        a = U.T @ (F.T @ (s * w))                       # FᵀΣw* in the eigenbasis of Σ_F
        keep = lam > 1e-12 * lam.max()
        vstar = np.where(keep, a / np.where(keep, lam, 1), 0.0)
        s2 = sigma2 + w @ (s * w) - vstar @ (lam * vstar)
        out[i] = onepass_volterra(lam, vstar, s2, lr, batch, [1])[0]
    return float(out.mean()), float(out.std(ddof=1) / np.sqrt(draws))
