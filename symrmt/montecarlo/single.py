"""One draw, in the open: the sampled arrays and the expression's value.

``evaluate_draw(expr, seed, trial, **bindings)`` is draw ``trial`` of
``monte_carlo(expr, seed=seed, ...)`` — the same arrays and the same value —
for debugging, and for tests that compare the evaluator against NumPy.
"""
from __future__ import annotations

import numpy as np

from ..objects.ops import Cov, Var, as_scalar
from .bindings import bind
from .program import Program
from .run import _seed_sequence


def evaluate_draw(expr, seed=0, trial=0, **bindings):
    """``(value, draws)``: ``expr`` evaluated on draw ``trial`` (an array of
    the broadcast shape of the bindings, a float without array bindings),
    and ``draws`` mapping each independently sampled object to its array:
    ``GaussianData`` ``X`` itself, ``RandomFeatures`` ``F`` itself, and for
    ``GaussianNoise`` the draw ``K^{1/2}z`` *before* the factor
    ``sqrt(variance)`` (the variance may lie on the grid)."""
    expr = as_scalar(expr)
    if expr.has(Var, Cov):
        raise ValueError("evaluate_draw: Var/Cov are moments across draws; evaluate their arguments instead")
    bound = bind(expr, bindings, caller="evaluate_draw")
    seed_seq = _seed_sequence(seed)
    program = Program([expr], bound)
    plan = program.make_plan(seed_seq)
    draws = program.draw(plan, seed_seq, trial)
    value = program.evaluate(draws, plan)[0].reshape(bound.batch_shape)
    return (np.float64(value) if not bound.batch_shape else value), draws
