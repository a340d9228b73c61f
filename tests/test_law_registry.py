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
