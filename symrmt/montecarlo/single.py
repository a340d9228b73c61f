"""One draw, in the open: the sampled arrays and the expression's value.

``evaluate_draw(expr, seed, trial, sampling=..., **bindings)`` is draw
``trial`` of ``monte_carlo(expr, seed=seed, sampling=..., ...)`` — the same
arrays and the same value — for debugging, and for tests that compare the
evaluator against NumPy.
"""
from __future__ import annotations

import numpy as np

from ..objects.ops import Cov, Var, as_scalar
from .bindings import bind
from .program import Program
from .run import DEFAULT_SAMPLING, _merged_bindings, _seed_sequence
from .sampler import SAMPLING


def evaluate_draw(expr, seed=0, trial=0, *, sampling=DEFAULT_SAMPLING, bindings=None, **named):
    """``(value, draws)``: ``expr`` evaluated on draw ``trial`` (an array of
    the broadcast shape of the bindings, a float without array bindings),
    and ``draws`` mapping each independently sampled object to its array:
    ``GaussianData`` ``X`` itself, ``RandomFeatures`` ``F`` itself, and for
    ``GaussianNoise`` the draw ``K^{1/2}z`` *before* the factor
    ``sqrt(variance)`` (the variance may lie on the grid).

    ``sampling``: as in :func:`~symrmt.montecarlo.monte_carlo` (the same
    default), so that the value is draw ``trial`` of ``monte_carlo`` with the
    same seed and sampling, bit for bit. With ``"gram"`` a Gram-sampled group
    (data ``X`` and noise ``ε`` with ``n`` rows that enter only through
    contractions over ``n``) is evaluated on its Bartlett factor ``R``
    (``m = min(n, D)`` rows) and returned as ``Q R`` with ``n`` rows, ``Q`` a
    uniformly random ``n×m`` matrix with orthonormal columns (see
    :func:`_rotated`): a draw of exactly the law of ``X`` and ``ε``, on which
    a NumPy recomputation gives the engine's value (``(QR)ᵀ(QR) = RᵀR``).
    ``"direct"``: the
    arrays with ``n`` rows as each law is written. ``bindings``: a dict, for
    names that are also keywords here (``sampling``, ``seed``, ``trial``).
    """
    if sampling not in SAMPLING:
        raise ValueError(f"evaluate_draw: sampling must be one of {SAMPLING}, got {sampling!r}")
    expr = as_scalar(expr)
    if expr.has(Var, Cov):
        raise ValueError("evaluate_draw: Var/Cov are moments across draws; evaluate their arguments instead")
    bound = bind(expr, _merged_bindings(bindings, named), caller="evaluate_draw")
    seed_seq = _seed_sequence(seed)
    program = Program([expr], bound, sampling=sampling)
    plan = program.make_plan(seed_seq)
    draws, out = program.trial(plan, seed_seq, trial)
    program.drop_planning_draw()
    draws = _rotated(program, draws, seed_seq, trial)
    value = out[0].reshape(bound.batch_shape)
    return (np.float64(value) if not bound.batch_shape else value), draws


def _rotated(program, draws, seed_seq, trial):
    """The draws with each Gram-sampled group ``R`` (``m×D``, Bartlett) put
    back on ``n`` rows as ``Q R``, ``Q`` ``n×m`` with orthonormal columns,
    uniformly distributed (the first ``m`` columns of a Haar orthogonal
    matrix: QR of an ``n×m`` standard Gaussian matrix with the signs of
    ``diag(R)`` made positive), independent of ``R``.

    Identity: ``(QR)ᵀ(QR) = RᵀQᵀQR = RᵀR``, so every contraction over ``n``
    (the only way the group enters the expression: ``sampler.gram_groups``)
    and hence the value are those of ``R`` (to rounding); and ``[Z₁ … z]`` of
    iid ``N(0,1)`` entries is ``Q_Z [R_Z; 0]`` with ``R_Z`` Bartlett and
    ``Q_Z`` Haar independent of it, so ``QR`` has exactly the law of a direct
    draw. The rotation's randomness is its own stream
    ``SeedSequence(seed, spawn_key=(trial, j, 1))`` (``j`` the group leader's
    rank), disjoint from every draw's ``(trial, j)``; the engine's value does
    not depend on it."""
    sampler = program.sampler
    if not sampler.groups:
        return draws
    out = dict(draws)
    rank = {obj: j for j, obj in enumerate(sampler.objects)}
    for group in sampler.groups:
        j = rank[group[0]]
        n = program.bound.dim_value(group[0].shape[0])
        m = draws[group[0]].shape[0]
        child = np.random.SeedSequence(seed_seq.entropy, spawn_key=tuple(seed_seq.spawn_key) + (trial, j, 1),
                                       pool_size=seed_seq.pool_size)
        G = np.random.Generator(np.random.PCG64(child)).standard_normal((n, m))
        Q, R = np.linalg.qr(G)
        Q = Q * np.where(np.diag(R) < 0, -1.0, 1.0)
        for obj in group:
            out[obj] = Q @ draws[obj]
    return out
