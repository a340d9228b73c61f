"""Monte Carlo of the SGD iteration itself: the estimand of ``sr.SGD`` objects.

``sr.monte_carlo(sgd.risk(t), trials, seed, executor, progress)`` (and
``sgd.train(t)``) runs the actual SGD iterates of the definition held by
``sgd`` (:class:`symrmt.dynamics.SGD`) — draw the data set (multi-pass) or
fresh batches (one-pass) and, for random features, ``F``; run the steps with
the specified batches; record the exact test risk ``R(v_t)`` and the train
error at the requested steps — so theory (``sgd.theory``) and simulation
share one definition. ``monte_carlo`` hands such an object to
:func:`run_sgd` (the hook is the ``_monte_carlo_`` method).

Reproducibility: trials are simulated in blocks of a size fixed by the
problem (never by the executor); block ``b`` draws from
``SeedSequence(seed, spawn_key=(b,))`` and blocks are folded in order, so a
seed gives identical numbers whatever the executor or number of workers.
"""
from __future__ import annotations

from concurrent.futures import as_completed

import numpy as np
import sympy as sp

from .progress import Progress
from .result import MonteCarloResult, MonteCarloSeries
from .stats import RunningMean

__all__ = ["SGDEstimand", "run_sgd"]

QUANTITIES = ("risk", "train")


class SGDEstimand:
    """``E[R(v_t)]`` (``quantity="risk"``) or ``E[L(v_t)]`` (``"train"``) of
    the SGD iterates of ``sgd`` on the step grid ``t``; a value for
    ``sr.monte_carlo``. Built by ``SGD.risk(t)`` / ``SGD.train(t)``."""

    def __init__(self, sgd, t, quantity):
        if quantity not in QUANTITIES:
            raise ValueError(f"quantity: one of {QUANTITIES}, got {quantity!r}")
        self.sgd, self.t, self.quantity = sgd, sgd.steps(t), quantity
        self.expr = sp.Symbol(f"{quantity}({sgd.passes}-pass SGD)")

    def __repr__(self):
        return f"{self.quantity} of {self.sgd!r} at t = {self.t.tolist()}"

    def _monte_carlo_(self, trials, seed, executor, progress, bindings=None, **named):
        extra = sorted(set(bindings or {}) | set(named))
        if extra:
            raise TypeError(f"monte_carlo: an SGD estimand carries its own parameters (set them in sr.SGD); "
                            f"got bindings {extra}")
        out = run_sgd(self.sgd, self.t, trials, seed, executor, progress)
        return out[self.quantity]


def block_size(sgd):
    """Trials per block: a function of the problem only (about 2·10⁷ numbers
    per step), so the draws do not depend on the executor."""
    return max(1, min(256, int(2e7 // max(1, sgd.batch * sgd.d * sgd.p))))


def _run_block(sgd, steps, seed_seq, b, k):
    rng = np.random.default_rng(np.random.SeedSequence(seed_seq.entropy, spawn_key=tuple(seed_seq.spawn_key) + (b,)))
    with np.errstate(over="ignore", invalid="ignore"):      # diverging runs are reported by the caller
        return sgd._simulate(rng, k, steps)


def _counts(trials):
    if isinstance(trials, (int, np.integer)) and not isinstance(trials, bool):
        return [int(trials)], False
    try:
        counts = sorted(int(t) for t in trials)
    except TypeError:
        raise TypeError(f"monte_carlo: trials must be an int or a list of ints, got {trials!r}") from None
    if not counts or len(set(counts)) != len(counts):
        raise ValueError(f"monte_carlo: trials must be distinct counts, got {trials!r}")
    return counts, True


def run_sgd(sgd, steps, trials=200, seed=0, executor=None, progress=None):
    """Simulate ``trials`` independent SGD runs of ``sgd`` (fresh data,
    features and batches per run); returns ``{"risk": …, "train": …}``,
    each a :class:`MonteCarloResult` over ``t`` (``.grid["t"]``), or a
    :class:`MonteCarloSeries` for a list of trial counts."""
    steps = sgd.steps(steps)
    counts, as_list = _counts(trials)
    if counts[0] < 2:
        raise ValueError(f"trials: at least 2 runs are needed for a standard error, got {trials!r}")
    if isinstance(seed, np.random.SeedSequence):
        seed_seq = seed
    elif seed is None:
        seed_seq = np.random.SeedSequence()
    elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        seed_seq = np.random.SeedSequence(int(seed))
    else:
        raise TypeError(f"monte_carlo: seed must be a non-negative int, None or a SeedSequence, got {seed!r}")
    total = counts[-1]
    size = block_size(sgd)
    blocks = [(b, min(size, total - b * size)) for b in range((total + size - 1) // size)]
    acc = {q: RunningMean((len(steps),)) for q in QUANTITIES}
    snaps = {}
    bad = 0
    bar = Progress(total, progress)

    def fold(R, L):
        nonlocal bad
        for r, l in zip(R, L):
            if not (np.all(np.isfinite(r)) and np.all(np.abs(r) < 1e150)):
                bad += 1
            acc["risk"].update(r)
            acc["train"].update(l)
            c = acc["risk"].count
            if c in counts:
                snaps[c] = {q: acc[q].snapshot() for q in QUANTITIES}

    try:
        if executor is None:
            for b, k in blocks:
                fold(*_run_block(sgd, steps, seed_seq, b, k))
                bar.update(acc["risk"].count)
        else:
            futures = {executor.submit(_run_block, sgd, steps, seed_seq, b, k): i
                       for i, (b, k) in enumerate(blocks)}
            ready, nxt = {}, 0
            for fut in as_completed(futures):
                ready[futures[fut]] = fut.result()
                while nxt in ready:                 # fold in block order, whatever the completion order
                    fold(*ready.pop(nxt))
                    nxt += 1
                    bar.update(acc["risk"].count)
    finally:
        bar.close()
    if bad:
        raise sgd.StabilityError(
            f"lr: η = {sgd.lr:g} is beyond the stability limit of {sgd.passes}-pass SGD with B = {sgd.batch}: "
            f"{bad} of {total} simulated runs diverged (the iteration's spectral radius ≥ 1)")
    seed_out = seed if isinstance(seed, (int, np.integer)) else seed_seq.entropy
    out = {}
    for q in QUANTITIES:
        expr = sp.Symbol(f"{q}({sgd.passes}-pass SGD)")
        res = [MonteCarloResult(expr, *snaps[c][q], trials=c, seed=seed_out, grid={"t": steps},
                                shape=steps.shape, nonfinite=0) for c in counts]
        out[q] = MonteCarloSeries(res) if as_list else res[0]
    return out
