"""The numeric side of the law families is a registry (``symrmt.numerics.laws``):
one module per family, looked up by ``group.kind`` — no string switches in the
solvers, the plan or the code generator."""
from dataclasses import replace

import numpy as np
import pytest

import symrmt as sr
from symrmt.numerics.laws import LAWS, LawSystem, register, system_for

n, d = sr.dims("n d")
lam = sr.scalar("lam")
Sigma = sr.Covariance("Sigma", d)
X = sr.GaussianData("X", n, Sigma)


def test_registry_holds_each_family_once():
    assert set(LAWS) >= {"wishart", "separable", "general"}
    for kind, cls in LAWS.items():
        assert issubclass(cls, LawSystem) and cls.kind == kind and cls.title
        assert cls.__module__.endswith("." + kind)          # one module per family


def test_unknown_kind_is_refused_by_name():
    de = sr.deterministic_equivalent(sr.ntr((X.T * X / n + lam * sr.I(d)).inverse()))
    g = replace(de.groups[0], kind="nonesuch")
    with pytest.raises(NotImplementedError, match="nonesuch"):
        system_for(g, 0, None, None)


def test_register_needs_a_kind_and_refuses_a_clash():
    with pytest.raises(TypeError):
        register(type("NoKind", (LawSystem,), {}))
    with pytest.raises(ValueError, match="wishart"):
        register(type("Clash", (LawSystem,), {"kind": "wishart"}))


def test_a_law_without_a_standalone_solver_is_refused_by_codegen():
    X2 = sr.GaussianData("X2", n, sr.Covariance("Sigma2", d))
    e = sr.ntr((X.T * X / n + X2.T * X2 / n + lam * sr.I(d)).inverse())
    de = sr.deterministic_equivalent(e)
    assert {g.kind for g in de.groups} == {"general"} and not LAWS["general"].has_python_solver
    with pytest.raises(NotImplementedError, match="general"):
        de.to_python()


def test_each_family_solves_through_its_own_class():
    """Wishart and correlated samples compiled and solved: the plan holds the
    family's class, and the value is finite at a few ridges."""
    K = sr.Covariance("K", n)
    Xk = sr.GaussianData("Xk", n, Sigma, K=K)
    rng = np.random.default_rng(0)
    for e, kinds in [(sr.ntr(Sigma * (X.T * X / n + lam * sr.I(d)).inverse()), {"wishart"}),
                     (sr.ntr(Sigma * (Xk.T * Xk / n + lam * sr.I(d)).inverse()), {"separable"})]:
        de = sr.deterministic_equivalent(e)
        assert {g.kind for g in de.groups} == kinds
        b = dict(Sigma=rng.uniform(0.5, 2, 20), n=30, lam=np.array([0.1, 1.0]))
        if "separable" in kinds:
            b["K"] = rng.uniform(0.5, 2, 30)
        v = de.compile()(**b)
        assert np.all(np.isfinite(v)) and np.all(v > 0)


# ------------------------------------------------------------ the law families across layers
def test_each_family_is_one_module_registered_in_every_layer():
    """``symrmt.laws``: one module per family; its equations build groups of its
    kind, its numeric hooks are the numerics registry's class, and the
    presentation capability is an attribute (no ``kind ==`` switches)."""
    from symrmt.equivalence.laws import FAMILIES, family
    from symrmt.numerics.laws.base import numeric_class
    import symrmt.laws as L
    assert set(FAMILIES) >= {"wishart", "separable", "general"}
    mods = {"wishart": L.wishart, "separable": L.separable, "general": L.pooled}
    for kind, mod in mods.items():
        law = family(kind)
        assert type(law).__module__ == mod.__name__ and law.title
        assert numeric_class(kind) is LAWS[kind] is law.numeric_class()
    assert family("wishart").presents_kappa and not family("separable").presents_kappa
    assert family("wishart").pools and family("separable").pools and not family("general").applies(None)
    with pytest.raises(NotImplementedError, match="nonesuch"):
        family("nonesuch")


def test_sampler_draws_data_through_its_family():
    from symrmt.montecarlo.sampler import law_of
    K = sr.Covariance("K", n)
    assert law_of(X).kind == "wishart" and law_of(sr.GaussianData("Xk", n, Sigma, K=K)).kind == "separable"
    assert law_of(sr.GaussianNoise("e", n, 1)) is None


def test_presentation_has_no_kind_switch():
    import inspect
    from symrmt.equivalence import present
    src = inspect.getsource(present)
    assert '"wishart"' not in src and '"separable"' not in src


def test_bad_input_names_the_argument():
    n1, n2, p = sr.dims("n1 n2 p")
    X1 = sr.GaussianData("X1", n1, sr.Covariance("S1", d))
    Z = sr.GaussianData("Z", n2, sr.Covariance("T", p))
    with pytest.raises(ValueError, match="X1 has d, Z has p"):
        sr.deterministic_equivalent(sr.ntr((X1.T * X1 / n1 + Z.T * Z / n2 + lam * sr.I(d)).inverse()))
    X2 = sr.GaussianData("X2", n2, sr.Covariance("S2", d))
    with pytest.raises(ValueError, match="weight"):
        sr.deterministic_equivalent(sr.ntr((X1.T * X1 / n1 - 2 * X2.T * X2 / n2 + lam * sr.I(d)).inverse()))
    Bn = sr.Covariance("Bn", d)
    f = sr.deterministic_equivalent(sr.ntr((X1.T * X1 / n1 + Bn + lam * sr.I(d)).inverse())).compile()
    for lv in (0.5, np.array([0.5 - 0.1j])):
        with pytest.raises(sr.BindingError, match="Bn.*positive semi-definite"):
            f(S1=np.ones(6), Bn=-np.eye(6), n1=10, lam=lv)
