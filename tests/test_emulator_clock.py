"""The emulators' ManualClock: time stands still until the test advances it, exactly."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from emulators.clock import ManualClock


def sleep_in_thread(clock: ManualClock, seconds: float, interrupt: threading.Event | None = None):
    outcome: list[bool] = []
    thread = threading.Thread(target=lambda: outcome.append(clock.sleep(seconds, interrupt)), daemon=True)
    thread.start()
    clock.wait_for_sleepers(1, timeout=10)
    return thread, outcome


def test_time_stands_still_and_moves_by_exact_steps():
    clock = ManualClock(dt.datetime(2026, 11, 23, 8, 0, 0, 123_000, tzinfo=dt.timezone.utc))
    start = clock.time()
    assert clock.time() == start and clock.monotonic() == start
    thread, outcome = sleep_in_thread(clock, 1.0)
    for _ in range(9):
        clock.advance(0.1)
    thread.join(0.2)
    assert thread.is_alive()  # 0.1 s to go
    clock.advance(0.1)  # ten steps of 0.1 s are 1 s on this clock (in floating-point seconds they fall short)
    thread.join(10)
    assert outcome == [False] and clock.sleepers == 0
    assert clock.now() == dt.datetime(2026, 11, 23, 8, 0, 1, 123_000, tzinfo=dt.timezone.utc)
    with pytest.raises(ValueError, match="only goes forward"):
        clock.advance(-1)


def test_a_sleep_ends_early_when_interrupted():
    clock, stopping = ManualClock(), threading.Event()
    thread, outcome = sleep_in_thread(clock, 3600, stopping)
    stopping.set()
    thread.join(10)
    assert outcome == [True]


def test_waiting_for_a_sleeper_that_never_comes_is_an_error():
    with pytest.raises(TimeoutError, match="0 thread"):
        ManualClock().wait_for_sleepers(1, timeout=0.1)
