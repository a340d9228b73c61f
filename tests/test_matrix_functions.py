"""``sr.matrix_function``: the Cauchy-integral route is used only where ``f``
is provably analytic on and inside its contour; non-analytic ``f`` is refused
by name, exact fractional powers go to the fractional-power representation
(issue 13, "non-analytic matrix functions").

Independent checks: the Marchenko–Pastur density (``scipy.integrate.quad``)
for isotropic Σ, and a dense NumPy Monte Carlo (``eigvalsh`` of ``XᵀX/n`` with
``X`` drawn here, not by ``sr.monte_carlo``). Tolerance
``|theory − mean| ≤ K·sem + C·|theory|/d`` with ``K = 4``, ``C = 2``.
"""
import numpy as np
import pytest
import sympy as sp
from scipy.integrate import quad

import symrmt as sr

K, C = 4.0, 2.0
n, d = sr.dims("n d")
a, b = sr.scalar("a"), sr.scalar("b")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)
Sh = X.T * X / n
I = sr.I(d)
EDGE = sr.Norm(Sigma) * (1 + sp.sqrt(d / n)) ** 2


def mp(f, q):
    """``∫ f ρ_MP`` (isotropic, unit variance, ``q = d/n < 1``)."""
    lo, hi = (1 - np.sqrt(q)) ** 2, (1 + np.sqrt(q)) ** 2
    return quad(lambda x: f(x) * np.sqrt((hi - x) * (x - lo)) / (2 * np.pi * q * x), lo, hi,
                epsabs=0, epsrel=1e-13, limit=200)[0]


def dense_mc(f, s, N, trials, seed=0):
    """Mean and sem of ``(1/d) Σ f(eig(XᵀX/N))`` over independent draws."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(trials):
        Xd = rng.standard_normal((N, len(s))) * np.sqrt(s)
        vals.append(np.mean(f(np.clip(np.linalg.eigvalsh(Xd.T @ Xd / N), 0, None))))
    return np.mean(vals), np.std(vals, ddof=1) / np.sqrt(trials)


@pytest.mark.parametrize("f, name", [
    (lambda x: sp.Abs(x - 1), "Abs"),
    (lambda x: sp.Piecewise((x, x < 1), (1, True)), "Piecewise"),
    (sp.tan, "tan"),
    (sp.log, "log"),
    (lambda x: sp.sqrt(x + 1) * sp.exp(-x), "branch cut"),
    (lambda x: 1 / (x + a), "pole at x = -a"),
    (lambda x: sp.exp(sp.I * x), "not real"),
    (lambda x: sp.re(x) ** 2, "re"),
])
def test_non_analytic_refused(f, name):
    """Before: ``Abs(x − 1)`` gave 3.221 against a Monte Carlo of 0.7531."""
    with pytest.raises(NotImplementedError, match="matrix_function") as exc:
        sr.deterministic_equivalent(sr.ntr(sr.matrix_function(f, Sh)))
    assert name in str(exc.value)


def test_contour_must_enclose_spectrum():
    with pytest.raises(NotImplementedError, match="not provably enclosing"):
        sr.deterministic_equivalent(sr.ntr(sr.matrix_function(sp.exp, Sh, contour=(1, sp.Rational(1, 2)))))


def test_sqrt_routed_to_fractional_power():
    """``matrix_function(sqrt, Σ̂)`` was 1.030 vs 0.918: now the same integral
    as ``sr.sqrt(Σ̂)``, equal to the Marchenko–Pastur value (isotropic,
    ``q = 1/2``) and to a dense Monte Carlo at ``d = 50, 200``."""
    e = sr.ntr(sr.matrix_function(sp.sqrt, Sh))
    de = sr.deterministic_equivalent(e)
    assert not any(isinstance(i, sp.Integral) and i.limits[0][2] == 2 * sp.pi for i in de.value.atoms(sp.Integral))
    f = de.compile()
    ref = sr.deterministic_equivalent(sr.ntr(sr.sqrt(Sh))).compile()
    D = 100
    assert float(f(Sigma=np.ones(D), n=2 * D)) == pytest.approx(mp(np.sqrt, 0.5), rel=1e-9)
    s = np.linspace(0.2, 2.0, D)
    assert float(f(Sigma=s, n=3 * D)) == pytest.approx(float(ref(Sigma=s, n=3 * D)), rel=1e-12)
    for D in (50, 200):
        s = np.linspace(0.2, 2.0, D)
        th = float(f(Sigma=s, n=2 * D))
        mean, sem = dense_mc(np.sqrt, s, 2 * D, trials=20)
        assert abs(th - mean) <= K * sem + C * th / D, (D, th, mean, sem)


def test_scaled_shifted_powers_routed():
    """``3(2x+1)^{1/3}`` and ``√((x+a)/(x+b))``: exact fractional powers of a
    shifted, scaled core, against a dense Monte Carlo (``d = 100``, ``n = 2d``)."""
    D = 100
    s = np.linspace(0.5, 1.5, D)
    cases = [(lambda x: 3 * (2 * x + 1) ** sp.Rational(1, 3), lambda x: 3 * np.cbrt(2 * x + 1), {}),
             (lambda x: sp.sqrt((x + a) / (x + b)), lambda x: np.sqrt((x + 0.5) / (x + 2.0)), dict(a=0.5, b=2.0))]
    for f, fnum, extra in cases:
        th = float(sr.deterministic_equivalent(sr.ntr(sr.matrix_function(f, Sh))).compile()(Sigma=s, n=2 * D, **extra))
        mean, sem = dense_mc(fnum, s, 2 * D, trials=20, seed=1)
        assert abs(th - mean) <= K * sem + C * th / D, (th, mean, sem)


def test_pole_outside_explicit_contour():
    """``1/(x+a)`` on a circle crossing the real axis at ``−a/2``: the pole at
    ``−a`` is provably outside; equals the resolvent equivalent to 1e-9."""
    e = sr.ntr(sr.matrix_function(lambda x: 1 / (x + a), Sh, contour=(EDGE / 2, EDGE / 2 + a / 2)))
    D = 80
    bind = dict(Sigma=np.linspace(0.2, 2, D), n=2 * D, a=np.array([0.3, 1.0]))
    v = sr.deterministic_equivalent(e).compile()(**bind)
    ref = sr.deterministic_equivalent(sr.ntr((Sh + a * I).inverse())).compile()(**bind)
    np.testing.assert_allclose(v, ref, rtol=1e-9)


def test_entire_and_removable_accepted():
    """Entire ``f`` and a removable singularity (``(1 − (1 − ηx)^t)/x`` at 0)
    keep the contour route; against Marchenko–Pastur."""
    lr = sr.scalar("lr")
    e = sr.ntr(sr.matrix_function(lambda x: (1 - (1 - lr * x) ** 5) / x, Sh))
    v = float(sr.deterministic_equivalent(e).compile()(Sigma=np.ones(100), n=200, lr=0.3))
    assert v == pytest.approx(mp(lambda x: (1 - (1 - 0.3 * x) ** 5) / x, 0.5), abs=1e-9)
