"""Linear diffusion denoisers (derivations/diffusion_consistency.py): the
identities the recipe reads off the engine's output, Monte Carlo checks of
the mean-estimated variance and split disagreement, and the ``--quick`` run
end to end through the command line.

Monte Carlo tolerance as in tests/mc_check.py: ``4·sem + c·|theory|/d`` with
``c = 6`` for variances (their first-order equivalents carry a larger O(1/d)
correction, measured in tests/test_twopoint.py)."""
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import symrmt as sr

from .mc_check import check

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "derivations"))
import diffusion_consistency as dc  # noqa: E402

# the variance of the sampling map with the mean estimated takes ~35 s to
# derive: the tests use the other expressions (the map is covered by --quick)
NEEDED = ["population", "population_gain"] + [f"{q}/{c}" for q in ("denoiser", "gain", "variance", "split")
                                              for c in dc.CASES]


@pytest.fixture(scope="module")
def model():
    return dc.Model()


@pytest.fixture(scope="module")
def des(model):
    e = model.expressions()
    return {k: sr.deterministic_equivalent(e[k]) for k in NEEDED}


def test_expected_denoiser_is_population_denoiser_at_kappa(des, model):
    b = dc.random_bindings(np.random.default_rng(1))
    errs = dc.check_population_at_kappa(des, model, b)
    assert max(errs.values()) < 1e-12, errs
    # over-shrinkage: κ(σ²) > σ² at finite n, so every mode's gain s/(s+κ) is
    # below the population gain s/(s+σ²), most in relative terms for small s
    for case in dc.CASES:
        k = dc.kappa_of(des[f"gain/{case}"], Sigma=b["Sigma"], v=b["v"], n=b["n"], sigma2=b["sigma2"])
        assert np.all(k > b["sigma2"])
        s = np.sort(b["Sigma"])
        ratio = (s[:, None] / (s[:, None] + k)) / (s[:, None] / (s[:, None] + b["sigma2"]))
        assert np.all(ratio < 1) and np.all(np.diff(ratio, axis=0) >= 0)


@pytest.mark.parametrize("case", dc.CASES)
def test_kappa_against_independent_root_find(des, case):
    """κ(1 − Tr[Σ(Σ+κ)⁻¹]/m) = σ², m = n (mean known) or n − 1 (estimated,
    Σ̂ normalised by n − 1), solved here by bisection."""
    from scipy.optimize import brentq
    b = dc.random_bindings(np.random.default_rng(2))
    s, n = b["Sigma"], b["n"]
    m = n if case == "known" else n - 1
    ref = [brentq(lambda k: k * (1 - np.sum(s / (s + k)) / m) - s2, s2, 1e6, xtol=1e-15, rtol=1e-15)
           for s2 in b["sigma2"]]
    got = dc.kappa_of(des[f"gain/{case}"], Sigma=s, v=b["v"], n=n, sigma2=b["sigma2"])
    assert np.max(np.abs(got - ref) / ref) < 1e-12


@pytest.mark.parametrize("case", dc.CASES)
def test_variance_factorises(des, model, case):
    fv = dc.factorise_variance(des[f"variance/{case}"], model, case)
    assert fv.symbolic_residual == 0
    assert dc.check_factorised(des[f"variance/{case}"], fv) < 1e-12
    kappa = fv.kappa
    n = [a for a in fv.m.free_symbols if a.name == "n"][0]
    assert sp.simplify(fv.m - (n if case == "known" else n - 1)) == 0
    assert sp.simplify(fv.c0 - (0 if case == "known" else (n - 1) / n)) == 0
    assert sp.simplify(fv.mode - sp.Symbol("s", positive=True) / (sp.Symbol("s", positive=True) + kappa) ** 2) == 0
    blocks = fv.latex(model)
    assert any("anisotropy" in b for b in blocks) and any("inhomogeneity" in b for b in blocks)


@pytest.mark.parametrize("case", dc.CASES)
def test_second_pairing_doubles_for_input_on_read_out_mode(des, model, case):
    fv = dc.factorise_variance(des[f"variance/{case}"], model, case)
    st = dc.Setting(50, 1.0, 0)
    k = float(dc.kappa_of(des[f"variance/{case}"], Sigma=st.s, mu=st.mu, v=st.e_top, x=st.x_top, n=100,
                          sigma2=0.05))
    total, first, second = dc.factorised_modes(fv, st, st.x_top, 100, k)
    direct = float(des[f"variance/{case}"].compile()(Sigma=st.s, mu=st.mu, v=st.e_top, x=st.x_top, n=100,
                                                      sigma2=0.05))
    assert abs(total[0] - direct) < 1e-12 * direct
    # x − μ = 2e₁: C² = A·B, so the ratio is 2 with the mean known and
    # 1 + (B + c₁s₁A)/(B + c₀) with it estimated (c₁ = 1/n: the second pairing
    # of the mean-estimation term, scale·c₁·s_j·m(s_j)² on every mode)
    A1 = fv.mode.subs({sp.Symbol("s", positive=True): st.s[0], fv.kappa: k})
    y2 = 4.0 * A1
    ratio = total[0] / first[0]
    expected = 2.0 if case == "known" else 1.0 + float((y2 + st.s[0] * A1 / 100) / (y2 + 99 / 100))
    assert abs(ratio - expected) < 1e-12
    if case == "known":
        assert np.all(second[1:] == 0)
    else:
        assert np.all(second[1:] > 0)


@pytest.mark.parametrize("case", dc.CASES)
def test_split_disagreement_is_sum_of_mode_variances(des, model, case):
    err, resid = dc.check_split_vs_modes(des, model, case)
    assert resid < 1e-12
    # both routes keep the second pairing of the mean-estimation term (issue 13)
    assert err < 1e-12


def test_variance_with_estimated_mean_vs_monte_carlo(model):
    """Var[e₁ᵀD̂(x)], input on the top mode, mean estimated (both pairings and
    the mean-estimation term)."""
    st = dc.Setting(60, 1.0, 3)
    e = model.expressions()["variance/estimated"]
    check(e, d=60, trials=1500, c=6.0, Sigma=st.s, mu=st.mu, v=st.e_top, x=st.x_top, n=120,
          sigma2=np.array([0.02, 0.2]))


def test_covariance_of_two_modes_vs_monte_carlo(model):
    """Cov[e₁ᵀD̂(x), e₂ᵀD̂(x)] with x − μ = e₁ + e₂ (mean known): between two
    eigenmodes only the second pairing survives (e₁ᵀMe₂ = 0)."""
    st = dc.Setting(60, 1.0, 5)
    x = st.mu + st.e_top + dc.basis(60, 1)
    e = model.expressions()["covariance/known"]
    theory, _, _ = check(e, d=60, trials=1500, c=6.0, Sigma=st.s, mu=st.mu, u=st.e_top, v=dc.basis(60, 1), x=x,
                         n=120, sigma2=np.array([0.02, 0.2]))
    assert np.all(theory > 0)


def test_split_disagreement_with_estimated_mean_vs_monte_carlo(model):
    st = dc.Setting(60, 1.0, 4)
    e = model.expressions()["split/estimated"]
    check(e, d=60, trials=150, c=6.0, Sigma=st.s, mu=st.mu, x=st.x_typ, n=120, sigma2=np.array([0.02, 0.2]))


def test_quick_run_through_the_cli(tmp_path):
    out = tmp_path / "diffusion"
    proc = subprocess.run([sys.executable, "-m", "symrmt", "run", "diffusion_consistency", "--quick",
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 0
    assert all(r["passed"] for r in summary["table"])
    # engine vs the paper's formulas coded independently (derivations/_paper_diffusion.py)
    assert summary["paper_check"]["passed"] and summary["paper_check"]["worst_rel"] < 1e-6
    assert "Engine vs the paper's formula" in (out / "table.md").read_text()
    for name in ("formulas.md", "table.md", "kappa.png", "shrinkage.png", "variance_modes.png",
                 "split_vs_n.png", "trajectory.png"):
        assert (out / name).stat().st_size > 0, name
    formulas = (out / "formulas.md").read_text()
    assert "anisotropy" in formulas and "inhomogeneity" in formulas and r"\kappa" in formulas
