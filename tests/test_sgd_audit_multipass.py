"""Audit of the multi-pass (B < n) and random-feature SGD curves of ``derivations/sgd_two_point.py``
(arXiv:2502.05074) against independent plain-NumPy references in ``derivations/_paper_sgd.py``
(no symrmt there):

- the EXACT conditional second moment of multi-pass SGD over the batch sampling
  (``multipass_moments(closure="exact")``, from ``E[SAS] = αA + β diag A``, no closure) against a
  dense simulation of SGD on the same data set (``multipass_sgd_sim``): tolerance ``4·sem``
  (an identity, c = 0);
- the engine's conditional Volterra recursion (``SGD.conditional``, Gaussian closure) against the
  NumPy recursion with the same closure on the same draw: rtol 1e-10 (both exact recursions);
- the engine's two-point deterministic equivalent at t = 1 against the exact first step
  (B distinct rows of an iid data set are B fresh samples: the one-pass Wick value), linear at
  d = 40, 80 (relative error ≤ 4/d and falling like 1/d: ratio in [1.6, 2.4]) and random features
  (``4·sem + 4·|th|/d``, sem over draws of F; slow: the RF derivation);
- bad input to the references raises ``ValueError`` naming the argument.
"""
import pathlib
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "derivations"))
import _paper_sgd as Q  # noqa: E402
from sgd_two_point import SIGMA2, problem  # noqa: E402

from symrmt.dynamics import SGD  # noqa: E402

STEPS = np.array([1, 5, 20, 60])


@pytest.mark.parametrize("p, lr, batch", [(None, 0.5, 1), (None, 1.0, 4), (10, 1.0, 4)])
def test_exact_moments_match_simulated_sgd(p, lr, batch):
    d = 20
    s, w = problem(d)
    Z, y, SF, FSw, wSw = Q.multipass_problem(s, w, SIGMA2, 2 * d, p, np.random.default_rng(7))[:5]
    ex, _ = Q.multipass_moments(Z, y, SF, FSw, wSw, SIGMA2, lr, batch, STEPS, "exact")
    m, se = Q.multipass_sgd_sim(Z, y, SF, FSw, wSw, SIGMA2, lr, batch, STEPS, 2000, seed=3)
    assert np.all(np.abs(m - ex) <= 4 * se), (m, se, ex)
    # the closure matters on one draw (else this test would not tell them apart) ...
    ga, _ = Q.multipass_moments(Z, y, SF, FSw, wSw, SIGMA2, lr, batch, STEPS, "gaussian")
    assert np.max(np.abs(ga / ex - 1)) > 1e-4
    # ... and at B = n every closure is full-batch GD
    gd = [Q.multipass_moments(Z, y, SF, FSw, wSw, SIGMA2, lr, 2 * d, STEPS, c)[0] for c in ("exact", "gaussian")]
    np.testing.assert_allclose(gd[0], gd[1], rtol=1e-13)


@pytest.mark.parametrize("p, lr, batch, closure", [(None, 0.25, 1, "gaussian"), (None, 1.0, 8, "gaussian"),
                                                   (15, 1.0, 8, "gaussian"), (None, 1.0, 8, "homogenized")])
def test_engine_conditional_matches_numpy_recursion(p, lr, batch, closure):
    d = 30
    s, w = problem(d)
    Z, y, SF, FSw, wSw, X, eps, F = Q.multipass_problem(s, w, SIGMA2, 2 * d, p, np.random.default_rng(5))
    ref = Q.multipass_moments(Z, y, SF, FSw, wSw, SIGMA2, lr, batch, STEPS, closure)
    g = SGD(s, w, SIGMA2, lr=lr, batch=batch, passes="multi", n=2 * d, features=p, closure=closure)
    got = g.conditional(STEPS, X, eps, F)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-10)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-10)


@pytest.mark.parametrize("lr, batch", [(0.25, 1), (1.0, 8)])
def test_equivalent_first_step_vs_exact_linear(lr, batch):
    rel = []
    for d in (40, 80):
        s, w = problem(d)
        th = SGD(s, w, SIGMA2, lr=lr, batch=batch, passes="multi", n=2 * d).theory([1]).risk[0]
        ex, _ = Q.first_step_exact(s, w, SIGMA2, lr, batch)
        rel.append(abs(th - ex) / ex)
        assert rel[-1] <= 4.0 / d, (d, th, ex)
    assert 1.6 <= rel[0] / rel[1] <= 2.4, rel        # O(1/d)


@pytest.mark.slow
@pytest.mark.parametrize("d", [40, 80])
def test_equivalent_first_step_vs_exact_random_features(d):
    lr, batch = 0.5, 8
    s, w = problem(d)
    th = SGD(s, w, SIGMA2, lr=lr, batch=batch, passes="multi", n=2 * d, features=d // 2).theory([1]).risk[0]
    ex, se = Q.first_step_exact(s, w, SIGMA2, lr, batch, p=d // 2, draws=200, seed=1)
    assert abs(th - ex) <= 4 * se + 4 * abs(th) / d, (th, ex, se)


def test_references_refuse_bad_input():
    d = 10
    s, w = problem(d)
    Z, y, SF, FSw, wSw = Q.multipass_problem(s, w, SIGMA2, 2 * d, None, np.random.default_rng(0))[:5]
    with pytest.raises(ValueError, match="batch"):
        Q.multipass_moments(Z, y, SF, FSw, wSw, SIGMA2, 0.5, 0, STEPS)
    with pytest.raises(ValueError, match="closure"):
        Q.multipass_moments(Z, y, SF, FSw, wSw, SIGMA2, 0.5, 2, STEPS, "wick")
    with pytest.raises(ValueError, match="lr"):
        Q.multipass_moments(Z, y, SF, FSw, wSw, SIGMA2, 50.0, 2, STEPS)
