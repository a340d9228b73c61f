"""The command line (issue 8): each command through a subprocess, user
errors as one line with a non-zero exit and no traceback, the safe parser
and the bindings mini-language in-process."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.faces import cli
from symrmt.faces.parser import ParseError, declare, default_namespace, parse_binding, parse_bindings, \
    parse_expression


def symrmt(*args, cwd=None, timeout=120):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "symrmt.faces.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def assert_user_error(out, *fragments):
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("symrmt: error: "), out.stderr
    assert "Traceback" not in out.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


# ---------------------------------------------------------------- commands (subprocess)
def test_derive_prints_the_equivalent():
    out = symrmt("derive", "ntr(Sigma*G)")
    assert out.returncode == 0, out.stderr
    assert "kappa*(1 - Tr(Sigma*(kappa*I + Sigma)**(-1))/n) = lam" in out.stdout


def test_derive_latex_with_declarations():
    out = symrmt("derive", "ntr(inv(Y.T*Y/n + lam*I(d)))", "--let", "Y=GaussianData(n, Sigma, K=K)", "--latex")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(r"\begin{aligned}") and r"\nu" in out.stdout


@pytest.mark.parametrize("expr, fragments", [
    ("ntr(Sigmaa*G)", ["unknown name 'Sigmaa'", "did you mean Sigma"]),
    ("__import__('os').system('echo hacked')", ["expression:"]),
    ("var(ntr(Sigma*G*Sigma*G*Sigma*G))", ["cannot derive", "Tr[Sigma*", "3 resolvents"]),
])
def test_derive_user_errors(expr, fragments):
    out = symrmt("derive", expr)
    assert_user_error(out, *fragments)
    assert "hacked" not in out.stdout


def test_codegen_writes_an_importable_module(tmp_path):
    path = tmp_path / "risk.py"
    out = symrmt("codegen", "(w_hat - w).T*Sigma*(w_hat - w) + sigma2", "--let", "w_hat=G*X.T*(X*w + eps)/n",
                 "-o", str(path))
    assert out.returncode == 0, out.stderr
    spec = importlib.util.spec_from_file_location("risk", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    s = np.linspace(0.2, 2.0, 30)
    v = mod.evaluate(Sigma=s, w=np.ones(30) / 6, n=50, sigma2=0.25, lam=np.array([0.1, 1.0]))
    assert v.shape == (2,) and np.all(v > 0.25)


def test_codegen_to_stdout_and_unsupported():
    out = symrmt("codegen", "ntr(Sigma*G)")
    assert out.returncode == 0 and out.stdout.startswith('r"""Deterministic equivalent')
    compile(out.stdout, "<generated>", "exec")
    assert_user_error(symrmt("codegen", "ntr(sqrt(Sh + lam*I(d)))"), "cannot generate code")


def test_verify_passes_and_fails():
    try:
        cli.verify_function()
    except cli.UserError:
        pytest.skip("symrmt.verify is not available yet")
    args = ["verify", "ntr(Sigma*G)", "--bind", "Sigma=powerlaw(40, 1)", "n=80", "lam=[0.1, 1]", "--trials", "20"]
    out = symrmt(*args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASSED" in out.stdout
    out = symrmt(*args, "--k", "0", "--c", "0")          # no allowance at all: Monte Carlo noise fails it
    assert out.returncode == 1 and "FAILED" in out.stdout


def test_verify_bad_binding():
    assert_user_error(symrmt("verify", "ntr(Sigma*G)", "--bind", "Sigma=powerlaw(40)", "n=80", "lam=0.1"),
                      "powerlaw")


def test_run_lists_recipes_and_rejects_unknown():
    if cli.recipes_dir() is None:
        pytest.skip("no derivations/ folder")
    out = symrmt("run")
    assert out.returncode == 0, out.stderr
    for name, (_, first) in cli.recipes().items():
        assert name in out.stdout and first in out.stdout
    assert_user_error(symrmt("run", "no_such_recipe"), "unknown recipe 'no_such_recipe'")


def test_demo_and_help(tmp_path):
    out = symrmt("demo", "--quick", "--out", str(tmp_path))
    assert out.returncode == 0 and "comparisons within" in out.stdout
    assert (tmp_path / "report.md").exists()
    out = symrmt("--help")
    assert out.returncode == 0 and "examples:" in out.stdout and "derive" in out.stdout


# ---------------------------------------------------------------- in-process
def test_run_passes_arguments(tmp_path, monkeypatch, capsys):
    (tmp_path / "echo_args.py").write_text('"""Echo the arguments.\n\nMore."""\nimport sys\n'
                                           'print("ARGS", sys.argv[1:])\nsys.exit(3 if "--fail" in sys.argv else 0)\n')
    (tmp_path / "broken.py").write_text('"""Raises."""\nraise KeyError("oops")\n')
    monkeypatch.setattr(cli, "recipes_dir", lambda: tmp_path)
    assert cli.main(["run"]) == 0
    assert "echo_args  Echo the arguments." in capsys.readouterr().out
    assert cli.main(["run", "echo_args", "--quick", "x"]) == 0
    assert "ARGS ['--quick', 'x']" in capsys.readouterr().out
    assert cli.main(["run", "echo_args.py", "--fail"]) == 3
    assert cli.main(["run", "broken"]) == 1
    assert "KeyError: 'oops'" in capsys.readouterr().err   # a recipe's own failure keeps its traceback


@pytest.mark.parametrize("expr, fragment", [
    ("ntr(Sigma*G)[0]", "indexing is not allowed"),
    ("lam.real", "attribute .real is not allowed"),
    ("Sigma.transpose()", "method .transpose() is not allowed"),
    ("'abc'", "the literal 'abc' is not allowed"),
    ("lam if lam else lam", "conditional expressions"),
    ("ntr(*[Sigma])", "not allowed"),
    ("(lambda: 1)()", "only named functions"),
    ("lambda: 1", "lambda is not allowed"),
    ("ntr(Sigma*G) + 9**9**9", "exponent"),
    ("ntr(Sh**1000000)", "exponent"),
    ("+" * 3000 + "lam", "too deeply nested"),
    ("ntr(Sigma*G", "syntax error"),
    ("X + 1", "cannot evaluate"),
    ("Covariance(d)", "use --let"),
    ("", "empty"),
], ids=lambda x: x[:30] if isinstance(x, str) else None)
def test_disallowed_syntax_is_one_line(capsys, expr, fragment):
    assert cli.main(["derive", expr]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err, err


def test_parser_builds_the_same_expressions():
    ns = default_namespace()
    Sigma, X, n, d, lam = ns["Sigma"], ns["X"], ns["n"], ns["d"], ns["lam"]
    G = (X.T * X / n + lam * sr.I(d)).inverse()
    assert parse_expression("ntr(Sigma*G)", ns) == sr.ntr(Sigma * G)
    assert parse_expression("Tr(Sigma*(X.T*X/n + lam*I(d)).inverse())/d", ns) == sr.ntr(Sigma * G)
    assert parse_expression("power(Sigma, 0.5)", ns) == sr.sqrt(Sigma)       # 0.5 is exact
    assert parse_expression("Sigma @ Sigma", ns) == Sigma * Sigma
    assert parse_expression("1/2*lam", ns) == lam / 2
    assert parse_expression("-lam**2", ns) == -lam ** 2


def test_declarations():
    ns = default_namespace()
    _, Y = declare("Y=GaussianData(n, Sigma, K=K)", ns)
    assert isinstance(Y, sr.GaussianData) and Y.name == "Y" and Y.K == ns["K"]
    _, m = declare("m=dim()", ns)
    _, C = declare("C=Covariance(m)", ns)
    assert C.shape == (m, m) and m.is_integer
    _, q = declare("q=scalar()", ns)
    assert q.is_positive
    _, H = declare("H=Sh*Sh", ns)
    assert H == ns["Sh"] * ns["Sh"]
    with pytest.raises(ParseError, match="function"):
        declare("ntr=lam", ns)
    with pytest.raises(ParseError, match="usage: NAME=Covariance"):
        declare("Q=Covariance(d, d, d)", ns)
    with pytest.raises(ParseError, match="NAME=Ctor"):
        declare("no equals sign", ns)


def test_bindings_language():
    assert parse_binding("n=800") == ("n", 800)
    np.testing.assert_allclose(parse_binding("lam=logspace(-2, 0, 3)")[1], [0.01, 0.1, 1.0])
    np.testing.assert_allclose(parse_binding("lam=linspace(0, 1, 3)")[1], [0, 0.5, 1])
    np.testing.assert_allclose(parse_binding("Sigma=powerlaw(4, 1)")[1], [1, 1 / 2, 1 / 3, 1 / 4])
    np.testing.assert_allclose(parse_binding("Sigma=iso(3, 2)")[1], [2, 2, 2])
    np.testing.assert_allclose(parse_binding("Sigma=levels(5, 1, 0.1)")[1], [1, 1, 1, 0.1, 0.1])
    np.testing.assert_allclose(parse_binding("w=e(3, 1)")[1], [0, 1, 0])
    np.testing.assert_allclose(parse_binding("w=2*ones(2)")[1], [2, 2])
    np.testing.assert_allclose(parse_binding("lam=[0.1, 1e-2]")[1], [0.1, 0.01])
    r1, r2 = parse_binding("w=randn(1000, 3)")[1], parse_binding("w=randn(1000, 3)")[1]
    np.testing.assert_array_equal(r1, r2)
    assert np.linalg.norm(r1) == pytest.approx(1, abs=0.1)
    b = parse_bindings(["n=2*400", "lam=10**-1"])
    assert b == {"n": 800, "lam": pytest.approx(0.1)}
    for bad, msg in [("lam", "name=value"), ("Sigma=powerlaw(-3, 1)", "positive integer"),
                     ("w=e(3, 5)", "index"), ("x=open('f')", "unknown name 'open'"),
                     ("x=logspace", "must be called"), ("x=10**1000", "exponent"), ("1x=2", "not a valid name")]:
        with pytest.raises(ParseError, match=msg):
            parse_binding(bad)
    with pytest.raises(ParseError, match="twice"):
        parse_bindings(["n=1", "n=2"])


def test_bad_verify_binding_in_process(capsys):
    assert cli.main(["verify", "ntr(Sigma*G)", "--bind", "lam"]) == 2
    assert "expected name=value" in capsys.readouterr().err


def test_traceback_flag_reraises():
    with pytest.raises(ParseError):
        cli.main(["--traceback", "derive", "nope"])


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "usage: symrmt" in capsys.readouterr().out


def test_free_symbol_check():
    """The namespace's objects are real SymPy objects with the API's roles."""
    ns = default_namespace()
    assert isinstance(ns["lam"], sp.Symbol) and ns["lam"].is_positive
    assert ns["X1"] != ns["X2"] and ns["X1"].law_key() == ns["X2"].law_key()
