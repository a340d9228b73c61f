"""The formulas of Wang, Zavatone-Veth, Pehlevan, *A random matrix theory perspective on the
consistency of diffusion models* (arXiv:2602.02908), coded independently in plain NumPy/SciPy
(no symrmt import) — the reference the recipe ``diffusion_consistency.py`` is audited against.

Sources: the paper's project page (its "four equations") and its own toolkit
``github.com/Animadversio/diffusion-consistency-rmt`` (``rmt_core/rmt_sc_lib.py``,
``rmt_core/rmt_kappa_int_lib.py``, ``rmt_core/linear_denoiser_lib.py``), read, not imported.

Model (the paper's): data ``x_i ~ N(μ, Σ)``, ``i = 1 … n``; the learned linear denoiser and the
probability-flow sampling map of the variance-exploding process

    D̂(x; σ)      = μ̂ + Σ̂(Σ̂ + σ²)⁻¹(x − μ̂),
    x*(x_T; σ)   = μ̂ + (Σ̂ + σ²)^{1/2}(Σ̂ + σ_T²)^{−1/2}(x_T − μ̂)

(the toolkit's ``build_wiener_matrix`` / ``wiener_gen_X``: ``x_T = σ_T z``, ``z ~ N(0, I)``).

Equations coded (names as on the paper's page; ``tr = Tr/d``, ``γ = d/n``):

(E1) renormalised noise (Silverstein):  ``κ − σ² = γ κ tr[Σ(Σ+κ)⁻¹]``  ⇔  ``κ(1 − df₁(κ)/n) = σ²``,
     ``df₁(κ) = Tr[Σ(Σ+κ)⁻¹]`` (toolkit ``solve_kappa``: ``κ − z = γ Σ_k w_k κλ_k/(κ+λ_k)``, ``w_k = 1/p``).
     Note: for ``γ > 1`` the equation also has a negative root ``≈ −z/(γ − 1)``; the toolkit's NumPy
     ``solve_kappa`` started from its default guess ``z`` converges to it (its README example,
     Gamma(2,1) spectrum d = 512, γ = 3.1, z = 0.01, one draw: ``−4.73e-3`` instead of ``+3.45``), while its
     mpmath class (guess ``z + γμ₁``) finds the positive root — equal to :func:`kappa` to 1e-15;
(E2) expected denoiser:  ``E D̂(x) ≍ μ + Σ(Σ+κ)⁻¹(x − μ)``;
(E3) factorised variance law:  ``Var[vᵀD̂(x)] ≍ κ²/(n − df₂(κ)) · ◇(v) · ◇(x − μ)``,
     ``◇(u) = uᵀ(Σ+κ)⁻²Σu``, ``df₂(κ) = Tr[Σ²(Σ+κ)⁻²]``;
(E4) fractional powers:  ``Σ̂^{1/2} ≍ (2/π)∫₀^∞ Σ(Σ + κ(u²))⁻¹ du`` (toolkit
     ``grid1d_integrate_mat_sqrt_kappa_gauss``), and the toolkit's variance of the generated sample
     (``grid2d_integrate_var_kappa_gauss``), the σ → 0, σ_T → ∞ end of the trajectory, averaged
     over the seed ``z``:
     ``E_z Var[e_kᵀΣ̂^{1/2}z] ≍ (4/π²)∫∫ κκ' Tr[Σ(Σ+κ)⁻¹(Σ+κ')⁻¹]/(n − df₂(κ,κ')) ·
     e_kᵀΣ(Σ+κ)⁻¹(Σ+κ')⁻¹e_k du dv``, ``κ = κ(u²)``, ``κ' = κ(v²)``,
     ``df₂(κ,κ') = Tr[Σ²(Σ+κ)⁻¹(Σ+κ')⁻¹]``.

What this module adds (stated as such, each an identity or the paper's own two-point rule):

* the sampling map at any ``0 ≤ σ² < σ_T²`` through the Stieltjes representation (checked in
  :func:`check_stieltjes`) ``√((s+a)/(s+b)) = 1 − (1/π)∫_a^b √((t−a)/(b−t)) dt/(s+t)``, so
  ``E g(Σ̂) ≍ I − (1/π)∫_a^b √((t−a)/(b−t)) (κ(t)/t)(Σ+κ(t))⁻¹ dt`` (one-point rule
  ``tĜ(t) ≍ κ(t)(Σ+κ(t))⁻¹`` at real ridges ``t ∈ [σ², σ_T²]``), and its variance by the same
  two-point rule as (E3)/(E4) under the double integral;
* the *second Wick pairing*: for a fixed input, ``Cov[vᵀĜ(t)y, vᵀĜ(t')y]`` has two pairings,
  ``(vᵀNv)(yᵀNy) + (vᵀNy)²`` (``N = Σ(Σ+κ)⁻¹(Σ+κ')⁻¹``); (E3) keeps the first. The second is
  ``O(1/d)`` relative for a spread input but *equal to the first* for an input along the read-out
  mode; dense Monte Carlo (:func:`mc_denoiser_variance`) decides — see the recipe's report;
* mean estimated (``μ̂`` the sample mean, ``Σ̂`` centred, normalised by ``n − 1``): ``Σ̂`` is then
  ``Wishart(m = n − 1)/m``, independent of ``δ = μ̂ − μ ~ N(0, Σ/n)``; so ``n → m`` in (E1)–(E4)
  and the δ term adds ``σ⁴E[vᵀĜδδᵀĜv] = (σ⁴/n)E[vᵀĜΣĜv]`` (two pairings as above), i.e.
  ``κ²/(m − df₂)·[◇(v)·(m/n) + vᵀMΣMv/n]``, ``M = Σ(Σ+κ)⁻²``. The paper's κ uses ``γ = d/n``
  (no Bessel correction): a relative ``O(1/n)`` difference, quoted in the report.
"""
from __future__ import annotations

import numpy as np

__all__ = ["kappa", "expected_denoiser", "denoiser_variance", "sqrt_expectation_toolkit",
           "sample_variance_toolkit", "map_expectation", "map_variance", "mc_denoiser_variance",
           "check_stieltjes"]


# ------------------------------------------------------------------ spectra
def _eig(Sigma):
    """``(s, U)`` with ``Σ = U diag(s) Uᵀ``; a 1-D ``Sigma`` is the diagonal (``U = I``)."""
    S = np.asarray(Sigma, dtype=float)
    if S.ndim == 1:
        return S, None
    s, U = np.linalg.eigh(S)
    return s, U


def _rot(U, u):
    return np.asarray(u, dtype=float) if U is None else U.T @ np.asarray(u, dtype=float)


# ------------------------------------------------------------------ (E1)
def kappa(sigma2, s, n):
    """(E1): the root ``κ > 0`` of ``h(κ) = κ − (κ/n)Σ_k s_k/(s_k + κ) = σ²`` for every ``σ²``
    at once. ``h`` is convex with ``h(0) = 0``, so for ``σ² > 0`` the positive root is unique and
    bracketed by ``[σ², σ² + Tr Σ/n]`` (``h(σ²) < σ²``, ``h(σ² + Tr Σ/n) ≥ σ²``): geometric
    bisection (midpoint ``√(lo·hi)``) to full double precision. ``σ² = 0``: ``κ = 0`` for
    ``n ≥ d``, else the positive root of ``Σ_k s_k/(s_k+κ) = n`` (same bisection)."""
    s = np.asarray(s, dtype=float)
    z = np.atleast_1d(np.asarray(sigma2, dtype=float)).ravel()
    if np.any(z < 0) or not np.all(np.isfinite(z)):
        raise ValueError(f"sigma2 must be finite and >= 0, got {z[(z < 0) | ~np.isfinite(z)][:3]}")
    out = np.zeros_like(z)
    pos = z > 0
    lo, hi = z[pos].copy(), z[pos] + s.sum() / n
    zp = z[pos]
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        below = mid - mid * (s[:, None] / (s[:, None] + mid[None, :])).sum(axis=0) / n < zp
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        if np.all(hi - lo <= 2e-16 * hi):
            break
    out[pos] = np.sqrt(lo * hi)
    if np.any(~pos) and n < s.size:
        a, b = np.array([s.min() * 1e-300 + 1e-300]), np.array([s.sum()])
        for _ in range(2000):
            mid = np.sqrt(a * b)
            big = np.sum(s / (s + mid)) > n          # df₁(mid) > n: the root is larger
            a, b = np.where(big, mid, a), np.where(big, b, mid)
            if b[0] - a[0] <= 2e-16 * b[0]:
                break
        out[~pos] = np.sqrt(a * b)[0]
    return out


# ------------------------------------------------------------------ (E2), (E3)
def expected_denoiser(Sigma, mu, v, x, n, sigma2):
    """(E2): ``vᵀμ + vᵀΣ(Σ+κ)⁻¹(x − μ)`` at ``κ = κ(σ²)``."""
    s, U = _eig(Sigma)
    vv, y = _rot(U, v), _rot(U, np.asarray(x) - np.asarray(mu))
    k = kappa(sigma2, s, n)
    return float(np.dot(v, mu)) + np.array([np.sum(vv * s / (s + kk) * y) for kk in k])


def denoiser_variance(Sigma, mu, v, x, n, sigma2, mean="known", pairings=2):
    """(E3) ``κ²/(m − df₂)·◇(v)·◇(x − μ)`` (``pairings=1``: the paper's law as printed), plus
    the second pairing ``κ²/(m − df₂)·(vᵀM(x−μ))²`` (``pairings=2``), ``M = Σ(Σ+κ)⁻²``.
    ``mean="estimated"``: ``m = n − 1`` and the δ term ``κ²/(m − df₂)·[◇(v)·m/n + vᵀMΣMv/n]``
    (its second pairing only with ``pairings=2``)."""
    s, U = _eig(Sigma)
    vv, y = _rot(U, v), _rot(U, np.asarray(x) - np.asarray(mu))
    m = n if mean == "known" else n - 1
    out = []
    for kk in kappa(sigma2, s, m):
        M = s / (s + kk) ** 2
        df2 = np.sum(s * s / (s + kk) ** 2)
        A, B, C = np.sum(M * vv * vv), np.sum(M * y * y), np.sum(M * vv * y)
        val = A * B + (C * C if pairings == 2 else 0.0)
        if mean != "known":
            val += A * m / n + (np.sum(M * s * M * vv * vv) / n if pairings == 2 else 0.0)
        out.append(kk * kk / (m - df2) * val)
    return np.array(out)


# ------------------------------------------------------------------ (E4), the toolkit's rules
def _gl_panels(lo, hi, panels, nodes):
    """Composite Gauss–Legendre on geometric panels of ``[lo, hi]`` (``lo > 0``) plus ``[0, lo]``."""
    x, w = np.polynomial.legendre.leggauss(nodes)
    edges = np.concatenate(([0.0], np.geomspace(lo, hi, panels)))
    a, b = edges[:-1, None], edges[1:, None]
    return ((b - a) / 2 * x + (a + b) / 2).ravel(), ((b - a) / 2 * w).ravel()


def _theta_rule(n_nodes, composite):
    """Nodes/weights on ``θ ∈ [0, π/2]`` for ``u = tan θ``: the toolkit's plain Gauss–Legendre
    rule (``composite=False``, its ``gauss_legendre_on_0_pi2``), or composite panels refined
    geometrically towards both ends (accurate to ~1e-12 for spectra in [1e-4, 1e2])."""
    if not composite:
        x, w = np.polynomial.legendre.leggauss(n_nodes)
        return 0.25 * np.pi * (x + 1.0), 0.25 * np.pi * w
    t1, w1 = _gl_panels(1e-7, np.pi / 4, 24, n_nodes)
    return np.concatenate((t1, np.pi / 2 - t1[::-1])), np.concatenate((w1, w1[::-1]))


def sqrt_expectation_toolkit(s, n, proj=None, n_nodes=100, composite=False):
    """(E4) ``E[e_kᵀΣ̂^{1/2}e_k] ≍ (2/π)∫₀^∞ s_k/(s_k + κ(u²)) du`` for every mode ``k``
    (``proj``: weights ``(e_kᵀv)²`` summed — the toolkit's ``eigvec_proj``), ``u = tan θ``."""
    s = np.asarray(s, dtype=float)
    th, wt = _theta_rule(n_nodes, composite)
    u, jac = np.tan(th), 1.0 / np.cos(th) ** 2
    ku = kappa(u ** 2, s, n)
    f = s[:, None] / (s[:, None] + ku[None, :])
    if proj is not None:
        f = f * np.asarray(proj, dtype=float)[:, None] ** 2
    return (f * (wt * jac)[None, :]).sum(axis=1) * 2 / np.pi


def sample_variance_toolkit(s, n, modes, n_nodes=100, composite=False):
    """(E4) the toolkit's ``grid2d_integrate_var_kappa_gauss``: for each mode ``k`` in ``modes``
    (0-based), ``(4/π²)∫∫ κκ'·Tr[Σ(Σ+κ)⁻¹(Σ+κ')⁻¹]/(n − df₂(κ,κ'))·s_k/((s_k+κ)(s_k+κ')) du dv``
    — ``E_z Var[e_kᵀΣ̂^{1/2}z]`` over datasets, first pairing."""
    s = np.asarray(s, dtype=float)
    th, wt = _theta_rule(n_nodes, composite)
    u, jac = np.tan(th), 1.0 / np.cos(th) ** 2
    k = kappa(u ** 2, s, n)
    R = 1.0 / (s[:, None] + k[None, :])                     # d × N
    df2 = (s[:, None] ** 2 * R).T @ R                          # N × N
    tr = (s[:, None] * R).T @ R
    scal = np.outer(k, k) * tr / (n - df2) * np.outer(wt * jac, wt * jac)
    sk = s[np.asarray(modes)]
    Rk = 1.0 / (sk[:, None] + k[None, :])
    return np.einsum("ka,ab,kb->k", sk[:, None] * Rk, scal, Rk) * 4 / np.pi ** 2


# ------------------------------------------------------------------ the map at any σ² < σ_T²
def check_stieltjes(a=1e-3, b=100.0, s=(1e-6, 1e-3, 0.1, 1.0, 30.0), nodes=64):
    """Max relative error of ``√((s+a)/(s+b)) = 1 − (1/π)∫_a^b √((t−a)/(b−t)) dt/(s+t)`` on the
    rule of :func:`_stieltjes_rule` (an identity: the check of the representation and the rule)."""
    t, w = _stieltjes_rule(a, b, nodes)
    s = np.asarray(s, dtype=float)
    lhs = np.sqrt((s + a) / (s + b))
    rhs = 1 - (w[None, :] / (s[:, None] + t[None, :])).sum(axis=1) / np.pi
    return float(np.max(np.abs(rhs - lhs) / lhs))


def _stieltjes_rule(a, b, nodes=64):
    """Nodes ``t`` and weights ``w`` with ``Σ w f(t) ≈ ∫_a^b √((t−a)/(b−t)) f(t) dt``:
    ``t = a + (b − a) sin²θ`` (weight ``2(b−a) sin²θ dθ``), composite Gauss–Legendre in θ on
    panels refined geometrically towards θ = 0 (where ``t − a ≈ a`` resolves the scale ``a``)."""
    if not 0 <= a < b:
        raise ValueError(f"need 0 <= sigma2 < sigmaT2, got sigma2={a}, sigmaT2={b}")
    lo = min(1e-3, 0.1 * np.sqrt(max(a, 1e-300) / (b - a))) if a > 0 else 1e-7
    th, wt = _gl_panels(lo * 1e-3, np.pi / 2, 40, nodes)
    t = a + (b - a) * np.sin(th) ** 2
    return t, wt * 2 * (b - a) * np.sin(th) ** 2


def _map_nodes(s, m, a, b, nodes):
    t, w = _stieltjes_rule(a, b, nodes)
    keep = t > 0
    t, w = t[keep], w[keep]
    k = kappa(t, s, m)
    return t, w, k


def map_expectation(Sigma, mu, v, x, n, sigma2, sigmaT2, mean="known", nodes=16):
    """``E[vᵀx*] ≍ vᵀμ + vᵀy − (1/π)∫_a^b √((t−a)/(b−t)) (κ(t)/t) vᵀ(Σ+κ(t))⁻¹y dt``, ``y = x − μ``,
    ``a = σ²``, ``b = σ_T²`` (``m = n − 1`` with the mean estimated: ``E[vᵀg(Σ̂)δ] = 0``)."""
    s, U = _eig(Sigma)
    vv, y = _rot(U, v), _rot(U, np.asarray(x) - np.asarray(mu))
    m = n if mean == "known" else n - 1
    out = []
    for a in np.atleast_1d(sigma2):
        t, w, k = _map_nodes(s, m, float(a), float(sigmaT2), nodes)
        forms = (vv * y) @ (1.0 / (s[:, None] + k[None, :]))           # vᵀ(Σ+κ)⁻¹y per node
        out.append(np.dot(v, mu) + np.sum(vv * y) - np.sum(w * k / t * forms) / np.pi)
    return np.array(out)


def map_variance(Sigma, mu, v, x, n, sigma2, sigmaT2, mean="known", pairings=2, nodes=16):
    """``Var[vᵀx*]`` across training sets: ``(1/π²)∫∫ w w' κκ'/(tt'(m − df₂(κ,κ'))) ·
    [(vᵀNv)(yᵀNy) + (vᵀNy)²]`` with ``N = Σ(Σ+κ)⁻¹(Σ+κ')⁻¹`` (second pairing only with
    ``pairings=2``); with the mean estimated the δ term
    ``(1/n)(1/π²)∫∫ w w' κκ'/(tt')·[vᵀ(Σ+κ)⁻¹Σ(Σ+κ')⁻¹v + (df₂(κ,κ')·vᵀNv + vᵀNΣNv)/(m − df₂)]``."""
    s, U = _eig(Sigma)
    vv, y = _rot(U, v), _rot(U, np.asarray(x) - np.asarray(mu))
    m = n if mean == "known" else n - 1
    out = []
    for a in np.atleast_1d(sigma2):
        t, w, k = _map_nodes(s, m, float(a), float(sigmaT2), nodes)
        R = 1.0 / (s[:, None] + k[None, :])
        c = w * k / t
        df2 = (s[:, None] ** 2 * R).T @ R
        pre = np.outer(c, c) / (m - df2)
        sR = s[:, None] * R
        vNv = ((vv * vv)[:, None] * sR).T @ R
        yNy = ((y * y)[:, None] * sR).T @ R
        vNy = ((vv * y)[:, None] * sR).T @ R
        val = vNv * yNy + (vNy ** 2 if pairings == 2 else 0.0)
        tot = np.sum(pre * val)
        if mean != "known":
            first = np.outer(c, c) * vNv               # vᵀ(Σ+κ)⁻¹Σ(Σ+κ')⁻¹v
            NSN = ((vv * vv * s ** 3)[:, None] * R ** 2).T @ R ** 2      # vᵀNΣNv
            extra = df2 * vNv + (NSN if pairings == 2 else 0.0)
            tot += (np.sum(first) + np.sum(pre * extra)) / n
        out.append(tot / np.pi ** 2)
    return np.array(out)


# ------------------------------------------------------------------ dense Monte Carlo
def mc_denoiser_variance(s, mu, v, x, n, sigma2, trials, seed=0, mean="known"):
    """Dense NumPy Monte Carlo of ``Var[vᵀD̂(x)]`` over ``trials`` training sets
    (``Σ = diag(s)``; ``Σ̂`` normalised by n, or centred and by n − 1): mean and sem of the
    unbiased sample variance (sem by the delta method from the fourth central moment)."""
    rng = np.random.default_rng(seed)
    s = np.asarray(s, dtype=float)
    d = s.size
    vals = np.empty((trials, np.size(sigma2)))
    for i in range(trials):
        X = rng.standard_normal((n, d)) * np.sqrt(s) + mu
        if mean == "known":
            Xc, muh = X - mu, np.asarray(mu, dtype=float)
            Sh = Xc.T @ Xc / n
        else:
            muh = X.mean(axis=0)
            Xc = X - muh
            Sh = Xc.T @ Xc / (n - 1)
        ev, V = np.linalg.eigh(Sh)
        a, b = V.T @ v, V.T @ (np.asarray(x) - muh)
        for j, s2 in enumerate(np.atleast_1d(sigma2)):
            vals[i, j] = np.dot(v, muh) + np.sum(a * ev / (ev + s2) * b)
    c = vals - vals.mean(axis=0)
    var = np.sum(c ** 2, axis=0) / (trials - 1)
    m4 = np.mean(c ** 4, axis=0)
    sem = np.sqrt(np.maximum(m4 - var ** 2, 0.0) / trials)
    return var, sem
