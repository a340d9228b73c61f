"""auto-fpt run here (issue 15 item 6): the recorded figures of ``benchmarks/autofpt_compare.py`` in
``derivations/data/autofpt_measured.json`` and the LIVE symrmt side they are compared with.

(1) the json exists and records what was run (auto-fpt commit, command, machine, best-of-3 times of both
tools, auto-fpt's equations solved to a small residual); (2) auto-fpt's value, mapped to symrmt's expression by
``autofpt_examples.CONVENTION``, equals symrmt's compiled equivalent computed live at the recorded settings
(≤ 1e-8 relative) for every commuting example; (3) non-commuting: auto-fpt's value is the commuting shortcut
(Σ₂ bound as its eigenvalues) and differs from the engine's value with the rotated Σ₂; the recorded dense
NumPy Monte Carlo (two sizes) agrees with the engine evaluated live at its size within ``K·sem + C·|th|/d``
(K = 4, C = 6) and rejects the shortcut."""
import pathlib
import sys

import numpy as np
import pytest

import symrmt as sr

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "derivations"))
import autofpt_examples as A  # noqa: E402

K, C = 4.0, 6.0
MEAS = A.load_measured()


@pytest.fixture(scope="module")
def fns():
    exprs = A.model()
    names = {c["ours"] for c in A.CASES.values()}
    return {k: sr.deterministic_equivalent(exprs[k]).compile() for k in names}


def test_measured_json_records_the_run():
    assert A.MEASURED_JSON.exists(), "run benchmarks/autofpt_compare.py where auto-fpt is present"
    assert len(MEAS["autofpt"]["commit"]) == 40 and "autofpt_compare.py" in MEAS["command"]
    assert MEAS["machine"]["sympy"] and MEAS["machine"]["cores"] >= 1
    assert set(MEAS["cases"]) == set(A.CASES)
    for name, r in MEAS["cases"].items():
        assert r["settings"] == {k: (v if not isinstance(v, tuple) else list(v)) for k, v in A.CASES[name].items()}
        assert len(r["autofpt"]["cold_s"]) >= 3 and len(r["symrmt"]["cold_s"]) >= 3
        assert r["autofpt"]["best_cold_s"] == min(r["autofpt"]["cold_s"]) > 0
        assert r["symrmt"]["best_cold_s"] == min(r["symrmt"]["cold_s"]) > 0
        assert r["autofpt"]["residual"] < 1e-12 and r["autofpt"]["equations"]


@pytest.mark.parametrize("name", [k for k in A.CASES if k != "non_commuting"])
def test_autofpt_value_equals_engine_live(name, fns):
    r = MEAS["cases"][name]
    ours = A.symrmt_value(name, r["settings"], fns)
    theirs = A.autofpt_to_symrmt(name, r["settings"], r["autofpt"]["value"])
    assert abs(theirs - ours) <= 1e-8 * abs(ours), (name, theirs, ours)


def test_non_commuting_shortcut_differs_from_engine_and_mc(fns):
    r = MEAS["cases"]["non_commuting"]
    c = r["settings"]
    shortcut = A.symrmt_value("non_commuting", c, fns)
    engine = A.symrmt_value("non_commuting", c, fns, rotated=True)
    autofpt = A.autofpt_to_symrmt("non_commuting", c, r["autofpt"]["value"])
    assert abs(autofpt - shortcut) <= 1e-8 * abs(shortcut)          # auto-fpt = the commuting shortcut
    assert abs(engine - r["engine_rotated"]) <= 1e-8 * abs(engine)
    assert abs(engine - shortcut) > 0.5 * abs(engine)                  # ≈ 5.1 vs ≈ 1.3: not a rounding matter
    assert len(r["dense_mc"]) >= 2
    for m in r["dense_mc"]:
        D = m["d"]
        cd = dict(c, d=D, n=m["n1"])
        eng_d = A.symrmt_value("non_commuting", cd, fns, rotated=True)
        sh_d = A.symrmt_value("non_commuting", cd, fns)
        assert abs(eng_d - m["engine"]) <= 1e-8 * abs(eng_d)
        assert abs(m["mean"] - eng_d) <= K * m["sem"] + C * abs(eng_d) / D, m
        assert abs(m["mean"] - sh_d) > K * m["sem"] + C * abs(sh_d) / D, m
    errs = [abs(m["mean"] - m["engine"]) / m["engine"] for m in r["dense_mc"]]
    assert np.all(np.isfinite(errs))
