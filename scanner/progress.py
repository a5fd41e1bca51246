"""Progress for long work: a live status line on a terminal, periodic log lines otherwise.

    google: users 1,234/2,000 (62%) · calls 1,240 · retries 3 · ETA 0:42
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import TextIO

log = logging.getLogger("scanner.progress")


class Progress:
    """Counts work done for one task; providers call advance() and set_counters()."""

    REDRAW_SECONDS = 0.2
    LOG_SECONDS = 30.0

    def __init__(self, label: str, *, stream: TextIO | None = None, enabled: bool = True):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interactive = enabled and self.stream.isatty()
        self.unit = "items"
        self.total: int | None = None
        self.done = 0
        self.counters: dict[str, int] = {}
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._last_log = self.started
        self._last_logged_tenth = 0
        self._last_logged = ""

    def start(self, total: int | None, unit: str = "users") -> None:
        """Begin (or restart) counting `unit`s, with a total when it is known."""
        self.total, self.unit, self.done = total, unit, 0
        self.started = time.monotonic()
        self._last_logged_tenth = 0
        self._draw(force=True)

    def set_total(self, total: int) -> None:
        self.total = total
        self._draw()

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def set_counters(self, **counters: int) -> None:
        self.counters.update(counters)
        self._draw()

    def close(self) -> None:
        """Finish the status line (a terminal keeps the last state on its own line)."""
        if self.interactive:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
        elif self.enabled and self.describe() != self._last_logged:
            log.info("%s", self.describe())

    def describe(self) -> str:
        parts = [f"{self.label}: {self.unit} {self.done:,}"]
        if self.total:
            parts[0] += f"/{self.total:,} ({100 * self.done // self.total}%)"
        parts += [f"{name} {value:,}" for name, value in self.counters.items()]
        eta = self.eta_seconds()
        if eta is not None:
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        return " · ".join(parts)

    def eta_seconds(self) -> float | None:
        if not self.total or not self.done or self.done >= self.total:
            return None
        elapsed = time.monotonic() - self.started
        return elapsed / self.done * (self.total - self.done)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.interactive:
            if force or now - self._last_draw >= self.REDRAW_SECONDS:
                self._last_draw = now
                self.stream.write("\r\x1b[K" + self.describe())
                self.stream.flush()
            return
        # Not a terminal (cron, CI): a log line every tenth of the way or every 30 s.
        tenth = 10 * self.done // self.total if self.total else 0
        if force or tenth > self._last_logged_tenth or now - self._last_log >= self.LOG_SECONDS:
            self._last_logged_tenth = max(tenth, self._last_logged_tenth)
            self._last_log = now
            self._last_logged = self.describe()
            log.info("%s", self._last_logged)


class StepTimer:
    """Times the steps of a long piece of work, for --verbose:

        with step("people"): ...    ->    google: finishing: people 1.23 s
    """

    def __init__(self, label: str):
        self.label = label

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            log.debug("%s: %s %.2f s", self.label, name, time.perf_counter() - started)
