"""Layer 4: the engine that derives deterministic equivalents."""
from .derive import deterministic_equivalent
from .result import DeterministicEquivalent, UnknownGroup

__all__ = ["deterministic_equivalent", "DeterministicEquivalent", "UnknownGroup"]
