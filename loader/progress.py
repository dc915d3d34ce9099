"""Progress display for long loader work: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """Callable as progress(stage, done, total); redraws at most every 0.1 s."""

    def __init__(self, stream: TextIO | None = None, width: int = 30) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.width = width
        self.stage = ""
        self.started = time.perf_counter()
        self.last_draw = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if stage != self.stage:
            if self.stage and self.tty:
                self.stream.write("\n")
            self.stage, self.started = stage, now
        finished = total > 0 and done >= total
        if not self.tty:
            if finished:
                self.stream.write(f"{stage}: done in {now - self.started:.1f} s\n")
            return
        if not finished and now - self.last_draw < 0.1:
            return
        self.last_draw = now
        frac = done / total if total else 0.0
        filled = int(frac * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        rate = done / max(now - self.started, 1e-9)
        self.stream.write(
            f"\r{stage:<14} [{bar}] {frac:6.1%} {done:>11,}/{total:<11,} {rate:>12,.0f}/s"
        )
        if finished:
            self.stream.write("\n")
        self.stream.flush()
