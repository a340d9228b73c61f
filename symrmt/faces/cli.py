"""The ``symrmt`` command line: derive, verify, codegen, run, demo.

User errors (a malformed or non-derivable expression, bad bindings, an
unknown recipe) end with a one-line message on stderr and exit status 2; a
failed verification exits with 1. ``--traceback`` shows the Python traceback
instead, for bug reports.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import pathlib
import runpy
import sys
import traceback

from .parser import BIND_HELP, DEFAULT_HELP, ParseError, declare, default_namespace, parse_bindings, \
    parse_expression

EXAMPLES = """\
examples:
  symrmt derive "ntr(Sigma*G)"
  symrmt derive "ntr(inv(F.T*Sh*F + lam*I(p)))" --latex
  symrmt derive "ntr(inv(Y.T*Y/n + lam*I(d)))" --let "Y=GaussianData(n, Sigma, K=K)"
  symrmt derive "(w_hat - w).T*Sigma*(w_hat - w) + sigma2" \\
      --let "w_hat=G*X.T*(X*w + eps)/n"
  symrmt verify "ntr(Sigma*G)" --bind "Sigma=powerlaw(400,1.5)" n=800 "lam=logspace(-2,0,3)"
  symrmt codegen "ntr(A*G1*B*G2)" -o two_point.py
  symrmt derive 'ntr(matrix_function("exp(-t*x)", Sh))'
  symrmt verify "ntr(Sigma*G)" --bind Sigma="iso(200,1)" n=400 lam=0.1 --scheduler tcp://127.0.0.1:8786
  symrmt run                      # list the recipes in derivations/
  symrmt run mc_finite_size --trials 50
"""


SCHEDULER_TIMEOUT = "10s"   # connecting to a Dask scheduler (--scheduler)


class UserError(Exception):
    """Bad input: reported in one line, no traceback."""


# ---------------------------------------------------------------- commands
def _expression(args):
    ns = default_namespace()
    for item in args.let or []:
        declare(item, ns)
    return parse_expression(args.expr, ns)


def _derive(expr):
    from symrmt import deterministic_equivalent
    try:
        return deterministic_equivalent(expr)
    except NotImplementedError as exc:
        raise UserError(f"cannot derive: {exc}") from None


def cmd_derive(args):
    de = _derive(_expression(args))
    print(de.latex() if args.latex else repr(de))
    return 0


def cmd_codegen(args):
    de = _derive(_expression(args))
    try:
        src = de.to_python()
    except NotImplementedError as exc:
        raise UserError(f"cannot generate code: {exc}") from None
    if args.output:
        path = pathlib.Path(args.output)
        try:
            path.write_text(src)
        except OSError as exc:
            raise UserError(f"-o {args.output}: {exc.strerror or exc}") from None
        print(f"wrote {path} ({len(src.splitlines())} lines); use: import {path.stem}; "
              f"{path.stem}.evaluate(...)", file=sys.stderr)
    else:
        sys.stdout.write(src)
    return 0


def verify_function():
    """``sr.verify`` (docs/api.md), imported only when needed: the Monte Carlo
    layer is heavier than deriving and may be absent from a partial install."""
    try:
        from symrmt import verify
    except ImportError as exc:
        raise UserError(f"verify is not available: {exc}") from None
    return getattr(verify, "verify", verify)   # a module in older layouts


def cmd_verify(args):
    expr = _expression(args)
    bindings = parse_bindings(args.bind or [])
    verify = verify_function()
    client = _dask_client(args.scheduler) if args.scheduler else None
    try:
        executor = client.get_executor() if client is not None else None
        extra = {"options": _solver_options(args.option)} if args.option else {}
        res = verify(expr, k=args.k, c=args.c, trials=args.trials, seed=args.seed, executor=executor,
                     **extra, **bindings)
    except NotImplementedError as exc:
        raise UserError(f"cannot derive: {exc}") from None
    finally:
        if client is not None:
            client.close()
    print(repr(res))
    return 0 if res.passed else 1


SOLVER_OPTIONS = ("quad_rtol", "xtol", "maxiter", "eta")


def _solver_options(items):
    """``--option quad_rtol=1e-7`` … → ``{"quad_rtol": 1e-7}`` (numbers only)."""
    opts = parse_bindings(items)
    for name, value in opts.items():
        if name not in SOLVER_OPTIONS:
            raise UserError(f"--option {name}: unknown solver option (known: {', '.join(SOLVER_OPTIONS)})")
        if getattr(value, "ndim", 0):
            raise UserError(f"--option {name}: expected a number")
    return opts


def _dask_client(address):
    """A ``distributed.Client`` connected to the scheduler at ``address``
    (``tcp://host:8786``); the Monte Carlo trials then run on its workers in
    chunks (docs/design.md, "Executors"), with results bit-identical to a
    serial run with the same seed."""
    try:
        from distributed import Client
    except ImportError:
        raise UserError("--scheduler needs Dask: pip install 'symrmt[dask]' "
                        "(or dask[distributed])") from None
    try:
        return Client(address, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError, ValueError) as exc:
        raise UserError(f"--scheduler {address}: cannot connect ({_one_line(exc)})") from None


# ---------------------------------------------------------------- recipes
def recipes_dir():
    """``derivations/`` beside the package (a source checkout), else in the
    working directory."""
    import symrmt
    for d in (pathlib.Path(symrmt.__file__).resolve().parent.parent / "derivations",
              pathlib.Path.cwd() / "derivations"):
        if d.is_dir():
            return d
    return None


def recipes():
    """``{name: (path, first docstring line)}`` without running anything."""
    d = recipes_dir()
    out = {}
    for path in sorted(d.glob("*.py")) if d else []:
        if path.name.startswith("_"):
            continue
        try:
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        except (SyntaxError, UnicodeDecodeError, OSError):
            doc = "(unreadable)"
        out[path.stem] = (path, doc.strip().splitlines()[0] if doc.strip() else "")
    return out


def cmd_run(args):
    found = recipes()
    if not args.name:
        if not found:
            print("no recipes found (looked for a derivations/ folder beside the package and in the "
                  "working directory)")
            return 0
        width = max(map(len, found))
        print(f"recipes in {recipes_dir()}:")
        for name, (_, first) in found.items():
            print(f"  {name:<{width}}  {first}")
        print("run one with: symrmt run NAME [args...]")
        return 0
    name = args.name[:-3] if args.name.endswith(".py") else args.name
    if name not in found:
        close = difflib.get_close_matches(name, list(found), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown recipe {args.name!r}{hint}; `symrmt run` lists them")
    path = found[name][0]
    argv, syspath = sys.argv, list(sys.path)
    sys.argv = [str(path), *args.rest]
    sys.path.insert(0, str(path.parent))  # recipes may import their siblings
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception:  # a failing recipe is a program's failure: show where, as Python would
        traceback.print_exc()
        return 1
    finally:
        sys.argv, sys.path[:] = argv, syspath
    return 0


def cmd_demo(args):
    from symrmt.faces.demo import main
    argv = (["--quick"] if args.quick else []) + (["--out", args.out] if args.out else [])
    return main(argv) or 0


# ---------------------------------------------------------------- parser
def build_parser():
    p = argparse.ArgumentParser(
        prog="symrmt", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Deterministic equivalents of random-matrix expressions: derive them "
                    "symbolically, generate code, check them against Monte Carlo.",
        epilog=EXAMPLES + "\nnames available without declaration:\n" + _indent(DEFAULT_HELP))
    p.add_argument("--traceback", action="store_true", help="show Python tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def with_expr(name, help_, extra=""):
        sp_ = sub.add_parser(name, help=help_, description=help_ + extra,
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             epilog=EXAMPLES + "\nnames available without declaration:\n" + _indent(DEFAULT_HELP))
        sp_.add_argument("expr", help='the expression, e.g. "ntr(Sigma*G)" (quote it; put -- before one '
                                      'that starts with "-")')
        sp_.add_argument("--let", action="append", metavar="NAME=DEF",
                         help='declare a name: NAME=Ctor(args) (Covariance(d), Deterministic(r, c), Vector(d), '
                              'GaussianData(n, Sigma, K=K), GaussianNoise(n, var), RandomFeatures(d, p), '
                              'scalar(), dim()) or NAME=expression; repeatable. Names built from a '
                              'redefined one (X, Sh, G…) keep the old definition')
        return sp_

    d = with_expr("derive", "print the deterministic equivalent of an expression")
    d.add_argument("--latex", action="store_true", help="print LaTeX instead of text")
    d.set_defaults(func=cmd_derive)

    v = with_expr("verify", "compare the equivalent with Monte Carlo",
                  "\n\nbinding values: " + BIND_HELP)
    v.add_argument("--bind", nargs="+", action="extend", metavar="NAME=VALUE",
                   help="bindings, e.g. Sigma=powerlaw(400,1.5) n=800 lam=0.1")
    v.add_argument("--trials", type=int, default=200, help="Monte Carlo draws (default 200)")
    v.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    v.add_argument("--k", type=float, default=3.0, help="allowance in standard errors (default 3)")
    v.add_argument("--c", type=float, default=1.0, help="finite-size allowance c·|theory|/d, relative (default 1)")
    v.add_argument("--option", nargs="+", action="extend", metavar="NAME=VALUE",
                   help="solver options of the compiled equivalent: " + ", ".join(SOLVER_OPTIONS) +
                        " (e.g. quad_rtol=1e-7)")
    v.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run the Monte Carlo trials on a Dask cluster, e.g. tcp://127.0.0.1:8786 "
                        "(needs symrmt[dask]; results are identical to a local run with the same seed)")
    v.set_defaults(func=cmd_verify)

    c = with_expr("codegen", "write a standalone NumPy module computing the equivalent")
    c.add_argument("-o", "--output", metavar="FILE.py", help="write to a file instead of stdout")
    c.set_defaults(func=cmd_codegen)

    r = sub.add_parser("run", help="list the recipes in derivations/, or run one",
                       description="Without NAME, list the recipes; with NAME, run it with the remaining "
                                   "arguments (e.g. symrmt run mc_finite_size --trials 50).")
    r.add_argument("name", nargs="?", help="recipe name (file name without .py)")
    r.add_argument("rest", nargs=argparse.REMAINDER, help="arguments passed to the recipe")
    r.set_defaults(func=cmd_run)

    m = sub.add_parser("demo", help="the main job: derive, solve and verify ridge and diffusion equivalents, write a report ([--quick] [--out DIR])")
    m.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    m.add_argument("--out", default=None, help="report folder (default reports/demo)")
    m.set_defaults(func=cmd_demo)
    return p


def _indent(text):
    return "\n".join("  " + line for line in text.splitlines())


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv=None) -> int:
    """Entry point of the ``symrmt`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("symrmt: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.traceback:
            raise
        if isinstance(exc, (UserError, ParseError)):
            msg = _one_line(exc)
            here = exc.marked() if isinstance(exc, ParseError) else ""
            if here:   # the offending token, in the text typed: ntr(Sigma*»Gx«)
                msg += f"; here: {here}"
        elif isinstance(exc, NotImplementedError):
            msg = f"not supported: {_one_line(exc)}"
        elif isinstance(exc, (ValueError, TypeError, ArithmeticError, RuntimeError)):
            # the engine's and numerics' checks (bindings, convergence) speak for themselves
            msg = _one_line(exc)
        else:
            msg = f"internal error ({type(exc).__name__}: {_one_line(exc)}); rerun with --traceback"
        print(f"symrmt: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
