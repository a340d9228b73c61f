"""``to_python(de)``: a standalone NumPy module computing an equivalent.

The generated module imports NumPy only (SciPy or ``functools`` where the
scalar printer asks for them), never symrmt. It holds

* a docstring with the expression, the LaTeX of the result and the equations;
* ``SPEC``: the binding names, roles and shapes (the conventions of
  ``de.compile()``, docs/api.md §Evaluating);
* the runtime of :mod:`symrmt.faces.runtime`, copied verbatim
  (matrix values over grid points, binding checks, the safeguarded solvers);
* ``_solve_groups``, ``_equations`` and ``_value``, translated from the SymPy
  value here: scalar parts by SymPy's NumPy printer, spectral functionals
  ``Tr``/``Form`` as calls into the runtime, one statement per distinct
  matrix sub-expression;
* ``evaluate(**bindings)`` and ``solve(**bindings)``.
"""
from __future__ import annotations

import pprint

import sympy as sp
from sympy import Identity, Inverse, MatAdd, MatMul, MatPow, MatrixSymbol, Transpose, ZeroMatrix
from sympy.printing.numpy import NumPyPrinter

from ..numerics.laws.base import numeric_class
from ..objects import Form, MatrixFunction, Norm, Tr
from ..objects.matrices import Covariance, SymrmtMatrix, Vector
from .._bindings import scalar_kind, structural_roles
from .runtime import source

_ALLOWED_MODULES = {"numpy", "scipy", "scipy.special", "functools", "math"}


def to_python(de) -> str:
    """Source of a standalone NumPy module computing ``de`` (a
    :class:`~symrmt.equivalence.result.DeterministicEquivalent`).

    The module defines ``evaluate(**bindings)`` (the value, an array over the
    broadcast grid of array-valued bindings) and ``solve(**bindings)`` (a dict
    of the unknowns on that grid). Raises ``NotImplementedError`` for values
    outside what it translates (``sympy.Integral`` for now), naming the node.
    """
    for g in de.groups:     # a law family without a standalone solver (the general law, for now)
        try:
            law = numeric_class(g.kind)
        except NotImplementedError:
            law = None
        if law is None or not law.has_python_solver:
            raise NotImplementedError(f"to_python: the {g.kind!r} law's unknowns {tuple(g.unknowns)} "
                                      f"({law.title if law else 'unregistered'}) are not supported yet")
    for node in sp.preorder_traversal(de.value):
        if isinstance(node, sp.Integral):
            text = sp.sstr(node)
            raise NotImplementedError("to_python: integral representations are not supported yet: "
                                      + (text if len(text) < 160 else text[:157] + "..."))
    for e in [de.value] + [sp.sympify(x) for g in de.groups for x in (*g.equations, g.z)]:
        for node in sp.preorder_traversal(e):
            if isinstance(node, (Norm, MatrixFunction)):
                raise NotImplementedError(f"to_python: {type(node).__name__} ({sp.sstr(node)}) is not "
                                          "supported in generated code; use de.compile()")
    spec = _spec(de)
    gen = _Functions()
    body = [gen.groups(de), gen.equations(de), gen.value(de)]
    imports = sorted(gen.imports - {"numpy"})
    runtime = source()
    parts = [_docstring(de, spec), "import numpy", *[f"import {m}" for m in imports],
             runtime.rstrip() + "\n",
             "SPEC = " + pprint.pformat(spec, width=100, sort_dicts=False) + "\n",
             *body, _API]
    return "\n\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------- bindings spec
def _dim(x):
    x = sp.sympify(x)
    if x.is_Integer:
        return int(x)
    if isinstance(x, sp.Symbol):
        return x.name
    raise NotImplementedError(f"to_python: matrix dimension {x} is neither a symbol nor an integer")


def _spec(de):
    """Names, roles and shapes of everything bindable, and the pivots of the
    common basis (the covariance that drives each group)."""
    unknowns = set(de.unknowns)
    scalars, matrices, randoms, required = {}, {}, {}, set()

    def walk(e, needed):
        if e is None:
            return
        for node in sp.preorder_traversal(e):
            if isinstance(node, MatrixSymbol):
                if getattr(node, "is_random", False):
                    randoms[node.name] = type(node).__name__
                    continue
                role = "vector" if isinstance(node, Vector) else \
                    "covariance" if isinstance(node, Covariance) else "deterministic"
                if not isinstance(node, SymrmtMatrix):
                    raise NotImplementedError(f"to_python: plain matrix symbol {node.name!r} has no role")
                matrices[node.name] = (role, tuple(_dim(s) for s in node.shape))
            elif isinstance(node, sp.Symbol) and node not in unknowns and not isinstance(node, sp.Dummy):
                scalars[node.name] = scalar_kind(node)
            else:
                continue
            if needed:
                required.add(node.name)

    walk(de.expr, False)
    walk(de.value, True)
    symmetric, inverted = structural_roles(de.expr)
    s2, i2 = structural_roles(de.value)
    for k, v in s2.items():
        symmetric[k] = "psd" if "psd" in (v, symmetric.get(k)) else v
    inverted = inverted | i2
    bases = {}
    for g in de.groups:
        for e in (g.z, g.Sigma, g.K, g.m, *g.sizes, *g.equations):
            walk(e, True)
        for piv in (g.Sigma, g.K):
            if isinstance(piv, Covariance) and isinstance(piv.shape[0], sp.Symbol):
                bases.setdefault(piv.shape[0].name, piv.name)
    for name in matrices:
        for dim in matrices[name][1]:
            if isinstance(dim, str):
                scalars.setdefault(dim, "dim")
    return {"scalars": dict(sorted(scalars.items())), "matrices": dict(sorted(matrices.items())),
            "randoms": dict(sorted(randoms.items())), "required": sorted(required),
            "unknowns": [u.name for u in de.unknowns], "bases": bases,
            "symmetric": dict(sorted(symmetric.items())), "inverted": sorted(inverted)}


# ---------------------------------------------------------------- translation
class _Body:
    """Statements of one generated function; each distinct scalar symbol,
    spectral functional and matrix sub-expression is computed once."""

    def __init__(self, printer):
        self.printer, self.lines, self.memo = printer, [], {}

    def _assign(self, key, prefix, code, comment=""):
        if key not in self.memo:
            name = f"{prefix}{len(self.memo)}"
            self.lines.append(f"    {name} = {code}" + (f"  # {comment}" if comment else ""))
            self.memo[key] = name
        return self.memo[key]

    # scalars
    def scalar(self, e) -> str:
        e = sp.sympify(e)
        # one simultaneous replacement: the generated names can never be
        # confused with the user's symbols
        holes = {node: sp.Dummy() for node in _outer_functionals(e)}
        e = e.xreplace(holes)
        reps = {h: sp.Symbol(self.functional(node)) for node, h in holes.items()}
        for x in e.free_symbols - set(holes.values()):
            reps[x] = sp.Symbol(self._assign(("sym", x.name), "x", f"s[{x.name!r}]"))
        e = e.xreplace(reps)
        for node in sp.preorder_traversal(e):
            if isinstance(node, (sp.matrices.MatrixExpr, sp.Integral)) or \
                    isinstance(node, sp.core.function.AppliedUndef):
                raise NotImplementedError(f"to_python: cannot translate {node} ({type(node).__name__})")
        code = self.printer.doprint(e)
        if self.printer._not_supported:
            raise NotImplementedError(f"to_python: NumPy cannot print {sorted(map(str, self.printer._not_supported))}")
        return code

    def functional(self, node) -> str:
        M = node.arg
        if isinstance(node, Tr):
            if isinstance(M, MatMul):
                c, mats = M.as_coeff_matrices()
                if len(mats) > 1:
                    args = ", ".join(self.matrix(m) for m in mats)
                    code = f"_trmul({self._coeff(c)}, [{args}])"
                    return self._assign(node, "t", code, sp.sstr(node))
            return self._assign(node, "t", f"_tr({self.matrix(M)})", sp.sstr(node))
        return self._assign(node, "t", f"_form({self.matrix(M)})", sp.sstr(node))

    def _coeff(self, c):
        return "1" if c == 1 else f"({self.scalar(c)})"

    # matrices
    def matrix(self, M) -> str:
        if M in self.memo:
            return self.memo[M]
        if isinstance(M, MatrixSymbol):
            if getattr(M, "is_random", False):
                raise NotImplementedError(f"to_python: random matrix {M.name} in a derived value")
            code = f"M[{M.name!r}]"
        elif isinstance(M, (Identity, ZeroMatrix)):
            if M.shape[0] != M.shape[1]:
                raise NotImplementedError(f"to_python: non-square zero matrix {M}")
            code = f"_eye({0 if isinstance(M, ZeroMatrix) else 1}, {self.scalar(M.shape[0])})"
        elif isinstance(M, MatMul):
            c, mats = M.as_coeff_matrices()
            args = ", ".join(self.matrix(m) for m in mats)
            rtl = mats[-1].shape[1] == 1 and mats[0].shape[0] != 1
            code = f"_chain({self._coeff(c)}, [{args}]{', rtl=True' if rtl else ''})"
        elif isinstance(M, MatAdd):
            code = "_add(" + ", ".join(self.matrix(a) for a in M.args) + ")"
        elif isinstance(M, Inverse):
            code = f"_inv({self.matrix(M.arg)})"
        elif isinstance(M, MatPow):
            base, s = M.args
            if not (s.is_number and s.is_real):
                raise NotImplementedError(f"to_python: matrix power with a non-numeric exponent: {M}")
            code = f"_pow({self.matrix(base)}, {self.printer.doprint(s)})"
        elif isinstance(M, Transpose):
            code = f"_T({self.matrix(M.arg)})"
        else:
            raise NotImplementedError(f"to_python: cannot translate matrix expression {M} "
                                      f"({type(M).__name__})")
        return self._assign(M, "m", code)


def _outer_functionals(e):
    out, stack = [], [e]
    while stack:
        x = stack.pop()
        if isinstance(x, (Tr, Form)):
            out.append(x)
        elif isinstance(x, sp.Basic):
            stack.extend(x.args)
    return out


def _terms(e):
    """Additive terms of ``e`` expanded over its spectral functionals (kept
    whole: expanding inside them would rewrite the matrices)."""
    holes = {f: sp.Dummy() for f in _outer_functionals(e)}
    back = {h: f for f, h in holes.items()}
    return [t.xreplace(back) for t in sp.Add.make_args(sp.expand(e.xreplace(holes)))]


class _Functions:
    """Generated functions ``_solve_groups``, ``_equations``, ``_value``."""

    def __init__(self):
        self.imports = {"numpy"}

    def _body(self):
        return _Body(NumPyPrinter({"fully_qualified_modules": True}))

    def _finish(self, b, head, tail):
        for mod in b.printer.module_imports:
            if mod not in _ALLOWED_MODULES:
                raise NotImplementedError(f"to_python: the value needs module {mod!r}")
            self.imports.add(mod)
        return "\n".join([head, *b.lines, *tail])

    def groups(self, de):
        b, tail = self._body(), []
        for i, g in enumerate(de.groups):
            names = [u.name for u in g.unknowns]
            label = f"group {i} ({', '.join(names)})"
            tail.append(numeric_class(g.kind).python_solver(b, g, names, label))
        head = ('def _solve_groups(s, M):\n    """Solve each group of unknowns; '
                'adds them to ``s``."""')
        return self._finish(b, head, tail or ["    return None"])

    def equations(self, de):
        b, items = self._body(), []
        for eq in de.equations:
            terms = ", ".join(b.scalar(t) for t in _terms(eq.lhs - eq.rhs))
            items.append(f"({sp.sstr(eq)!r}, [{terms}])")
        head = 'def _equations(s, M):\n    """(label, [terms of lhs − rhs]) of each self-consistent equation."""'
        return self._finish(b, head, ["    return [" + ",\n            ".join(items) + "]"])

    def value(self, de):
        b = self._body()
        code = b.scalar(de.value)
        head = 'def _value(s, M):\n    """The deterministic equivalent at the solved unknowns."""'
        return self._finish(b, head, [f"    return {code}"])


# ---------------------------------------------------------------- the module text
def _docstring(de, spec):
    lines = [f"Deterministic equivalent of  {sp.sstr(de.expr)}", "",
             "Generated by symrmt (codegen); needs NumPy only.", "",
             f"Value:\n    {sp.sstr(de.value)}", ""]
    if de.equations:
        lines.append("where " + ", ".join(map(str, de.unknowns)) + " solve (physical branch):")
        lines += [f"    {sp.sstr(eq.lhs)} = {sp.sstr(eq.rhs)}" for eq in de.equations]
        lines.append("")
    lines += ["LaTeX:", *de.latex().splitlines(), "", "Assumptions:", *[f"  - {a}" for a in de.assumptions], ""]
    binds = [f"  {n} ({'dimension' if r == 'dim' else r})" for n, r in spec["scalars"].items()]
    binds += [f"  {n} ({role}, {'×'.join(map(str, shape))})" for n, (role, shape) in spec["matrices"].items()]
    lines += ["Bindings (keyword arguments of evaluate/solve; required: "
              + (", ".join(spec["required"]) or "none") + "):", *binds,
              "Scalars and dimensions: numbers or arrays that broadcast together (the grid).",
              "Matrices: a 1-D array is diagonal in one common basis (e.g. eigenvalues of Sigma),",
              "a 2-D array the full matrix; vectors: 1-D coordinates in that basis.", "",
              "    import this_module as m",
              "    m.evaluate(**bindings)   # value over the grid",
              "    m.solve(**bindings)      # {unknown name: array}"]
    text = "\n".join(lines).replace('"""', '\\"\\"\\"')
    # a raw docstring keeps the LaTeX backslashes; it must not end in one
    return 'r"""' + text + '\n"""'


_API = '''def evaluate(*args, **kwargs):
    """The deterministic equivalent over the grid of the bindings (see the
    module docstring): evaluate(**bindings) or evaluate(bindings_dict);
    raises BindingError or ConvergenceError."""
    return _run(split_options(args, kwargs, PARAMETERS, (), "evaluate")[0], True)


def solve(*args, **kwargs):
    """The unknowns over the grid of the bindings: {name: array}."""
    return _run(split_options(args, kwargs, PARAMETERS, (), "solve")[0], False)


PARAMETERS = tuple(sorted(set(SPEC["scalars"]) | set(SPEC["matrices"])))
__all__ = ["evaluate", "solve", "PARAMETERS", "SPEC", "BindingError", "ConvergenceError"]
'''
