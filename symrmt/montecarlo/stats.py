"""Streaming mean and standard error (Welford's update).

Draws are folded in *trial order*, one at a time, so the floating-point
result does not depend on how trials were split into chunks or workers.
"""
from __future__ import annotations

import numpy as np


class RunningMean:
    """Mean and ``M₂ = Σ(x − x̄)²`` of a stream of arrays of one shape."""

    def __init__(self, shape):
        self.count = 0
        self.mean = np.zeros(shape)
        self.m2 = np.zeros(shape)

    def update(self, x):
        self.count += 1
        with np.errstate(invalid="ignore", over="ignore"):  # non-finite draws are reported by the runner
            delta = x - self.mean
            self.mean = self.mean + delta / self.count
            self.m2 = self.m2 + delta * (x - self.mean)

    @property
    def std(self):
        """Sample standard deviation of one draw (``ddof=1``)."""
        if self.count < 2:
            return np.full(self.mean.shape, np.nan)
        return np.sqrt(self.m2 / (self.count - 1))

    @property
    def sem(self):
        """Standard error of the mean, ``std/√T``."""
        return self.std / np.sqrt(self.count)

    def snapshot(self):
        return self.mean.copy(), self.sem, self.std
