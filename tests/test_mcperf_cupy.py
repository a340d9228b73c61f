"""``monte_carlo(..., backend="cupy")``: the per-draw eigendecomposition of
each random core through ``cupy.linalg.eigh`` (issue 17 item 5).

* with CuPy installed (and a GPU): against the NumPy backend on the same draws
  (rounding-level agreement, not bit for bit) — skipped otherwise;
* always: the plumbing, with a stand-in ``cupy`` module whose ``linalg`` is
  NumPy's (the calls reach it, in serial and thread-pool runs, and give the
  NumPy backend's numbers), and the error when CuPy is missing.
"""
import sys
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import symrmt as sr

n, d = sr.dims("n d")
lam = sr.scalar("lam")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
G = (X.T * X / n + lam * sr.I(d)).inverse()
w = sr.Vector("w", d)
EXPR = sr.ntr(Sigma * G) + w.T * G * w
VALS = sr.ntr(X.T * X / n * G)
BV = dict(Sigma=np.linspace(0.2, 2.0, 24), n=40, lam=np.logspace(-2, 0, 3))      # VALS
B = dict(BV, w=np.ones(24) / np.sqrt(24))                                        # EXPR


def _real_cupy():
    try:
        import cupy
        cupy.zeros(1)           # a device must be there too
        return cupy
    except Exception:
        return None


@pytest.mark.skipif(_real_cupy() is None, reason="CuPy with a GPU is not available")
@pytest.mark.parametrize("sampling", ["direct", "gram"])
def test_cupy_backend_matches_numpy(sampling):
    for expr, b_ in ((EXPR, B), (VALS, BV)):
        a = sr.monte_carlo(expr, trials=20, seed=3, progress=False, sampling=sampling, **b_)
        b = sr.monte_carlo(expr, trials=20, seed=3, progress=False, sampling=sampling, backend="cupy", **b_)
        np.testing.assert_allclose(b.mean, a.mean, rtol=1e-9)
        np.testing.assert_allclose(b.sem, a.sem, rtol=1e-6)


@pytest.fixture
def fake_cupy(monkeypatch):
    """A ``cupy`` stand-in: host arrays, NumPy's ``eigh``/``eigvalsh``; counts calls."""
    calls = {"eigh": 0, "eigvalsh": 0}

    def eigh(a, UPLO="L"):
        calls["eigh"] += 1
        return np.linalg.eigh(a, UPLO=UPLO)

    def eigvalsh(a, UPLO="L"):
        calls["eigvalsh"] += 1
        return np.linalg.eigvalsh(a, UPLO=UPLO)

    mod = types.ModuleType("cupy")
    mod.asarray = np.asarray
    mod.asnumpy = np.asarray
    mod.linalg = types.SimpleNamespace(eigh=eigh, eigvalsh=eigvalsh)
    monkeypatch.setitem(sys.modules, "cupy", mod)
    return calls


@pytest.mark.parametrize("sampling", ["direct", "gram"])
def test_backend_plumbing_with_stand_in(fake_cupy, sampling):
    ref = sr.monte_carlo(EXPR, trials=6, seed=2, progress=False, sampling=sampling, **B)
    assert fake_cupy["eigh"] == 0
    got = sr.monte_carlo(EXPR, trials=6, seed=2, progress=False, sampling=sampling, backend="cupy", **B)
    assert fake_cupy["eigh"] >= 6                                # one per draw (+ the planning draw)
    np.testing.assert_allclose(got.mean, ref.mean, rtol=1e-10)
    with ThreadPoolExecutor(2) as ex:                          # set inside each worker's chunk
        before = fake_cupy["eigh"]
        th = sr.monte_carlo(EXPR, trials=6, seed=2, progress=False, sampling=sampling, backend="cupy",
                            executor=ex, **B)
    assert fake_cupy["eigh"] - before >= 6
    assert np.array_equal(th.mean, got.mean)
    vals = sr.monte_carlo(VALS, trials=4, seed=2, progress=False, backend="cupy", **BV)
    assert fake_cupy["eigvalsh"] >= 4                            # eigenvalues-only path too
    np.testing.assert_allclose(vals.mean, sr.monte_carlo(VALS, trials=4, seed=2, progress=False, **BV).mean,
                               rtol=1e-10)


def test_missing_cupy_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)              # import cupy → ImportError
    with pytest.raises(ImportError, match="backend='cupy' needs CuPy"):
        sr.monte_carlo(EXPR, trials=2, backend="cupy", **B)
