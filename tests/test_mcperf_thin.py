"""Issue 17 item 3: eigenvectors kept factored for thin products.

For a random core whose eigenvectors the expression only applies to thin
blocks (a form ``vᵀ(Σ̂+λ)⁻¹x``, the ridge risk ``(ŵ−w̄)ᵀΣ(ŵ−w̄)`` over a grid
of ridges), ``values.Basis._factor`` keeps ``V = diag(Q, 1)·Z`` factored
(``dsytrd`` reflectors ``Q``, ``dstevd`` eigenvectors ``Z`` of the
tridiagonal) and ``L·V``, ``L·Vᵀ`` go through ``dormqr``; ``dsyevd``'s
back-transformation ``Q·Z`` is never done. Checked here:

* ``Basis.apply_left`` (both orientations, batched, complex, the fallback
  that forms ``V`` when many rows are applied, a matrix that ``dsyevd``
  would scale first) against ``L @ V`` of ``numpy.linalg.eigh`` of the same
  matrix: 1e-12 relative; the eigenvalues are bit for bit ``dsyevd``'s;
* the plan (which cores are thin; the whole-matrix uses stay on ``dsyevd``);
* on the same draws (same seed) the factored path against the ``dsyevd``
  path it replaces (``FACTOR_MIN`` raised past ``d``): ≤ 1e-12 relative per
  draw, for forms, the ridge risk, the training error, a mixed expression,
  ``n > d``, ``n < d``, ``"gram"`` and ``"direct"`` sampling;
* one draw against a dense NumPy evaluation (``numpy.linalg.solve``) of the
  same arrays (``evaluate_draw``): 1e-10 relative;
* trial 0 (planning draw reused) bit for bit with the reuse off, and a
  thread executor bit for bit with the serial run.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import symrmt as sr
from symrmt.montecarlo import evaluate_draw
from symrmt.montecarlo import program as P
from symrmt.montecarlo import values as V
from symrmt.montecarlo.bindings import bind, collect
from symrmt.objects.ops import as_scalar
from symrmt.montecarlo.program import Program

n, d = sr.dims("n d")
lam, s2 = sr.scalar("lam"), sr.scalar("s2")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
eps = sr.GaussianNoise("eps", n, s2)
G = (X.T * X / n + lam * sr.I(d)).inverse()
wbar, v, u = sr.Vector("wbar", d), sr.Vector("v", d), sr.Vector("u", d)
y = X * wbar + eps
w_hat = G * X.T * y / n
RISK = (w_hat - wbar).T * Sigma * (w_hat - wbar) + s2
TRAIN = (y - X * w_hat).T * (y - X * w_hat) / n
FORM = v.T * G * u
FORM2 = v.T * G * G * u
VALS_FORM = sr.ntr(X.T * X / n * G) + v.T * G * u      # eigenvalues + a thin use: thin
MIXED = sr.ntr(Sigma * G) + v.T * G * u                  # Σ meets V: the whole matrix, dsyevd
CASES = {"risk": RISK, "train": TRAIN, "form": FORM, "form2": FORM2, "vals_form": VALS_FORM, "mixed": MIXED}


def _bindings(D, N, grid=5, seed=1):
    rng = np.random.default_rng(seed)
    return dict(Sigma=np.linspace(0.3, 2.0, D), n=N, lam=np.logspace(-2, 1, grid), s2=0.25,
                wbar=rng.standard_normal(D) / np.sqrt(D), v=rng.standard_normal(D), u=rng.standard_normal(D))


def _only(expr, b):
    dims, sc, det, _ = collect(as_scalar(expr))
    names = set(dims) | set(sc) | set(det)
    return {k: x for k, x in b.items() if k in names}


def _program(expr, b, sampling):
    e = as_scalar(expr)
    return Program([e], bind(e, _only(expr, b)), sampling=sampling)


@pytest.fixture(autouse=True)
def _small_sizes(monkeypatch):
    """The factored path from d = 32 on (default ``FACTOR_MIN`` 128, where
    it starts to pay): the tests run at d ≈ 70."""
    monkeypatch.setattr(V, "FACTOR_MIN", 32)


# ---------------------------------------------------------------- the factored basis
def _basis(A, thin=True):
    b = V.Basis("k", A.shape[0], matrix=np.array(A), want_vectors=True, thin=thin)
    b.values  # noqa: B018
    return b


@pytest.mark.parametrize("k", [64, 97])
def test_apply_left_against_eigh(k):
    rng = np.random.default_rng(k)
    Z = rng.standard_normal((2 * k, k)) * np.linspace(0.2, 2, k)
    A = Z.T @ Z / (2 * k)
    e, W = np.linalg.eigh(A)
    b = _basis(A)
    assert b._Z is not None and b._vectors is None          # factored, V not formed
    from scipy.linalg import eigh
    e_evd = eigh(A.T, lower=False, driver="evd", check_finite=False)[0]
    assert np.array_equal(b.values, e_evd)                    # dsyevd's eigenvalues, bit for bit
    for L in (rng.standard_normal((1, k)), rng.standard_normal((3, 2, k)),
              rng.standard_normal((2, k)) + 1j * rng.standard_normal((2, k))):
        for t in (False, True):
            b._applied = 0
            got = b.apply_left(L, t)
            assert got.shape == L.shape
            Vf = b._form()                                    # V = diag(Q, 1)·Z, formed apart
            ref = np.matmul(L, Vf.T if t else Vf)
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())
            assert b._vectors is None
    # the formed V is an orthonormal eigenbasis of A
    Vf = b._form()
    np.testing.assert_allclose(Vf.T @ Vf, np.eye(k), atol=1e-13)
    np.testing.assert_allclose((Vf * b.values) @ Vf.T, A, atol=1e-13 * np.abs(A).max())
    # a sign-free product against numpy's eigh: L V diag(f) Vᵀ R
    f = 1 / (e + 0.1)
    L, R = rng.standard_normal((2, k)), rng.standard_normal((k, 3))
    b._applied = 0
    got = (b.apply_left(L) * f) @ b.apply_left(R.T).T
    np.testing.assert_allclose(got, L @ (W * f) @ W.T @ R, rtol=1e-12, atol=1e-14)


def test_apply_left_forms_v_beyond_half_the_size():
    k = 64
    rng = np.random.default_rng(0)
    A = rng.standard_normal((k, k))
    A = A @ A.T
    b = _basis(A)
    L = rng.standard_normal((k // 2 + 1, k))
    got = b.apply_left(L, True)
    assert b._vectors is not None                            # too many rows: V formed once
    np.testing.assert_allclose(got, L @ b._vectors.T, rtol=1e-13)
    assert not b.factored()


def test_small_extreme_and_nonthin_matrices_use_dsyevd():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((80, 80))
    A = A @ A.T
    assert _basis(A, thin=False)._vectors is not None        # plan: whole-matrix use
    assert _basis(A[:20, :20])._vectors is not None          # below FACTOR_MIN
    tiny = _basis(A * 1e-300)                                # dsyevd would scale it first
    assert tiny._vectors is not None and tiny._Z is None
    np.testing.assert_allclose(tiny.values * 1e300, np.linalg.eigvalsh(A), rtol=1e-10)


# ---------------------------------------------------------------- the plan
def test_plan_marks_thin_cores_only():
    b = _bindings(80, 160, grid=20)
    for name, thin in (("risk", True), ("train", True), ("form", True), ("form2", True), ("vals_form", True),
                       ("mixed", False)):
        prog = _program(CASES[name], b, "gram")
        plan = prog.make_plan(np.random.SeedSequence(0))
        assert len(plan.need_vectors) == 1 and (len(plan.thin_vectors) == 1) == thin, name
    vecs = sr.ntr(Sigma * G)
    plan = _program(vecs, b, "gram").make_plan(np.random.SeedSequence(0))
    assert plan.need_vectors and not plan.thin_vectors
    big = _bindings(80, 160, grid=41)                         # 41 grid points · 1 row > d/2
    plan = _program(RISK, big, "gram").make_plan(np.random.SeedSequence(0))
    assert plan.need_vectors and not plan.thin_vectors


# ---------------------------------------------------------------- same draws, both paths
def _per_draw(expr, b, sampling, trials, monkeypatch, factor_min):
    """Draws 0 … trials−1 and the plan; ``calls``: eigensolver calls
    (``dsyevd``/``eigvalsh``) and ``V`` formed from factors, after planning."""
    monkeypatch.setattr(V, "FACTOR_MIN", factor_min)
    prog = _program(expr, b, sampling)
    ss = np.random.SeedSequence(5)
    plan = prog.make_plan(ss)
    calls = []
    eigh, form = V._eigh_lower, V.Basis._form
    monkeypatch.setattr(V, "_eigh_lower", lambda a, values_only=False: calls.append("eigh") or eigh(a, values_only))
    monkeypatch.setattr(V.Basis, "_form", lambda self: calls.append("form") or form(self))
    out = prog.run(plan, ss, range(trials))
    prog.drop_planning_draw()
    monkeypatch.setattr(V, "_eigh_lower", eigh)
    monkeypatch.setattr(V.Basis, "_form", form)
    return out, plan, calls


@pytest.mark.parametrize("D, N", [(70, 150), (70, 40)])       # n > d, n < d
@pytest.mark.parametrize("sampling", ["gram", "direct"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_factored_equals_dsyevd_path_on_same_draws(name, sampling, D, N, monkeypatch):
    b = _bindings(D, N)
    got, plan, calls = _per_draw(CASES[name], b, sampling, 3, monkeypatch, 32)
    thin = name != "mixed"
    assert bool(plan.thin_vectors) == thin
    if thin:   # values-only solves of other cores aside, no dsyevd and no V formed
        assert "form" not in calls and calls.count("eigh") <= 3 * (name == "vals_form")
    ref, plan0, _ = _per_draw(CASES[name], b, sampling, 3, monkeypatch, 10**9)
    assert not plan0.thin_vectors
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("N", [150, 40])
def test_one_draw_against_dense_numpy(N):
    D = 70
    b = _bindings(D, N)
    S = np.diag(b["Sigma"])
    for name in ("risk", "form", "train"):
        expr = CASES[name]
        val, draws = evaluate_draw(expr, seed=3, trial=2, **_only(expr, b))
        Xd = draws[X]
        e = np.sqrt(b["s2"]) * draws[eps][:, 0] if eps in draws else None
        ref = []
        for l in b["lam"]:
            M = Xd.T @ Xd / N + l * np.eye(D)
            if name == "form":
                ref.append(b["v"] @ np.linalg.solve(M, b["u"]))
                continue
            yn = Xd @ b["wbar"] + e
            wh = np.linalg.solve(M, Xd.T @ yn / N)
            if name == "risk":
                ref.append((wh - b["wbar"]) @ S @ (wh - b["wbar"]) + b["s2"])
            else:
                r = yn - Xd @ wh
                ref.append(r @ r / N)
        np.testing.assert_allclose(val, ref, rtol=1e-10)


# ---------------------------------------------------------------- reproducibility
@pytest.mark.parametrize("name", ["risk", "form"])
def test_reuse_and_executor_bit_identical(name, monkeypatch):
    expr = CASES[name]
    b = _only(expr, _bindings(70, 150))
    runs = {}
    for reuse in (True, False):
        monkeypatch.setattr(P, "REUSE_PLANNING_DRAW", reuse)
        runs[reuse] = sr.monte_carlo(expr, trials=4, seed=11, progress=False, **b)
    assert np.array_equal(runs[True].mean, runs[False].mean) and np.array_equal(runs[True].sem, runs[False].sem)
    monkeypatch.setattr(P, "REUSE_PLANNING_DRAW", True)
    with ThreadPoolExecutor(2) as ex:
        th = sr.monte_carlo(expr, trials=4, seed=11, progress=False, executor=ex, **b)
    assert np.array_equal(th.mean, runs[True].mean) and np.array_equal(th.sem, runs[True].sem)
    v0, _ = evaluate_draw(expr, seed=11, trial=0, **b)
    monkeypatch.setattr(P, "REUSE_PLANNING_DRAW", False)
    w0, _ = evaluate_draw(expr, seed=11, trial=0, **b)
    assert np.array_equal(v0, w0)


# ---------------------------------------------------------------- against the deterministic equivalent
@pytest.mark.parametrize("name", ["risk", "form"])
def test_factored_monte_carlo_against_theory_two_sizes(name):
    """``|mc − th| ≤ k·sem + c·|th|/d``, ``k = 4``, ``c = 3``, at d = 40 and
    80 (n = 2d, 200 draws) on the factored path; the equivalent from the same
    expression."""
    expr = CASES[name]
    de = sr.deterministic_equivalent(expr).compile()
    for D in (40, 80):
        b = _only(expr, _bindings(D, 2 * D, grid=3, seed=D))
        prog = _program(expr, b, "gram")
        assert prog.make_plan(np.random.SeedSequence(D)).thin_vectors
        prog.drop_planning_draw()
        th = np.asarray(de(**b), dtype=float)
        mc = sr.monte_carlo(expr, trials=200, seed=D, progress=False, **b)
        tol = 4 * mc.sem + 3 * np.abs(th) / D
        assert np.all(np.abs(mc.mean - th) <= tol), (D, th, mc.mean, mc.sem)


def test_planning_draw_factored_and_reused(monkeypatch):
    """The stand-in pass (``plan._classify``) knows the thin cores before the
    planning draw decomposes: the planning draw factors them as the run does
    and trial 0 reuses that (T factorizations for T draws, no ``dsyevd``);
    with the stand-in pass failing, the planning draw uses ``dsyevd`` (T + 1
    decompositions) and the numbers are the same bit for bit."""
    from symrmt.montecarlo import plan as PL
    b = _only(RISK, _bindings(70, 150))
    calls = []
    factor, eigh = V.Basis._factor, V._eigh_lower
    monkeypatch.setattr(V.Basis, "_factor", lambda self, a: calls.append("factor") or factor(self, a))
    monkeypatch.setattr(V, "_eigh_lower", lambda a, values_only=False: calls.append("eigh") or eigh(a, values_only))
    res = sr.monte_carlo(RISK, trials=4, seed=2, progress=False, **b)
    assert calls == ["factor"] * 4
    calls.clear()

    def fail(self):
        raise ValueError("stand-in rejected")
    monkeypatch.setattr(V.Basis, "stand_in", fail)
    res2 = sr.monte_carlo(RISK, trials=4, seed=2, progress=False, **b)
    assert calls == ["eigh"] + ["factor"] * 4
    assert np.array_equal(res.mean, res2.mean) and np.array_equal(res.sem, res2.sem)
    prog = _program(RISK, b, "gram")
    assert PL._classify(prog, prog.draw(PL.Plan(), np.random.SeedSequence(0), 0)) == frozenset()
