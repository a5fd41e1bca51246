"""The emulators' clock: the machine's time, or time that a test moves by hand.

Whatever an emulator decides by the time asks its clock, never `time.time()` or
`time.monotonic()`: how old a page token is, what the Reports API shows yet (report
lag), throttling windows and quota buckets, when an access token expires, how long a
"timeout" fault stalls, when a tenant change happened. `Clock` is the machine's time;
a test hands an emulator a `ManualClock` and calls `advance()`, so what it checks never
depends on how fast this machine is.

The `latency` knob is not clock time: it makes every answer slow in real time (for a
benchmark), and under a clock that stands still it would never end.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

UTC = dt.timezone.utc


class Clock:
    """The machine's time."""

    def time(self) -> float:
        """Seconds since the epoch (what timestamps are made of)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back (what durations are measured with)."""
        return time.monotonic()

    def now(self) -> dt.datetime:
        """The current moment, in UTC."""
        return dt.datetime.fromtimestamp(self.time(), UTC)

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        """Wait `seconds` of this clock's time, or until `interrupt` is set; True when interrupted."""
        if interrupt is None:
            time.sleep(max(0.0, seconds))
            return False
        return interrupt.wait(max(0.0, seconds))


class ManualClock(Clock):
    """A clock that stands still until the test calls `advance()`.

    It starts at `start` (a datetime, epoch seconds, or by default the real now, so that
    tenants built around the real date look current). `time()` and `monotonic()` read the
    same value. A thread in `sleep()` wakes when the clock has been advanced far enough;
    `wait_for_sleepers()` lets a test see that an emulator is stalled before it advances.
    Time is counted in whole nanoseconds, so advancing by 0.5 and then 0.1 reaches exactly
    what a sleep of 0.6 waits for.
    """

    def __init__(self, start: dt.datetime | float | None = None):
        if isinstance(start, dt.datetime):
            start = start.timestamp()
        self._ns = time.time_ns() if start is None else _nanoseconds(start)
        self._changed = threading.Condition()
        self._sleepers = 0

    def time(self) -> float:
        with self._changed:
            return self._ns / 1e9

    def monotonic(self) -> float:
        return self.time()

    def advance(self, seconds: float) -> None:
        """Move time forward; sleepers whose time has come wake up."""
        if seconds < 0:
            raise ValueError(f"a clock only goes forward, not by {seconds} s")
        with self._changed:
            self._ns += _nanoseconds(seconds)
            self._changed.notify_all()

    def sleep(self, seconds: float, interrupt: threading.Event | None = None) -> bool:
        with self._changed:
            deadline = self._ns + _nanoseconds(max(0.0, seconds))
            self._sleepers += 1
            self._changed.notify_all()
            try:
                while self._ns < deadline:
                    if interrupt is not None and interrupt.is_set():
                        return True
                    # Polls the interrupt (an Event cannot wake a Condition); advance() wakes at once.
                    self._changed.wait(0.05)
                return False
            finally:
                self._sleepers -= 1
                self._changed.notify_all()

    @property
    def sleepers(self) -> int:
        """How many threads are waiting on this clock right now."""
        with self._changed:
            return self._sleepers

    def wait_for_sleepers(self, count: int = 1, timeout: float = 60.0) -> None:
        """Return once exactly `count` threads wait on this clock (1: an answer is stalled; 0: no
        longer); TimeoutError after `timeout` real seconds, which only a broken emulator reaches."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._sleepers == count, timeout):
                raise TimeoutError(f"{self._sleepers} thread(s) wait on the clock, not {count}, after {timeout:.0f} s")


class SettableClock(Clock):
    """The machine's time, moved to a chosen moment by `set()` and running on from there.

    For a benchmark that plays a school year of weekly scans in minutes: between scans it
    sets the date to the next week's, and time then runs at the machine's pace, so quotas,
    retries and latency behave as with `Clock`. Only `time()` (dates) moves; `monotonic()`
    (durations, quota buckets, token lifetimes) stays the machine's.
    """

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def set(self, moment: float) -> None:
        """From now on, time() reads `moment` (epoch seconds) plus the real time since."""
        with self._lock:
            self._offset = moment - time.time()


def _nanoseconds(seconds: float) -> int:
    return round(seconds * 1_000_000_000)


__all__ = ["Clock", "ManualClock", "SettableClock"]
