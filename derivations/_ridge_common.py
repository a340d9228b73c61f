"""Shared plumbing of the ridge recipes (random_features, norm_capacity,
corr_gcv): derive a dict of expressions (recording refusals verbatim),
compare each derived equivalent with ``sr.monte_carlo`` of the SAME
expression, write ``formulas.md`` / ``table.md`` / ``summary.json``.

Nothing here derives or types a formula: values come from
``sr.deterministic_equivalent(expr).compile()``.
"""
from __future__ import annotations

import json
import time

import numpy as np
import sympy as sp

import symrmt as sr
from _common import Row, markdown_table, trend_table


def start(argv, doc, default_out, quick_help="d = 100 only, few draws (CI)"):
    """The recipes' command line (``--quick``, ``--out``): ``(args, out folder, start time)``."""
    import argparse
    import pathlib
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--out", default=default_out)
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return args, out, time.perf_counter()


def derive_all(exprs, log=print):
    """``(des, refused)``: the derived equivalents by name, and for each
    expression the engine refuses, its ``NotImplementedError`` message."""
    des, refused = {}, {}
    for name, e in exprs.items():
        t0 = time.perf_counter()
        try:
            des[name] = sr.deterministic_equivalent(e)
            log(f"  derived {name:<28} in {time.perf_counter() - t0:.2f} s")
        except NotImplementedError as exc:
            refused[name] = " ".join(str(exc).split())
            log(f"  REFUSED {name:<28}: {refused[name][:160]}")
    return des, refused


def compare(label, expr, fn, bindings, *, d, ratio, sigma2, trials, seed, c, k=4.0):
    """One :class:`Row`: theory ``fn(**bindings)`` (the compiled equivalent of
    ``expr``) vs ``sr.monte_carlo(expr)`` with the same bindings; passes when
    ``|MC − th| ≤ k·sem + c·|th|/d``."""
    th = float(np.asarray(fn(**bindings), dtype=float))
    mc = sr.monte_carlo(expr, trials=trials, seed=seed, progress=False, **bindings)
    return Row(label, int(d), float(ratio), float(sigma2), th, float(mc.mean), float(mc.sem) or 1e-300,
               int(trials), c=c, k=k)


def formulas_md(title, intro, des, refused):
    """LaTeX of every derived formula: the expression, its equivalent and the
    self-consistent equations of its unknowns (``sp.latex`` of the engine's
    output, unchanged)."""
    out = [f"# {title}", "", intro, ""]
    for name, de in des.items():
        out += [f"## {name}", "", "$$" + sp.latex(de.expr) + r"\;\simeq\;" + sp.latex(de.value) + "$$", ""]
        for g in de.groups:
            for eq in g.equations:
                out += ["$$" + sp.latex(eq) + " = 0$$", ""]
    if refused:
        out += ["## Refused by the engine", ""]
        out += [f"- **{k}**: refused by the engine: `{v}`" for k, v in refused.items()]
    return "\n".join(out) + "\n"


def write_report(out, title, note, rows, refused, extra, quick, sizes, t_start, log=print):
    ok = all(r.passed for r in rows) and all(x.get("passed", True) for x in extra.values())
    body = [f"# {title}", "", note, "", markdown_table(rows), "", "## O(1/d) trend", "", trend_table(rows), ""]
    for k, v in extra.items():
        body += [f"## {k}", "", v.get("table", json.dumps(v, default=str)), ""]
    if refused:
        body += ["## Rows not computed", ""]
        body += [f"- {k}: refused by the engine: `{v}`" for k, v in refused.items()]
    (out / "table.md").write_text("\n".join(body) + "\n")
    summary = dict(passed=ok, n_rows=len(rows), n_failed=sum(not r.passed for r in rows), quick=quick,
                   sizes=sizes, refused=refused,
                   checks={k: {kk: vv for kk, vv in v.items() if kk != "table"} for k, v in extra.items()},
                   rows=[dict(quantity=r.quantity, d=r.d, ratio=r.ratio, theory=r.theory, mc=r.mc, sem=r.sem,
                              tol=r.tol, passed=r.passed) for r in rows],
                   seconds=time.perf_counter() - t_start)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    log(f"{summary['n_rows'] - summary['n_failed']}/{summary['n_rows']} comparisons pass; "
        f"extra checks {'pass' if all(x.get('passed', True) for x in extra.values()) else 'FAIL'}; "
        f"{summary['seconds']:.1f} s")
    return ok
