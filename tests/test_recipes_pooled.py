"""Pooled-ridge recipes (derivations/model_collapse.py, bias_amplification.py):
the source-derivative assembly of the risk against an independent dense
NumPy computation on a tiny problem, and each recipe's ``--quick`` run end to
end through the command line (subprocess, as tests/test_diffusion.py).

Monte Carlo tolerance as in tests/mc_check.py: ``4·sem + c·|theory|/d``,
``c = 4``."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "derivations"))
from _pooled import PooledRidge, dense_risk_mc  # noqa: E402


@pytest.fixture(scope="module")
def model():
    m = PooledRidge()
    m.derive(log=lambda *a: None)
    return m


def test_generating_functions_at_t1_z0_match_dense_average(model):
    """The finite-difference step is not the source of error: the risk's
    h-vs-2h spread is far below the Monte Carlo resolution, and λ → ∞
    gives ‖c‖²_T (ŵ → 0) to first order."""
    d = 60
    s = np.arange(1, d + 1) ** -1.0
    rng = np.random.default_rng(0)
    b = dict(Sigma1=s, Sigma2=s[::-1], T=s, n1=90, n2=30, lam=0.1, wT=rng.standard_normal(d) / np.sqrt(d),
             Delta=rng.standard_normal(d) / np.sqrt(d), s1=0.1, s2=0.2)
    th, err = model.risk_with_error(b)
    assert err < 1e-8 * th
    big = model.risk(dict(b, lam=1e6))
    assert abs(big - b["wT"] @ (s * b["wT"])) < 1e-4 * (b["wT"] @ (s * b["wT"]))


def test_risk_against_dense_monte_carlo(model):
    d = 80
    s = np.arange(1, d + 1) ** -1.0
    rng = np.random.default_rng(3)
    b = dict(Sigma1=s, Sigma2=0.5 * s[::-1] ** 0.5, T=s, n1=120, n2=40, lam=0.05,
             wT=rng.standard_normal(d) / np.sqrt(d), Delta=0.5 * rng.standard_normal(d) / np.sqrt(d), s1=0.1, s2=0.1)
    th = float(model.risk(b))
    mean, sem = dense_risk_mc(b, trials=150, seed=4)
    assert abs(mean[0] - th) <= 4 * sem[0] + 4 * abs(th) / d, (th, mean, sem)


@pytest.mark.parametrize("name", ["model_collapse", "bias_amplification"])
def test_quick_run_through_the_cli(tmp_path, name):
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "symrmt", "run", name, "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 0 and summary["passed"]
    assert all(r["passed"] for r in summary["table"])
    for f in ("formulas.md", "table.md"):
        assert (out / f).stat().st_size > 0


def test_cli_lists_the_recipes():
    proc = subprocess.run([sys.executable, "-m", "symrmt", "run"], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 0
    assert "model_collapse" in proc.stdout and "bias_amplification" in proc.stdout
