"""Learning dynamics built on the engine: SGD learning curves (``SGD``;
multi-pass two-point deterministic equivalent ``MultiPassEquivalent``).

This layer imports from ``objects``/``equivalence``/``numerics``/``montecarlo``
and is never imported by them."""
from .sgd import SGD, SGDCurve, SGDMonteCarlo, StabilityError
from .sgd_equivalent import MultiPassEquivalent

__all__ = ["SGD", "SGDCurve", "SGDMonteCarlo", "StabilityError", "MultiPassEquivalent"]
