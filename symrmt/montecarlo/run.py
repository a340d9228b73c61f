"""``monte_carlo``: draws, chunks of trials on an executor, streaming statistics."""
from __future__ import annotations

import math
import os
import uuid
import warnings
from collections import OrderedDict
from concurrent.futures import as_completed

import numpy as np

from .bindings import bind, per_size, sized_grid
from .estimand import parse
from .progress import Progress
from .program import Program
from .result import MonteCarloResult, MonteCarloSeries
from .stats import RunningMean
from .sampler import SAMPLING
from .values import check_backend, use_backend

#: the sampling of ``monte_carlo`` and ``evaluate_draw`` when none is given
DEFAULT_SAMPLING = "gram"     # exact in law (sampler.py); "direct" before issue 17

_PROGRAMS: OrderedDict = OrderedDict()  # per process: compiled programs by job token
_CACHE_SIZE = 4


class Job:
    """What a worker needs to evaluate trials: picklable (SymPy objects and
    arrays); the compiled program is rebuilt once per process."""

    def __init__(self, observables, bound, seed_seq, sampling="direct", backend="numpy"):
        self.observables, self.bound, self.seed_seq = observables, bound, seed_seq
        self.sampling, self.backend = sampling, backend
        self.plan = None
        self.token = uuid.uuid4().hex
        # compiled here: errors surface before work is sent
        self._program = Program(observables, bound, sampling=sampling)

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_program", None)
        return state

    def program(self):
        """The compiled program: this object's own (in-process and thread
        executors), or the worker process's copy, compiled on first use."""
        prog = self.__dict__.get("_program") or _PROGRAMS.get(self.token)
        if prog is None:
            prog = _PROGRAMS[self.token] = Program(self.observables, self.bound, sampling=self.sampling)
            while len(_PROGRAMS) > _CACHE_SIZE:
                _PROGRAMS.popitem(last=False)
        return prog


def _run_chunk(job, start, stop):
    """Observables of trials ``start … stop-1``: array ``(stop-start, n_obs, N)``."""
    with use_backend(job.backend):
        return job.program().run(job.plan, job.seed_seq, range(start, stop))


class _Accumulator:
    """Folds draws in trial order; snapshots the estimate at each count."""

    def __init__(self, est, bound, counts):
        self.est, self.bound, self.counts = est, bound, set(counts)
        self.running = RunningMean((bound.size,)) if est.is_mean else None
        self.rows = []
        self.count = self.nonfinite = 0
        self.snaps = {}

    def add(self, row):
        self.count += 1
        if not np.all(np.isfinite(row)):
            self.nonfinite += 1
        if self.running is not None:
            self.running.update(row[0])
        else:
            self.rows.append(row)
        if self.count in self.counts:
            if self.running is not None:
                snap = self.running.snapshot()
            else:
                m, s = self.est.estimate(np.stack(self.rows), self.bound.scalars, self.bound.dims)
                snap = (m, s, s * np.sqrt(self.count))
            self.snaps[self.count] = snap + (self.nonfinite,)


def _counts(trials):
    if isinstance(trials, (int, np.integer)) and not isinstance(trials, bool):
        counts, as_list = [int(trials)], False
    else:
        try:
            counts, as_list = [int(t) for t in trials], True
        except TypeError:
            raise TypeError(f"monte_carlo: trials must be an int or a list of ints, got {trials!r}") from None
        if len(set(counts)) != len(counts) or not counts:
            raise ValueError(f"monte_carlo: trials must be distinct counts, got {trials!r}")
        counts = sorted(counts)
    if counts[0] < 1:
        raise ValueError(f"monte_carlo: trials must be positive, got {trials!r}")
    return counts, as_list


def _seed_sequence(seed):
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if seed is None:
        return np.random.SeedSequence()
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return np.random.SeedSequence(int(seed))
    raise TypeError(f"monte_carlo: seed must be a non-negative int, None or a numpy SeedSequence, got {seed!r}")


def _chunks(total, executor):
    workers = getattr(executor, "_max_workers", None) or os.cpu_count() or 1
    size = max(1, math.ceil(total / (4 * workers)))  # a few chunks per worker balances the load
    return [(a, min(a + size, total)) for a in range(0, total, size)]


def _merged_bindings(bindings, named):
    if bindings is None:
        return named
    if not isinstance(bindings, dict):
        raise TypeError(f"bindings: expected a dict of name → value, got {type(bindings).__name__}")
    both = sorted(set(bindings) & set(named))
    if both:
        raise TypeError(f"bindings: {both} given both in bindings={{...}} and as keywords")
    return {**bindings, **named}


def monte_carlo(expr, trials=200, seed=0, executor=None, progress=None, *, bindings=None,
                sampling=DEFAULT_SAMPLING, backend="numpy", **named):
    r"""Monte Carlo estimate of ``E[expr]`` over the random objects of ``expr``.

    Every draw samples each random object of ``expr`` from its law, then
    evaluates the *same* SymPy expression that the symbolic engine derives
    from (never a hand-written formula); the estimate is the average over
    draws, with its standard error.

    Parameters
    ----------
    expr : scalar SymPy expression built from symrmt objects: ``Tr``/``ntr``,
        ``Form`` (``1×1`` expressions), ``sympy.Trace``, scalar arithmetic and
        functions; matrices ``Covariance``, ``Deterministic``, ``Vector``,
        identities, sums, products, ``Inverse``, ``Transpose``, integer
        powers and real powers of symmetric PSD matrices; the random
        ``GaussianData``, ``GaussianNoise``, ``RandomFeatures``,
        ``sample_mean``, ``sample_covariance``. Distinct random objects are
        independent; ``sample_mean(X)``/``sample_covariance(X)`` use the same
        draw as ``X``. ``Var[e]``/``Cov[a, b]`` (across draws) may appear as
        summands or inside a smooth function of variances/covariances
        (``n*sr.var(e)``, ``sr.var(a)/sr.var(b)``): they are estimated by
        unbiased sample (co)variances and the standard error by the delete-one
        jackknife.
    trials : number of draws, or a list of counts ``[50, 100, 200]``: the
        estimates at each count (nested: the first 50 draws are shared), as a
        :class:`MonteCarloSeries`.
    seed : int, ``None`` (fresh entropy, reported in ``result.seed``) or a
        ``numpy.random.SeedSequence``. Trial ``t`` draws object ``j`` from
        ``SeedSequence(seed, spawn_key=(t, j))``, so a seed gives identical
        numbers whatever the executor, number of workers or chunking (on
        one machine and BLAS build).
    executor : any ``concurrent.futures.Executor``; ``None`` runs in this
        process. Trials are sent in chunks (a few per worker); the expression
        and bindings are pickled once per chunk and compiled once per worker
        process. With ``ProcessPoolExecutor`` consider limiting BLAS threads
        per worker (``OMP_NUM_THREADS``) to avoid oversubscription. On a Dask
        cluster (Dask is not a dependency of symrmt)::

            from distributed import Client
            client = Client("tcp://scheduler:8786")
            res = sr.monte_carlo(expr, trials=10_000, executor=client.get_executor(), **bindings)

        the workers need symrmt installed.
    progress : ``None`` — a progress line on stderr for runs longer than a
        couple of seconds when stderr is a terminal; ``True``/``False`` force
        it on/off; a callable ``f(done, total)`` receives updates instead.
    bindings : dict of bindings, for names that are also keywords of this
        function (a scalar named ``seed``, ``trials``, ``sampling`` or
        ``backend``): ``bindings={"seed": 0.3}``; merged with the keyword
        bindings (a name given both ways is an error).
    sampling : ``"gram"`` (default): Gaussian data and noise sharing a row
        dimension ``n`` that enter only through contractions over ``n``
        (``XᵀX``, ``Xᵀε``, ``εᵀε``, ``Tr(XAXᵀ)``: ridge risk, training
        error, forms and traces of resolvents) are drawn jointly through
        their Gram matrix (Bartlett decomposition, ``min(n, D)`` rows instead
        of ``n``): exactly the law of every per-draw value (jointly over the
        observables of a draw), at a fraction of the sampling cost;
        everything else — other objects, and groups the rule refuses
        (correlated rows, a mean, ``sample_mean``/``sample_covariance``,
        anything acting on the ``n`` side such as ``(XXᵀ+λ)⁻¹`` or
        ``sr.vstack``) — is drawn directly (``symrmt.montecarlo.sampler``
        proves it exact and states the rule). ``"direct"``: every random
        object drawn as its law is written (``n·d`` normals for an ``n×d``
        ``X``). The two give different, equally valid streams for the same
        seed (the default was ``"direct"`` before symrmt's issue 17; pass
        ``sampling="direct"`` to reproduce earlier numbers), each as
        reproducible. ``evaluate_draw`` has the same option and default.
    backend : ``"numpy"`` (default, LAPACK) or ``"cupy"``: the per-draw
        eigendecomposition of each random core on the GPU through
        ``cupy.linalg.eigh`` (CuPy needed; everything else stays on the
        host). Results agree with ``"numpy"`` to rounding, not bit for bit.
    **named : scalars and dimensions by name (numbers or arrays, which
        broadcast: ``lam=np.logspace(-3, 1, 100)``), deterministic matrices
        by name (1-D: diagonal in the common basis / a vector's coordinates;
        2-D: the full matrix). Dimensions not given are inferred from array
        shapes.

    Returns
    -------
    :class:`MonteCarloResult` (``.mean``, ``.sem``, ``.std``, ``.trials``,
    broadcast over the array-valued bindings), or a :class:`MonteCarloSeries`
    for a list of trial counts.

    Notes
    -----
    For each ``(C + c·I)⁻¹`` or ``(C + c·I)^s`` the random core ``C`` is
    diagonalised once per draw and every shift on the grid is a function of
    its eigenvalues; deterministic matrices are rotated into its eigenbasis
    only when they meet it, and eigenvalues alone (``eigvalsh``, or the
    smaller Gram matrix of ``XᵀX``) are used when the expression allows.
    Anything else is evaluated by dense (batched) linear algebra, in blocks
    of the grid that fit in memory. Draws that give NaN/inf are counted in
    ``result.nonfinite`` and reported with a ``RuntimeWarning``.
    """
    if hasattr(expr, "_monte_carlo_"):   # simulated objects (SGD iterates: montecarlo/sgd_node.py) run themselves
        return expr._monte_carlo_(trials, seed, executor, progress, bindings=bindings, **named)
    bindings = _merged_bindings(bindings, named)
    counts, as_list = _counts(trials)
    if sized_grid(expr, bindings):     # array-valued dimensions: one run per size (as compile accepts them)
        return per_size(monte_carlo, expr, bindings, trials, seed=seed, executor=executor, progress=progress,
                        sampling=sampling, backend=backend)
    if sampling not in SAMPLING:
        raise ValueError(f"monte_carlo: sampling must be one of {SAMPLING}, got {sampling!r}")
    check_backend(backend)
    est = parse(expr)
    bound = bind(est.expr, bindings)
    seed_seq = _seed_sequence(seed)
    job = Job(est.observables, bound, seed_seq, sampling=sampling, backend=backend)
    program = job.program()
    with use_backend(backend):
        job.plan = program.make_plan(seed_seq)
    total = counts[-1]
    acc = _Accumulator(est, bound, counts)
    bar = Progress(total, progress)
    try:
        if executor is None:
            with use_backend(backend):
                for t in range(total):
                    acc.add(program.run(job.plan, seed_seq, [t])[0])
                    bar.update(t + 1)
        else:
            _run_executor(executor, job, total, acc, bar)
    finally:
        bar.close()
        program.drop_planning_draw()     # unused when another process ran trial 0
    if acc.nonfinite:
        warnings.warn(f"monte_carlo: {acc.nonfinite} of {total} draws gave NaN or inf; "
                      "the estimates include them", RuntimeWarning, stacklevel=2)
    grid = {k: v.reshape(bound.batch_shape) for k, v in bound.scalars.items() if v.ndim}
    seed_out = seed if isinstance(seed, (int, np.integer)) else seed_seq.entropy
    method = "mean" if est.is_mean else "jackknife"
    results = [MonteCarloResult(est.expr, *acc.snaps[c][:3], trials=c, seed=seed_out, grid=grid,
                                shape=bound.batch_shape, nonfinite=acc.snaps[c][3], method=method)
               for c in counts]
    return MonteCarloSeries(results) if as_list else results[0]


def _run_executor(executor, job, total, acc, bar):
    chunks = _chunks(total, executor)
    futures = [executor.submit(_run_chunk, job, a, b) for a, b in chunks]
    index = {f: i for i, f in enumerate(futures)}
    ready, nxt, done = {}, 0, 0
    try:
        for fut in as_completed(futures):
            i = index[fut]
            ready[i] = fut.result()
            done += len(ready[i])
            bar.update(done)
            while nxt in ready:  # fold in trial order, whatever the completion order
                for row in ready.pop(nxt):
                    acc.add(row)
                nxt += 1
    except BaseException:
        for f in futures:
            f.cancel()
        raise
