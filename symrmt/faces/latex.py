"""LaTeX printing of derived results (separate from the algebra)."""
from __future__ import annotations

import sympy as sp


def latex(e) -> str:
    """SymPy LaTeX with the project's names (λ, σ², κ …)."""
    return sp.latex(e)


def equivalent_latex(de) -> str:
    """``E[expr] ≃ value``, the self-consistent equations and assumptions."""
    lines = [r"\mathbb{E}\left[%s\right] &\simeq %s" % (latex(de.expr), latex(de.value))]
    if de.equations:
        unknowns = ", ".join(latex(u) for u in de.unknowns)
        verb = "solves" if len(de.unknowns) == 1 else "solve"
        lines.append(r"&\text{where } %s \text{ %s}" % (unknowns, verb))
        for eq in de.equations:
            lines.append(r"%s &= %s" % (latex(eq.lhs), latex(eq.rhs)))
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"
