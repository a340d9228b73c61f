"""The auto-fpt examples recipe (derivations/autofpt_examples.py, issue 15
item 6): ``symrmt run autofpt_examples --quick`` end to end (exits non-zero if
any theory-vs-Monte-Carlo row, tolerance ``4·sem + 6·|theory|/d``, or check
fails); the non-commuting rows: the engine agrees with Monte Carlo within that
tolerance and the commuting shortcut (Σ₂ bound as its eigenvalues) does not; the recorded auto-fpt run
(derivations/data/autofpt_measured.json) is read: its values agree with symrmt's live values (≤ 1e-8) and its
times are tabulated."""
import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
# one BLAS thread: the matrices are small and threads only thrash on a shared machine
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
FILES = ["formulas.md", "table.md", "summary.json", "traces_vs_lambda.png"]


def run_quick(name, out):
    proc = subprocess.run([sys.executable, "-m", "symrmt", "run", name, "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] and summary["n_failed"] == 0 and summary["n_rows"] > 0
    assert all(r["passed"] for r in summary["rows"])
    for f in FILES:
        assert (out / f).exists(), f
    return summary


def test_autofpt_quick_and_non_commuting(tmp_path):
    summary = run_quick("autofpt_examples", tmp_path / "autofpt")
    assert summary["checks"]["MP Stieltjes closed form (independent NumPy)"]["worst_rel"] < 1e-8
    nc = summary["checks"]["non-commuting covariances"]
    assert nc["passed"] and nc["rows"]
    for r in nc["rows"]:
        assert abs(r["engine"] - r["mc"]) <= r["tol"]
        shortcut_tol = 4 * r["sem"] + 6 * abs(r["shortcut"]) / r["d"]
        assert abs(r["shortcut"] - r["mc"]) > shortcut_tol
    assert nc["autofpt_recorded"] is not None and len(nc["dense_mc_recorded"]) >= 2
    vals = summary["checks"]["auto-fpt values vs symrmt"]
    assert vals["passed"] and all(r["rel"] <= 1e-8 for r in vals["rows"])
    timing = summary["checks"]["derivation times vs auto-fpt"]
    assert set(timing["times"]) >= {"mp_trace", "subordination_trace", "rf_noise_trace"}
    assert len(timing["autofpt_commit"]) == 40
    assert all(r["autofpt_s"] > 0 and r["symrmt_s"] > 0 for r in timing["recorded"].values())
