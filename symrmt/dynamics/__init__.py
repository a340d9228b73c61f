"""Learning dynamics built on the engine: SGD learning curves (``SGD``).

This layer imports from ``objects``/``equivalence``/``numerics``/``montecarlo``
and is never imported by them."""
from .sgd import SGD, SGDCurve, SGDMonteCarlo, StabilityError

__all__ = ["SGD", "SGDCurve", "SGDMonteCarlo", "StabilityError"]
