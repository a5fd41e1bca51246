"""`app-inventory` run at a moment the benchmark chooses: a week of a school year played in minutes.

    APP_INVENTORY_BENCH_NOW=<epoch seconds> python bench/clocked_scan.py --db ... scan --provider google

The process's clock starts at that moment and runs on at the machine's pace: the scanner's
(scanner.timestamps.clock, where every time the inventory keeps comes from) and google-auth's
(the service account's signed assertion must be dated on the emulator's clock, which the
benchmark sets to the same week: emulators.clock.SettableClock). A benchmark tool, not a
setting of the product: the product always runs on the machine's time.
"""

from __future__ import annotations

import datetime as dt
import os
import time

CLOCK_ENV = "APP_INVENTORY_BENCH_NOW"


def install_clock(start: float) -> None:
    """From now on this process's scanner and google-auth read `start` plus the real time since."""
    import google.auth._helpers

    import scanner.timestamps

    began = time.monotonic()

    def clock() -> dt.datetime:
        return dt.datetime.fromtimestamp(start + time.monotonic() - began, dt.timezone.utc)

    scanner.timestamps.clock = clock
    google.auth._helpers.utcnow = lambda: clock().replace(tzinfo=None)  # google-auth's clock is naive UTC


def main() -> None:
    if CLOCK_ENV not in os.environ:
        raise SystemExit(f"clocked_scan: set {CLOCK_ENV} to the moment (epoch seconds) the run starts at")
    install_clock(float(os.environ[CLOCK_ENV]))
    from scanner.cli import main as app_inventory

    app_inventory()


if __name__ == "__main__":
    main()
