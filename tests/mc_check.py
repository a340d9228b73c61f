"""Theory vs Monte Carlo for tests: both from ONE expression.

Tolerance: ``|mc − theory| ≤ k·sem + c·|theory|/d`` — ``k`` standard errors
of the Monte Carlo mean plus the finite-size allowance of a first-order
deterministic equivalent, whose error is O(1/d) relative (docs/math.md); ``c`` is
stated at each call site.
"""
import numpy as np

import symrmt as sr


def check(expr, *, d, trials=200, seed=0, k=4.0, c=3.0, **bindings):
    de = sr.deterministic_equivalent(expr)
    theory = np.asarray(de.compile()(**bindings), dtype=float)
    mc = sr.monte_carlo(expr, trials=trials, seed=seed, **bindings)
    mean, sem = np.asarray(mc.mean), np.asarray(mc.sem)
    tol = k * sem + c * np.abs(theory) / d
    err = np.abs(mean - theory)
    assert np.all(err <= tol), (
        f"theory {theory} vs MC {mean} ± {sem}: |diff| {err} > tol {tol} (k={k}, c={c}, d={d})")
    return theory, mean, sem
