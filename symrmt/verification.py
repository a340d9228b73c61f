"""Theory against simulation, side by side, with a stated tolerance.

``verify(expr, k, c, trials, seed, executor, **bindings)`` evaluates the
deterministic equivalent of ``expr`` (``deterministic_equivalent(expr)
.compile()(**bindings)``) and a Monte Carlo estimate of the same expression,
and passes at a grid point iff

    |mc − theory| ≤ k·sem + c·|theory|/d,

``sem`` the Monte Carlo standard error and ``d`` the largest matrix
dimension bound (named in the report). ``k·sem`` allows for sampling noise
(``k = 3``: a true equivalent fails a single point with probability ≈ 0.3%);
``c·|theory|/d`` for the finite-size gap between a finite draw's expectation
and its first-order equivalent, which is ``O(1/d)`` *relative* to the value
(docs/math.md) — the same allowance as the test suite and the main job, so the
check is scale-free: a theory of 0, or one 2× too large, fails whenever the
Monte Carlo resolves the value.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from ._bindings import _deprecated, split_options, validate_scalar
from .montecarlo import monte_carlo
from .montecarlo.bindings import bind, collect
from .montecarlo.result import _num, format_table, grid_columns


#: solver options passed through to the compiled equivalent
OPTIONS = ("maxiter", "xtol", "eta", "quad_rtol")


def _engine_theory(expr, bindings, **options):
    """Theory from the symbolic engine (imported lazily: a layer above)."""
    from symrmt.equivalence import deterministic_equivalent
    return deterministic_equivalent(expr).compile()(bindings, **options)


def verify(expr, k=3.0, c=1.0, trials=200, seed=0, executor=None, progress=None, theory=None,
           *args, sampling=None, **kwargs):
    """Compare the deterministic equivalent of ``expr`` with Monte Carlo.

    Parameters
    ----------
    expr : scalar expression (as for :func:`symrmt.monte_carlo`).
    k : allowance in standard errors.
    c : finite-size allowance, relative: ``c·|theory|/d`` with ``d`` the
        largest dimension.
    trials, seed, executor, progress : passed to :func:`symrmt.monte_carlo`.
    sampling : passed to :func:`symrmt.monte_carlo` (``None``: its default,
        ``"gram"``; ``"direct"`` reproduces the streams of earlier versions).
    theory : optional callable ``f(**bindings)`` giving the reference values
        instead of the engine's equivalent (e.g. a closed form).
    **bindings : as for :func:`symrmt.monte_carlo` (and the compiled
        equivalent); or one dict of bindings as ``bindings={...}`` (then any
        name is bindable, including ``k`` or ``c``).
    options : dict of solver options for the compiled equivalent
        (``quad_rtol``, ``xtol``, ``maxiter``, ``eta``), e.g.
        ``options={"quad_rtol": 1e-7}``; the keyword form ``quad_rtol=...``
        works too for a name that is not a symbol's (deprecated).

    Returns
    -------
    :class:`VerifyResult` — ``.passed``, per-point ``.ok``, ``.diff``,
    ``.sem``, ``.z``, ``.rel``, ``.tol``, and a readable table as its repr;
    ``.assert_passed()`` raises ``AssertionError`` with the table.
    """
    if not isinstance(trials, (int, np.integer)):
        raise TypeError(f"verify: trials must be an int, got {trials!r}")
    if k < 0 or c < 0:
        raise ValueError(f"verify: k and c must be non-negative, got k={k}, c={c}")
    if args:
        raise TypeError("verify: bindings are keyword arguments (or bindings={...})")
    dims, scalars, det, _ = collect(expr)
    names = set(dims) | set(scalars) | set(det)
    if "bindings" in kwargs and "bindings" not in names:
        given = kwargs.pop("bindings")
        bindings, options = split_options((given,), kwargs, names, OPTIONS, "verify")
    else:
        bindings, options = split_options((), kwargs, names, OPTIONS, "verify", _deprecated)
    sized = [k_ for k_ in dims if k_ in bindings and np.ndim(bindings[k_])]
    # array-valued dimensions (a grid of sizes): validated at their largest value here, per point below
    fixed = {k_: (np.max(np.asarray(v_)) if k_ in sized else v_) for k_, v_ in bindings.items()}
    if sized:
        for k_ in sized:
            validate_scalar(k_, bindings[k_], "dim")
    bound = bind(expr, fixed, caller="verify")
    dim_name, dim = bound.largest_dim()
    if dim is None:
        raise ValueError("verify: the expression has no matrix dimension to scale the allowance c/d")
    if theory is None:
        ref = _engine_theory(expr, bindings, **options)
    else:
        if options:
            raise TypeError(f"verify: solver options {sorted(options)} apply to the engine's theory, "
                            "not to a given theory callable")
        ref = theory(**bindings)
    more = {} if sampling is None else {"sampling": sampling}
    mc = monte_carlo(expr, trials=trials, seed=seed, executor=executor, progress=progress, **more, **bindings)
    if sized:     # the largest dimension at each grid point
        shape = np.shape(mc.mean)
        dim = np.zeros(shape)
        for k_, v_ in bound.dims.items():
            dim = np.maximum(dim, np.asarray(mc.grid[k_], dtype=float) if k_ in sized else float(v_))
        dim_name = "largest of " + ", ".join(sorted(bound.dims))
    return VerifyResult(expr, ref, mc, k, c, dim_name, dim)


class VerifyResult:
    """Outcome of :func:`verify` (arrays have the grid's shape)."""

    def __init__(self, expr, theory, mc, k, c, dim_name, dim):
        self.expr, self.mc, self.k, self.c = expr, mc, float(k), float(c)
        self.dim_name = dim_name
        self.dim = int(dim) if np.ndim(dim) == 0 else np.asarray(dim, dtype=float)
        shape = np.shape(mc.mean)
        th = np.asarray(theory, dtype=float)
        try:
            th = np.broadcast_to(th, shape) if th.shape != shape else th
        except ValueError:
            raise ValueError(f"verify: theory has shape {th.shape} but Monte Carlo has {shape}") from None
        self.theory = th
        with np.errstate(divide="ignore", invalid="ignore"):
            self.diff = np.asarray(mc.mean) - th
            self.sem = np.asarray(mc.sem)
            self.z = self.diff / self.sem
            self.rel = self.diff / np.abs(th)
        self.tol = self.k * self.sem + self.c * np.abs(th) / self.dim
        self.ok = np.abs(self.diff) <= self.tol  # NaN compares False: a NaN never passes

    @property
    def passed(self):
        return bool(np.all(self.ok))

    @property
    def tolerance(self):
        if np.ndim(self.dim):
            return (f"|mc − theory| ≤ {self.k:g}·sem + {self.c:g}·|theory|/d, d = {self.dim_name} "
                    "at each grid point (largest dimension)")
        return (f"|mc − theory| ≤ {self.k:g}·sem + {self.c:g}·|theory|/d, d = {self.dim_name} = {self.dim} "
                "(largest dimension)")

    def assert_passed(self):
        if not self.passed:
            raise AssertionError("verify failed\n" + repr(self))

    def __repr__(self):
        mc = self.mc
        shape = np.shape(mc.mean)
        hdr, rows = grid_columns(mc.grid, shape)
        cols = [self.theory, mc.mean, self.sem, self.diff, self.z, self.rel, self.tol]
        flat = [np.ravel(x) for x in cols]
        ok = np.ravel(self.ok)
        rows = [r + [_num(x[i]) for x in flat] + ["ok" if ok[i] else "FAIL"] for i, r in enumerate(rows)]
        shown = rows
        if len(rows) > 12 and not ok.all():
            shown = [r for r, o in zip(rows, ok) if not o][:12]
        table = format_table(hdr + ["theory", "mc", "sem", "diff", "z", "rel", "tol", ""], shown)
        n_fail = int((~ok).sum())
        verdict = ("PASSED" if not n_fail else f"FAILED at {n_fail} of {ok.size} point(s)"
                   + (" (failing points shown)" if shown is not rows else ""))
        return "\n".join([f"verify {sp.sstr(self.expr)}",
                          f"  Monte Carlo: trials={mc.trials}, seed={mc.seed}; tolerance {self.tolerance}",
                          table, verdict])
