"""mpmath backend at full precision (issue 13): ``mpf``, ``Fraction``, ints and
decimal strings are bound without rounding to float64, so the 50-digit solve
of the isotropic case agrees with its closed form
``κ² + κ(s − λ − q s) − λ s = 0`` (``q = d/n``) to < 1e-45; and the 80-digit
κ benchmark (issue 17 item 4) runs."""
import pathlib
import runpy
from fractions import Fraction

import mpmath
import numpy as np
import pytest

import symrmt as sr

n, d = sr.dims("n d")
lam = sr.scalar("lam")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
G = (X.T * X / n + lam * sr.I(d)).inverse()
EXPR = sr.ntr(Sigma * G)
DIM, NS = 20, 40


@pytest.fixture(scope="module")
def f50():
    return sr.deterministic_equivalent(EXPR).compile(backend="mpmath", dps=50)


def closed_form(s, lam_, q):
    """Positive root of κ² + κ(s − λ − q s) − λ s = 0, and the value
    (1/d)Tr[Σ(Σ̂+λ)⁻¹] ≃ (κ/λ)·s/(s+κ), at 70 digits."""
    with mpmath.workdps(70):
        s, lam_, q = (mpmath.mpmathify(x) for x in (s, lam_, q))
        b = s - lam_ - q * s
        k = (-b + mpmath.sqrt(b * b + 4 * lam_ * s)) / 2
        return k, k / lam_ * s / (s + k)


def _rel(a, b):
    with mpmath.workdps(70):
        return abs(mpmath.mpf(a) - b) / abs(b)


@pytest.mark.parametrize("s_in, lam_in", [
    ("mpf", "mpf"),
    ("str", "str"),
    ("fraction", "fraction"),
    ("mpf", "str"),
])
def test_fifty_digits_from_exact_inputs(f50, s_in, lam_in):
    with mpmath.workdps(60):
        third, tenth = mpmath.mpf(1) / 3, mpmath.mpf(1) / 10
    s = {"mpf": np.array([third] * DIM, dtype=object),
         "str": ["0." + "3" * 60] * DIM,
         "fraction": np.array([Fraction(1, 3)] * DIM, dtype=object)}[s_in]
    lamv = {"mpf": tenth, "str": "0.1", "fraction": Fraction(1, 10)}[lam_in]
    k_exact, v_exact = closed_form(Fraction(1, 3), Fraction(1, 10), Fraction(DIM, NS))
    res = f50.solve(Sigma=s, n=NS, lam=lamv)
    k = res.x["kappa"].item()
    assert isinstance(k, mpmath.mpf)
    assert _rel(k, k_exact) < 1e-45, (s_in, lam_in, _rel(k, k_exact))
    assert _rel(res.value.item(), v_exact) < 1e-45


def test_grid_of_exact_ridges(f50):
    """A grid of string ridges: every point to 50 digits (warm start from double
    precision changes only Newton's starting point)."""
    lams = ["0.001", "0.01", "0.1", "1", "10"]
    res = f50.solve(Sigma=np.array([Fraction(1, 3)] * DIM, dtype=object), n=NS, lam=np.array(lams, dtype=object))
    for lv, k in zip(lams, res.x["kappa"]):
        assert _rel(k, closed_form(Fraction(1, 3), lv, Fraction(DIM, NS))[0]) < 1e-45, lv


def test_float_input_is_the_float(f50):
    """A float binding is the binary number it is (0.1 ≠ 1/10): the result
    is the closed form at that float, not at 1/10."""
    res = f50.solve(Sigma=np.full(DIM, 0.5), n=NS, lam=0.1)
    k_float = closed_form(0.5, 0.1, Fraction(DIM, NS))[0]
    k_tenth = closed_form(0.5, "0.1", Fraction(DIM, NS))[0]
    assert _rel(res.x["kappa"].item(), k_float) < 1e-45
    assert _rel(res.x["kappa"].item(), k_tenth) > 1e-20


def test_benchmark_script_runs():
    path = pathlib.Path(__file__).parent.parent / "benchmarks" / "mpmath_kappa.py"
    mod = runpy.run_path(str(path))
    ratio, diff = mod["main"](["--d", "40", "--n", "20", "--points", "3", "--repeat", "1"])
    assert ratio > 0 and diff < mpmath.mpf(10) ** -75
