"""Adding a law is one file plus its tests: a toy law registered here (a
rescaled Wishart: rows ``N(0, aΣ)`` written ``X = √a Z Σ^{1/2}``) derives,
compiles and samples through the registries, then is unregistered.

Identity used for the independent reference: ``Σ̂_a = a Σ̂`` so
``(Σ̂_a + λ)⁻¹ = a⁻¹(Σ̂ + λ/a)⁻¹`` exactly; the toy law's equation, from the
catalogue's ``S_{aW} = S_W/a``, is ``κ a(1 − df₁(κ)/n) = λ`` and its
equivalents must equal the white-Wishart law's at ``λ/a`` rescaled by
``a⁻¹`` (one resolvent) and ``a⁻²`` (two).
"""
import numpy as np
import pytest
import sympy as sp
from sympy import Identity

import symrmt as sr
from symrmt.equivalence.laws import FAMILIES, Side, family_for_core
from symrmt.equivalence.result import UnknownGroup
from symrmt.laws import Law, register, unregister
from symrmt.numerics.laws import LAWS, LawSystem
from symrmt.numerics.solvers import bracketed_newton, full, take
from symrmt.objects import Tr
from symrmt.objects.matrices import GaussianData
from symrmt.rewrite.letters import Core
from symrmt.transforms import stransform as st
from symrmt.transforms.spectral import df1

A_SCALE = 2


class Doubled(GaussianData):
    """Rows ``N(0, 2Σ)``: ``X = √2 Z Σ^{1/2}`` (``Sigma`` is the base covariance)."""

    def law_key(self):
        return ("doubled",) + super().law_key()


class DoubledSystem(LawSystem):
    """Numeric hooks: ``h(κ) = a κ(1 − df₁(κ)/n)`` is increasing on the branch
    ``df₁ < n`` (negative off it), ``h(κ) ≥ a(κ − Tr Σ/n)`` so
    ``κ₀ = λ/a + Tr Σ/n`` lies above the root; bracketed Newton from there."""
    kind = "toy_doubled"
    title = "toy: rescaled white Wishart"

    def __init__(self, group, index, lowering, backend):
        F = self._prepare(group, index, lowering, backend)
        self.newton = self.stage(F + self.jacobian)
        self.setup = self.stage([Tr(group.Sigma), group.sizes[0]])

    def solve_real(self, env, bound, z, opts):
        n = len(z)
        trS, m = (full(v, n) for v in self.setup(env, bound))
        (k,) = self.unknowns
        x0 = z / A_SCALE + trS / m

        def evaluate(idx, x):
            e = take(env, idx)
            e[k.name], e[self.zname] = x, z[idx]
            F, J = self.newton(e, bound)
            with np.errstate(all="ignore"):
                return F / J, F < 0

        x, nit, conv = bracketed_newton(evaluate, x0, 0 * x0, 0 * x0 + np.inf, self.backend,
                                        opts["maxiter"], opts["xtol"])
        return {k.name: x}, nit, conv


class DoubledLaw(Law):
    kind = "toy_doubled"
    title = "toy: rescaled white Wishart"
    numeric = DoubledSystem

    def applies(self, core):
        return isinstance(core.data, Doubled)

    def equations(self, reg, core, z):
        if core.chain or core.side != "data" or core.ddof is not None:
            raise NotImplementedError(f"toy law: only the data side of {core}")
        i = reg.next_index()
        m, Sigma = core.m, core.data.Sigma
        d = Sigma.shape[0]
        kappa = sp.Dummy(f"kappa{i}", positive=True)
        df = df1(Sigma, kappa)
        S = st.rescale(st.wishart(d / m), A_SCALE)             # S_{aW} = S_W / a (the catalogue)
        eqs = (sp.Eq(kappa / S(-df / d), z, evaluate=False),)  # κ a (1 − df/m) = z
        group = UnknownGroup((kappa,), eqs, z, self.kind, Sigma, (m,))
        return dict(kappa=kappa, nu=(m - df) / df, k1=kappa, iid=True, Kmat=Identity(m), group=group, order=i)

    def side(self, core, g):
        return Side(A=core.data.Sigma, kA=g["kappa"], B=g["Kmat"], kB=g["nu"], m=core.m, k1=g["k1"], iid=True)

    def samples(self, obj):
        return isinstance(obj, Doubled)

    def sampling_law(self, program, obj):
        return dict(Sigma=program.matrix(obj.Sigma), K=None, mean=None)

    def draw(self, sampler, obj, ctx, rng):
        b = sampler.program.bound
        n, d = b.dim_value(obj.n), b.dim_value(obj.d)
        kind, r = sampler.factor(obj, "Sigma", ctx)
        Z = rng.standard_normal((n, d))
        x = Z * r if kind == "diag" else Z @ r
        return np.sqrt(A_SCALE) * x


n, d = sr.dims("n d")
lam, mu = sr.scalar("lam"), sr.scalar("mu")
Sigma = sr.Covariance("Sigma", d)
Amat = sr.Deterministic("A", d, d)


@pytest.fixture
def toy():
    register(DoubledLaw)
    try:
        yield
    finally:
        unregister("toy_doubled")
    assert "toy_doubled" not in FAMILIES and "toy_doubled" not in LAWS


def _exprs(X):
    G = (X.T * X / n + lam * sr.I(d)).inverse()
    G2 = (X.T * X / n + mu * sr.I(d)).inverse()
    return sr.ntr(Sigma * G), sr.ntr(Sigma * G * Amat * G2)


def _bindings(d_, seed=0):
    rng = np.random.default_rng(seed)
    s = np.linspace(0.3, 2.0, d_)
    Q = np.linalg.qr(rng.standard_normal((d_, d_)))[0]
    A = Q @ np.diag(rng.uniform(0.5, 1.5, d_)) @ Q.T          # does not commute with Σ
    return s, A


def test_toy_law_derives_and_compiles_against_the_wishart_law(toy):
    Xt, Xw = Doubled("Xt", n, Sigma), sr.GaussianData("Xw", n, Sigma)
    assert family_for_core(Core(Xt)).kind == "toy_doubled"
    s, A = _bindings(40)
    lams = np.array([0.05, 0.3, 1.0])
    for k, (et, ew) in enumerate(zip(_exprs(Xt), _exprs(Xw))):
        det, dew = sr.deterministic_equivalent(et), sr.deterministic_equivalent(ew)
        assert {g.kind for g in det.groups} == {"toy_doubled"} and {g.kind for g in dew.groups} == {"wishart"}
        b = dict(Sigma=s, n=60, lam=lams) if k == 0 else dict(Sigma=s, A=A, n=60, lam=lams, mu=0.7)
        bw = dict(b, lam=lams / A_SCALE, **({} if k == 0 else {"mu": 0.7 / A_SCALE}))
        vt, vw = det.compile()(**b), dew.compile()(**bw) / A_SCALE ** (k + 1)
        np.testing.assert_allclose(vt, vw, rtol=1e-10)


def test_toy_law_three_point_trace(toy):
    """``tr[Σ G A G B G]`` (non-commuting ``A``, ``B``) of the toy core equals the
    Wishart law's at ``λ/a`` times ``a⁻³`` (the exact rescaling), to 1e-10."""
    Xt, Xw = Doubled("Xt", n, Sigma), sr.GaussianData("Xw", n, Sigma)
    Bmat = sr.Deterministic("B", d, d)
    s, A = _bindings(30)
    Bv = A.T @ A / 30 + np.diag(np.linspace(0, 1, 30))
    vals = []
    for X, lv, scale in ((Xt, 0.3, 1.0), (Xw, 0.3 / A_SCALE, A_SCALE ** -3)):
        G = (X.T * X / n + lam * sr.I(d)).inverse()
        de = sr.deterministic_equivalent(sr.ntr(Sigma * G * Amat * G * Bmat * G))
        vals.append(scale * float(de.compile()(Sigma=s, A=A, B=Bv, n=45, lam=lv)))
    np.testing.assert_allclose(vals[0], vals[1], rtol=1e-10)


def test_toy_law_samples_by_its_own_draw(toy):
    """Monte Carlo of the toy data against its equivalent, tolerance
    ``4·sem + 3·|theory|/d`` (k = 4, c = 3), at d = 40 and 80 (n = 1.5 d)."""
    Xt = Doubled("Xt", n, Sigma)
    e = _exprs(Xt)[0]
    f = sr.deterministic_equivalent(e).compile()
    for d_ in (40, 80):
        s, _ = _bindings(d_)
        b = dict(Sigma=s, n=int(1.5 * d_), lam=0.2)
        th = float(f(**b))
        mc = sr.monte_carlo(e, trials=60, seed=1, **b)
        err, tol = abs(float(mc.mean) - th), 4 * float(mc.sem) + 3 * abs(th) / d_
        assert err <= tol, (d_, th, float(mc.mean), float(mc.sem))
        # the plain-Wishart value at λ is far off: the draw is the toy law's, not Wishart's
        Xw = sr.GaussianData("Xw", n, Sigma)
        tw = float(sr.deterministic_equivalent(_exprs(Xw)[0]).compile()(**b))
        assert abs(tw - th) > 20 * float(mc.sem) + 0.05 * abs(th)


def test_unregistered_subclass_is_refused_not_derived_as_wishart():
    assert "toy_doubled" not in FAMILIES
    Xt = Doubled("Xt", n, Sigma)
    with pytest.raises(NotImplementedError, match="no registered law family"):
        sr.deterministic_equivalent(_exprs(Xt)[0])
    with pytest.raises(NotImplementedError, match="Xt"):
        sr.monte_carlo(_exprs(Xt)[0], trials=2, seed=0, Sigma=np.ones(5), n=8, lam=0.1)


def test_toy_law_is_not_a_block_of_the_general_law(toy):
    """Pooled with Wishart data, the toy core is refused (its law does not
    declare ``pools``) instead of being given the iid ``ρ = 1/(1+δ)``."""
    Xt, Xw = Doubled("Xt", n, Sigma), sr.GaussianData("Xw", n, Sigma)
    e = sr.ntr((Xt.T * Xt / n + Xw.T * Xw / n + lam * sr.I(d)).inverse())
    with pytest.raises(NotImplementedError):
        sr.deterministic_equivalent(e)


def test_registering_a_clashing_kind_is_refused(toy):
    with pytest.raises(ValueError, match="wishart"):
        register(type("Clash", (Law,), {"kind": "wishart"}))
