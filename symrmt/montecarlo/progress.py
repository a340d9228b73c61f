"""A dependency-free progress line on stderr for long runs.

``progress=None`` (default): shown only when stderr is a terminal and the run
has lasted longer than ``DELAY`` seconds; ``True``: always (from the first
update); ``False``: never; a callable ``f(done, total)``: called instead.
"""
from __future__ import annotations

import sys
import time

DELAY = 2.0
WIDTH = 24


class Progress:
    def __init__(self, total, mode=None, label="monte_carlo"):
        self.total, self.label = total, label
        self.callback = mode if callable(mode) else None
        tty = getattr(sys.stderr, "isatty", lambda: False)()
        self.enabled = self.callback is None and (mode is True or (mode is None and tty))
        self.delay = 0.0 if mode is True else DELAY
        self.start = time.perf_counter()
        self.shown = False

    def update(self, done):
        if self.callback is not None:
            self.callback(done, self.total)
            return
        elapsed = time.perf_counter() - self.start
        if not self.enabled or elapsed < self.delay:
            return
        frac = done / self.total if self.total else 1.0
        bar = "#" * int(WIDTH * frac) + "." * (WIDTH - int(WIDTH * frac))
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        sys.stderr.write(f"\r{self.label} [{bar}] {done}/{self.total} draws, "
                         f"{elapsed:.1f} s, ETA {eta:.1f} s ")
        sys.stderr.flush()
        self.shown = True

    def close(self):
        if self.shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
