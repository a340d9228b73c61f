"""The result of a derivation: value, self-consistent equations, unknowns.

Contract used by the numerics layer (``symrmt.numerics``):

* ``value`` — SymPy scalar expression in the unknowns, scalars, dimensions and
  spectral functionals ``Tr(M)`` / ``Form(M)`` (``symrmt.objects.functionals``)
  of *deterministic* matrix expressions ``M`` built from ``Covariance``,
  ``Deterministic``, ``Vector`` symbols, ``Identity``, scalar multiples,
  ``MatAdd``, ``MatMul``, ``Inverse``, ``MatPow`` and ``Transpose``. It may
  contain ``sympy.Integral`` over a scalar variable (spectral functions).
* ``groups`` — independent blocks of unknowns, each an :class:`UnknownGroup`
  whose equations involve only its own unknowns (and bound parameters).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from ..objects.symbols import latex_name


@dataclass(frozen=True)
class UnknownGroup:
    """Unknowns fixed by one self-consistent system.

    kind ``"wishart"``: one unknown ``κ`` with
    ``κ · Π_j (1 − df(κ)/m_j) = z``, ``df(κ) = Tr[Σ(Σ+κ)⁻¹]``; the physical
    branch has ``df(κ) < min_j m_j`` and ``κ ≥ z`` for real ``z > 0``.

    kind ``"separable"``: two unknowns ``(κ, ν)`` for data
    ``X = K^{1/2} Z Σ^{1/2}`` (``m`` rows, rescaled by ``1/m``) possibly
    followed by feature layers ``m_j``:
    ``Tr[K(K+ν)⁻¹] = df(κ)`` and ``κ Π_j(1 − df/m_j) · ν · df(κ) = m z``.
    """

    unknowns: tuple
    equations: tuple
    z: sp.Expr
    kind: str
    Sigma: sp.Expr
    sizes: tuple = ()
    K: sp.Expr | None = None
    m: sp.Expr | None = None

    def df(self, kappa=None):
        from ..objects import Tr
        k = self.unknowns[0] if kappa is None else kappa
        d = self.Sigma.shape[0]
        return Tr(self.Sigma * (self.Sigma + k * sp.Identity(d)).inverse())


@dataclass
class DeterministicEquivalent:
    """Deterministic equivalent of a random-matrix expression.

    Attributes
    ----------
    expr : the user's expression (scalar SymPy expression).
    value : SymPy expression of the equivalent (see module docstring).
    groups : list of :class:`UnknownGroup`.
    assumptions : list of sentences saying what the derivation assumed.
    """

    expr: sp.Expr
    value: sp.Expr
    groups: list = field(default_factory=list)
    assumptions: list = field(default_factory=list)

    @property
    def unknowns(self):
        """All unknowns solved for, e.g. ``(κ,)``."""
        return tuple(u for g in self.groups for u in g.unknowns)

    @property
    def equations(self):
        """The self-consistent equations, a list of ``sympy.Eq``."""
        return [e for g in self.groups for e in g.equations]

    # ------------------------------------------------------------- faces
    def pretty(self):
        """The value in named spectral functionals — ``df_k(κ)``, ``R = (Σ+κ)⁻¹``,
        ``γ = df₂/n``, named contour points — with their definitions
        (:class:`symrmt.equivalence.present.Presentation`; display only:
        ``self.value`` stays the raw value). Falls back to the raw value if the
        presentation rules raise."""
        cached = self.__dict__.get("_pretty")
        if cached is not None and cached[0] is self.value:
            return cached[1]
        from .present import Presentation, present
        try:
            p = present(self)
        except Exception:  # display must never break a result
            p = Presentation(self.value, [], [eq for g in self.groups for eq in g.equations])
        self.__dict__["_pretty"] = (self.value, p)
        return p

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_pretty", None)        # display cache: recomputed on demand
        return state

    def latex(self) -> str:
        """The whole result as LaTeX: the presented value, the equations and the
        definitions of the named functionals (``raw=True`` in
        :func:`symrmt.faces.latex.equivalent_latex` gives the raw value)."""
        from ..faces.latex import equivalent_latex
        return equivalent_latex(self)

    def _repr_latex_(self):
        return "$\\displaystyle " + self.latex().replace("\n", " ") + "$"

    def __repr__(self):
        p = self.pretty()
        lines = [f"DeterministicEquivalent of {sp.sstr(self.expr)}",
                 f"  value     ≃ {sp.sstr(p.value)}"]
        for eq in p.equations:
            lines.append(f"  equation  : {sp.sstr(eq.lhs)} = {sp.sstr(eq.rhs)}")
        for s, m in p.definitions:
            lines.append(f"  where     : {sp.sstr(s)} = {sp.sstr(m)}")
        shown = [u for u in self.unknowns if any(eq.has(u) for eq in p.equations)]
        if shown:
            lines.append("  unknowns  : " + ", ".join(map(str, shown)))
        if p.value is not self.value:
            lines.append(f"  raw value : {sp.sstr(self.value)}")
            for g in self.groups:
                for eq in g.equations:
                    lines.append(f"  raw eq.   : {sp.sstr(eq.lhs)} = {sp.sstr(eq.rhs)}")
        for a in self.assumptions:
            lines.append(f"  assumes   : {a}")
        return "\n".join(lines)

    def compile(self, backend: str = "numpy", dps: int = 50):
        """A vectorised numeric function of the bindings (docs/api.md, Evaluating)."""
        from ..numerics import compile_equivalent
        return compile_equivalent(self, backend=backend, dps=dps)

    def to_python(self) -> str:
        """Source of a standalone NumPy module computing this equivalent."""
        from ..faces.codegen import to_python
        return to_python(self)


def unknown_symbol(base: str, index=None):
    """``kappa``, ``kappa_1`` … as positive symbols printed in Greek."""
    from ..objects.symbols import Scalar
    name = base if index is None else f"{base}_{index}"
    return Scalar(name, positive=True)


__all__ = ["DeterministicEquivalent", "UnknownGroup", "unknown_symbol", "latex_name"]
