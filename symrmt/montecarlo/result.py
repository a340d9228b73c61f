"""Result objects of a Monte Carlo run, with readable terminal tables."""
from __future__ import annotations

import numpy as np
import sympy as sp

#: Rows shown before a long table is elided.
MAX_ROWS = 12


def _num(x):
    x = float(x)
    return f"{x:.6g}" if np.isfinite(x) else str(x)


def format_table(headers, rows, max_rows=MAX_ROWS):
    """Right-aligned text table; long tables keep their head and tail."""
    rows = [[str(c) for c in r] for r in rows]
    if len(rows) > max_rows:
        k = max_rows // 2
        rows = rows[:k] + [["…"] * len(headers)] + rows[-k:]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join("{:>%d}" % w for w in widths)
    return "\n".join([fmt.format(*headers)] + [fmt.format(*r) for r in rows])


def grid_columns(grid, shape):
    """``(headers, rows)`` describing each grid point by its binding values."""
    if not shape:
        return [], [[]]
    names = sorted(grid)
    rows = []
    for idx in np.ndindex(*shape):
        prefix = [str(idx)] if len(shape) > 1 else []
        rows.append(prefix + [_num(grid[k][idx]) for k in names])
    return (["index"] if len(shape) > 1 else []) + names, rows


class MonteCarloResult:
    """Monte Carlo estimate of ``E[expr]`` (of the moments for ``Var``/``Cov``).

    Attributes
    ----------
    mean : estimate, a float or an array of the broadcast shape of the
        array-valued bindings.
    sem : its standard error — ``std/√trials`` for an average; the
        delete-one jackknife for expressions with ``Var``/``Cov``.
    std : spread of one draw (``sem·√trials`` in the jackknife case).
    trials : number of draws.
    seed : the seed (``SeedSequence`` entropy) that reproduces the run.
    nonfinite : number of draws that gave NaN or inf somewhere.
    grid : the array-valued bindings, broadcast to the shape of ``mean``.
    """

    def __init__(self, expr, mean, sem, std, trials, seed, grid=None, shape=(), nonfinite=0,
                 method="mean"):
        self.expr, self.trials, self.seed = expr, int(trials), seed
        self.shape = tuple(shape)
        self.mean, self.sem, self.std = (self._shaped(a) for a in (mean, sem, std))
        self.grid = grid or {}
        self.nonfinite, self.method = int(nonfinite), method

    def _shaped(self, a):
        a = np.asarray(a, dtype=float).reshape(self.shape)
        return np.float64(a) if not self.shape else a

    def __repr__(self):
        head = (f"MonteCarloResult of {sp.sstr(self.expr)}: trials={self.trials}, seed={self.seed}"
                + (", jackknife sem" if self.method == "jackknife" else ""))
        if self.nonfinite:
            head += f", {self.nonfinite} non-finite draw(s)"
        if not self.shape:
            return f"{head}\n  mean = {_num(self.mean)} ± {_num(self.sem)} (sem)"
        hdr, rows = grid_columns(self.grid, self.shape)
        rows = [r + [_num(m), _num(s)] for r, m, s in zip(rows, self.mean.ravel(), self.sem.ravel())]
        return f"{head}\n" + format_table(hdr + ["mean", "sem"], rows)


class MonteCarloSeries:
    """Estimates at increasing numbers of trials (nested: the first draws are
    shared), to show convergence. ``mean``, ``sem`` and ``std`` stack the
    results along a leading axis; ``series[i]`` / ``series.at(t)`` give one
    :class:`MonteCarloResult`, ``series.final`` the largest."""

    def __init__(self, results):
        self.results = list(results)

    trials = property(lambda s: tuple(r.trials for r in s.results))
    mean = property(lambda s: np.stack([np.asarray(r.mean) for r in s.results]))
    sem = property(lambda s: np.stack([np.asarray(r.sem) for r in s.results]))
    std = property(lambda s: np.stack([np.asarray(r.std) for r in s.results]))
    final = property(lambda s: s.results[-1])

    def __len__(self):
        return len(self.results)

    def __getitem__(self, i):
        return self.results[i]

    def __iter__(self):
        return iter(self.results)

    def at(self, trials):
        for r in self.results:
            if r.trials == trials:
                return r
        raise KeyError(f"no estimate at {trials} trials; have {self.trials}")

    def __repr__(self):
        f = self.final
        head = f"MonteCarloSeries of {sp.sstr(f.expr)}: seed={f.seed}"
        if not f.shape:
            rows = [[r.trials, _num(r.mean), _num(r.sem)] for r in self.results]
            return head + "\n" + format_table(["trials", "mean", "sem"], rows)
        rows = [[r.trials, _num(np.nanmin(r.mean)), _num(np.nanmax(r.mean)), _num(np.nanmax(r.sem))]
                for r in self.results]
        return head + f" ({f.mean.size} grid points)\n" + format_table(
            ["trials", "min mean", "max mean", "max sem"], rows)
