"""The plan of a run, learnt from one planning draw on one grid point.

* ``need_vectors``: the spectral cores whose eigenvectors the expression
  uses (a deterministic matrix met them, or a quadratic form); the others
  get ``eigvalsh`` only — about 2.5× cheaper than ``eigh``. Deciding once,
  before the run, keeps every trial on the same code path, so results do not
  depend on how trials are chunked.
* ``block``: how many grid points to evaluate at once, so that dense
  batched fallbacks (``N`` matrices for an ``N``-point grid) stay within
  ``BLOCK_BYTES``.

The planning draw *is* trial 0's draw (the same stream ``(0, j)`` of every
base object, sampled by the same code), so it is kept and trial 0 evaluates
on it instead of sampling again; so are the eigendecompositions of trial 0's
spectral cores that the planning draw computed exactly as the run would
(``eigh`` of the same matrix, for a core the plan gives eigenvectors:
``Basis.by_eigh``). Everything else (eigenvalues-only bases, values on the
grid) is recomputed under the plan. Trial 0 is therefore bit for bit what it
was without the reuse (tests/test_mc_reuse.py), at one sampling and one
eigendecomposition less per run.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import nodes as N
from .values import Basis, Dense, Diag, Mat

#: Memory (bytes) that batched values of one block may hold; larger grids
#: are evaluated block by block.
BLOCK_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Plan:
    need_vectors: frozenset = frozenset()  # keys of the cores whose eigenvectors are used
    block: int | None = None  # grid points evaluated at once (None: all)

    def blocks(self, size):
        step = size if not self.block else self.block
        return [(a, min(a + step, size)) for a in range(0, size, step)]


def make_plan(program, seed_seq):
    """Evaluate draw 0 on grid point 0, recording eigenvector requests and
    the memory that batched values take per grid point. Caches are cleared
    before and after, so that the run computes everything under the plan
    exactly as a fresh worker process does."""
    need = set()
    probe = Plan(frozenset(), block=1)
    program.reset()
    draws = program.draw(probe, seed_seq, 0, record=need.add)
    ctx = N.Context(program, draws, probe, record=need.add)
    ctx.block = (0, 1)
    for node in program.observables:
        node(ctx)
    held = list(ctx.memo.items()) + list(program.persistent.items())
    per_point = sum(_batched_bytes(v) for (_, blk), v in held if blk == (0, 1))
    program.reset()
    block = None
    if per_point * program.bound.size > BLOCK_BYTES:
        block = max(1, int(BLOCK_BYTES // per_point))
    plan = Plan(frozenset(need), block)
    program.keep_planning_draw(plan, seed_seq, draws, _reusable_bases(program, ctx.memo, plan))
    return plan


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
        if (isinstance(basis, Basis) and basis.by_eigh and basis._vectors is not None
                and basis.key in plan.need_vectors):
            basis.on_vectors, basis.want_vectors = None, True   # as the run builds it
            out[key] = v
    return out


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
