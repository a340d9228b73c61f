"""Theory against simulation, side by side, with a stated tolerance.

``verify(expr, k, c, trials, seed, executor, **bindings)`` evaluates the
deterministic equivalent of ``expr`` (``deterministic_equivalent(expr)
.compile()(**bindings)``) and a Monte Carlo estimate of the same expression,
and passes at a grid point iff

    |mc − theory| ≤ k·sem + c/d,

``sem`` the Monte Carlo standard error and ``d`` the largest matrix
dimension bound (named in the report). ``k·sem`` allows for sampling noise
(``k = 3``: a true equivalent fails a single point with probability ≈ 0.3%);
``c/d`` for the finite-size gap between a finite draw's expectation and its
equivalent, which is ``O(1/d)`` for normalised traces of Gaussian data
(MATH.md). Quantities that are not ``O(1)`` — unnormalised traces,
variances ``O(1/n)`` — need ``c`` scaled accordingly.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from .montecarlo import monte_carlo
from .montecarlo.bindings import bind
from .montecarlo.result import _num, format_table, grid_columns


def _engine_theory(expr, bindings):
    """Theory from the symbolic engine (imported lazily: a layer above)."""
    from symrmt.equivalence import deterministic_equivalent
    return deterministic_equivalent(expr).compile()(**bindings)


def verify(expr, k=3.0, c=1.0, trials=200, seed=0, executor=None, progress=None, theory=None,
           **bindings):
    """Compare the deterministic equivalent of ``expr`` with Monte Carlo.

    Parameters
    ----------
    expr : scalar expression (as for :func:`symrmt.monte_carlo`).
    k : allowance in standard errors.
    c : finite-size allowance: ``c/d`` with ``d`` the largest dimension.
    trials, seed, executor, progress : passed to :func:`symrmt.monte_carlo`.
    theory : optional callable ``f(**bindings)`` giving the reference values
        instead of the engine's equivalent (e.g. a closed form).
    **bindings : as for :func:`symrmt.monte_carlo` (and the compiled equivalent).

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
    bound = bind(expr, bindings, caller="verify")
    dim_name, dim = bound.largest_dim()
    if dim is None:
        raise ValueError("verify: the expression has no matrix dimension to scale the allowance c/d")
    ref = (theory or (lambda **b: _engine_theory(expr, b)))(**bindings)
    mc = monte_carlo(expr, trials=trials, seed=seed, executor=executor, progress=progress, **bindings)
    return VerifyResult(expr, ref, mc, k, c, dim_name, dim)


class VerifyResult:
    """Outcome of :func:`verify` (arrays have the grid's shape)."""

    def __init__(self, expr, theory, mc, k, c, dim_name, dim):
        self.expr, self.mc, self.k, self.c = expr, mc, float(k), float(c)
        self.dim_name, self.dim = dim_name, int(dim)
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
        self.tol = self.k * self.sem + self.c / self.dim
        self.ok = np.abs(self.diff) <= self.tol  # NaN compares False: a NaN never passes

    @property
    def passed(self):
        return bool(np.all(self.ok))

    @property
    def tolerance(self):
        return (f"|mc − theory| ≤ {self.k:g}·sem + {self.c:g}/d, d = {self.dim_name} = {self.dim} "
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
