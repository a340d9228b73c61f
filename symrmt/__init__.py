"""symrmt: deterministic equivalents of random-matrix expressions —
derived symbolically, compiled to fast solvers, checked against Monte Carlo.
"""
from .objects import (Covariance, Deterministic, Form, GaussianData, GaussianNoise, I, Norm,
                      RandomFeatures, Tr, Vector, cov, dims, matrix_function, ntr, power,
                      sample_covariance, sample_mean, scalar, sqrt, var)

from .equivalence import DeterministicEquivalent, deterministic_equivalent
from .montecarlo import MonteCarloResult, MonteCarloSeries, evaluate_draw, monte_carlo
from .numerics import (BindingError, CompiledEquivalent, ConvergenceError, SolveResult,
                       SpectralDensity, spectral_density)
from .verification import VerifyResult, verify

__version__ = "0.1.0"
