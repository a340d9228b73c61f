"""Chains of factors in the Monte Carlo evaluator: the sweep from a thin end
(forms ``uᵀ…w``, products with a thin factor) equals the einsum contraction
on random chains mixing dense, batched, diagonal and eigenbasis factors."""
import numpy as np
import pytest

from symrmt.montecarlo import contract
from symrmt.montecarlo.values import Dense, Diag


class _Basis:
    def __init__(self, vectors):
        self.vectors = vectors


@pytest.mark.parametrize("seed", range(6))
def test_sweep_equals_einsum(seed):
    rng = np.random.default_rng(seed)
    d, N = 17, 3
    bases = [_Basis(np.linalg.qr(rng.standard_normal((d, d)))[0]) for _ in range(2)]

    def factor(kind):
        return {"dense": lambda: Dense(rng.standard_normal((d, d))),
                "dense_batched": lambda: Dense(rng.standard_normal((N, d, d))),
                "diag": lambda: Diag(rng.random(d), bases[rng.integers(2)]),
                "diag_batched": lambda: Diag(rng.random((N, d)), bases[rng.integers(2)]),
                "scaling": lambda: Diag(rng.random((N, d)), None)}[kind]()

    kinds = ["dense", "dense_batched", "diag", "diag_batched", "scaling"]
    for _ in range(40):
        mids = [factor(kinds[i]) for i in rng.integers(0, len(kinds), rng.integers(1, 5))]
        r = int(rng.integers(1, 4))
        left, right = Dense(rng.standard_normal((r, d))), Dense(rng.standard_normal((d, r)))
        form = (left, *mids, right)
        got = contract.trace(form)
        ref = contract._einsum(contract._elements(form, cyclic=True), cyclic=True)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.max(np.abs(ref)))
        for chain in ((left, *mids), (*mids, right)):
            elems = contract._elements(chain, cyclic=False)
            if len(elems) < 2:
                continue
            got = contract.product(chain)
            ref = contract._einsum(elems, cyclic=False)
            assert got.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.max(np.abs(ref)))
