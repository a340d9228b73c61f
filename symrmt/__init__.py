"""symrmt: deterministic equivalents of random-matrix expressions —
derived symbolically, compiled to fast solvers, checked against Monte Carlo.

The building blocks and the symbolic engine (``sr.Covariance``, ...,
``sr.deterministic_equivalent``) are imported eagerly; the numerics
(SciPy), Monte Carlo and verification layers are imported on first use of
one of their names (``sr.monte_carlo``, ``sr.verify``, ``sr.spectral_density``
…) through the module ``__getattr__`` (PEP 562), which keeps ``import symrmt``
near the cost of ``import sympy`` (``benchmarks/import_time.py`` measures it).
The public API is listed in ``docs/api.md``.
"""
from importlib import import_module

from .objects import (Covariance, Deterministic, Form, GaussianData, GaussianNoise, I, Norm,
                      RandomFeatures, Tr, Vector, cov, dims, matrix_function, ntr, power,
                      sample_covariance, sample_mean, scalar, sqrt, var, vstack)

from .equivalence import DeterministicEquivalent, deterministic_equivalent
from . import laws  # noqa: F401  (law families register themselves into the layers' registries)

__version__ = "0.1.0"

# name -> submodule that defines it (imported on first access)
_LAZY = {
    "MonteCarloResult": ".montecarlo", "MonteCarloSeries": ".montecarlo",
    "evaluate_draw": ".montecarlo", "monte_carlo": ".montecarlo",
    "BindingError": ".numerics", "CompiledEquivalent": ".numerics", "ConvergenceError": ".numerics",
    "SolveResult": ".numerics", "SpectralDensity": ".numerics", "spectral_density": ".numerics",
    "VerifyResult": ".verification", "verify": ".verification",
}

__all__ = ["Covariance", "Deterministic", "Form", "GaussianData", "GaussianNoise", "I", "Norm",
           "RandomFeatures", "Tr", "Vector", "cov", "dims", "matrix_function", "ntr", "power",
           "sample_covariance", "sample_mean", "scalar", "sqrt", "var", "vstack",
           "DeterministicEquivalent", "deterministic_equivalent", *_LAZY]


def __getattr__(name):
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'symrmt' has no attribute {name!r}")
    value = getattr(import_module(mod, __name__), name)
    globals()[name] = value        # later look-ups bypass this function
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


_LAZY["SGD"] = ".dynamics"; __all__.append("SGD")   # SGD learning curves (symrmt/dynamics), lazy
from .objects.roots import df_inverse  # noqa: E402  (root of Tr[K(K+ν)⁻¹] = t; CorrGCV)
__all__.append("df_inverse")
