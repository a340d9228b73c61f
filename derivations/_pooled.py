"""Pooled ridge regression on two independent Gaussian groups (shared by the
recipes ``model_collapse`` and ``bias_amplification``).

Model, written as a person writes it (``PooledRidge.expressions``): group
``k ∈ {1, 2}`` has ``n_k`` rows ``x ~ N(0, Σ_k)`` (``Σ₁``, ``Σ₂`` arbitrary,
possibly non-commuting: a 2-D array binds the full matrix), labels
``y_k = X_k w_k + ε_k``, ``ε_k ~ N(0, s_k I)``; one ridge on the stacked data

    X = vstack(X₁, X₂),  y = vstack(y₁, y₂),  N = n₁ + n₂,
    ŵ = (XᵀX/N + λ)⁻¹ Xᵀy/N,

and the per-group test error (excess over the test noise)

    E_g = (ŵ − w_g)ᵀ Σ_g (ŵ − w_g),   g = 1, 2.

``sr.deterministic_equivalent(E_g)`` derives it directly from that
definition (the general one-point law for pooled blocks,
``(Σ_k X_kᵀX_k/N + λ)⁻¹ ≃ (Σ_k (n_k/N)Σ_k/(1+δ_k) + λ)⁻¹``,
``δ_k = Tr[Σ_k R]/N``, lifted to the products of two resolvents; labels
averaged by Wick). Real-only ridge (``n₂ = 0``, which a dimension binding
cannot be) is derived from its own one-block definition (``E_real_only``).

Independent cross-checks (not used for the tables' theory):

* ``GeneratingFunctions`` — the previous route: the four one-point
  generating functions of ``R(z, t₁, t₂) = (t₁Σ̂₁ + t₂Σ̂₂ + λ + zT)⁻¹``
  derived by the engine, their ``z``/``t_k`` derivatives taken by 4th-order
  finite differences (identity ``∂_z(A + zT)⁻¹ = −(A+zT)⁻¹T(A+zT)⁻¹`` and the
  exact decomposition ``ŵ − c = −λGc + GΣ̂₂Δ + G(X₁ᵀε₁ + X₂ᵀε₂)/N`` for
  ``Δ = w₂ − w₁``, ``c = w₁``). Cheap at ``d ≤ 400`` only.
* ``dense_group_mc`` — plain NumPy draws of ``X₁, X₂, ε₁, ε₂`` (and ``F``
  for random projections), solve, evaluate ``E_g``.

Random projections (ridge on ``XF``, ``F`` a ``d × p`` ``sr.RandomFeatures``):
``PooledRidge.rp_expressions`` writes the model and ``sr.deterministic_equivalent``
derives it (law ``projected_pooled``, ``symrmt/laws/projected_pooled.py``:
nested conditioning in ``equivalence/features.py`` — F given X,
``F(FᵀΣ̂F + λ)⁻¹Fᵀ ≃ (Σ̂ + κ)⁻¹`` and its source derivative, then X through the
general pooled law at ridge ``κ``; unknowns ``δ_k`` and ``κ`` solved jointly).
The recipes' random-projection theory rows are that compiled equivalent
(``EngineProjected``). ``ProjectedPooled`` — the recipe-level nested route in
the other order (the engine's pooled derivation read in feature space given F,
then ``F(FᵀMF + λ)⁻¹Fᵀ ≃ (M + κ)⁻¹``) — is kept as the independent reference
each theory value is compared to (column "engine vs recipe-level nested
route, rel. diff"); the two agree to ~1e-15 (``tests/test_proj_engine.py``),
and both against dense Monte Carlo (``tests/test_feat_pooled_rp.py``).
"""
from __future__ import annotations

import time

import numpy as np
import sympy as sp

import symrmt as sr


def single_blas_thread():
    """One BLAS thread for this process, also when NumPy is already loaded
    (``symrmt run`` imports it before the recipe): the recipes' matrices are
    small, and on a shared machine threaded BLAS oversubscribes the cores
    (measured here under load: 100 draws at d = 100 took 45 s threaded, 0.6 s
    with one thread). Calls ``*openblas*set_num_threads*`` in every loaded
    OpenBLAS; does nothing where none is found. Returns how many were set."""
    import ctypes
    try:
        maps = open("/proc/self/maps").read()
    except OSError:
        return 0
    done = 0
    for path in sorted({ln.split()[-1] for ln in maps.splitlines() if "openblas" in ln.lower() and "/" in ln}):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(1)
                done += 1
                break
    return done


class PooledRidge:
    """Symbols, the model as written, and its derived per-group errors."""

    def __init__(self):
        self.n1, self.n2, self.d, self.p = sr.dims("n1 n2 d p")
        self.lam = sr.scalar("lam")
        self.s1, self.s2 = sr.scalar("s1"), sr.scalar("s2")
        d = self.d
        self.Sigma1 = sr.Covariance("Sigma1", d)
        self.Sigma2 = sr.Covariance("Sigma2", d)
        self.w1, self.w2 = sr.Vector("w1", d), sr.Vector("w2", d)
        self.N = self.n1 + self.n2

    def _data(self):
        X1 = sr.GaussianData("X1", self.n1, self.Sigma1)
        X2 = sr.GaussianData("X2", self.n2, self.Sigma2)
        y1 = X1 * self.w1 + sr.GaussianNoise("eps1", self.n1, self.s1)
        y2 = X2 * self.w2 + sr.GaussianNoise("eps2", self.n2, self.s2)
        return X1, y1, sr.vstack(X1, X2), sr.vstack(y1, y2)

    def expressions(self):
        """``{"E_1", "E_2", "E_real_only"}``: the model's errors as written."""
        X1, y1, X, y = self._data()
        N, d = self.N, self.d
        w_hat = (X.T * X / N + self.lam * sr.I(d)).inverse() * X.T * y / N
        w_real = (X1.T * X1 / self.n1 + self.lam * sr.I(d)).inverse() * X1.T * y1 / self.n1
        return {
            "E_1": (w_hat - self.w1).T * self.Sigma1 * (w_hat - self.w1),
            "E_2": (w_hat - self.w2).T * self.Sigma2 * (w_hat - self.w2),
            "E_real_only": (w_real - self.w1).T * self.Sigma1 * (w_real - self.w1),
        }

    def rp_expressions(self):
        """Random projections: ridge on the features ``XF`` (``F`` a ``d×p``
        ``sr.RandomFeatures``), ``ŵ = Fâ``; per-group errors as written."""
        _, _, X, y = self._data()
        F = sr.RandomFeatures("F", self.d, self.p)
        Z = X * F
        a_hat = (Z.T * Z / self.N + self.lam * sr.I(self.p)).inverse() * Z.T * y / self.N
        w_hat = F * a_hat
        return {
            "E_1 (random projections)": (w_hat - self.w1).T * self.Sigma1 * (w_hat - self.w1),
            "E_2 (random projections)": (w_hat - self.w2).T * self.Sigma2 * (w_hat - self.w2),
        }

    def derive(self, log=print):
        self.exprs = self.expressions()
        self.des, self.fns, self.derive_seconds = {}, {}, {}
        for k, e in self.exprs.items():
            t0 = time.perf_counter()
            self.des[k] = sr.deterministic_equivalent(e)
            self.derive_seconds[k] = time.perf_counter() - t0
            self.fns[k] = self.des[k].compile()
            log(f"  derived {k:<12} in {self.derive_seconds[k]:.2f} s")
        return self.des

    def risk(self, b, key="E_1"):
        """Compiled equivalent of ``key`` at bindings ``b`` (arrays broadcast;
        ``n1``, ``n2`` positive integers). ``E_real_only`` ignores group 2."""
        if key == "E_real_only":
            b = {k: v for k, v in b.items() if k in ("Sigma1", "n1", "lam", "w1", "s1")}
        return np.asarray(self.fns[key](**b), dtype=float)


def compact_latex(de, model):
    """Markdown lines with the derived value of ``de`` printed faithfully but
    abbreviated (display only): the pooled resolvent
    ``(λ + Σ_k n_kΣ_k/((1+δ_k)N))⁻¹`` written ``R``, ``n₁ + n₂`` written ``N``,
    each trace ``t_i`` and quadratic form ``f_i`` named, with their definitions
    and the equations of the ``δ_k`` (``de.latex()`` of the full expression
    takes minutes to print)."""
    from symrmt.objects import Form, Tr
    v = sp.sympify(de.value)
    R = sp.MatrixSymbol("R", model.d, model.d)
    invs = {a: R for a in v.atoms(sp.MatPow) if a.exp == -1}
    invs.update({a: R for a in v.atoms(sp.Inverse)})
    v = v.xreplace(invs)
    atoms = sorted(v.atoms(Tr) | v.atoms(Form), key=sp.default_sort_key)
    names = {a: sp.Symbol(("t" if isinstance(a, Tr) else "f") + f"_{{{i + 1}}}") for i, a in enumerate(atoms)}
    Nsym = sp.Symbol("N")
    v = v.xreplace(names).subs(model.n1 + model.n2, Nsym)
    lines = ["$$" + sp.latex(de.expr) + r"\;\simeq\;" + sp.latex(v) + "$$", "",
             "where $N=n_1+n_2$, $R=" + sp.latex(next(iter(invs), R)).replace("n_{1} + n_{2}", "N") + "$ and", ""]
    lines += [f"- ${sp.latex(n)} = {sp.latex(a)}$" for a, n in names.items()]
    lines += ["", "with $\\delta_k$ solving"]
    for g in de.groups:
        for eq in g.equations:
            tail = "" if isinstance(eq, sp.Equality) else " = 0"
            lines += ["", "$$" + sp.latex(eq.xreplace(invs)).replace("n_{1} + n_{2}", "N") + tail + "$$"]
    return lines


def try_derive(exprs, log=print):
    """``(des, refused)`` for a dict of expressions; ``refused`` holds each
    ``NotImplementedError`` message verbatim (whitespace collapsed)."""
    des, refused = {}, {}
    for k, e in exprs.items():
        t0 = time.perf_counter()
        try:
            des[k] = sr.deterministic_equivalent(e)
            log(f"  derived {k} in {time.perf_counter() - t0:.2f} s")
        except NotImplementedError as exc:
            refused[k] = " ".join(str(exc).split())
            log(f"  REFUSED {k}: {refused[k]}")
    return des, refused


# ------------------------------------------------------------------ the previous route (cross-check)
class GeneratingFunctions:
    """The source-derivative route (cross-check only). Bindings use the
    previous convention: block 1 the tested group, ``T`` its covariance,
    ``wT`` its teacher, ``Delta`` = other teacher − ``wT`` (``old_bindings``
    maps from the model's bindings)."""

    def __init__(self):
        self.n1, self.n2, self.d = sr.dims("n1 n2 d")
        self.lam, self.z = sr.scalar("lam"), sr.scalar("z")
        self.t1, self.t2 = sr.scalar("t1"), sr.scalar("t2")
        d = self.d
        self.Sigma1, self.Sigma2 = sr.Covariance("Sigma1", d), sr.Covariance("Sigma2", d)
        self.T = sr.Covariance("T", d)
        self.c, self.Delta = sr.Vector("wT", d), sr.Vector("Delta", d)

    def derive(self, log=print):
        X1 = sr.GaussianData("X1", self.n1, self.Sigma1)
        X2 = sr.GaussianData("X2", self.n2, self.Sigma2)
        N, c, D = self.n1 + self.n2, self.c, self.Delta
        R = ((self.t1 * X1.T * X1 + self.t2 * X2.T * X2) / N + self.lam * sr.I(self.d) + self.z * self.T).inverse()
        S2D = X2.T * X2 * D / N
        exprs = {"cRc": c.T * R * c, "cRS2D": c.T * R * S2D, "DS2RS2D": S2D.T * R * S2D, "TrTR": sr.Tr(self.T * R)}
        t0 = time.perf_counter()
        self.des = {k: sr.deterministic_equivalent(e) for k, e in exprs.items()}
        self.fns = {k: de.compile() for k, de in self.des.items()}
        self.derive_seconds = time.perf_counter() - t0
        log(f"  cross-check route: 4 generating functions derived and compiled in {self.derive_seconds:.2f} s")

    def _call(self, key, b, **over):
        import sympy as sp
        names = {getattr(a, "name", None) for a in sp.preorder_traversal(self.des[key].expr)}
        args = {k: v for k, v in {**b, **dict(z=0.0, t1=1.0, t2=1.0), **over}.items() if k in names}
        return np.asarray(self.fns[key](**args), dtype=float)

    def _deriv(self, key, b, var, h):
        """4th-order differences: one-sided in ``z`` (declared positive),
        central in ``t``."""
        if var == "z":
            f = [self._call(key, b, z=k * h) for k in range(5)]
            return (-25 * f[0] + 48 * f[1] - 36 * f[2] + 16 * f[3] - 3 * f[4]) / (12 * h)
        f = lambda x: self._call(key, b, **{var: 1.0 + x})  # noqa: E731
        return (8 * (f(h) - f(-h)) - (f(2 * h) - f(-2 * h))) / (12 * h)

    def risk(self, b, scale=1.0):
        """``λ²cᵀGTGc − 2λcᵀGTGΣ̂₂Δ + ΔᵀΣ̂₂GTGΣ̂₂Δ + Σ_k (s_k/N)Tr(TGΣ̂_kG)``,
        each term ``−∂`` of a generating function (steps ``1e-3·scale·λ``, ``1e-3·scale``)."""
        lam = np.asarray(b["lam"], dtype=float)
        N = b["n1"] + b["n2"]
        hz, ht = 1e-3 * scale * float(np.min(lam)), 1e-3 * scale
        return (-lam ** 2 * self._deriv("cRc", b, "z", hz) + 2 * lam * self._deriv("cRS2D", b, "z", hz)
                - self._deriv("DS2RS2D", b, "z", hz) - b["s1"] / N * self._deriv("TrTR", b, "t1", ht)
                - b["s2"] / N * self._deriv("TrTR", b, "t2", ht))

    def risk_with_error(self, b):
        """``(risk, |risk(h) − risk(2h)|)`` (the second bounds the step error)."""
        r1 = self.risk(b)
        return r1, np.abs(r1 - self.risk(b, scale=2.0))


def old_bindings(b, group):
    """The model's bindings (``Sigma1, Sigma2, w1, w2, s1, s2, n1, n2, lam``)
    in the convention of ``GeneratingFunctions`` for ``E_group``."""
    g, o = (1, 2) if group == 1 else (2, 1)
    return dict(Sigma1=b[f"Sigma{g}"], Sigma2=b[f"Sigma{o}"], T=b[f"Sigma{g}"], n1=b[f"n{g}"], n2=b[f"n{o}"],
                lam=b["lam"], wT=b[f"w{g}"], Delta=np.asarray(b[f"w{o}"]) - np.asarray(b[f"w{g}"]),
                s1=b[f"s{g}"], s2=b[f"s{o}"])


# ------------------------------------------------------------------ independent Monte Carlo
def _sampler(a):
    """``draw(rng, n)``: ``n`` rows ``N(0, Σ)`` (``Σ`` eigenvalues (1-D) or the matrix)."""
    a = np.asarray(a, dtype=float)
    if a.ndim == 1:
        r = np.sqrt(a)
        return lambda rng, n: rng.standard_normal((n, a.size)) * r
    C = np.linalg.cholesky(a)
    return lambda rng, n: rng.standard_normal((n, a.shape[0])) @ C.T


def _tform(S, e):
    """``eᵀSe`` (``S`` eigenvalues or matrix)."""
    return float(e @ (S * e)) if S.ndim == 1 else float(e @ S @ e)


def dense_group_mc(b, trials, seed, p=None):
    """Independent dense NumPy Monte Carlo of ``(E_1, E_2)`` (both from the
    same draws): draw ``X₁, X₂, ε₁, ε₂`` (and ``F``, ``d×p`` iid ``N(0, 1/p)``,
    when ``p`` is given: ridge on ``XF``, ``ŵ = Fâ``), solve (Cholesky), evaluate.
    1-D arrays are eigenvalues in the common basis, 2-D arrays full matrices;
    ``lam`` a scalar. Returns ``{g: (mean, sem)}``."""
    rng = np.random.default_rng(seed)
    S = {1: np.asarray(b["Sigma1"], float), 2: np.asarray(b["Sigma2"], float)}
    draw = {k: _sampler(S[k]) for k in S}
    n = {1: int(b["n1"]), 2: int(b["n2"])}
    N = n[1] + n[2]
    d = S[1].shape[0]
    w = {1: np.asarray(b["w1"], float), 2: np.asarray(b["w2"], float)}
    s = {1: float(b["s1"]), 2: float(b["s2"])}
    lam = float(b["lam"])
    vals = np.empty((trials, 2))
    for t in range(trials):
        Xs, ys = [], []
        for k in (1, 2):
            X = draw[k](rng, n[k])
            Xs.append(X)
            ys.append(X @ w[k] + np.sqrt(s[k]) * rng.standard_normal(n[k]))
        X, y = np.vstack(Xs), np.concatenate(ys)
        if p is not None:
            F = rng.standard_normal((d, int(p))) / np.sqrt(p)
            Z = X @ F
            a = _ridge(Z, y, lam, N)
            wh = F @ a
        else:
            wh = _ridge(X, y, lam, N)
        for g in (1, 2):
            vals[t, g - 1] = _tform(S[g], wh - w[g])
    m, se = vals.mean(0), vals.std(0, ddof=1) / np.sqrt(trials)
    return {1: (float(m[0]), float(se[0])), 2: (float(m[1]), float(se[1]))}


def _ridge(X, y, lam, N):
    A = X.T @ X / N
    A[np.diag_indices_from(A)] += lam
    L = np.linalg.cholesky(A)
    return np.linalg.solve(L.T, np.linalg.solve(L, X.T @ y / N))


def dense_real_only_mc(b, trials, seed):
    """Dense Monte Carlo of ridge on group 1 alone: ``(mean, sem)`` of ``E_1``."""
    rng = np.random.default_rng(seed)
    S = np.asarray(b["Sigma1"], float)
    draw = _sampler(S)
    n = int(b["n1"])
    w = np.asarray(b["w1"], float)
    v = np.empty(trials)
    for t in range(trials):
        X = draw(rng, n)
        y = X @ w + np.sqrt(float(b["s1"])) * rng.standard_normal(n)
        v[t] = _tform(S, _ridge(X, y, float(b["lam"]), n) - w)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(trials))


def eigen_bindings(d, alpha=1.0):
    """Power-law spectrum ``i^{-α}`` (top eigenvalue 1)."""
    return np.arange(1, int(d) + 1, dtype=float) ** -float(alpha)


def teacher(d, seed, norm=1.0):
    """A random teacher with ``‖w‖ = norm`` (fixed by ``seed``)."""
    w = np.random.default_rng(seed).standard_normal(int(d))
    return norm * w / np.linalg.norm(w)


def derive_recipe_models(log):
    """Set-up shared by the pooled recipes: one BLAS thread, the pooled model's
    derivations, the random-projection variant derived by the engine
    (``model.rp_theory[key]``, an :class:`EngineProjected`: the compiled
    equivalent, compared at every call with the recipe-level route
    ``ProjectedPooled``; should the engine refuse, the refusal is recorded in
    ``rp_refused`` and the theory falls back to ``ProjectedPooled``), and the
    generating-function route kept as a cross-check. Returns
    ``(model, des, rp_refused, cross)``."""
    single_blas_thread()
    model = PooledRidge()
    des = model.derive(log)
    rp_des, rp_refused = try_derive(model.rp_expressions(), log)
    model.rp_des = rp_des
    model.rp_theory = {k: EngineProjected(model, k, rp_des.get(f"{k} (random projections)"), log)
                       for k in ("E_1", "E_2")}
    _LAST["rp_theory"] = model.rp_theory
    cross = GeneratingFunctions()
    cross.derive(log)
    return model, des, rp_refused, cross


# ------------------------------------------------------------------ random projections: the engine's theory
class EngineProjected:
    """The engine's equivalent of ``E_key`` with random projections, compiled
    (``de`` from ``sr.deterministic_equivalent`` of ``rp_expressions()``), as a
    function of scalar bindings ``b``. Every call also evaluates the
    recipe-level nested route :class:`ProjectedPooled` and records the
    relative difference (``self.rel_diff[theory value]``, ``self.worst``), so the
    report can show it next to each theory row. ``de=None`` (the engine
    refused): the theory is ``ProjectedPooled`` itself (``self.source``)."""

    def __init__(self, model, key, de, log=print):
        self.key, self.de = key, de
        self.reference = ProjectedPooled(model, key)
        self.rel_diff, self.worst = {}, 0.0
        self.solve_seconds = []
        if de is None:
            self.fn, self.source = None, "_pooled.ProjectedPooled (engine refused)"
            return
        t0 = time.perf_counter()
        self.fn = de.compile()
        self.source = "sr.deterministic_equivalent (law projected_pooled), compiled"
        log(f"  compiled {key} (random projections) in {time.perf_counter() - t0:.2f} s")

    def __call__(self, b):
        ref = float(self.reference(b))
        if self.fn is None:
            return ref
        t0 = time.perf_counter()
        th = float(np.asarray(self.fn(**b), dtype=float))
        self.solve_seconds.append(time.perf_counter() - t0)
        rel = abs(th - ref) / abs(ref) if ref != 0 else abs(th - ref)
        self.rel_diff[th] = rel
        self.worst = max(self.worst, rel)
        return th


# ------------------------------------------------------------------ random projections: two-stage theory
class ProjectedPooled:
    """Per-group error of pooled ridge on random projections ``XF``
    (``F`` a ``d×p`` matrix of iid ``N(0, 1/p)``; ``ŵ = Fâ``,
    ``â = (FᵀΣ̂F + λ)⁻¹FᵀXᵀy/N``), by nested conditioning on top of the
    engine's pooled derivation (``PooledRidge.des``), first order in ``F``.
    Since the engine derives the model itself (law ``projected_pooled``, F
    averaged first), this recipe-level route (X given F first) is the
    independent reference the recipes compare the engine's theory to
    (:class:`EngineProjected`).

    **Stage X (given F) — the engine.** The features ``Z_k = X_kF`` have rows
    ``N(0, S_k)``, ``S_k = FᵀΣ_kF``. Gaussian conditioning gives
    ``xᵀw_k = zᵀθ_k + e``, ``θ_k = S_k⁺FᵀΣ_kw_k``, ``e`` independent of
    ``z = Fᵀx`` with variance ``r_k = w_kᵀΣ_k⊥w_k``,
    ``Σ_k⊥ = Σ_k − Σ_kFS_k⁺FᵀΣ_k``. So given F the model is the pooled ridge
    of ``PooledRidge`` in feature space with ``Σ_k → S_k``, ``w_k → θ_k``,
    ``s_k → s_k + r_k``, and ``E_g = (â − θ_g)ᵀS_g(â − θ_g) + r_g``. The
    engine's derived ``E_g`` is used verbatim for that value: its traces and
    forms are words ``Tr[S_a R]``, ``Tr[S_a R S_b R]``, ``θ_iᵀS_i(RS_a)^m S_jθ_j``
    (``m ≤ 2``) and ``θ_kᵀS_kθ_k``, ``R = (Σ_k c_kρ_kS_k + λ)⁻¹``
    (``c_k = n_k/N``), and its unknowns ``δ_k = Tr[S_kR]/N``.

    **Stage F (average over F).** ``S_kθ_k = FᵀΣ_kw_k`` and
    ``θ_kᵀS_kθ_k = w_kᵀΣ_kw_k − r_k``; every ``R`` sits between two ``FᵀΣF``,
    so the words are d-space words in ``Q = F(FᵀMF + λ)⁻¹Fᵀ``,
    ``M = Σ_k c_kρ_kΣ_k``. With ``Ŝ = M^{1/2}FFᵀM^{1/2}`` (``p`` samples,
    population ``M``), ``M^{1/2}QM^{1/2} = I − λ(Ŝ+λ)⁻¹ ≃ M(M+κ)⁻¹``, i.e.

        Q ≃ R_d = (M + κ)⁻¹,   κ(1 − Tr[M R_d]/p) = λ,

    and, differentiating in a source ``M → M + tA`` (``∂_tQ = −QAQ``),

        QAQ ≃ R_d(A + κ'_A)R_d,   κ'_A = γ Tr[R_dAR_d],
        γ = (κ²/p)/(1 − Tr[M²R_d²]/p).

    ``r_k ≃ κ₀_k w_kᵀΣ_k(Σ_k + κ₀_k)⁻¹w_k`` (``I − ŜŜ⁺ ≃ κ₀(Σ+κ₀)⁻¹`` for
    ``Ŝ = Σ_k^{1/2}FFᵀΣ_k^{1/2}``; ``κ₀_k`` the ridgeless root of
    ``Tr[Σ_k(Σ_k+κ₀)⁻¹] = p``, ``0`` when ``p ≥ rank Σ_k``). The unknowns
    ``δ_k = Tr[Σ_kR_d]/N`` and ``κ`` are solved jointly (numerically).
    Ratios/products of ``F``-random traces are evaluated at their
    equivalents (they concentrate). Any other word raises
    ``NotImplementedError`` naming it. Checks: ``tests/test_feat_pooled_rp.py``
    (one group = the engine's random-feature ridge formula; dense Monte Carlo
    at two sizes)."""

    def __init__(self, model, key):
        from symrmt.objects import Form, Tr
        self.model, self.key = model, key
        de = model.des[key]
        self.value = sp.sympify(de.value)
        (grp,) = de.groups
        self.deltas = tuple(grp.unknowns)
        m = model
        self.S = {m.Sigma1: 1, m.Sigma2: 2}
        self.W = {m.w1: 1, m.w2: 2}
        self.R_expr = None
        for eq in grp.equations:
            for inv in eq.rhs.atoms(sp.MatPow) | eq.rhs.atoms(sp.Inverse):
                self.R_expr = inv
        self.atoms = sorted(self.value.atoms(Tr) | self.value.atoms(Form), key=sp.default_sort_key)
        self.plans = [self._parse(a) for a in self.atoms]
        extra = self.value.free_symbols - set(self.deltas) - {m.lam, m.s1, m.s2, m.n1, m.n2}
        extra -= set().union(*[a.free_symbols for a in self.atoms]) if self.atoms else set()
        if extra:
            raise NotImplementedError(f"random projections: symbols {extra} outside the traces/forms of {key}")
        args = list(self.deltas) + [m.lam, m.s1, m.s2, m.n1, m.n2]
        self.atom_syms = [sp.Symbol(f"_a{i}") for i in range(len(self.atoms))]
        v = self.value.xreplace(dict(zip(self.atoms, self.atom_syms)))
        self.fn = sp.lambdify(args + self.atom_syms, v, "numpy")

    def _letters(self, arg):
        from sympy import Transpose
        c, mats = arg.as_coeff_matrices() if isinstance(arg, sp.MatMul) else (sp.S.One, [arg])
        out = []
        for M in mats:
            if M == self.R_expr:
                out.append(("R", None))
            elif M in self.S:
                out.append(("S", self.S[M]))
            elif isinstance(M, Transpose) and M.arg in self.W:
                out.append(("row", self.W[M.arg]))
            elif M in self.W:
                out.append(("col", self.W[M]))
            else:
                raise NotImplementedError(f"random projections: letter {sp.sstr(M)[:80]} is not a feature-space "
                                          "covariance, the pooled resolvent or a teacher")
        return c, out

    def _parse(self, atom):
        from symrmt.objects import Form
        c, L = self._letters(atom.arg)
        bad = NotImplementedError(f"random projections: {sp.sstr(atom)[:160]} is not a word alternating FᵀΣF "
                                  "and the feature resolvent (stage F is not derived for it)")
        if isinstance(atom, Form):
            if len(L) < 3 or L[0][0] != "row" or L[-1][0] != "col" or L[1] != ("S", L[0][1]) \
                    or L[-2] != ("S", L[-1][1]):
                raise bad
            mid = L[2:-2]
            i, j = L[0][1], L[-1][1]
            if not mid:
                if i != j:
                    raise bad
                return ("self", c, i)
            if [k for k, _ in mid[0::2]] != ["R"] * len(mid[0::2]) or len(mid) % 2 != 1 \
                    or any(k != "S" for k, _ in mid[1::2]) or len(mid) > 3:
                raise bad
            return ("form", c, i, j, [a for _, a in mid[1::2]])
        if len(L) not in (2, 4) or [k for k, _ in L] != ["S", "R"] * (len(L) // 2):
            raise bad
        return ("trace", c, [a for _, a in L[0::2]])

    # ---- numerics
    @staticmethod
    def _mat(a):
        a = np.asarray(a, float)
        return np.diag(a) if a.ndim == 1 else a

    @staticmethod
    def kappa_ridgeless(Sigma, p):
        ev = np.clip(np.linalg.eigvalsh(Sigma), 0, None)
        if np.sum(ev > 1e-14 * ev.max()) <= p:
            return 0.0
        from scipy.optimize import brentq
        f = lambda k: np.sum(ev / (ev + k)) - p  # noqa: E731
        hi = ev.max()
        while f(hi) > 0:
            hi *= 2
        return brentq(f, 0.0, hi, xtol=1e-300, rtol=1e-15)

    def solve(self, b):
        """``(δ₁, δ₂, κ, R_d, M)`` at scalar bindings ``b``."""
        from scipy.optimize import brentq, fsolve
        Sig = {1: self._mat(b["Sigma1"]), 2: self._mat(b["Sigma2"])}
        n = {1: float(b["n1"]), 2: float(b["n2"])}
        N, lam, p = n[1] + n[2], float(b["lam"]), float(b["p"])
        cache = {}

        def inner(dl):
            M = sum(n[k] / N / (1 + dl[k - 1]) * Sig[k] for k in (1, 2))
            ev, U = np.linalg.eigh(M)
            ev = np.clip(ev, 0, None)
            g = lambda k: k * (1 - np.sum(ev / (ev + k)) / p) - lam  # noqa: E731
            hi = lam
            while g(hi) < 0:
                hi *= 2
            kap = brentq(g, lam, hi, xtol=1e-15 * lam, rtol=1e-15) if g(lam) < 0 else lam
            Rd = (U / (ev + kap)) @ U.T
            cache.update(M=M, kap=kap, Rd=Rd)
            return np.array([np.sum(Sig[k] * Rd) / N for k in (1, 2)])

        dl = np.zeros(2)
        for _ in range(30):
            dl = inner(dl)
        dl, info, ier, msg = fsolve(lambda x: inner(x) - x, dl, xtol=1e-14, full_output=True)
        res = np.max(np.abs(inner(dl) - dl))
        if res > 1e-10 * max(1.0, np.max(np.abs(dl))):
            raise RuntimeError(f"random projections: δ/κ system not solved (residual {res:.2e}: {msg})")
        return dl, cache["kap"], cache["Rd"], cache["M"], Sig

    def __call__(self, b):
        """The first-order equivalent of ``E_key`` at scalar bindings ``b``
        (``Sigma1``, ``Sigma2``, ``w1``, ``w2``, ``s1``, ``s2``, ``n1``, ``n2``,
        ``lam``, ``p``)."""
        dl, kap, Rd, M, Sig = self.solve(b)
        p = float(b["p"])
        w = {1: np.asarray(b["w1"], float), 2: np.asarray(b["w2"], float)}
        Sw = {k: Sig[k] @ w[k] for k in (1, 2)}
        r = {}
        for k in (1, 2):
            k0 = self.kappa_ridgeless(Sig[k], p)
            r[k] = 0.0 if k0 == 0 else k0 * float(w[k] @ Sig[k] @ np.linalg.solve(Sig[k] + k0 * np.eye(len(w[k])), w[k]))
        Rd2 = Rd @ Rd
        gamma = kap ** 2 / p / (1 - np.sum((M @ Rd) * (M @ Rd).T) / p)
        kp = lambda A: gamma * np.sum(Rd * (A @ Rd).T)  # κ'_A = γ Tr[R_d A R_d]  # noqa: E731
        vals = []
        for plan in self.plans:
            kind, c = plan[0], float(plan[1])
            if kind == "self":
                k = plan[2]
                vals.append(c * (float(w[k] @ Sw[k]) - r[k]))
            elif kind == "form":
                _, _, i, j, mids = plan
                if not mids:
                    vals.append(c * float(Sw[i] @ Rd @ Sw[j]))
                else:
                    A = Sig[mids[0]]
                    vals.append(c * float(Sw[i] @ Rd @ A @ Rd @ Sw[j] + kp(A) * (Sw[i] @ Rd2 @ Sw[j])))
            else:
                mids = plan[2]
                if len(mids) == 1:
                    vals.append(c * np.sum(Sig[mids[0]] * Rd))
                else:
                    A, B = Sig[mids[0]], Sig[mids[1]]
                    vals.append(c * (np.sum((A @ Rd) * (B @ Rd).T) + kp(B) * np.sum(A * Rd2)))
        g = 1 if self.key.startswith("E_1") else 2
        out = self.fn(*dl, float(b["lam"]), float(b["s1"]) + r[1], float(b["s2"]) + r[2],
                      float(b["n1"]), float(b["n2"]), *vals)
        return float(out) + r[g]


def rp_report(heading, data, rp_refused, rp_trials, rp_rows, rp_sizes, theory=None):
    """The random-projection section of a pooled recipe's ``table.md`` (lines)
    and its ``summary.json`` entry: theory from the engine (``sr.deterministic_equivalent``
    of the model as written, law ``projected_pooled``), each row with its relative
    difference to the recipe-level nested route ``ProjectedPooled``; dense Monte
    Carlo of ``data``. ``theory``: the ``model.rp_theory`` dict (found by the rows'
    values; found automatically from the last :func:`derive_recipe_models` if
    omitted); a refusal (``rp_refused``) is recorded verbatim."""
    from _common import markdown_table, trend_table
    theory = theory if theory is not None else _LAST.get("rp_theory", {})
    diffs = {}
    for t in theory.values():
        diffs.update(getattr(t, "rel_diff", {}))
    body = ["", f"## Random projections ({heading})", ""]
    if rp_refused:
        body += ["`sr.deterministic_equivalent` refused this model (theory below from the recipe-level route "
                 "`_pooled.ProjectedPooled`):", ""]
        body += [f"- {k}: `{v}`" for k, v in rp_refused.items()]
    else:
        body += ["Theory: `sr.deterministic_equivalent` of the model as written (ridge on XF of the stacked groups, "
                 "ŵ = Fâ; law `projected_pooled`: F given X, `F(FᵀΣ̂F+λ)⁻¹Fᵀ ≃ (Σ̂+κ)⁻¹` with its source "
                 "derivative, "
                 "then X through the general pooled law at ridge κ; unknowns δ_k, κ solved jointly), compiled. "
                 "Last column: relative difference to the recipe-level nested route `_pooled.ProjectedPooled` "
                 "(X given F, then F; independent)."]
    body += ["", f"Monte Carlo: dense NumPy draws of {data} and F (trials per size {rp_trials}).", ""]
    table = markdown_table(rp_rows).split("\n")
    table[0] += " engine vs recipe-level nested route, rel. diff |"
    table[1] += "---:|"
    for i, r in enumerate(rp_rows):
        rel = diffs.get(r.theory)
        table[2 + i] += (f" {rel:.1e} |" if rel is not None else " – |")
    body += ["\n".join(table)]
    if len(rp_sizes) > 1:
        body += ["", trend_table(rp_rows)]
    worst = max([diffs[r.theory] for r in rp_rows if r.theory in diffs], default=None)
    summary = dict(refused=rp_refused,
                   theory=("_pooled.ProjectedPooled (two-stage; engine refused)" if rp_refused else
                           "sr.deterministic_equivalent (law projected_pooled), compiled"),
                   reference="_pooled.ProjectedPooled (recipe-level nested route)",
                   max_rel_diff_engine_vs_reference=worst,
                   rows=[dict(quantity=r.quantity, d=r.d, theory=r.theory, mc=r.mc, sem=r.sem,
                              tol=r.tol, passed=r.passed, rel_diff_engine_vs_reference=diffs.get(r.theory))
                         for r in rp_rows])
    return body, summary


def rp_problem(d, p_ratio, lam=0.05, seed=1):
    """Bindings of a two-group random-projection test problem at size ``d``:
    ``Σ₁ = diag(1/i)``, ``Σ₂ = Q diag(linspace(0.1, 1)) Qᵀ`` (random rotation:
    not commuting with ``Σ₁``), ``n₁ = 1.5d``, ``n₂ = d/2``, teachers differing
    by a random shift, ``p = p_ratio·d`` (shared by the tests and
    ``benchmarks/projected.py``)."""
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    w1 = rng.standard_normal(d) / np.sqrt(d)
    return dict(Sigma1=np.arange(1, d + 1) ** -1.0, Sigma2=Q @ np.diag(np.linspace(0.1, 1.0, d)) @ Q.T,
                n1=int(1.5 * d), n2=d // 2, lam=lam, w1=w1, w2=w1 + 0.6 * rng.standard_normal(d) / np.sqrt(d),
                s1=0.1, s2=0.2, p=int(p_ratio * d))

def rp_reference_lines(rp_ref_rows, k_tol, c_tol, residual="r_g"):
    """Report lines: the engine's random-projection rows against the
    independent conditional-F reference (``_paper_pooled.conditional_rp_errors``)."""
    from _common import markdown_table
    return ["", "### Random projections vs an independent conditional-F reference", "",
            "Reference: `_paper_pooled.conditional_rp_errors` — for each drawn F (d×p, iid N(0, 1/p)) the pooled "
            "errors in feature space (`S_k = FᵀΣ_kF`, `θ_k`, noise `σ_k² + r_k`, plus `" + residual + "`) by the "
            "general form, first order in X given F, averaged over the F draws (the sem column is over F; "
            "'trials' = F draws). "
            f"Tolerance {k_tol:g}·sem + {c_tol:g}·|th|/d (F fluctuation and finite-p corrections). "
            "Normalisation: F ~ N(0, 1/p) as `sr.RandomFeatures`; projections S ~ N(0, 1/d) (as the papers write "
            "their random-projection models, to our recollection) give the same predictor at λ_S = λ·p/d "
            "(`_paper_pooled.lam_from_paper_scale` maps back), so the rows below are at λ_S = λ/2.", "",
            markdown_table(rp_ref_rows), ""]

def rp_formulas_lines(model, rp_refused, error="E"):
    """Markdown lines for a pooled recipe's ``formulas.md``: how the engine
    derives the random-projection model (or its refusal, verbatim) and the
    derived law's equations (``R = (M + κ)⁻¹`` abbreviated; the full value is
    ``de.value``, too long to print usefully)."""
    lines = ["## Random projections (ridge on XF)", ""]
    if rp_refused:
        lines += ["`sr.deterministic_equivalent` refuses the pooled random-projection model (verbatim below); the "
                  "table's theory for it is the recipe-level route `_pooled.ProjectedPooled`.", ""]
        return lines + [f"- engine refusal, **{k}**: `{v}`" for k, v in rp_refused.items()] + [""]
    lines += [f"`sr.deterministic_equivalent` derives ${error}$ for ridge on $XF$ from the model as written "
              "(law `projected_pooled`). Stage F (F given X): $\\hat S=\\hat\\Sigma^{1/2}FF^\\top\\hat\\Sigma^{1/2}$ "
              "is a white Wishart with $p$ samples, so $F(F^\\top\\hat\\Sigma F+\\lambda)^{-1}F^\\top\\simeq"
              "(\\hat\\Sigma+\\kappa)^{-1}$, $\\kappa(1-\\mathrm{Tr}[\\hat\\Sigma(\\hat\\Sigma+\\kappa)^{-1}]/p)=\\lambda$, "
              "and two of them $QAQ\\simeq\\hat G(A+\\hat\\gamma\\,\\mathrm{Tr}[\\hat GA\\hat G])\\hat G$ with "
              "$\\hat\\gamma=(\\kappa^2/p)/(1-\\mathrm{Tr}[\\hat\\Sigma^2\\hat G^2]/p)$ (source derivative). "
              "Stage X: the words in $\\hat G=(\\hat\\Sigma+\\kappa)^{-1}$ through the general pooled law at ridge "
              "$\\kappa$ (as for $E$ without projections). Unknowns $\\delta_k$ and $\\kappa$, solved jointly:", ""]
    de = next(iter(getattr(model, "rp_des", {}).values()), None)
    if de is None:
        return lines
    (g,) = de.groups
    R = sp.MatrixSymbol("R", model.d, model.d)
    invs = {a: R for eq in g.equations for a in eq.atoms(sp.Inverse)}
    Nsym = sp.Symbol("N")
    for eq in g.equations:
        lines += ["$$" + sp.latex(eq.xreplace(invs).subs(model.n1 + model.n2, Nsym)) + "$$", ""]
    lines += ["with $R=(M+\\kappa)^{-1}$, $M=\\sum_k (n_k/N)\\Sigma_k/(1+\\delta_k)$, $N=n_1+n_2$. The recipe-level "
              "route in the other order (`_pooled.ProjectedPooled`: X given F, then F) is the independent reference "
              "in the table's last column.", ""]
    return lines


_LAST = {}      # the last derive_recipe_models' rp_theory (for rp_report)
