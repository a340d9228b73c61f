"""Code generation (issue 8): ``de.to_python()`` writes a standalone NumPy
module; imported from a temporary file it must agree with the independent
dense reference (tests/dense_reference.py) and, where the numerics layer is
present, with ``de.compile()``, to 1e-12 relative — for 1-D (eigenvalue)
bindings, 2-D bindings that do not commute with Σ, and grids.
"""
import ast
import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.equivalence.result import DeterministicEquivalent
from symrmt.faces.codegen import to_python
from symrmt.objects import Tr

from .dense_reference import evaluate as dense_evaluate

RTOL = 1e-12
n, d, p = sr.dims("n d p")
lam, lam1, lam2, sigma2 = (sr.scalar(s) for s in ("lam", "lam1", "lam2", "sigma2"))
Sigma, K = sr.Covariance("Sigma", d), sr.Covariance("K", n)
A, B = sr.Deterministic("A", d, d), sr.Deterministic("B", d, d)
w = sr.Vector("w", d)
X = sr.GaussianData("X", n, Sigma)
Xc = sr.GaussianData("Xc", n, Sigma, K=K)
F = sr.RandomFeatures("F", d, p)
eps = sr.GaussianNoise("eps", n, sigma2)


def G(l):
    return (X.T * X / n + l * sr.I(d)).inverse()


def _ridge_risk():
    w_hat = (X.T * X / n + lam * sr.I(d)).inverse() * X.T * (X * w + eps) / n
    return (w_hat - w).T * Sigma * (w_hat - w) + sigma2


CASES = {
    "iid": lambda: sr.ntr(Sigma * G(lam)),
    "features": lambda: sr.ntr((F.T * X.T * X * F / n + lam * sr.I(p)).inverse()),
    "correlated": lambda: sr.ntr((Xc.T * Xc / n + lam * sr.I(d)).inverse()),
    "correlated_features": lambda: sr.ntr((F.T * Xc.T * Xc * F / n + lam * sr.I(p)).inverse()),
    "ridge_risk": _ridge_risk,
    "two_point": lambda: sr.ntr(A * G(lam1) * B * G(lam2)),
    "form": lambda: w.T * G(lam) * A * G(lam) * w + sr.ntr(sr.sqrt(Sigma) * A),
}

_DE, _MODULES = {}, {}


def equivalent(name):
    if name not in _DE:
        _DE[name] = sr.deterministic_equivalent(CASES[name]())
    return _DE[name]


def load(src, path, modname):
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """``generated(name)``: the module generated for ``CASES[name]``."""
    root = tmp_path_factory.mktemp("codegen")

    def get(name):
        if name not in _MODULES:
            _MODULES[name] = load(to_python(equivalent(name)), root / f"de_{name}.py", f"de_{name}")
        return _MODULES[name]
    return get


def bindings(seed, D=14, N=23, P=31, rotate=False):
    """Random bindings; with ``rotate`` Σ is a full non-diagonal matrix and A,
    B are full (so nothing commutes with Σ)."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.2, 2.0, D)
    k = rng.uniform(0.3, 2.0, N)
    Am = rng.standard_normal((D, D)) / np.sqrt(D) + 2 * np.eye(D)
    Bm = rng.standard_normal((D, D)) / np.sqrt(D) + np.eye(D)
    out = dict(Sigma=s, K=k * N / k.sum(), A=Am, B=np.abs(rng.standard_normal(D)) + 0.5,
               w=rng.standard_normal(D) / np.sqrt(D), n=N, p=P, lam=float(rng.uniform(0.05, 1.0)),
               lam1=float(rng.uniform(0.05, 1.0)), lam2=float(rng.uniform(0.05, 1.0)), sigma2=0.3)
    if rotate:
        Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
        # an odd seed keeps B 1-D: diagonal in the basis where Σ is full
        out.update(Sigma=Q @ np.diag(s) @ Q.T, B=out["B"] if seed % 2 else Bm)
        Qk, _ = np.linalg.qr(rng.standard_normal((N, N)))
        out["K"] = Qk @ np.diag(out["K"]) @ Qk.T
    return out


def reference(de, b):
    """The dense reference at scalar bindings ``b`` (names → values)."""
    env, dims = {}, {}
    exprs = [de.value] + [e for g in de.groups for e in (*g.equations, g.z)]
    for e in exprs:
        for a in sp.preorder_traversal(e):
            if isinstance(a, sp.MatrixSymbol):
                v = np.asarray(b[a.name], dtype=float)
                env[a] = v.reshape(-1, 1) if a.shape[1] == 1 else (np.diag(v) if v.ndim == 1 else v)
            elif isinstance(a, sp.Symbol) and a.name in b:
                (dims if a.is_integer else env)[a] = b[a.name]
    dims.setdefault(d, len(b["Sigma"]))   # inferred from Σ, as the module does
    return dense_evaluate(de, env, dims)


def params(mod, b):
    return {k: v for k, v in b.items() if k in mod.PARAMETERS}


@pytest.mark.parametrize("rotate", [False, True], ids=["diagonal", "full"])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_dense_reference(generated, name, rotate):
    mod, de = generated(name), equivalent(name)
    for seed in range(2):
        b = bindings(seed, rotate=rotate)
        got, ref = mod.evaluate(**params(mod, b)), reference(de, b)
        assert np.shape(got) == ()
        assert got == pytest.approx(ref, rel=RTOL), (name, seed)


def test_grids_broadcast_like_compile(generated):
    mod, de = generated("two_point"), equivalent("two_point")
    b = bindings(3, rotate=True)
    l1, l2 = np.array([[0.05], [0.4], [2.0]]), np.array([0.1, 1.5])
    got = mod.evaluate(**params(mod, {**b, "lam1": l1, "lam2": l2}))
    assert got.shape == (3, 2)
    for i, j in np.ndindex(3, 2):
        ref = reference(de, {**b, "lam1": float(l1[i, 0]), "lam2": float(l2[j])})
        assert got[i, j] == pytest.approx(ref, rel=RTOL)
    sol = mod.solve(**params(mod, {**b, "lam1": l1, "lam2": l2}))
    assert set(sol) == {"kappa_1", "kappa_2"} and sol["kappa_1"].shape == (3, 2)
    assert np.all(sol["kappa_1"] >= l1)   # κ ≥ λ on the physical branch


@pytest.mark.parametrize("name", list(CASES))
def test_matches_compile(generated, name):
    pytest.importorskip("symrmt.numerics")
    mod, de = generated(name), equivalent(name)
    f = de.compile()
    for rotate in (False, True):
        b = params(mod, bindings(5, D=30, N=45, P=60, rotate=rotate))
        grid = {"lam": np.logspace(-2, 1, 7), "lam1": np.array([0.03, 0.3, 3.0])[:, None]}
        b.update({k: v for k, v in grid.items() if k in b})
        np.testing.assert_allclose(mod.evaluate(**b), f(**b), rtol=RTOL)


def test_ridgeless_root(generated):
    """At λ = 0 with d > n, κ(0⁺) > 0 solves df(κ) = n."""
    mod = generated("iid")
    b = params(mod, bindings(7, D=40, N=25))
    k0 = mod.solve(**{**b, "lam": 0.0})["kappa"]
    s = b["Sigma"]
    assert k0 > 0 and np.sum(s / (s + k0)) == pytest.approx(25, rel=1e-12)
    with pytest.raises(mod.BindingError, match="zero ridge"):      # rank Σ ≤ n: κ(0⁺) = 0
        mod.solve(**{**b, "lam": 0.0, "n": 45})
    risk = generated("ridge_risk")
    rb = {**params(risk, bindings(7, D=40, N=25)), "lam": np.array([0.1, 0.0])}
    # the derived formula has λ in a denominator: at λ = 0 it is a 0/0 limit that rounding turns
    # into NaN or ±inf — reported by both evaluators, never returned as a number
    with pytest.raises(FloatingPointError, match="0/0"):
        risk.evaluate(**rb)
    with pytest.raises(sr.ConvergenceError, match="0/0"):
        equivalent("ridge_risk").compile()(**rb)


def test_chunked_grid_is_identical(generated):
    mod = generated("ridge_risk")
    b = {**params(mod, bindings(7, D=40, N=25)), "lam": np.logspace(-2, 1, 40)}
    full = mod.evaluate(**b)
    chunk = mod.CHUNK
    try:
        mod.CHUNK = 100   # a few grid points per chunk
        # equal up to rounding (BLAS may sum differently for other block sizes)
        np.testing.assert_allclose(mod.evaluate(**b), full, rtol=RTOL)
    finally:
        mod.CHUNK = chunk
    assert full[-1] == pytest.approx(reference(equivalent("ridge_risk"), {**b, "lam": 10.0}), rel=RTOL)


def test_binding_errors(generated):
    mod = generated("two_point")
    b = params(mod, bindings(0))
    with pytest.raises(mod.BindingError, match="unknown binding 'lam3'"):
        mod.evaluate(**b, lam3=1.0)
    with pytest.raises(mod.BindingError, match="X is a random GaussianData"):
        mod.evaluate(**b, X=np.eye(3))
    with pytest.raises(mod.BindingError, match="missing binding.*lam2"):
        mod.evaluate(**{k: v for k, v in b.items() if k != "lam2"})
    with pytest.raises(mod.BindingError, match="'A'.*d = 5"):
        mod.evaluate(**{**b, "A": np.eye(5)})
    with pytest.raises(mod.BindingError, match="'d'"):
        mod.evaluate(**b, d=3)
    with pytest.raises(mod.BindingError, match="positive semi-definite"):
        mod.evaluate(**{**b, "Sigma": -np.eye(len(b["Sigma"]))})
    with pytest.raises(mod.BindingError, match="must be ≥ 0"):
        mod.evaluate(**{**b, "lam1": -0.1})
    with pytest.raises(mod.BindingError, match="do not broadcast"):
        mod.evaluate(**{**b, "lam1": np.ones(3), "lam2": np.ones(4)})


def test_unconverged_solve_is_an_error(generated):
    mod = generated("iid")
    old = mod.MAXITER
    try:
        mod.MAXITER = 1
        with pytest.raises(mod.ConvergenceError, match="did not converge"):
            mod.evaluate(**params(mod, bindings(0)))
    finally:
        mod.MAXITER = old


def test_standalone_without_symrmt(generated, tmp_path):
    """The module runs with symrmt unimportable, and imports only NumPy."""
    src = to_python(equivalent("correlated"))
    tree = ast.parse(src)
    imported = {a.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"numpy", "scipy", "functools", "math"}
    path = tmp_path / "standalone.py"
    path.write_text(src)
    b = params(_MODULES.get("correlated") or generated("correlated"), bindings(1))
    script = textwrap.dedent(f"""
        import sys, importlib.util
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "symrmt" or name.startswith("symrmt."):
                    raise ImportError("symrmt is blocked")
        sys.meta_path.insert(0, Block())
        spec = importlib.util.spec_from_file_location("standalone", {str(path)!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        import numpy as np
        v = m.evaluate(Sigma=np.array({b['Sigma'].tolist()}), K=np.array({b['K'].tolist()}), lam={b['lam']})
        assert "symrmt" not in sys.modules
        print(repr(float(v)))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) == pytest.approx(reference(equivalent("correlated"), bindings(1)), rel=RTOL)


def test_docstring_and_api():
    de = equivalent("ridge_risk")
    src = de.to_python()
    assert src == to_python(de)
    doc = ast.get_docstring(ast.parse(src))
    assert sp.sstr(de.expr) in doc
    assert r"\begin{aligned}" in doc and r"\kappa" in doc       # the LaTeX of the result
    for eq in de.equations:
        assert f"{sp.sstr(eq.lhs)} = {sp.sstr(eq.rhs)}" in doc
    names = {node.name for node in ast.parse(src).body if isinstance(node, ast.FunctionDef)}
    assert {"evaluate", "solve"} <= names


def test_integral_is_not_supported_yet():
    t = sp.Symbol("t", positive=True)
    value = sp.Integral(Tr(Sigma) * t, (t, 0, 1))
    de = DeterministicEquivalent(expr=sr.ntr(Sigma * G(lam)), value=value, groups=[])
    with pytest.raises(NotImplementedError, match="integral"):
        to_python(de)


def test_fractional_power_of_a_full_matrix(generated):
    """``Tr[Σ^{1/2}A]`` with Σ bound 2-D: the principal root, not entrywise."""
    mod = generated("form")
    b = params(mod, bindings(2, rotate=True))
    assert mod.evaluate(**b) == pytest.approx(reference(equivalent("form"), b), rel=RTOL)
    S = b["Sigma"]
    with pytest.raises(mod.BindingError, match="symmetric"):
        mod.evaluate(**{**b, "Sigma": S + np.triu(np.ones_like(S), 1)})
