"""The plan of a run, learnt from one planning draw on one grid point.

* ``need_vectors``: the spectral cores whose eigenvectors the expression
  uses (a deterministic matrix met them, or a quadratic form); the others
  get ``eigvalsh`` only — about 2.5× cheaper than ``eigh``. Deciding once,
  before the run, keeps every trial on the same code path, so results do not
  depend on how trials are chunked.
* ``thin_vectors``: the cores among those whose eigenvectors are only
  applied to thin blocks from the left (``uᵀV``, ``(f∘a)ᵀVᵀ`` for the grid
  points of a risk), ``d ≥ values.FACTOR_MIN`` rows in all per draw at most
  ``d/2``: their eigenvectors stay factored (``values.Basis._factor``), which
  saves the back-transformation of ``dsyevd`` (a third of its cost).
* ``block``: how many grid points to evaluate at once, so that dense
  batched fallbacks (``N`` matrices for an ``N``-point grid) stay within
  ``BLOCK_BYTES``.

The planning draw *is* trial 0's draw (the same stream ``(0, j)`` of every
base object, sampled by the same code), so it is kept and trial 0 evaluates
on it instead of sampling again; so are the eigendecompositions of trial 0's
spectral cores that the planning draw computed exactly as the run would
(``eigh`` of the same matrix, for a core the plan gives eigenvectors:
``Basis.by_eigh``; for a ``thin_vectors`` core the same factored
decomposition, known to be wanted before the planning draw decomposes
anything: ``_classify``). Everything else (eigenvalues-only bases, values on the
grid) is recomputed under the plan. Trial 0 is therefore bit for bit what it
was without the reuse (tests/test_mc_reuse.py), at one sampling and one
eigendecomposition less per run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import nodes as N
from . import values as V
from .values import Basis, Dense, Diag, Mat

#: Memory (bytes) that batched values of one block may hold; larger grids
#: are evaluated block by block.
BLOCK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Plan:
    need_vectors: frozenset = frozenset()  # keys of the cores whose eigenvectors are used
    block: int | None = None  # grid points evaluated at once (None: all)
    thin_vectors: frozenset = frozenset()  # of those, the cores whose eigenvectors stay factored
    standin: bool = False     # bases stand in (eigenvalues 1, eigenvectors I): the classifying pass

    def blocks(self, size):
        step = size if not self.block else self.block
        return [(a, min(a + step, size)) for a in range(0, size, step)]


def make_plan(program, seed_seq):
    """Evaluate draw 0 on grid point 0, recording eigenvector requests and
    the memory that batched values take per grid point. Caches are cleared
    before and after, so that the run computes everything under the plan
    exactly as a fresh worker process does."""
    uses = _Uses()
    probe = Plan(frozenset(), block=1)
    program.reset()
    draws = program.draw(probe, seed_seq, 0, record=uses)
    probe = Plan(frozenset(), block=1, thin_vectors=_classify(program, draws))
    ctx = N.Context(program, draws, probe, record=uses)
    ctx.block = (0, 1)
    for node in program.observables:
        node(ctx)
    held = list(ctx.memo.items()) + list(program.persistent.items())
    per_point = sum(_batched_bytes(v) for (_, blk), v in held if blk == (0, 1))
    program.reset()
    block = None
    if per_point * program.bound.size > BLOCK_BYTES:
        block = max(1, int(BLOCK_BYTES // per_point))
    plan = Plan(frozenset(uses.full | set(uses.thin)), block, uses.thin_only(program.bound.size))
    program.keep_planning_draw(plan, seed_seq, draws, _reusable_bases(program, ctx.memo, plan))
    return plan


def _classify(program, draws):
    """The cores whose eigenvectors only meet thin blocks (``Plan.thin_vectors``),
    learnt before anything is decomposed: grid point 0 of the planning draw
    evaluated with every eigendecomposition replaced by a stand-in
    (eigenvalues 1, eigenvectors ``I``: ``Basis.stand_in``) — which products
    ask for eigenvectors, and how, depends on the expression and the shapes,
    not on the numbers. The planning draw then decomposes those cores as the
    run does (factored), so that trial 0 reuses them as it reuses the others.
    Empty (every core decomposed by ``dsyevd`` in the planning draw, as
    before) should the stand-in evaluation fail."""
    uses = _Uses()
    ctx = N.Context(program, draws, Plan(frozenset(), block=1, standin=True), record=uses)
    ctx.block = (0, 1)
    try:
        with np.errstate(all="ignore"):
            for node in program.observables:
                node(ctx)
    except Exception:  # noqa: BLE001 - a stand-in value the expression rejects: no prior knowledge
        return frozenset()
    finally:
        program.reset()
    return uses.thin_only(program.bound.size)


def _reusable_bases(program, memo, plan):
    """Memo entries of the planning draw's spectral cores that trial 0 would
    compute identically: a ``Diag`` in a :class:`~values.Basis` decomposed by
    one ``eigh`` of its full matrix (``by_eigh``) for a core whose
    eigenvectors the plan asks for (so the run would call that same ``eigh``
    on that same matrix). Not on the grid (key without a block)."""
    spectral = {id(n) for n in program.cores.values() if n is not None}
    out = {}
    for key, v in memo.items():
        if key[0] not in spectral or key[1] is not None or not isinstance(v, Mat) or len(v.terms) != 1:
            continue
        c, fs = v.terms[0]
        if c.ndim or len(fs) != 1 or not isinstance(fs[0], Diag):
            continue
        basis = fs[0].basis
        if not (isinstance(basis, Basis) and basis.by_eigh and basis.key in plan.need_vectors):
            continue
        if basis.key in plan.thin_vectors:
            ok = basis._Z is not None and basis._vectors is None        # factored, as the run does
        else:
            ok = basis._Z is None and basis._vectors is not None        # dsyevd, as the run does
        if ok:
            basis.on_vectors, basis.want_vectors = None, True   # as the run builds it
            basis.thin, basis._applied = basis.key in plan.thin_vectors, 0
            out[key] = v
    return out


class _Uses:
    """The planning draw's eigenvector requests: ``uses(key)`` for the whole
    matrix, ``uses(key, (rows, batched, d))`` for a product ``L·V`` with
    ``rows`` rows of ``L`` per grid point (``Basis.apply_left``)."""

    def __init__(self):
        self.full, self.thin = set(), {}

    def __call__(self, key, use=None):
        if use is None:
            self.full.add(key)
        else:
            self.thin.setdefault(key, []).append(use)

    def thin_only(self, points):
        """Cores used only through thin products, of size at least
        ``values.FACTOR_MIN``, with at most ``d/2`` rows applied per draw
        (``points`` grid points)."""
        out = set()
        for key, us in self.thin.items():
            d = us[0][2]
            rows = sum(r * (points if batched else 1) for r, batched, _ in us)
            if key not in self.full and d >= V.FACTOR_MIN and rows <= d // 2:
                out.add(key)
        return frozenset(out)


def _batched_bytes(m):
    """Bytes per grid point held by the batched factors of a value."""
    if not isinstance(m, Mat):
        return 0
    total = 0
    for _, fs in m.terms:
        for f in fs:
            if isinstance(f, (Dense, Diag)) and f.batched:
                a = f.a if isinstance(f, Dense) else f.f
                total += a.nbytes // max(a.shape[0], 1)
    return total


__all__ = ["Plan", "make_plan", "BLOCK_BYTES"]
