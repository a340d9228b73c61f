"""LaTeX printing of derived results (separate from the algebra)."""
from __future__ import annotations

import sympy as sp


def latex(e) -> str:
    """SymPy LaTeX with the project's names (λ, σ², κ, df₁(κ), γ …); a power
    of a quadratic form is parenthesised, ``(vᵀMx)²``."""
    return _Printer().doprint(e)


def _printer_class():
    from sympy.printing.latex import LatexPrinter

    from ..objects import Form

    class Printer(LatexPrinter):
        def _print_Pow(self, expr):
            if isinstance(expr.base, Form) and expr.exp.is_Integer and expr.exp > 0:
                return r"\left(%s\right)^{%s}" % (self._print(expr.base), self._print(expr.exp))
            return super()._print_Pow(expr)

        def _print_Mul(self, expr):
            """A product of two or more forms: each one in parentheses."""
            forms = [f for f in expr.args if isinstance(f, Form)
                     or (isinstance(f, sp.Pow) and isinstance(f.base, Form))]
            if len(forms) < 2:
                return super()._print_Mul(expr)
            from sympy.printing.precedence import PRECEDENCE
            rest = sp.Mul(*[f for f in expr.args if f not in forms])
            parts = [self._print(f) if isinstance(f, sp.Pow) else r"\left(%s\right)" % self._print(f)
                     for f in forms]
            if rest == 1:
                head = ""
            elif rest == -1:
                head = "- "
            else:
                head = self.parenthesize(rest, PRECEDENCE["Mul"]) + " "
            return head + " ".join(parts)

    return Printer


def _Printer():
    global _PRINTER
    if _PRINTER is None:
        _PRINTER = _printer_class()
    return _PRINTER()


_PRINTER = None


def _theta_names(exprs):
    """``_theta3`` → ``θ_3`` for display (integration variables)."""
    rep = {}
    for e in exprs:
        for s in sp.sympify(e).free_symbols:
            name = getattr(s, "name", "")
            if name.startswith("_theta"):
                rep[s] = sp.Symbol(r"\theta_{%s}" % name[len("_theta"):])
    return rep


def equivalent_latex(de, raw: bool = False) -> str:
    """``E[expr] ≃ value``, the self-consistent equations and the definitions
    of the named functionals (``de.pretty()``); ``raw=True``: the engine's
    value and equations as derived."""
    if raw:
        value, eqs, defs = de.value, de.equations, []
    else:
        p = de.pretty()
        value, eqs, defs = p.value, p.equations, p.definitions
    rep = _theta_names([value] + [eq.lhs - eq.rhs for eq in eqs] + [m for _, m in defs])
    sub = (lambda e: e.xreplace(rep)) if rep else (lambda e: e)
    from ..objects.ops import Cov, Var
    lhs = latex(de.expr) if isinstance(de.expr, (Var, Cov)) else r"\mathbb{E}\left[%s\right]" % latex(de.expr)
    lines = [r"%s &\simeq %s" % (lhs, latex(sub(value)))]
    if eqs:
        shown = [u for u in de.unknowns if any(eq.has(u) for eq in eqs)]
        unknowns = ", ".join(latex(u) for u in shown)
        verb = "solves" if len(shown) == 1 else "solve"
        lines.append(r"&\text{where } %s \text{ %s}" % (unknowns, verb))
        for eq in eqs:
            lines.append(r"%s &= %s" % (latex(sub(eq.lhs)), latex(sub(eq.rhs))))
    if defs:
        lines.append(r"&\text{with}")
        for s, m in defs:
            lines.append(r"%s &= %s" % (latex(sub(s)), latex(sub(m))))
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"
