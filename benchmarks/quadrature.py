"""Quadrature paths: time, accuracy and peak memory, each as a ratio to a
baseline run in the same process (issue 17 items 1 and 6; issue 13 memory).

    python benchmarks/quadrature.py [--quick] [--before] [--sizes 400,1600] [--only-sharp | --skip-sharp]

First the diffusion recipe's sharp σ² grid (:func:`sharp_grid`): the sampling
map's per-mode variance and split disagreement, mean known and estimated, on
the trajectory grid σ² = 14.7 … 1e-3 at σ_T² = 100, d = 40 (the case where the
Gauss–Kronrod pairs had regressed to 3.6 s CPU): CPU seconds of the first and
the best cold solve, against the 100×100 fixed rule, the reported and the true
error (reference: the 200×200 rule, or for the estimated mean the engine's
integrand on a fixed tanh-sinh tensor grid), and — at the recipe's tolerance
1e-6 — the same solve in the same process on the path before the fix
(``before``: :class:`NoRuns`), the Gauss–Legendre doubling rule and the
pre-issue-17 tanh-sinh path.

Sampling map of the variance-exploding probability-flow ODE,
``x* = (Σ̂+σ²)^{1/2}(Σ̂+σ_T²)^{−1/2} x_T`` (mean known), at ``n = 2d``,
``σ² = 0.1``, ``σ_T² = 10``, power-law spectrum ``s_i = 1/i``:

* ``mean``  — ``E[vᵀx*]``, one integral over ``θ ∈ [0, π/2]``;
* ``mode``  — ``Var[e_jᵀx*]`` for a given ``x_T`` (double integrals);
* ``trace`` — ``Σ_j Var[e_jᵀx*]`` (the engine's per-mode value summed over an
  eigenbasis: traces instead of forms);
* ``xT``    — ``E ½|x*₁ − x*₂|²`` of two models on independent halves, derived
  directly from the two copies as a user writes it (40 integrals).

Baseline (``fixed``): the same formulas hand-written in NumPy with a fixed
100-point Gauss–Legendre rule in each θ (100×100 for the double integrals), κ
by a vectorised Newton at the nodes, spectral sums as matrix products — what
the paper's toolkit does, without an error estimate. ``ratio`` = engine time /
baseline time (same process); ``err`` = the engine's reported quadrature
error, relative (``result.quad_error``: the integrals' estimates propagated
to the value); ``true`` = |engine − reference|/|reference| with the reference the
same hand-written formulas on a fixed 200-point (200×200) rule, and ``Δfixed``
the same for the 100-point baseline. ``--before`` adds, at the first size, the
pre-issue-17 path (adaptive tanh-sinh only, sums point by point, each group
solved per integral) and the Gauss–Legendre doubling rule of the last session
(``gauss``: levels 12·2^i, each a full rule). ``scale`` rows: the spectrum,
σ², σ_T² times 1e-6 and 1e3 (``x`` times the square root): the variance scales
exactly, so ``true`` is against the scaled reference. Each solve is timed as the median of
``--repeat`` runs after one warm-up, each cold (the factors ``kernels`` keeps
between solves cleared); peak memory is ``tracemalloc``'s during one more
solve. Set ``OPENBLAS_NUM_THREADS=1`` on a shared machine (threaded
BLAS on a loaded machine is ~15× slower for these small products).
"""
import argparse
import contextlib
import os
import resource
import statistics
import sys
import time
import tracemalloc

import numpy as np
import sympy as sp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "derivations"))

import symrmt as sr  # noqa: E402
from symrmt.numerics import kernels, quadrature  # noqa: E402


# ------------------------------------------------------------------ expressions
def gd_risk(t):
    n, d = sr.dims("n d")
    lr, s2 = sr.scalar("lr"), sr.scalar("sigma2")
    Sigma, w = sr.Covariance("Sigma", d), sr.Vector("w", d)
    X, eps = sr.GaussianData("X", n, Sigma), sr.GaussianNoise("eps", n, s2)
    Sh = X.T * X / n
    wt = sr.matrix_function(lambda x: (1 - (1 - lr * x) ** t) / x, Sh) * X.T * (X * w + eps) / n
    return (wt - w).T * Sigma * (wt - w) + s2


class MapModel:
    def __init__(self):
        self.n, self.d = sr.dims("n d")
        self.s2, self.sT2 = sr.scalar("sigma2"), sr.scalar("sigmaT2")
        self.Sigma = sr.Covariance("Sigma", self.d)
        self.v, self.x = sr.Vector("v", self.d), sr.Vector("x", self.d)

    def map(self, X):
        Sh, I = sr.sample_covariance(X, ddof=0), sr.I(self.d)
        return sr.sqrt(Sh + self.s2 * I) * sr.power(Sh + self.sT2 * I, -sp.Rational(1, 2)) * self.x

    def expressions(self):
        X = sr.GaussianData("X", self.n, self.Sigma)
        X1, X2 = sr.GaussianData("X1", self.n / 2, self.Sigma), sr.GaussianData("X2", self.n / 2, self.Sigma)
        diff = self.map(X1) - self.map(X2)
        return {"mean": self.v.T * self.map(X), "mode": sr.var(self.v.T * self.map(X)),
                "xT": diff.T * diff / 2}


def derive(model, log=print):
    from _common import sum_over_basis
    out = {}
    for name, expr in model.expressions().items():
        t0 = time.perf_counter()
        out[name] = sr.deterministic_equivalent(expr)
        log(f"  derived {name:5s} in {time.perf_counter() - t0:5.1f} s")
    de = out["mode"]
    out["trace"] = sr.DeterministicEquivalent(expr=de.expr, value=sum_over_basis(de.value, model.v),
                                              groups=list(de.groups), assumptions=list(de.assumptions))
    return {k: (de, de.compile()) for k, de in out.items()}


# ------------------------------------------------------------------ the fixed-rule baseline
def kappa(s, n, z):
    """κ(1 − Σ_i s_i/(s_i+κ)/n) = z at every z (vectorised Newton from above)."""
    k = z + s.sum() / n
    for _ in range(200):
        r = s / (s + k[:, None])
        df, df2 = r.sum(axis=1), (r * r).sum(axis=1)
        h = k * (1 - df / n) - z
        dh = 1 - df / n + k * (df - df2) / (n * k)
        step = h / dh
        k = k - step
        if np.max(np.abs(step / k)) < 1e-15:
            break
    return k


def fixed(name, s, n, v, x, a, b, N=100):
    """The sampling-map quantities with a fixed N-point (N×N) Gauss–Legendre rule."""
    t, w = np.polynomial.legendre.leggauss(N)
    th = (t + 1) * np.pi / 4
    w = w * np.pi / 4
    if name == "xT":
        name, n = "trace", n / 2
    z = a + (b - a) * np.sin(th) ** 2
    k = kappa(s, n, z)
    R = 1 / (s + k[:, None])
    pref = w * (-2 * (b - a) * np.sin(th) ** 2 / np.pi) * k / z
    if name == "mean":
        return float(v @ x + pref @ (R @ (v * x)))
    SR = s * R
    gamma = (s * SR) @ R.T / n
    if name == "trace":
        inner = (SR @ R.T) * ((SR * x * x) @ R.T) + ((s * x * R) ** 2) @ (R ** 2).T
    else:
        inner = ((SR * v * v) @ R.T) * ((SR * x * x) @ R.T) + ((SR * v * x) @ R.T) ** 2
    return float(pref @ (inner / (n * (1 - gamma))) @ pref)


# ------------------------------------------------------------------ measuring
def timed(fn, repeat):
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return out, statistics.median(ts)


def cold(f, bb):
    """A solve without the spectral-sum factors kept from an earlier solve."""
    kernels._CACHE.clear()
    kernels._CACHE_BYTES[0] = 0
    return f.solve(**bb)


def peak(fn):
    tracemalloc.start()
    fn()
    p = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return p


class Gauss:
    """The rule before this session's Gauss–Kronrod pairs: Gauss–Legendre doubling."""

    def __enter__(self):
        self.saved = quadrature.FINITE_RULES
        quadrature.FINITE_RULES = ("gauss", "finite")

    def __exit__(self, *exc):
        quadrature.FINITE_RULES = self.saved


class Before:
    """The pre-issue-17 path: tanh-sinh only, no tensor sums, no shared groups."""

    def __enter__(self):
        self.saved = quadrature.FINITE_RULES, kernels._TensorSum.__call__, quadrature._group_key
        quadrature.FINITE_RULES = ("finite",)
        kernels._TensorSum.__call__ = lambda self, *a, **k: None
        quadrature._group_key = lambda s, ext, bound, N: (None, None)

    def __exit__(self, *exc):
        quadrature.FINITE_RULES, kernels._TensorSum.__call__, quadrature._group_key = self.saved


class NoRuns:
    """The Gauss–Kronrod path before the fix of its regression on the diffusion
    recipe's sharp σ² grid (3.6 s at d = 40): an inner integral's spectral sums
    at several grid points at once (each outer point's nodes at its own κ)
    summed directly instead of one product per run of outer points, its
    distinct κ nodes found by one sort of all ``points × nodes`` values, and
    every grid point run to the level the sharpest one needs."""

    def __enter__(self):
        self.saved = kernels._row_runs, quadrature._row_runs, quadrature.STOP_PER_POINT
        kernels._row_runs = lambda *a: None
        quadrature._row_runs = lambda *a: None
        quadrature.STOP_PER_POINT = False

    def __exit__(self, *exc):
        kernels._row_runs, quadrature._row_runs, quadrature.STOP_PER_POINT = self.saved


def _relerr(res, val):
    return float(np.max(res["quad_error"])) / abs(val) if "quad_error" in res else float("nan")


def sampling_map(sizes, repeat, before, scales=(1e-6, 1e3)):
    model = MapModel()
    print("deriving the sampling-map expressions …", flush=True)
    des = derive(model)
    rng = np.random.default_rng(0)
    a, b = 0.1, 10.0
    print(f"{'case':6s} {'d':>5s} {'engine':>9s} {'cpu':>8s} {'fixed':>9s} {'ratio':>6s} {'err':>8s} {'true':>8s} "
          f"{'Δfixed':>8s} {'peak':>8s} {'peak fixed':>10s}")
    for D in sizes:
        s = 1.0 / np.arange(1, D + 1)
        x = np.sqrt(s + b) * rng.standard_normal(D)
        v = np.eye(D)[D // 10]
        for name in ("mean", "mode", "trace", "xT"):
            de, f = des[name]
            names = {getattr(q, "name", None) for q in sp.preorder_traversal(de.expr)}
            for scale in (1.0,) + (tuple(scales) if D == sizes[-1] and name == "mode" else ()):
                bind = dict(Sigma=scale * s, n=2 * D, v=v, x=np.sqrt(scale) * x, sigma2=scale * a,
                            sigmaT2=scale * b)
                bb = {k: val for k, val in bind.items() if k in names}
                c0 = time.process_time()
                res, t_eng = timed(lambda: cold(f, bb), repeat)
                cpu = (time.process_time() - c0) / (repeat + 1)
                val = float(np.ravel(res.value)[0])
                args = (name, scale * s, 2 * D, v, np.sqrt(scale) * x, scale * a, scale * b)
                base, t_fix = timed(lambda: fixed(*args), repeat)
                ref = fixed(*args, N=200)
                p_eng, p_fix = peak(lambda: cold(f, bb)), peak(lambda: fixed(*args))
                label = name if scale == 1.0 else f"  ×{scale:g}"
                print(f"{label:6s} {D:5d} {t_eng * 1e3:7.1f}ms {cpu * 1e3:6.1f}ms {t_fix * 1e3:7.1f}ms "
                      f"{t_eng / t_fix:6.2f} {_relerr(res, val):8.1e} {abs(val - ref) / abs(ref):8.1e} "
                      f"{abs(base - ref) / abs(ref):8.1e} {p_eng / 2**20:6.1f}MB {p_fix / 2**20:8.1f}MB",
                      flush=True)
                if before and D == sizes[0] and scale == 1.0:
                    for tag, ctx in (("before", NoRuns), ("gauss", Gauss), ("pre-17", Before)):
                        with ctx():
                            old, t_old = timed(lambda: cold(f, bb), 1)
                            p_old = peak(lambda: cold(f, bb))
                        ov = float(np.ravel(old.value)[0])
                        print(f"  {tag:6s}{D:3d} {t_old * 1e3:7.1f}ms {'':8s} {'':9s} {t_old / t_fix:6.2f} "
                              f"{_relerr(old, ov):8.1e} {abs(ov - ref) / abs(ref):8.1e} {'':8s} "
                              f"{p_old / 2**20:6.1f}MB  (this rule {t_old / t_eng:.1f}× faster)", flush=True)


# ------------------------------------------------------------------ the diffusion recipe's sharp σ² grid
#: the trajectory grid of ``derivations/diffusion_consistency.py --quick`` (6 points from σ_T² = 100 down to 1e-3)
SHARP_SIGMA2 = np.geomspace(100.0, 1e-3, 7)[1:]


class RecipeMap:
    """The diffusion recipe's sampling map ``x* = μ̂ + (Σ̂+σ²)^{1/2}(Σ̂+σ_T²)^{−1/2}(x_T − μ̂)``
    with the data mean μ known (Σ̂ about μ, normalised by n) or estimated
    (``sr.sample_mean``, ``ddof=1``): the per-mode variance across training sets
    (``map_var``) and the disagreement of two halves (``map_split``), written as
    in ``derivations/diffusion_consistency.py`` (kept here so that the benchmark
    does not depend on the recipe's module)."""

    def __init__(self):
        self.n, self.d = sr.dims("n d")
        self.s2, self.sT2 = sr.scalar("sigma2"), sr.scalar("sigmaT2")
        self.Sigma = sr.Covariance("Sigma", self.d)
        self.mu, self.v, self.x = sr.Vector("mu", self.d), sr.Vector("v", self.d), sr.Vector("x", self.d)

    def learned(self, X, case):
        if case == "known":
            return sr.sample_covariance(X, ddof=0), self.mu
        return sr.sample_covariance(X, ddof=1), sr.sample_mean(X)

    def map(self, Sh, muh):
        I = sr.I(self.d)
        return muh + sr.sqrt(Sh + self.s2 * I) * sr.power(Sh + self.sT2 * I, -sp.Rational(1, 2)) * (self.x - muh)

    def expression(self, what, case):
        data = lambda name, rows: sr.GaussianData(name, rows, self.Sigma, mean=self.mu)
        if what == "map_var":
            return sr.var(self.v.T * self.map(*self.learned(data("X", self.n), case)))
        a = self.map(*self.learned(data("X1", self.n / 2), case))
        b = self.map(*self.learned(data("X2", self.n / 2), case))
        return (a - b).T * (a - b) / 2


def recipe_setting(D, seed=0):
    """The recipe's inputs at size ``D`` (``Setting(D, alpha=1, seed)``, same draws):
    ``s_i = 1/i``, ``μ``, ``x_T = μ + √(s + σ_T²)·z``, ``v = e_{D//10}``."""
    rng = np.random.default_rng(seed)
    s = 1.0 / np.arange(1, D + 1)
    mu = rng.standard_normal(D) / np.sqrt(D)
    rng.standard_normal(D)                       # the recipe's typical input (unused here)
    xT = mu + np.sqrt(s + 100.0) * rng.standard_normal(D)
    return s, mu, xT, np.eye(D)[max(1, D // 10)]


def sharp_grid(repeat, D=40, before=True, rtols=(1e-6, None)):
    """Time and accuracy on the recipe's trajectory grid (σ² from 14.7 down to 1e-3, σ_T² = 100) at
    ``d = 40``, ``n = 80`` (``map_var`` at ``n/2``, as the recipe tabulates it): CPU seconds
    (``time.process_time``, best of ``repeat`` cold solves, and the first solve of the compiled
    function: lambdify, nodes), the reported relative error, the true one against a reference —
    the hand-written 200-point (200×200) rule for the known mean, the engine's integrand on a fixed
    tanh-sinh tensor grid (``derivations/_common.py::integrate_equivalent``, h = 1/16) for the
    estimated mean — and the fixed 100×100 rule's time where a hand-written formula exists."""
    from _common import integrate_equivalent
    model = RecipeMap()
    s, mu, xT, v = recipe_setting(D)
    print(f"sharp σ² grid of the diffusion recipe: d = {D}, n = {2 * D}, σ_T² = 100, "
          f"σ² = {', '.join(f'{a:.3g}' for a in SHARP_SIGMA2)}; CPU seconds, best of {repeat}")
    print(f"{'case':20s} {'rtol':>6s} {'first':>7s} {'best':>7s} {'fixed':>7s} {'ratio':>6s} {'err':>8s} {'true':>8s}"
          f"  before (same process)")
    for what in ("map_var", "map_split"):
        for case in ("known", "estimated"):
            de = sr.deterministic_equivalent(model.expression(what, case))
            names = {getattr(q, "name", None) for q in sp.preorder_traversal(de.expr)}
            m = D if what == "map_var" else 2 * D
            bb = {k: val for k, val in dict(Sigma=s, mu=mu, v=v, x=xT, n=m, sigma2=SHARP_SIGMA2,
                                            sigmaT2=100.0).items() if k in names}
            if case == "known":
                args = lambda N: np.array([fixed("mode" if what == "map_var" else "xT", s, m, v, xT - mu, a, 100.0,
                                                 N=N) for a in SHARP_SIGMA2])
                ref = args(200)
                c0 = time.process_time()
                for _ in range(repeat):
                    args(100)
                t_fix = (time.process_time() - c0) / repeat
            else:
                ref, t_fix = integrate_equivalent(de, bb).value, float("nan")
            for rtol in rtols:
                f = de.compile()
                c0 = time.process_time()
                res = f.solve(bb, options=dict(quad_rtol=rtol))
                first = time.process_time() - c0

                def best(ctx=None):
                    ts = []
                    for _ in range(repeat):
                        with ctx() if ctx else contextlib.nullcontext():
                            c0 = time.process_time()
                            out = cold(f, dict(bb, options=dict(quad_rtol=rtol)))
                            ts.append(time.process_time() - c0)
                    return min(ts), out
                t_new, res = best()
                val = np.asarray(res.value, dtype=float)
                err = np.max(np.asarray(res["quad_error"]) / np.abs(val))
                true = np.max(np.abs(val - ref) / np.abs(ref))
                olds = []
                # the routes before, at the recipe's tolerance (QUAD_RTOL = 1e-6; at 1e-10 "before" takes ~30 s)
                for tag, ctx in (("before", NoRuns), ("gauss", Gauss), ("pre-17", Before)) if before and rtol else ():
                    t_old, old = best(ctx)
                    off = np.max(np.abs(np.asarray(old.value, dtype=float) - ref) / np.abs(ref))
                    olds.append(f"{tag} {t_old:5.2f}s ({t_old / t_new:4.1f}×, true {off:.0e})")
                print(f"{what + '/' + case:20s} {rtol or 1e-10:6.0e} {first:6.2f}s {t_new:6.2f}s {t_fix:6.3f}s "
                      f"{t_new / t_fix:6.1f} {err:8.1e} {true:8.1e}  " + "; ".join(olds), flush=True)


def measure(name, expr, bind):
    t0 = time.perf_counter()
    f = sr.deterministic_equivalent(expr).compile()
    t_derive = time.perf_counter() - t0
    p = peak(lambda: f.solve(**bind))
    res, t_solve = timed(lambda: f.solve(**bind), 1)
    err = np.max(np.asarray(res.quad_error)) if "quad_error" in res else float("nan")
    print(f"{name:38s} value {float(np.ravel(res.value)[0]):.10g}  success {res.success}  quad_error {err:.2g}  "
          f"derive {t_derive:6.2f} s  solve {t_solve:6.2f} s  peak (tracemalloc) {p / 2**20:7.1f} MiB",
          flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--before", action="store_true", help="also time the pre-issue-17 quadrature")
    ap.add_argument("--sizes", default=None, help="comma-separated d for the sampling map (default 400,1600)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-gd", action="store_true")
    ap.add_argument("--skip-sharp", action="store_true", help="skip the diffusion recipe's sharp σ² grid (d = 40)")
    ap.add_argument("--only-sharp", action="store_true", help="only the diffusion recipe's sharp σ² grid")
    args = ap.parse_args(argv)
    sizes = [int(v) for v in args.sizes.split(",")] if args.sizes else ([200] if args.quick else [400, 1600])
    if not args.skip_sharp:
        sharp_grid(args.repeat, before=args.before or args.only_sharp)
        if args.only_sharp:
            return 0
    sampling_map(sizes, args.repeat, args.before)
    m = MapModel()
    mv = sr.var(m.v.T * m.map(sr.GaussianData("X", m.n, m.Sigma)))
    for D in ([400] if args.quick else [400, 1600]):
        bind = dict(Sigma=np.ones(D), n=D, v=np.eye(D)[0], x=np.ones(D), sigma2=0.1, sigmaT2=10.0)
        measure(f"sampling-map variance, isotropic, d=n={D}", mv, bind)
    if not args.skip_gd:
        rng = np.random.default_rng(0)
        for D, t in ([(100, 30)] if args.quick else [(100, 30), (400, 10), (400, 30)]):
            s = np.arange(1, D + 1) ** -1.5
            bind = dict(Sigma=s, n=2 * D, w=rng.standard_normal(D) / np.sqrt(D), sigma2=0.25, lr=1.0)
            measure(f"GD risk, power law, d={D}, t={t}, η=1", gd_risk(t), bind)
    print(f"max resident set (whole process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
