"""A progress bar on stderr for the long commands (`replay`, `dump`), drawn only for a person watching:
when stderr is a terminal and the output is not `--json`. Piped, redirected or read by a program, the
command stays quiet, as git and cargo do. The bar is erased when the work ends, so what the command
prints next starts on a clean line."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TextIO

# Redraws at most this often: a terminal fed a line per batch would slow the command it reports on.
REDRAW_SECONDS = 0.1
# Back to the line's start and clear it: each drawing replaces the last, whatever its length.
ERASE_LINE = "\r\x1b[K"
DEFAULT_COLUMNS = 80
# Narrower than this, the bar is left out and only the label and count are shown.
MIN_BAR = 10


class Progress:
    """Progress of a job in units (`total` 0: not known yet), drawn on `stream` when `enabled`, else
    every method does nothing. A context manager: drawn on entry, erased on exit."""

    def __init__(self, label: str, unit: str, stream: TextIO, enabled: bool, total: int = 0) -> None:
        self.label = label
        self.unit = unit
        self.total = total
        self.done = 0
        self._stream = stream
        self._enabled = enabled
        self._drawn_at: float | None = None

    def __enter__(self) -> Progress:
        self._draw()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, done: int, total: int | None = None, label: str | None = None) -> None:
        """`done` units of `total` (unchanged when None) are finished; `label` names a new stage (drawn
        at once)."""
        relabelled = label is not None and label != self.label
        self.label = label if label is not None else self.label
        self.total = total if total is not None else self.total
        self.done = done
        if relabelled or self._drawn_at is None or time.monotonic() - self._drawn_at >= REDRAW_SECONDS:
            self._draw()

    def advance(self, units: int = 1) -> None:
        """`units` more are finished."""
        self.update(self.done + units)

    def close(self) -> None:
        """Draw the last state (so even a quick job shows where it ended), then erase the bar."""
        if not self._enabled:
            return
        self._draw()
        self._stream.write(ERASE_LINE)
        self._stream.flush()
        self._enabled = False

    def render(self, width: int) -> str:
        """The bar's line for a terminal `width` columns wide."""
        if not self.total:
            return (f"{self.label} {self.done} {self.unit}" if self.done else self.label)[:width]
        count = f" {self.done}/{self.total} {self.unit}"
        room = width - len(self.label) - len(count) - 3
        if room < MIN_BAR:
            return f"{self.label}{count}"[:width]
        filled = room * min(self.done, self.total) // self.total
        return f"{self.label} [{'#' * filled}{'.' * (room - filled)}]{count}"

    def _draw(self) -> None:
        if not self._enabled:
            return
        self._stream.write(ERASE_LINE + self.render(self._columns() - 1))
        self._stream.flush()
        self._drawn_at = time.monotonic()

    def _columns(self) -> int:
        # The width of stderr's terminal (stdout may be a pipe); a fresh pseudo-terminal reports 0.
        try:
            columns = os.get_terminal_size(self._stream.fileno()).columns
        except (OSError, ValueError):
            columns = 0
        return columns or DEFAULT_COLUMNS


def progress(args: argparse.Namespace, label: str, unit: str, total: int = 0) -> Progress:
    """A bar on stderr for `args`' command: drawn on a terminal (not TERM=dumb) unless --json."""
    stream = sys.stderr
    enabled = not args.json and stream.isatty() and os.environ.get("TERM", "") != "dumb"
    return Progress(label, unit, stream, enabled, total)
