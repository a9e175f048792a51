"""Progress of a run: a bar redrawn in place on a terminal, a plain line every few seconds
otherwise (CI logs), or nothing."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Progress", "Snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the runner knows at one instant."""

    elapsed_s: float
    attempted: int
    ok: int
    failed: int
    current: int
    cps: float  # successful calls per second over the last period
    target: int | None = None  # calls to place, when known
    duration_s: float | None = None  # run length, when timed
    target_rate: float | None = None


def _fraction(s: Snapshot) -> float | None:
    if s.target:
        return min(1.0, (s.ok + s.failed) / s.target)
    if s.duration_s:
        return min(1.0, s.elapsed_s / s.duration_s)
    return None


class Progress:
    """``mode``: ``bar`` (redrawn line), ``lines`` (a line every ``every_s``), ``none``, or
    ``auto`` (``bar`` when ``stream`` is a terminal, else ``lines``)."""

    def __init__(self, mode: str = "auto", stream: TextIO | None = None, every_s: float = 5.0,
                 width: int = 30) -> None:
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "lines"
        if mode not in ("bar", "lines", "none"):
            raise ValueError(f"progress mode must be auto, bar, lines or none, got {mode!r}")
        self.mode = mode
        self.every_s = every_s
        self.width = width
        self._last_line = -1e9
        self._drawn = False

    @staticmethod
    def describe(s: Snapshot) -> str:
        total = f"/{s.target}" if s.target else ""
        rate = f" target {s.target_rate:g} cps" if s.target_rate else ""
        return (f"{s.elapsed_s:6.1f}s  calls {s.attempted}{total}  ok {s.ok}  failed {s.failed}  "
                f"in flight {s.current}  {s.cps:.1f} cps{rate}")

    def update(self, s: Snapshot) -> None:
        if self.mode == "none":
            return
        if self.mode == "lines":
            now = time.monotonic()
            if now - self._last_line >= self.every_s:
                self._last_line = now
                print("loadtest: " + self.describe(s), file=self.stream, flush=True)
            return
        fraction = _fraction(s)
        if fraction is None:
            bar = ""
        else:
            filled = int(round(fraction * self.width))
            bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {fraction * 100:3.0f}% "
        self.stream.write("\r\x1b[2K" + bar + self.describe(s))
        self.stream.flush()
        self._drawn = True

    def close(self, s: Snapshot | None = None) -> None:
        """Draw the final state and end the line."""
        if self.mode == "none":
            return
        if s is not None:
            self._last_line = -1e9
            self.update(s)
        if self.mode == "bar" and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
