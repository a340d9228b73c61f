r"""SGD learning curves for linear regression and linear random features.

The model (Atanasov, Bordelon, Zavatone-Veth, Paquette, Pehlevan 2025,
arXiv:2502.05074). Data ``x ~ N(0, Σ)`` in ``R^d``, labels
``y = xᵀw* + ε``, ``ε ~ N(0, σ²)``. The learner reads features ``z = Fᵀx``
(``F`` a fixed ``d×p`` matrix; linear regression is ``F = I``) and runs

    v_{t+1} = v_t − (η/B) Σ_{b∈batch t} z_b (z_bᵀ v_t − y_b),        v_0 given (default 0),

with batches of ``B`` fresh samples per step (``passes="one"``) or ``B``
distinct samples drawn uniformly, independently at each step, from one fixed
data set of ``n`` samples (``passes="multi"``; ``B = n`` is full-batch GD).
Test risk ``R(v) = E_x[(y − zᵀv)²] = (w* − Fv)ᵀΣ(w* − Fv) + σ²``; train
error ``L(v) = |Zv − y|²/n`` on the data set (multi-pass); for one-pass the
loss on the fresh batch before the update has expectation ``R(v_t)``.

**Reduction of random features to a linear model (exact).** Given ``F``,
``(z, y)`` is jointly Gaussian: ``z ~ N(0, Σ_F)``, ``Σ_F = FᵀΣF``, and with
``v* = Σ_F⁺FᵀΣw*`` the residual ``ξ = y − zᵀv*`` is uncorrelated with ``z``,
hence independent, ``ξ ~ N(0, σ² + σ_F²)``, ``σ_F² = w*ᵀΣw* − v*ᵀΣ_F v*``.
So RF-SGD is linear SGD with covariance ``Σ_F``, target ``v*`` and noise
``σ² + σ_F²``, and ``R(v) = (v − v*)ᵀΣ_F(v − v*) + σ² + σ_F²``.

**One-pass: exact moment recursion.** With ``e_t = v_t − v*`` and
``M_t = E[e_t e_tᵀ]``, the Wick identity ``E[zzᵀAzzᵀ] = 2Σ_FAΣ_F + Σ_F Tr(Σ_FA)``
and independence of the ``B`` samples give exactly

    M_{t+1} = M − η(Σ_FM + MΣ_F) + η²(1 + 1/B) Σ_FMΣ_F + (η²/B) Σ_F (Tr(Σ_FM) + σ_ξ²).

In the eigenbasis of ``Σ_F`` (eigenvalues ``λ_i``) the diagonal
``m_i = M_ii`` closes — the off-diagonal entries never feed the diagonal,
for any mean ``E[e_t]`` — into the linear recursion

    m_{t+1} = A m_t + (η²σ_ξ²/B) λ,    A = diag((1 − ηλ_i)² + η²λ_i²/B) + (η²/B) λλᵀ,

and ``E[R(t)] = λᵀm_t + σ_ξ²``: an identity at every finite ``d`` for
Gaussian data (no large-``d`` limit). ``A`` is symmetric with non-negative
diagonal, so its spectral radius is its top eigenvalue; the recursion is
stable iff ``max_i a_i < 1`` and ``(η²/B) Σ_i λ_i²/(1 − a_i) < 1`` (secular
equation of the rank-one update); otherwise :class:`StabilityError`.
Random ``F`` (``features=p``, iid ``N(0, 1/p)`` entries as
``sr.RandomFeatures``): the curve is averaged over draws of ``F``.

**Multi-pass: Volterra equation.** Conditional on the data set
(``Σ̂ = ZᵀZ/n = V diag(s) Vᵀ``, residual ``r = Zv − y``), sampling ``B`` of
``n`` without replacement gives ``E[S A S] = αA + β diag(A)``,
``α = B(B−1)/(n(n−1))``, ``β = B/n − α``, so the mean follows full-batch GD
exactly and the SGD noise covariance is exactly
``η²(n−B)/(Bn(n−1)) Zᵀ(diag(E rrᵀ) − E rrᵀ/n)Z``. The one approximation is
the closure of ``(1/n)Σ_μ r_μ² z_μz_μᵀ``:

- ``closure="gaussian"`` (default): ``≈ L Σ̂ + 2 g gᵀ`` (``L = |r|²/n``,
  ``g = Zᵀr/n``), the Wick value for a sample independent of ``v`` — it
  reproduces the one-pass recursion exactly as ``n → ∞`` and is exact at
  ``B = n``;
- ``closure="homogenized"``: ``≈ L Σ̂`` (homogenized SGD; misses the
  ``O(‖Σ̂‖/Tr Σ̂)`` Wick terms, visible with power-law spectra).

With ``c_B = η²(n−B)/(B(n−1))``, ``P = I − ηΣ̂``, ``ḡ_t`` the GD gradient, the
SGD covariance obeys ``C_{t+1} = P C_t P + c_B(L_t Σ̂ + ḡ_tḡ_tᵀ + Σ̂C_tΣ̂)``
(gaussian; the last two terms absent for homogenized), ``L_t = L_GD(t) +
Tr(Σ̂C_t)``, ``R_t = R_GD(t) + Tr(Σ_F C_t)`` — unrolled, the Volterra sums
``L_t = L_GD(t) + c_B Σ_{s<t} K_L(t−1−s) L_s + …``, ``K_L(k) = Tr(Σ̂²P^{2k})``,
``K_R(k) = Tr(Σ_FΣ̂P^{2k})``. ``B = n`` gives ``c_B = 0``: the curve is
full-batch GD, exactly. ``R_GD``, ``L_GD`` are exact on the data set; the
curve is averaged over data sets by Monte Carlo (``theory(method=
"conditional")``). The default, ``theory(method="equivalent")``, is the
proportional-limit two-point deterministic equivalent of the same closed
recursion (:mod:`symrmt.dynamics.sgd_equivalent`: resolvent forms and the
two-point ``bᵀG(λ₁)Σ_F G(λ₂)b`` derived by the engine at complex ridges,
under contour sums; linear or random ``F``, ``w_0 = 0``); at ``B = n`` it is
the engine's GD equivalent (:meth:`SGD.gd_equivalent`, the
``sr.matrix_function`` route).
Stability: ``η·max s < 2`` and the recursion of ``diag(C)`` in the ``V``
basis, ``A = diag((1−ηs)² + c_B s²) + c_B s sᵀ``, has spectral radius ``< 1``;
otherwise :class:`StabilityError` (simulated runs that diverge raise it too).

**One-pass vs full batch.** One-pass with ``B`` fresh samples is not GD on a
data set for any ``B``; ``B → ∞`` is GD on the population loss
(``m_{t,i} = (1 − ηλ_i)^{2t} m_{0,i}``).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..montecarlo import MonteCarloResult

__all__ = ["SGD", "SGDCurve", "SGDMonteCarlo", "StabilityError"]


class StabilityError(ValueError):
    """The learning rate is beyond the stability limit of the SGD recursion."""


@dataclasses.dataclass
class SGDCurve:
    """Theory curve on the step grid ``t``: ``risk`` = E[R(t)], ``train`` =
    E[L(t)] (one-pass: equal to ``risk``). ``risk_sem``/``train_sem`` are the
    standard errors of averages over ``F`` or data draws (0 when exact or
    deterministic); ``quad_error`` (multi-pass equivalent) the estimated
    contour-quadrature error."""
    t: np.ndarray
    risk: np.ndarray
    train: np.ndarray
    risk_sem: np.ndarray
    train_sem: np.ndarray
    method: str
    draws: int = 0
    quad_error: np.ndarray = None


@dataclasses.dataclass
class SGDMonteCarlo:
    """Simulated SGD: ``risk`` and ``train`` are :class:`MonteCarloResult`
    (``.mean``, ``.sem`` per ``t``; ``.grid['t']``)."""
    t: np.ndarray
    risk: MonteCarloResult
    train: MonteCarloResult


# ----------------------------------------------------------------- helpers
def _as_steps(t):
    t = np.asarray(t)
    if t.ndim > 1 or t.size == 0:
        raise ValueError(f"t: a non-empty 1-D grid of steps is needed, got shape {t.shape}")
    ti = np.round(t).astype(np.int64)
    if np.any(np.abs(t - ti) > 0) or np.any(ti < 0):
        raise ValueError("t: steps must be non-negative integers")
    return np.atleast_1d(ti)


def _radius(a, c, lam):
    """Top eigenvalue of the symmetric ``A = diag(a) + c·λλᵀ`` (``a ≥ 0``,
    ``c ≥ 0``): ``max a`` if ``c = 0``, else the root above ``max a`` of the
    secular equation ``c Σ_i λ_i²/(μ − a_i) = 1``."""
    amax = a.max()
    if c == 0 or not np.any(lam != 0):
        return amax
    f = lambda mu: c * np.sum(lam ** 2 / (mu - a)) - 1   # decreasing on (amax, ∞)
    lo, hi = amax, amax + c * np.sum(lam ** 2)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid == lo or mid == hi:
            break
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return hi


def _onepass_radius(lam, lr, B):
    """Spectral radius of the one-pass recursion ``A = diag((1 − ηλ)² + η²λ²/B) + (η²/B)λλᵀ``."""
    return _radius((1 - lr * lam) ** 2 + lr ** 2 * lam ** 2 / B, lr ** 2 / B, lam)


def _onepass_curve(lam, m0, s2eff, lr, B, steps):
    """``λᵀm_t + σ_ξ²`` at ``steps`` for the recursion ``m ← A m + (η²σ_ξ²/B)λ``.
    ``lam, m0``: arrays ``(..., k)`` (leading axes: draws of ``F``)."""
    lam, m0 = np.asarray(lam, float), np.asarray(m0, float)
    s2eff = np.asarray(s2eff, float)[..., None]
    a = (1 - lr * lam) ** 2 + lr ** 2 * lam ** 2 / B
    c = lr ** 2 / B
    out = np.empty(lam.shape[:-1] + (len(steps),))
    order = np.argsort(steps, kind="stable")
    m = m0.copy()
    cur, j = 0, 0
    for j in order:
        while cur < steps[j]:
            m = a * m + c * lam * (np.sum(lam * m, axis=-1, keepdims=True) + s2eff)
            cur += 1
        out[..., j] = np.sum(lam * m, axis=-1) + s2eff[..., 0]
    return out


def _gaussian_features(rng, d, p, size=None):
    shape = (d, p) if size is None else (size, d, p)
    return rng.standard_normal(shape) / np.sqrt(p)


class SGD:
    r"""SGD on linear regression / linear random features (module docstring
    for the model and the identities used).

    Parameters
    ----------
    Sigma : 1-D array (eigenvalues: the data basis is the eigenbasis of Σ)
        or 2-D symmetric positive semi-definite ``d×d`` array.
    target : ``w*``, length ``d`` (coordinates in that basis).
    noise : label-noise variance ``σ² ≥ 0``.
    lr : step size ``η > 0``.  batch : ``B ≥ 1``.
    passes : ``"one"`` (fresh samples each step) or ``"multi"`` (a fixed data
        set of ``n`` samples; ``B ≤ n``).
    n : data-set size (multi-pass only).
    features : ``None`` (linear regression), a ``d×p`` array ``F`` (fixed),
        or an integer ``p`` (``F`` with iid ``N(0, 1/p)`` entries, drawn anew
        for each trial).
    w0 : initial weights (length ``d``, or ``p`` with features); default 0.
    closure : multi-pass noise closure, ``"gaussian"`` (default) or
        ``"homogenized"`` (module docstring).
    """

    StabilityError = StabilityError

    def __init__(self, Sigma, target, noise=0.0, *, lr, batch=1, passes="one", n=None,
                 features=None, w0=None, closure="gaussian"):
        if closure not in ("gaussian", "homogenized"):
            raise ValueError(f"closure: 'gaussian' or 'homogenized', got {closure!r}")
        self.closure = closure
        S = np.asarray(Sigma, dtype=float)
        if S.ndim == 1:
            if np.any(S < 0) or not np.all(np.isfinite(S)):
                raise ValueError("Sigma: eigenvalues must be finite and non-negative")
        elif S.ndim == 2:
            if S.shape[0] != S.shape[1] or not np.allclose(S, S.T):
                raise ValueError(f"Sigma: a 2-D Sigma must be square and symmetric, got shape {S.shape}")
            if np.linalg.eigvalsh(S).min() < -1e-12 * max(1.0, np.abs(S).max()):
                raise ValueError("Sigma: must be positive semi-definite")
        else:
            raise ValueError(f"Sigma: 1-D eigenvalues or a 2-D matrix, got shape {S.shape}")
        self.Sigma, self.d = S, S.shape[0]
        w = np.asarray(target, dtype=float)
        if w.shape != (self.d,):
            raise ValueError(f"target: length {self.d} expected, got shape {w.shape}")
        self.target = w
        if np.ndim(noise) != 0 or not float(noise) >= 0:
            raise ValueError(f"noise: a variance σ² ≥ 0 is needed, got {noise!r}")
        self.noise = float(noise)
        if not np.ndim(lr) == 0 or not float(lr) > 0:
            raise ValueError(f"lr: a step size η > 0 is needed, got {lr!r}")
        self.lr = float(lr)
        if passes not in ("one", "multi"):
            raise ValueError(f"passes: 'one' or 'multi', got {passes!r}")
        self.passes = passes
        if int(batch) != batch or batch < 1:
            raise ValueError(f"batch: a positive integer B is needed, got {batch!r}")
        self.batch = int(batch)
        if passes == "multi":
            if n is None or int(n) != n or n < 1:
                raise ValueError(f"n: multi-pass SGD needs the data-set size n (a positive integer), got {n!r}")
            self.n = int(n)
            if self.batch > self.n:
                raise ValueError(f"batch: B = {self.batch} > n = {self.n}: a multi-pass batch draws B "
                                 "distinct samples from the n of the data set, so B ≤ n is needed")
        else:
            if n is not None:
                raise ValueError("n: one-pass SGD draws fresh samples; n applies to passes='multi' only")
            self.n = None
        if features is None:
            self.F, self.p = None, self.d
        elif np.ndim(features) == 0:
            if int(features) != features or features < 1:
                raise ValueError(f"features: an integer width p ≥ 1 or a d×p array, got {features!r}")
            self.F, self.p = int(features), int(features)
        else:
            F = np.asarray(features, dtype=float)
            if F.ndim != 2 or F.shape[0] != self.d:
                raise ValueError(f"features: a {self.d}×p array is needed, got shape {F.shape}")
            self.F, self.p = F, F.shape[1]
        if w0 is None:
            w0 = np.zeros(self.p)
        w0 = np.asarray(w0, dtype=float)
        if w0.shape != (self.p,):
            raise ValueError(f"w0: length {self.p} expected, got shape {w0.shape}")
        self.w0 = w0
        # data sampler: x = g @ L.T with Σ = L Lᵀ
        if S.ndim == 1:
            self._sqrt = np.sqrt(S)
        else:
            ev, U = np.linalg.eigh(S)
            self._sqrt = U * np.sqrt(np.clip(ev, 0, None))
        if self.F is None or not isinstance(self.F, int):
            self._check_stability_fixed()

    # ------------------------------------------------------------- basics
    @staticmethod
    def steps(t):
        """The step grid ``t`` as non-negative integers (``ValueError`` otherwise)."""
        return _as_steps(t)

    def risk(self, t):
        """The test risk ``R(v_t)`` on the grid ``t`` as a Monte Carlo
        estimand: ``sr.monte_carlo(sgd.risk(t), trials, seed)`` simulates the
        iterates of this definition (``symrmt/montecarlo/sgd_node.py``)."""
        from ..montecarlo.sgd_node import SGDEstimand
        return SGDEstimand(self, t, "risk")

    def train(self, t):
        """The train error on the grid ``t`` as a Monte Carlo estimand
        (multi-pass: ``|Zv_t − y|²/n``; one-pass: the loss on a fresh batch)."""
        from ..montecarlo.sgd_node import SGDEstimand
        return SGDEstimand(self, t, "train")

    @property
    def random_features(self):
        return isinstance(self.F, int)

    def _SigmaF(self, F):
        """``Σ_F = FᵀΣF``, ``FᵀΣw*`` and ``w*ᵀΣw*`` (``F = None``: linear)."""
        S, w = self.Sigma, self.target
        Sw = S * w if S.ndim == 1 else S @ w
        if F is None:
            SF = np.diag(S) if S.ndim == 1 else S
            return SF, Sw, float(w @ Sw)
        SF = (F.T * S) @ F if S.ndim == 1 else F.T @ S @ F
        return 0.5 * (SF + SF.T), F.T @ Sw, float(w @ Sw)

    def reduced(self, F=None):
        """The equivalent linear problem for features ``F``: eigenvalues ``λ``
        of ``Σ_F`` (modes with ``λ > 0``), the initial squared errors
        ``m_0 = (Uᵀ(v_0 − v*))²`` on them, and ``σ_ξ² = σ² + σ_F²``."""
        if F is None and self.Sigma.ndim == 1:
            lam, e0 = self.Sigma, self.w0 - self.target
            keep = lam > 0
            return lam[keep], e0[keep] ** 2, self.noise
        SF, b, wSw = self._SigmaF(F)
        lam, U = np.linalg.eigh(SF)
        tol = 1e-12 * max(lam.max(), 1e-300) * len(lam)
        keep = lam > tol
        lam, U = lam[keep], U[:, keep]
        bU = U.T @ b
        vstar_c = bU / lam                                 # v* in the eigenbasis
        s2F = max(wSw - float(bU @ vstar_c), 0.0)
        e0 = U.T @ self.w0 - vstar_c
        return lam, e0 ** 2, self.noise + s2F

    def _check_stability_fixed(self):
        if self.passes == "one":
            F = None if self.F is None else self.F
            lam, _, _ = self.reduced(F)
            self._check_onepass(lam)

    def _check_onepass(self, lam):
        rho = _onepass_radius(lam, self.lr, self.batch)
        if rho >= 1:
            raise StabilityError(
                f"lr: η = {self.lr:g} is beyond the stability limit of one-pass SGD with B = {self.batch}: "
                f"the second-moment recursion's spectral radius is {rho:.6g} ≥ 1 (the risk diverges)")

    def _check_multipass(self, s, sigma_desc="this data set"):
        lr, B, n = self.lr, self.batch, self.n
        if lr * s.max() >= 2:
            raise StabilityError(
                f"lr: η = {lr:g} is beyond the stability limit of gradient descent on {sigma_desc}: "
                f"η·‖Σ̂‖ = {lr * s.max():.6g} ≥ 2, the recursion's spectral radius max|1 − ηs| ≥ 1")
        cB = lr ** 2 * (n - B) / (B * (n - 1)) if n > 1 else 0.0
        a = (1 - lr * s) ** 2 + (cB * s ** 2 if self.closure == "gaussian" else 0)
        rho = _radius(a, cB, s)
        if rho >= 1:
            raise StabilityError(
                f"lr: η = {lr:g} is beyond the stability limit of multi-pass SGD with B = {B}, n = {n} on "
                f"{sigma_desc}: the Volterra recursion's spectral radius is {rho:.6g} ≥ 1 "
                f"({self.closure} closure; the predicted risk diverges)")
        return cB

    # ------------------------------------------------------------- theory
    def theory(self, t, *, trials=100, seed=0, features=None, data=None, method=None):
        """``E[R(t)]`` and ``E[L(t)]`` on the step grid ``t``.

        One-pass, fixed ``F`` or linear: the exact recursion (no draws).
        One-pass, random ``F``: the exact recursion conditional on each of
        ``trials`` draws of ``F`` (or on the given ``features`` list),
        averaged. Multi-pass: ``method="equivalent"`` (default) the
        proportional-limit two-point deterministic equivalent of the
        Volterra equation (:mod:`symrmt.dynamics.sgd_equivalent`; linear or
        random ``F``, ``w_0 = 0``; deterministic, no draws); ``method=
        "conditional"`` the same closed recursion conditional on each of
        ``trials`` data sets (or the given ``data`` list of ``(X, eps)`` or
        ``(X, eps, F)``), averaged, sem over the draws. Both use the
        ``closure`` of the SGD noise (module docstring): an approximation
        except at ``B = n``."""
        steps = _as_steps(t)
        rng = np.random.default_rng(seed)
        if self.passes == "one":
            if method not in (None, "exact"):
                raise ValueError(f"method: one-pass curves are exact recursions (method=None), got {method!r}")
            if not self.random_features:
                lam, m0, s2 = self.reduced(self.F)
                r = _onepass_curve(lam, m0, s2, self.lr, self.batch, steps)
                z = np.zeros_like(r)
                return SGDCurve(steps, r, r.copy(), z, z.copy(), "one-pass exact recursion", 0)
            Fs = features if features is not None else [
                _gaussian_features(rng, self.d, self.p) for _ in range(int(trials))]
            curves = []
            for F in Fs:
                lam, m0, s2 = self.reduced(np.asarray(F))
                self._check_onepass(lam)
                curves.append(_onepass_curve(lam, m0, s2, self.lr, self.batch, steps))
            return self._average(steps, curves, curves, "one-pass exact recursion given F, averaged over F")
        method = "equivalent" if method is None else method
        if method not in ("equivalent", "conditional"):
            raise ValueError(f"method: 'equivalent' or 'conditional' for multi-pass SGD, got {method!r}")
        if method == "equivalent":
            if data is not None or features is not None:
                raise ValueError("data, features: the equivalent is deterministic (method='conditional' takes draws)")
            R, L, err = self.equivalent(steps)
            z = np.zeros(len(steps))
            return SGDCurve(steps, R, L, z, z.copy(), f"multi-pass two-point deterministic equivalent "
                            f"({self.closure} closure)", 0, quad_error=err)
        draws = data if data is not None else self._draw_data(rng, int(trials))
        R, L = [], []
        for i in range(0, len(draws), 16):
            part = draws[i:i + 16]
            Xs = np.stack([dr[0] for dr in part])
            es = np.stack([dr[1] for dr in part])
            Fs = None if (len(part[0]) < 3 or part[0][2] is None) else np.stack([dr[2] for dr in part])
            r, l = self.conditional(steps, Xs, es, Fs)
            R.extend(r)
            L.extend(l)
        return self._average(steps, R, L, f"multi-pass Volterra ({self.closure} closure) given the data "
                                          "set, averaged over data sets")

    def equivalent(self, t, *, nodes=None, rtol=1e-10):
        """Multi-pass curves from the two-point deterministic equivalent
        (:class:`~symrmt.dynamics.sgd_equivalent.MultiPassEquivalent`):
        ``(risk, train, quad_error)`` on the grid ``t``. Linear regression or
        random ``F`` (``features=p``), ``w_0 = 0``; otherwise
        ``NotImplementedError``."""
        from .sgd_equivalent import MultiPassEquivalent
        if self.passes != "multi":
            raise ValueError("equivalent: defined for passes='multi' (one-pass curves are exact: use theory)")
        if self.F is not None and not self.random_features:
            raise NotImplementedError("equivalent: a fixed feature matrix F is not a random object of the engine; "
                                      "use features=p (random F) or method='conditional'")
        if np.any(self.w0 != 0):
            raise NotImplementedError("equivalent: derived for w0 = 0 (the GD mean g_t(Σ̂)b); "
                                      "use method='conditional'")
        steps = _as_steps(t)
        if self.Sigma.ndim == 1:
            s, w = self.Sigma, self.target
        else:                                   # the law of the data is rotation invariant: Σ's eigenbasis
            s, U = np.linalg.eigh(self.Sigma)
            s, w = np.clip(s, 0, None), U.T @ self.target
        key = (int(steps.max()), nodes, rtol)
        cache = self.__dict__.setdefault("_equivalents", {})
        eq = cache.get(key)
        if eq is None:
            eq = cache[key] = MultiPassEquivalent(s, w, self.noise, self.n, features=self.F, lr_max=self.lr,
                                                  t_max=int(steps.max()), nodes=nodes, rtol=rtol)
        return eq.curve(steps, self.lr, self.batch, closure=self.closure)

    @staticmethod
    def _average(steps, R, L, method):
        R, L = np.array(R), np.array(L)
        k = len(R)
        sem = lambda a: a.std(axis=0, ddof=1) / np.sqrt(k) if k > 1 else np.zeros(a.shape[1:])
        return SGDCurve(steps, R.mean(0), L.mean(0), sem(R), sem(L), method, k)

    def _draw_data(self, rng, trials):
        out = []
        for _ in range(trials):
            X = rng.standard_normal((self.n, self.d)) @ (np.diag(self._sqrt) if self._sqrt.ndim == 1
                                                         else self._sqrt.T)
            eps = np.sqrt(self.noise) * rng.standard_normal(self.n)
            F = _gaussian_features(rng, self.d, self.p) if self.random_features else self.F
            out.append((X, eps, F))
        return out

    def conditional(self, t, X, eps, F=None):
        """Multi-pass curves ``(E[R(t)], E[L(t)])`` over batch sampling,
        conditional on the data set ``X`` (``n×d``, rows ``x_μ`` in the
        basis of ``Sigma``), label noise ``eps`` and features ``F``; leading
        axes of ``X``/``eps``/``F`` stack several data sets (module docstring:
        the mean is GD exactly; the SGD noise by the Volterra closure)."""
        if self.passes != "multi":
            raise ValueError("conditional: defined for passes='multi' (one-pass curves are exact: use theory)")
        steps = _as_steps(t)
        X, eps = np.asarray(X, float), np.asarray(eps, float)
        single = X.ndim == 2
        X, eps = np.atleast_3d(X.T).T if single else X, np.atleast_2d(eps)
        if X.shape[1:] != (self.n, self.d) or eps.shape != X.shape[:2]:
            raise ValueError(f"X, eps: shapes (…, {self.n}, {self.d}) and (…, {self.n}) expected, "
                             f"got {X.shape} and {eps.shape}")
        if F is None and self.random_features:
            raise ValueError("F: random features need the draw F of this data set")
        F = self.F if F is None else np.asarray(F, float)
        k = X.shape[0]
        if F is None:
            Z, Fk = X, None
        else:
            Fk = np.broadcast_to(F, (k,) + F.shape[-2:])
            Z = X @ Fk
        y = X @ self.target + eps
        n, lr = self.n, self.lr
        s, V = np.linalg.eigh(np.swapaxes(Z, 1, 2) @ Z / n)
        s = np.clip(s, 0, None)
        cB = max(self._check_multipass(si) for si in s)
        SW = [self._SigmaF(None if Fk is None else Fk[i]) for i in range(k)]
        SF = np.stack([x[0] for x in SW])
        Sw = np.stack([x[1] for x in SW])
        wSw = np.array([x[2] for x in SW])
        VT = np.swapaxes(V, 1, 2)
        b = np.einsum("kij,knj,kn->ki", VT, Z, y) / n
        v = np.einsum("kij,j->ki", VT, self.w0)
        yy = np.einsum("kn,kn->k", y, y) / n
        SFV = VT @ SF @ V                                  # Σ_F in the V basis
        wV = np.einsum("kij,kj->ki", VT, Sw)               # FᵀΣw* in the V basis
        q = 1 - lr * s
        qq = q[:, :, None] * q[:, None, :]
        ss = s[:, :, None] * s[:, None, :]
        p = s.shape[1]
        C = np.zeros((k, p, p))                            # SGD covariance of v in the V basis
        diag = np.arange(p)
        R = np.empty((k, len(steps)))
        L = np.empty((k, len(steps)))
        order = np.argsort(steps, kind="stable")
        cur = 0
        lgd = lambda v: np.einsum("ki,ki->k", v, s * v) - 2 * np.einsum("ki,ki->k", b, v) + yy
        rgd = lambda v: (wSw - 2 * np.einsum("ki,ki->k", wV, v) + np.einsum("ki,kij,kj->k", v, SFV, v)
                         + self.noise)
        for j in order:
            while cur < steps[j]:
                Cd = C[:, diag, diag]
                lt = lgd(v) + np.einsum("ki,ki->k", s, Cd)    # L_t: mean + SGD fluctuation
                g = s * v - b                              # full-batch gradient at the mean
                if self.closure == "gaussian":
                    C = qq * C + cB * (g[:, :, None] * g[:, None, :] + ss * C)
                else:
                    C = qq * C
                C[:, diag, diag] += cB * lt[:, None] * s
                v = v - lr * g
                cur += 1
            R[:, j] = rgd(v) + np.einsum("kij,kij->k", SFV, C)
            L[:, j] = lgd(v) + np.einsum("ki,ki->k", s, C[:, diag, diag])
        return (R[0], L[0]) if single else (R, L)

    # ------------------------------------------------------------- engine
    def gd_equivalent(self, t, train=True):
        """Deterministic equivalent (proportional limit) of full-batch GD
        (multi-pass, ``B = n``, linear, ``w_0 = 0``): the engine's
        ``sr.matrix_function`` route, ``w_t = g_t(Σ̂)Xᵀy/n``,
        ``g_t(x) = (1 − (1 − ηx)^t)/x``; returns ``(risk, train)`` arrays.
        ``train=False``: the risk only (train entries NaN). ``B < n`` (the
        Volterra noise term): ``NotImplementedError`` here — see
        :meth:`equivalent`."""
        if self.passes != "multi" or self.batch != self.n:
            raise NotImplementedError(
                "gd_equivalent: the multi-pass SGD noise term c_B Σ_s K(t−1−s) L_s is not a matrix function "
                "of Σ̂ (this route is full-batch GD, B = n, only); its equivalent is SGD.equivalent / "
                "theory(method='equivalent')")
        if self.F is not None or np.any(self.w0 != 0):
            raise NotImplementedError("gd_equivalent: linear model with w0 = 0 only "
                                      "(matrix_function of a feature-space core is refused by the engine)")
        import symrmt as sr
        n_, d_ = sr.dims("n d")
        lr_, s2_ = sr.scalar("lr_sgd"), sr.scalar("sigma2_sgd")
        Sig = sr.Covariance("Sigma", d_)
        w = sr.Vector("wstar", d_)
        X = sr.GaussianData("X", n_, Sig)
        eps = sr.GaussianNoise("eps", n_, s2_)
        Sh = X.T * X / n_
        risk, trains = [], []
        for tt in _as_steps(t):
            tt = int(tt)
            if tt == 0:
                wt = None
            else:
                wt = sr.matrix_function(lambda x, k=tt: (1 - (1 - lr_ * x) ** k) / x, Sh) \
                    * X.T * (X * w + eps) / n_
            b = dict(Sigma=self.Sigma, n=self.n, wstar=self.target, sigma2_sgd=self.noise, lr_sgd=self.lr)
            if wt is None:
                wSw = float(self.target @ (self.Sigma * self.target if self.Sigma.ndim == 1
                                           else self.Sigma @ self.target))
                risk.append(wSw + self.noise)
                trains.append(wSw + self.noise)
                continue
            rexpr = (wt - w).T * Sig * (wt - w) + s2_
            res = X * wt - X * w - eps
            lexpr = res.T * res / n_
            out = []
            for e in ((rexpr, lexpr) if train else (rexpr,)):
                r = sr.deterministic_equivalent(e).compile().solve(**b)
                if not np.all(r.success):
                    raise ArithmeticError(f"gd_equivalent: the contour quadrature did not converge at t = {tt}")
                out.append(float(r.value))
            risk.append(out[0])
            trains.append(out[1] if train else np.nan)
        return np.array(risk), np.array(trains)

    # ------------------------------------------------------------- simulation
    def monte_carlo(self, t, *, trials=100, seed=0, executor=None, progress=False):
        """Simulate the SGD iterates from the definition: ``trials``
        independent runs (fresh data/features/batches per run) through
        ``sr.monte_carlo``'s SGD estimand (``symrmt/montecarlo/sgd_node.py``;
        ``sr.monte_carlo(self.risk(t))`` gives the risk alone); returns
        :class:`SGDMonteCarlo` with the exact test risk ``R(v_t)`` and the
        train error (multi-pass: ``|Zv_t − y|²/n``; one-pass: the loss on the
        next fresh batch, whose mean is ``E[R(v_t)]``) of the same runs."""
        from ..montecarlo.sgd_node import run_sgd
        steps = _as_steps(t)
        if not (isinstance(trials, (int, np.integer)) and trials >= 2):
            raise ValueError(f"trials: at least 2 runs are needed for a standard error, got {trials!r}")
        out = run_sgd(self, steps, int(trials), seed, executor, progress)
        return SGDMonteCarlo(steps, out["risk"], out["train"])

    def _sample_x(self, rng, shape):
        g = rng.standard_normal(shape + (self.d,))
        return g * self._sqrt if self._sqrt.ndim == 1 else g @ self._sqrt.T

    def _simulate(self, rng, k, steps):
        d, p, B, lr = self.d, self.p, self.batch, self.lr
        S, w = self.Sigma, self.target
        sd = np.sqrt(self.noise)
        if self.random_features:
            F = _gaussian_features(rng, d, p, size=k)                     # (k, d, p)
        elif self.F is not None:
            F = np.broadcast_to(self.F, (k, d, p))
        else:
            F = None
        feat = (lambda x: x) if F is None else (lambda x: np.einsum("k...d,kdp->k...p", x, F))
        v = np.broadcast_to(self.w0, (k, p)).copy()

        def risk(v):
            u = w - (v if F is None else np.einsum("kdp,kp->kd", F, v))
            return np.einsum("kd,kd->k", u, S * u if S.ndim == 1 else u @ S) + self.noise

        R = np.empty((k, len(steps)))
        L = np.empty((k, len(steps)))
        order = np.argsort(steps, kind="stable")
        cur = 0
        if self.passes == "multi":
            n = self.n
            X = self._sample_x(rng, (k, n))
            Y = X @ w + sd * rng.standard_normal((k, n))
            Z = feat(X)
            rows = np.arange(k)[:, None]
        elif self.random_features:
            for Fi in F:
                self._check_onepass(self.reduced(Fi)[0])
        for j in order:
            while cur < steps[j]:
                if self.passes == "one":
                    x = self._sample_x(rng, (k, B))
                    yb = x @ w + sd * rng.standard_normal((k, B))
                    zb = feat(x)
                else:
                    if B == n:
                        zb, yb = Z, Y
                    elif B == 1:
                        idx = rng.integers(0, n, size=(k, 1))
                        zb, yb = Z[rows, idx], Y[rows, idx]
                    else:
                        idx = np.argpartition(rng.random((k, n)), B - 1, axis=1)[:, :B]
                        zb, yb = Z[rows, idx], Y[rows, idx]
                resid = np.einsum("kbp,kp->kb", zb, v) - yb
                v = v - (lr / B) * np.einsum("kbp,kb->kp", zb, resid)
                cur += 1
            R[:, j] = risk(v)
            if self.passes == "multi":
                L[:, j] = np.mean((np.einsum("knp,kp->kn", Z, v) - Y) ** 2, axis=1)
            else:
                x = self._sample_x(rng, (k, B))
                yb = x @ w + sd * rng.standard_normal((k, B))
                L[:, j] = np.mean((np.einsum("kbp,kp->kb", feat(x), v) - yb) ** 2, axis=1)
        return R, L

    def __repr__(self):
        model = ("linear" if self.F is None else
                 f"random features p={self.p}" + (" (random F)" if self.random_features else " (fixed F)"))
        data = "fresh samples" if self.passes == "one" else f"n={self.n}"
        return f"SGD({model}, d={self.d}, η={self.lr:g}, B={self.batch}, {self.passes}-pass, {data}, σ²={self.noise:g})"
