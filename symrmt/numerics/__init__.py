"""Layer 5: numerics — compiled solvers for deterministic equivalents.

``compile_equivalent(de)`` (used by ``DeterministicEquivalent.compile``)
lowers the value and the self-consistent equations to vectorised NumPy (or
mpmath) code: spectral functionals become reductions over the eigenvalues
of the bound matrices, the equations are solved by safeguarded Newton on the
physical branch (or by continuation for a complex spectral parameter), and
``Integral`` nodes by double-exponential quadrature.
"""
from .compiled import CompiledEquivalent, compile_equivalent
from .density import SpectralDensity, spectral_density
from .result import BindingError, ConvergenceError, SolveResult

__all__ = ["CompiledEquivalent", "compile_equivalent", "spectral_density", "SpectralDensity",
           "SolveResult", "BindingError", "ConvergenceError"]
