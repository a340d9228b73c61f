"""The ridge recipes of issue 15 (derivations/random_features.py,
norm_capacity.py, corr_gcv.py): each ``--quick`` run end to end through the
command line (``symrmt run NAME --quick``), which exits non-zero if any
theory-vs-Monte-Carlo row (tolerance ``4·sem + 6·|theory|/d``) or
independent check fails; here the outputs are checked to exist and agree."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# one BLAS thread: the matrices are small and threads only thrash on a shared machine
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

FILES = {"random_features": ["formulas.md", "table.md", "summary.json", "curves.png"],
         "norm_capacity": ["formulas.md", "table.md", "summary.json", "risk_vs_norm.png"],
         "corr_gcv": ["formulas.md", "table.md", "summary.json", "risk_vs_gcv.png"]}


def run_quick(name, out):
    proc = subprocess.run([sys.executable, "-m", "symrmt", "run", name, "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and summary["n_failed"] == 0 and summary["n_rows"] > 0
    assert all(r["passed"] for r in summary["rows"])
    for f in FILES[name]:
        assert (out / f).exists(), f
    return summary


@pytest.mark.parametrize("name", list(FILES))
def test_quick_run_through_the_cli(name, tmp_path):
    summary = run_quick(name, tmp_path / name)
    if name == "random_features":
        cf = summary["checks"]["closed form (arXiv:2405.00592), independent NumPy"]
        assert cf["passed"] and cf["worst_rel"] < 1e-8
    if name == "corr_gcv":
        # K-correlated label noise derives (sample-side sources) and CorrGCV with it (sr.df_inverse)
        assert not summary["refused"]
        qs = {r["quantity"] for r in summary["rows"]}
        assert {"gcv - risk [AR(1) ρ=0.5]", "risk [exp ξ=3]", "K-noise corrgcv - risk [AR(1) ρ=0.5]",
                "K-noise train [exp ξ=3]"} <= qs


def test_listed_by_symrmt_run():
    proc = subprocess.run([sys.executable, "-m", "symrmt", "run"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0
    for name in FILES:
        assert name in proc.stdout
