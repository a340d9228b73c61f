"""Issue 17 item 3: the planning draw reused as trial 0, and the contraction
fast paths of the per-draw evaluation.

* Reuse (``plan.py``): trial 0 evaluates on the planning draw's arrays and,
  where the planning draw decomposed a core exactly as the run would, on its
  eigendecomposition. Checked bit for bit (``np.array_equal``) against the
  same run with the reuse switched off (``program.REUSE_PLANNING_DRAW``), for
  eigenvalue-only, eigenvector, form and risk expressions, ``"direct"`` and
  ``"gram"`` sampling, ``n > d`` and ``n < d``; and that it does save one
  eigendecomposition per run.
* ``contract._diag_pair`` (``Tr[diag(a) V diag(b) Vᵀ] = aᵀ(V∘V)b``) and the
  two-factor product against the einsum contraction they replace (1e-12).
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import symrmt as sr
from symrmt.montecarlo import contract, evaluate_draw
from symrmt.montecarlo import program as P
from symrmt.montecarlo import values as V
from symrmt.montecarlo.bindings import collect
from symrmt.objects.ops import as_scalar
from symrmt.montecarlo.values import Dense, Diag

n, d = sr.dims("n d")
lam, s2 = sr.scalar("lam"), sr.scalar("s2")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
eps = sr.GaussianNoise("eps", n, s2)
Sh = X.T * X / n
G = (Sh + lam * sr.I(d)).inverse()
v, x, wbar = sr.Vector("v", d), sr.Vector("x", d), sr.Vector("wbar", d)
w_hat = G * X.T * (X * wbar + eps) / n
CASES = {
    "vals": sr.ntr(Sh * G),
    "vecs": sr.ntr(Sigma * G),
    "form": v.T * G * x,
    "risk": (w_hat - wbar).T * Sigma * (w_hat - wbar) + s2,
    "mixed": sr.ntr(Sh * G) + v.T * G * G * x,
}
D = 10


def _bind(expr, N):
    rng = np.random.default_rng(2)
    full = dict(Sigma=np.linspace(0.2, 2.0, D), n=N, lam=np.array([0.05, 0.5, 2.0]), s2=0.3,
                v=rng.standard_normal(D), x=rng.standard_normal(D), wbar=rng.standard_normal(D) / np.sqrt(D))
    dims, scalars, det, _ = collect(as_scalar(expr))
    names = set(dims) | set(scalars) | set(det)
    return {k: a for k, a in full.items() if k in names}


def _run(expr, b, sampling, reuse, monkeypatch, **kw):
    monkeypatch.setattr(P, "REUSE_PLANNING_DRAW", reuse)
    return sr.monte_carlo(expr, trials=4, seed=11, progress=False, sampling=sampling, **b, **kw)


@pytest.mark.parametrize("N", [17, 6])            # n > d (full eigh) and n < d (Gram eigenvalues)
@pytest.mark.parametrize("sampling", ["direct", "gram"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_reuse_is_bit_identical(name, sampling, N, monkeypatch):
    expr = CASES[name]
    b = _bind(expr, N)
    on = _run(expr, b, sampling, True, monkeypatch)
    off = _run(expr, b, sampling, False, monkeypatch)
    assert np.array_equal(on.mean, off.mean) and np.array_equal(on.sem, off.sem)
    v0, _ = evaluate_draw(expr, seed=11, trial=0, sampling=sampling, **b)
    monkeypatch.setattr(P, "REUSE_PLANNING_DRAW", False)
    w0, _ = evaluate_draw(expr, seed=11, trial=0, sampling=sampling, **b)
    assert np.array_equal(v0, w0)


def test_reuse_saves_one_eigendecomposition(monkeypatch):
    """Eigenvector expression (the plan asks for eigenvectors): with the reuse
    a run of T draws calls the eigensolver T times (planning = trial 0),
    without it T + 1 times; values identical."""
    calls = []
    real = V._eigh_lower

    def counted(a, values_only=False):
        calls.append(values_only)
        return real(a, values_only)

    monkeypatch.setattr(V, "_eigh_lower", counted)
    expr = CASES["vecs"]
    b = _bind(expr, 17)
    res = {}
    for reuse in (True, False):
        calls.clear()
        res[reuse] = _run(expr, b, "gram", reuse, monkeypatch)
        res[reuse, "calls"] = len(calls)
    assert res[True, "calls"] == 4 and res[False, "calls"] == 5
    assert np.array_equal(res[True].mean, res[False].mean)


def test_reuse_with_a_thread_executor(monkeypatch):
    """Trial 0 run by a worker thread of the same process uses the kept
    planning draw: results equal the serial run bit for bit."""
    expr = CASES["risk"]
    b = _bind(expr, 17)
    serial = _run(expr, b, "gram", True, monkeypatch)
    with ThreadPoolExecutor(2) as ex:
        threaded = _run(expr, b, "gram", True, monkeypatch, executor=ex)
    assert np.array_equal(serial.mean, threaded.mean) and np.array_equal(serial.sem, threaded.sem)


class _Basis:
    def __init__(self, vectors):
        self.vectors = vectors


def test_diag_pair_and_two_factor_product_against_einsum():
    rng = np.random.default_rng(0)
    k, N = 9, 4
    basis = _Basis(np.linalg.qr(rng.standard_normal((k, k)))[0])
    for a in (rng.random(k), rng.random((N, k))):
        for bb in (rng.random(k), rng.random((N, k))):
            for fs in ((Diag(a), Diag(bb, basis)), (Diag(bb, basis), Diag(a)),
                       (Diag(bb, basis), Diag(a), Diag(rng.random(k)))):
                elems = contract._elements(fs, cyclic=True)
                assert contract._diag_pair(elems) is not None
                got, ref = contract.trace(fs), contract._einsum(elems, cyclic=True)
                assert np.shape(got) == np.shape(ref)
                np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    A, B = rng.standard_normal((3, k)), rng.standard_normal((k, 5))
    Ab = rng.standard_normal((N, 3, k))
    for fs in ((Dense(A), Dense(B)), (Dense(Ab), Dense(B))):
        elems = contract._elements(fs, cyclic=False)
        np.testing.assert_allclose(contract.product(fs), contract._einsum(elems, cyclic=False), rtol=1e-12)
