"""Pooled ridge regression on two independent Gaussian blocks (shared by the
recipes ``model_collapse`` and ``bias_amplification``).

Model: block ``k ∈ {1, 2}`` has ``n_k`` rows ``x ~ N(0, Σ_k)`` (``Σ_1``,
``Σ_2`` arbitrary, possibly non-commuting: a 2-D array binds the full
matrix) and labels ``y = Xₖ aₖ + εₖ``, ``εₖ ~ N(0, s_k)``. Pooled ridge,
``N = n₁ + n₂``:

    ŵ = G (X₁ᵀy₁ + X₂ᵀy₂)/N,   G = (Σ̂ + λ)⁻¹,   Σ̂ = Σ̂₁ + Σ̂₂,  Σ̂ₖ = XₖᵀXₖ/N.

Test error against a teacher ``c`` under a test covariance ``T`` (excess
over the test noise): ``E = (ŵ − c)ᵀ T (ŵ − c)``. With ``Δₖ = aₖ − c`` and
``Σ̂c = (Σ̂ + λ)c − λc``, exactly

    ŵ − c = −λGc + GΣ̂₁Δ₁ + GΣ̂₂Δ₂ + G(X₁ᵀε₁ + X₂ᵀε₂)/N.

Here ``Δ₁ = 0`` (the test teacher is block 1's teacher; swap the blocks'
bindings for the other group), so averaging the noise (Wick):

    E[E] = λ² cᵀGTGc − 2λ cᵀGTGΣ̂₂Δ + ΔᵀΣ̂₂GTGΣ̂₂Δ + (s₁/N)Tr(TGΣ̂₁G) + (s₂/N)Tr(TGΣ̂₂G).

Every term is a **source derivative of a one-point resolvent** (identity
``∂_z (A + zT)⁻¹ = −(A+zT)⁻¹T(A+zT)⁻¹``): with

    R(z, t₁, t₂) = (t₁Σ̂₁ + t₂Σ̂₂ + λ + zT)⁻¹,    G = R(0, 1, 1),

``cᵀGTGc = −∂_z cᵀRc``, ``cᵀGTGΣ̂₂Δ = −∂_z cᵀRΣ̂₂Δ``,
``ΔᵀΣ̂₂GTGΣ̂₂Δ = −∂_z ΔᵀΣ̂₂RΣ̂₂Δ``, ``Tr(TGΣ̂ₖG) = −∂_{tₖ} Tr(TR)``.
The one-point equivalents of these four generating functions are derived by
``sr.deterministic_equivalent`` (the pooled-block law: one ``δₖ`` per block,
``R ≃ (λ + zT + Σₖ tₖ(nₖ/N)Σₖ/(1+δₖ))⁻¹``) and their derivatives are taken
numerically (4th-order finite differences, step ``h``: error ``O(h⁴)``,
bounded by the spread between steps ``h`` and ``2h``).

Why not derive ``E`` directly: two-point products of the pooled resolvent
(``wᵀGTGw``) do not finish deriving in the engine today (killed after 5 min);
see the recipes' reports.
"""
from __future__ import annotations

import numpy as np

import symrmt as sr


class PooledRidge:
    """Symbols, the risk expression (simulated by Monte Carlo) and the four
    one-point generating functions (derived)."""

    def __init__(self):
        self.n1, self.n2, self.d = sr.dims("n1 n2 d")
        self.lam, self.z = sr.scalar("lam"), sr.scalar("z")
        self.t1, self.t2 = sr.scalar("t1"), sr.scalar("t2")
        self.s1, self.s2 = sr.scalar("s1"), sr.scalar("s2")
        d = self.d
        self.Sigma1 = sr.Covariance("Sigma1", d)
        self.Sigma2 = sr.Covariance("Sigma2", d)
        self.T = sr.Covariance("T", d)            # test covariance
        self.c = sr.Vector("wT", d)                # test teacher = block-1 teacher
        self.Delta = sr.Vector("Delta", d)        # block-2 teacher − c
        self.N = self.n1 + self.n2

    # ------------------------------------------------------------ the model as written
    def risk_expression(self, noise=True):
        """``(ŵ − c)ᵀT(ŵ − c)``, ``ŵ`` the pooled ridge estimator — the
        expression Monte Carlo samples."""
        X1 = sr.GaussianData("X1", self.n1, self.Sigma1)
        X2 = sr.GaussianData("X2", self.n2, self.Sigma2)
        y1, y2 = X1 * self.c, X2 * (self.c + self.Delta)
        if noise:
            y1 = y1 + sr.GaussianNoise("eps1", self.n1, self.s1)
            y2 = y2 + sr.GaussianNoise("eps2", self.n2, self.s2)
        G = ((X1.T * X1 + X2.T * X2) / self.N + self.lam * sr.I(self.d)).inverse()
        w_hat = G * (X1.T * y1 + X2.T * y2) / self.N
        return (w_hat - self.c).T * self.T * (w_hat - self.c)

    def generating_expressions(self):
        X1 = sr.GaussianData("X1", self.n1, self.Sigma1)
        X2 = sr.GaussianData("X2", self.n2, self.Sigma2)
        N, c, D = self.N, self.c, self.Delta
        R = ((self.t1 * X1.T * X1 + self.t2 * X2.T * X2) / N + self.lam * sr.I(self.d) + self.z * self.T).inverse()
        S2D = X2.T * X2 * D / N
        return {
            "cRc": c.T * R * c,
            "cRS2D": c.T * R * S2D,
            "DS2RS2D": S2D.T * R * S2D,
            "TrTR": sr.Tr(self.T * R),
        }

    def derive(self, log=print):
        import time
        self.exprs = self.generating_expressions()
        self.des, self.fns, self.derive_seconds = {}, {}, {}
        for k, e in self.exprs.items():
            t0 = time.perf_counter()
            self.des[k] = sr.deterministic_equivalent(e)
            self.derive_seconds[k] = time.perf_counter() - t0
            self.fns[k] = self.des[k].compile()
            log(f"  derived {k:<8} in {self.derive_seconds[k]:.2f} s")
        return self.des

    # ------------------------------------------------------------ theory
    def _call(self, key, b, **over):
        import sympy as sp
        de = self.des[key]
        names = {getattr(a, "name", None) for a in sp.preorder_traversal(de.expr)}
        args = {k: v for k, v in {**b, **dict(z=0.0, t1=1.0, t2=1.0), **over}.items() if k in names}
        return np.asarray(self.fns[key](**args), dtype=float)

    def _deriv(self, key, b, var, h):
        """4th-order finite difference of a generating function in ``var`` at
        ``z = 0, t = 1``: central in ``t``; one-sided (forward,
        ``(−25f₀ + 48f₁ − 36f₂ + 16f₃ − 3f₄)/(12h)``) in ``z``, which the engine
        declares positive."""
        if var == "z":
            f = [self._call(key, b, z=k * h) for k in range(5)]
            return (-25 * f[0] + 48 * f[1] - 36 * f[2] + 16 * f[3] - 3 * f[4]) / (12 * h)
        f = lambda x: self._call(key, b, **{var: 1.0 + x})  # noqa: E731
        return (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)

    def risk_terms(self, b, h=None):
        """The five terms of ``E[E]`` (dict) and their sum, at bindings ``b``
        (``lam`` may be an array). ``h`` defaults to ``1e-3·λ`` for ``z``
        (relative to the ridge) and ``1e-3`` for ``t``."""
        lam = np.asarray(b["lam"], dtype=float)
        N = b["n1"] + b["n2"]
        hz = 1e-3 * float(np.min(lam)) if h is None else h
        ht = 1e-3 if h is None else h
        terms = {
            "bias": lam ** 2 * -self._deriv("cRc", b, "z", hz),
            "cross": -2 * lam * -self._deriv("cRS2D", b, "z", hz),
            "shift": -self._deriv("DS2RS2D", b, "z", hz),
            "noise1": b["s1"] / N * -self._deriv("TrTR", b, "t1", ht),
            "noise2": b["s2"] / N * -self._deriv("TrTR", b, "t2", ht),
        }
        terms["risk"] = sum(terms.values())
        return terms

    def risk(self, b):
        return self.risk_terms(b)["risk"]

    def risk_with_error(self, b):
        """``(risk, |risk(h) − risk(2h)|)``: the second bounds the
        finite-difference error (4th order: the error at ``h`` is ~1/16 of it)."""
        lam = float(np.min(np.asarray(b["lam"], dtype=float)))
        r1 = self.risk_terms(b)["risk"]
        r2 = self._risk_at(b, 2e-3 * lam, 2e-3)
        return r1, np.abs(r1 - r2)

    def _risk_at(self, b, hz, ht):
        lam = np.asarray(b["lam"], dtype=float)
        N = b["n1"] + b["n2"]
        return (lam ** 2 * -self._deriv("cRc", b, "z", hz) + 2 * lam * self._deriv("cRS2D", b, "z", hz)
                - self._deriv("DS2RS2D", b, "z", hz) - b["s1"] / N * self._deriv("TrTR", b, "t1", ht)
                - b["s2"] / N * self._deriv("TrTR", b, "t2", ht))


def dense_risk_mc(b, trials, seed):
    """Independent dense NumPy Monte Carlo of the pooled ridge excess risk
    (draw ``X₁, X₂, ε₁, ε₂``, solve, evaluate ``(ŵ−c)ᵀT(ŵ−c)``); 1-D arrays
    are eigenvalues in the common basis, 2-D arrays full matrices. Returns
    ``(mean, sem)`` over ``trials`` (per ``lam`` when ``lam`` is an array)."""
    rng = np.random.default_rng(seed)

    def mat(a):
        a = np.asarray(a, dtype=float)
        return np.diag(a) if a.ndim == 1 else a

    S1, S2, T = mat(b["Sigma1"]), mat(b["Sigma2"]), mat(b["T"])
    R1, R2 = np.linalg.cholesky(S1), np.linalg.cholesky(S2)
    n1, n2 = int(b["n1"]), int(b["n2"])
    N = n1 + n2
    d = S1.shape[0]
    c, D = np.asarray(b["wT"], float), np.asarray(b["Delta"], float)
    lams = np.atleast_1d(np.asarray(b["lam"], dtype=float))
    vals = np.empty((trials, lams.size))
    for t in range(trials):
        X1 = rng.standard_normal((n1, d)) @ R1.T
        X2 = rng.standard_normal((n2, d)) @ R2.T
        y1 = X1 @ c + np.sqrt(b["s1"]) * rng.standard_normal(n1)
        y2 = X2 @ (c + D) + np.sqrt(b["s2"]) * rng.standard_normal(n2)
        Sh = (X1.T @ X1 + X2.T @ X2) / N
        rhs = (X1.T @ y1 + X2.T @ y2) / N
        ev, U = np.linalg.eigh(Sh)
        r = U.T @ rhs
        for j, lam in enumerate(lams):
            e = U @ (r / (ev + lam)) - c
            vals[t, j] = e @ T @ e
    return vals.mean(0), vals.std(0, ddof=1) / np.sqrt(trials)


def compare(model, b, trials, seed, d, label, ratio, c_tol, k_tol=4.0):
    """Theory (derived, finite differences) vs an independent dense NumPy
    Monte Carlo of ``E`` (``dense_risk_mc``: draw, solve, evaluate) at
    bindings ``b`` (scalar ``lam``): one ``Row`` (the table's σ² column
    holds λ) and the finite-difference error bound."""
    from _common import Row
    th, fd_err = model.risk_with_error(b)
    mean, sem = dense_risk_mc(b, trials, seed)
    row = Row(label, d, ratio, float(b["lam"]), float(th), float(mean[0]), float(sem[0]), trials, c=c_tol, k=k_tol)
    return row, float(fd_err)


def eigen_bindings(d, alpha=1.0):
    """Power-law spectrum ``i^{-α}`` (top eigenvalue 1)."""
    return np.arange(1, int(d) + 1, dtype=float) ** -float(alpha)


def teacher(d, seed, norm=1.0):
    """A random teacher with ``‖w‖ = norm`` (fixed by ``seed``)."""
    w = np.random.default_rng(seed).standard_normal(int(d))
    return norm * w / np.linalg.norm(w)
