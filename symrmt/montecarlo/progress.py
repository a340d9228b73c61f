"""A dependency-free progress report on stderr for long runs.

``progress=None`` (default): shown only when stderr is a terminal and the run
has lasted longer than ``DELAY`` seconds; ``True``: always (from the first
update); ``False``: never; a callable ``f(done, total)``: called instead.

On a terminal the report is one line redrawn in place (``\\r``). Elsewhere (a
log file, a CI console, a notebook's captured stderr) carriage returns would
pile up, so the report is a plain line at most once every ``LOG_EVERY``
seconds (plus a final one), never one per draw.
"""
from __future__ import annotations

import sys
import time

DELAY = 2.0
WIDTH = 24
LOG_EVERY = 5.0      # seconds between lines when stderr is not a terminal


class Progress:
    def __init__(self, total, mode=None, label="monte_carlo", stream=None):
        self.total, self.label = total, label
        self.stream = stream if stream is not None else sys.stderr
        self.callback = mode if callable(mode) else None
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = self.callback is None and (mode is True or (mode is None and self.tty))
        self.delay = 0.0 if mode is True else DELAY
        self.start = time.perf_counter()
        self.shown = False
        self.last_line = None     # time of the last line written (not a tty)
        self.last_done = None

    def _text(self, done, elapsed):
        frac = done / self.total if self.total else 1.0
        bar = "#" * int(WIDTH * frac) + "." * (WIDTH - int(WIDTH * frac))
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        return f"{self.label} [{bar}] {done}/{self.total} draws, {elapsed:.1f} s, ETA {eta:.1f} s"

    def update(self, done):
        if self.callback is not None:
            self.callback(done, self.total)
            return
        elapsed = time.perf_counter() - self.start
        if not self.enabled or elapsed < self.delay:
            return
        if self.tty:
            self.stream.write("\r" + self._text(done, elapsed) + " ")
        else:
            final = done >= self.total
            if not final and self.last_line is not None and elapsed - self.last_line < LOG_EVERY:
                return
            if final and self.last_done == done:
                return
            self.stream.write(self._text(done, elapsed) + "\n")
            self.last_line, self.last_done = elapsed, done
        self.stream.flush()
        self.shown = True

    def close(self):
        if self.shown and self.tty:
            self.stream.write("\n")
            self.stream.flush()
