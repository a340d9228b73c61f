"""Small faces (issue 14 item 5): lazy ``import symrmt``, a progress report
that does not flood logs, CLI parse errors that point at the offending token,
``matrix_function`` in the CLI parser."""
import io
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

import symrmt as sr
from symrmt.faces import cli
from symrmt.faces.parser import ParseError, default_namespace, parse_binding, parse_expression
from symrmt.montecarlo import progress as P


# ---------------------------------------------------------------- lazy import
def test_import_symrmt_loads_no_numerics_scipy_or_matplotlib():
    code = ("import sys, symrmt as sr; heavy = [m for m in ('scipy', 'matplotlib', 'symrmt.numerics', "
            "'symrmt.montecarlo', 'symrmt.verification') if m in sys.modules]; print(heavy); "
            "f = sr.monte_carlo; print('symrmt.montecarlo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "[]" and out[1] == "True"


def test_lazy_names_resolve_and_are_listed():
    for name in sr.__all__:
        assert getattr(sr, name) is not None, name
    assert {"monte_carlo", "verify", "spectral_density", "CompiledEquivalent"} <= set(dir(sr))
    from symrmt import verify, MonteCarloResult   # noqa: F401  (from-import goes through __getattr__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sr.nope


# ---------------------------------------------------------------- progress
class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def _drive(monkeypatch, tty, total=400, dt=0.1, mode=True):
    clock = _Clock()
    monkeypatch.setattr(P.time, "perf_counter", clock)
    stream = _Stream(tty)
    bar = P.Progress(total, mode, stream=stream)
    for done in range(1, total + 1):
        clock.t += dt
        bar.update(done)
    bar.close()
    return stream.getvalue()


def test_progress_not_a_tty_writes_a_line_every_few_seconds(monkeypatch):
    out = _drive(monkeypatch, tty=False)           # 400 updates over 40 s
    lines = out.splitlines()
    assert "\r" not in out
    assert 40 / P.LOG_EVERY <= len(lines) <= 40 / P.LOG_EVERY + 2, lines
    assert lines[-1].startswith("monte_carlo [########################] 400/400 draws")
    assert _drive(monkeypatch, tty=False, mode=None) == ""   # default: silent off a terminal


def test_progress_terminal_redraws_one_line(monkeypatch):
    out = _drive(monkeypatch, tty=True, mode=None)
    assert out.count("\n") == 1 and out.endswith("\n") and out.count("\r") > 100
    assert "400/400 draws" in out


# ---------------------------------------------------------------- parse errors
@pytest.mark.parametrize("text, token, msg", [
    ("ntr(Sigma*Gx)", "Gx", "unknown name 'Gx'"),
    ("ntr(Sigma * X.foo)", "X.foo", "attribute .foo"),
    ("ntr(Sigma*G)[0]", "ntr(Sigma*G)[0]", "indexing"),
    ("ntr(Sigma*G + 1)", "Sigma*G + 1", "cannot evaluate"),
    ("ntr(sqrt(Sigma, 2, 3))", "sqrt(Sigma, 2, 3)", "cannot evaluate"),
])
def test_parse_errors_point_at_the_token(text, token, msg):
    with pytest.raises(ParseError, match=msg) as info:
        parse_expression(text)
    e = info.value
    assert e.source == text and text[e.col:e.end] == token
    src, marks = e.pointer(indent="").split("\n")
    assert src == text and marks == " " * e.col + "^" * len(token)
    assert f"(column {e.col + 1}" in str(e) and "\n" not in str(e)


def test_syntax_and_binding_errors_point_at_a_column():
    with pytest.raises(ParseError, match="syntax error at column") as info:
        parse_expression("ntr(Sigma*G))")
    assert info.value.col is not None and info.value.pointer()
    with pytest.raises(ParseError, match="unknown name 'logspce'.*logspace") as info:
        parse_binding("lam=logspce(-2, 0, 3)")
    assert info.value.source[info.value.col:info.value.end] == "logspce"


def test_cli_marks_the_token_in_its_one_line_message(capsys):
    assert cli.main(["derive", "ntr(Sigma*Gx)"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("symrmt: error: expression: unknown name 'Gx'")
    assert err.rstrip().endswith("; here: ntr(Sigma*»Gx«)")
    long = "ntr(" + "+".join(["Sigma*G"] * 30) + " + Sigma*Gx)"
    assert cli.main(["derive", long]) == 2
    err = capsys.readouterr().err
    assert "*»Gx«)" in err and "…" in err and len(err) < 220


# ---------------------------------------------------------------- matrix_function in the CLI
def test_matrix_function_parses_to_the_api_object():
    ns = default_namespace()
    got = parse_expression('ntr(matrix_function("exp(-t*x)", Sh))', ns)
    want = sr.ntr(sr.matrix_function(lambda x: sp.exp(-ns["t"] * x), ns["Sh"]))
    assert got == want
    gd = parse_expression('matrix_function("(1 - (1 - lam*x)**5)/x", Sh)', ns)
    assert gd == sr.matrix_function(lambda x: (1 - (1 - ns["lam"] * x) ** 5) / x, ns["Sh"])


@pytest.mark.parametrize("text, msg", [
    ('matrix_function(exp, Sh)', "quoted scalar expression of x"),
    ('matrix_function("exp(-t*y)", Sh)', "unknown name 'y'"),
    ('matrix_function("exp(-x)")', "two arguments"),
    ('matrix_function("exp(-x)", 2)', "needs a matrix"),
    ('matrix_function("Sigma*x", Sh)', "unknown name 'Sigma'"),
])
def test_matrix_function_errors(text, msg):
    with pytest.raises(ParseError, match=msg):
        parse_expression(text)


def test_cli_derives_and_verifies_a_matrix_function(capsys):
    # (1/d) Tr exp(−Σ̂) against the engine's contour integral, and the engine against Monte Carlo
    assert cli.main(["derive", 'ntr(matrix_function("exp(-x)", Sh))']) == 0
    assert "matrix_function" in capsys.readouterr().out
    rc = cli.main(["verify", 'ntr(matrix_function("exp(-x)", Sh))', "--bind", "Sigma=iso(40,1)", "n=80",
                   "--trials", "30", "--k", "4", "--c", "2"])
    out = capsys.readouterr().out
    assert rc == 0 and "PASSED" in out


def test_cli_verify_passes_solver_options(capsys):
    base = ["verify", "ntr(Sigma*G)", "--bind", "Sigma=powerlaw(50,1)", "n=40", "lam=0.001", "--trials", "5"]
    assert cli.main(base + ["--option", "maxiter=1"]) == 2          # reaches the solver: too few iterations
    assert "not converged" in capsys.readouterr().err
    assert cli.main(base + ["--option", "foo=1"]) == 2
    assert "--option foo: unknown solver option" in capsys.readouterr().err


# ---------------------------------------------------------------- docs in the repository
def test_docs_exist_and_references_point_there():
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parent.parent
    for page in ("index.md", "math.md", "design.md", "api.md"):
        assert (root / "docs" / page).is_file(), page
    stale = re.compile(r"\.\./shared|(?<![\w/])(MATH|DESIGN|API)\.md")
    bad = []
    for folder in ("symrmt", "tests", "derivations", "benchmarks", "notebooks", "README.md"):
        for path in [root / folder] if folder.endswith(".md") else (root / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".ipynb") and path.is_file():
                for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                    if stale.search(line):
                        bad.append(f"{path.relative_to(root)}:{i}")
    assert not bad, "references to docs outside the repository (use docs/math.md, docs/design.md, docs/api.md): " \
        + ", ".join(bad[:10])
