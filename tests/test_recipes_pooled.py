"""Pooled-ridge recipes (derivations/model_collapse.py, bias_amplification.py).

The per-group errors of ridge on stacked groups (``sr.vstack``, shifted
teacher, different and non-commuting covariances) derived directly by the
engine are checked against (a) the previous, independent route — one-point
generating functions and 4th-order finite differences — to 1e-7 relative,
(b) an independent dense NumPy Monte Carlo (tolerance ``4·sem + 4·|th|/d``);
the random-projection variant is either refused by ``sr.deterministic_equivalent``
with a message naming the feature-space core or derived equal to the independent
NumPy formula (``_paper_pooled.rp_errors``), and its theory rows pass their
Monte Carlo rows; the recipes' "engine vs the paper's formula" sections pass; each recipe's ``--quick`` run end to end through the
command line."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "derivations"))
from _pooled import GeneratingFunctions, PooledRidge, dense_group_mc, old_bindings  # noqa: E402

import symrmt as sr  # noqa: E402


@pytest.fixture(scope="module")
def model():
    m = PooledRidge()
    m.derive(log=lambda *a: None)
    return m


def _problem(d, seed):
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    w1 = rng.standard_normal(d) / np.sqrt(d)
    return dict(Sigma1=np.arange(1, d + 1) ** -1.0, Sigma2=Q @ np.diag(np.linspace(0.1, 1.0, d)) @ Q.T,
                n1=int(1.5 * d), n2=d // 2, lam=0.05, w1=w1, w2=w1 + 0.6 * rng.standard_normal(d) / np.sqrt(d),
                s1=0.1, s2=0.2)


def test_direct_derivation_equals_generating_function_route(model):
    """Two derivations sharing no code path above the one-point law: the
    direct two-resolvent lift vs finite differences of one-point equivalents."""
    cross = GeneratingFunctions()
    cross.derive(log=lambda *a: None)
    b = _problem(20, 0)
    for g, key in ((1, "E_1"), (2, "E_2")):
        th = float(model.risk(b, key))
        old, step = cross.risk_with_error(old_bindings(b, g))
        assert step < 1e-9 * th
        assert abs(float(old) - th) <= 1e-7 * th, (g, th, old)


def test_direct_derivation_against_dense_monte_carlo(model):
    d = 80
    b = _problem(d, 1)
    mc = dense_group_mc(b, trials=150, seed=2)
    for g, key in ((1, "E_1"), (2, "E_2")):
        th = float(model.risk(b, key))
        mean, sem = mc[g]
        assert abs(mean - th) <= 4 * sem + 4 * abs(th) / d, (g, th, mean, sem)


def test_real_only_baseline_against_dense_monte_carlo(model):
    from _pooled import dense_real_only_mc
    d = 60
    b = dict(_problem(d, 3), Sigma1=np.linspace(0.2, 1.0, d), n1=4 * d)
    th = float(model.risk(b, "E_real_only"))
    mean, sem = dense_real_only_mc(b, trials=150, seed=4)
    assert abs(mean - th) <= 4 * sem + 4 * abs(th) / d, (th, mean, sem)


def test_random_projections_refused_naming_the_core_or_equal_to_the_papers_formula(model):
    """Random projections of pooled data: the engine either refuses naming the
    feature-space core, or its derived value equals the independent NumPy formula
    (``_paper_pooled.rp_errors``, no ridgeless root) to 1e-9 — both groups,
    ``p < d``, ``p > d`` and non-commuting covariances."""
    from _paper_pooled import random_noncommuting, rp_errors
    d = 40
    settings = [dict(_problem(d, 5), p=p) for p in (20, 80)] + [dict(random_noncommuting(30, 2), p=20)]
    for g, e in enumerate(model.rp_expressions().values()):
        try:
            f = sr.deterministic_equivalent(e).compile()
        except NotImplementedError as exc:
            assert "feature-space core" in str(exc)
            continue
        for b in settings:
            ref = rp_errors(**b)[g]
            assert abs(float(f(**b)) - ref) <= 1e-9 * ref, (g, b["p"], float(f(**b)), ref)


@pytest.mark.parametrize("name", ["model_collapse", "bias_amplification"])
def test_quick_run_through_the_cli(tmp_path, name):
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "symrmt", "run", name, "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 0 and summary["passed"]
    assert all(r["passed"] for r in summary["table"])
    assert summary["cross_check"]["passed"] and summary["cross_check"]["worst_rel"] < 1e-6
    refused = summary["random_projections"]["refused"]       # empty once the engine derives the model
    assert all("feature-space core" in v for v in refused.values())
    rp_rows = summary["random_projections"]["rows"]          # two-stage theory vs dense MC of X and F
    assert rp_rows and all(r["passed"] for r in rp_rows)
    paper = summary["paper_check"]                             # engine vs the paper's formulas (independent NumPy)
    assert paper["passed"] and paper["worst_rel"] <= paper["tol"] <= 1e-6
    ref = summary["random_projections"]["conditional_reference"]
    assert ref and all(r["passed"] for r in ref)
    assert "engine vs the paper's formula (independent NumPy)" in (out / "table.md").read_text()
    for f in ("formulas.md", "table.md"):
        assert (out / f).stat().st_size > 0


def test_cli_lists_the_recipes():
    proc = subprocess.run([sys.executable, "-m", "symrmt", "run"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0
    assert "model_collapse" in proc.stdout and "bias_amplification" in proc.stdout
