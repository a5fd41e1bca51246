"""A scan is a process that can die at any moment or meet another scan: `app-inventory scan`
run for real in child processes against the Google emulator, killed with SIGKILL at random
points, or started twice at once."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys

import pytest

from emulators.google.tenant import build_tenant
from tests.google_fixtures import District, expected_grants, inventory_grants

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

# What a scan writes besides its own `scans` row; a killed scan must leave all of it as it was.
INVENTORY_TABLES = ("users", "apps", "grants", "changes", "alerts", "catalog")


def start_scan(place: District, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "scanner", "--db", place.db_path, "--config", str(place.config_path),
               "--quiet", "scan", "--provider", "google", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(child: subprocess.Popen) -> tuple[int, str]:
    out, err = child.communicate(timeout=120)
    return child.returncode, out + err


def snapshot(db_path: str) -> dict[str, list[tuple]]:
    """Every row of the inventory's tables, read with plain sqlite3 (which must open the file)."""
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("pragma integrity_check").fetchone() == ("ok",)
        return {table: sorted(connection.execute(f"select * from [{table}]").fetchall(), key=repr)
                for table in INVENTORY_TABLES}


@pytest.fixture
def scanned(district):
    """A 400-account district scanned once; how many requests any full scan sends is noted
    (the token log's windows aside: a later scan reads only those since the last one)."""
    tenant = build_tenant(users=400, seed=77, grants_per_user=5)
    place = district(tenant)
    code, output = finish(start_scan(place))
    assert code == 0, output
    stats = place.emulator.stats()
    place.full_scan_requests = stats["http_requests"] - stats["http"]["activities.list"]
    assert place.full_scan_requests >= 10  # the token, users pages and tokens.list batches
    return place


def kill_when_held(place: District, child: subprocess.Popen, after_requests: int) -> None:
    """Kill the scan while it waits for the emulator's answer to its request after `after_requests`
    (the emulator holds it): a point in the scan, whatever the speed of this machine."""
    try:
        place.emulator.wait_held(timeout=60)
        assert child.poll() is None, f"the scan ended on its own before request {after_requests + 1}"
        child.send_signal(signal.SIGKILL)
        code, _ = finish(child)
        assert code == -signal.SIGKILL
    finally:
        place.emulator.release()


def test_scans_killed_at_random_points_leave_the_previous_inventory(scanned):
    rng = random.Random(2026)
    for round_ in range(3):
        before = snapshot(scanned.db_path)
        assert before["grants"] and before["alerts"]  # there is something to lose
        scanned.emulator.mutate([{"op": "churn", "fraction": 0.2, "seed": round_}])
        point = round(rng.uniform(0.2, 0.9) * scanned.full_scan_requests)
        scanned.emulator.hold_after(point)
        kill_when_held(scanned, start_scan(scanned, "--full"), point)

        assert snapshot(scanned.db_path) == before, f"killed after request {point}"  # opens, intact, no alerts queued

        code, output = finish(start_scan(scanned))
        assert code == 0, output
        assert inventory_grants(scanned.db_path) == expected_grants(scanned.tenant)
        with sqlite3.connect(scanned.db_path) as connection:
            statuses = [row[0] for row in connection.execute("select status from scans order by id")]
            killed = connection.execute("select error from scans where status = 'failed'").fetchall()
        # The killed scan's row, if it got as far as writing one, is closed as interrupted by the next run.
        assert statuses[-1] == "succeeded" and "running" not in statuses
        assert all(error.startswith("interrupted") for (error,) in killed)


def test_two_scans_at_once_the_second_refuses_clearly(scanned):
    scanned.emulator.mutate([{"op": "churn", "fraction": 0.2, "seed": 5}])
    scanned.emulator.hold_after(scanned.full_scan_requests // 2)  # the first scan waits there, running
    first = start_scan(scanned, "--full")
    try:
        scanned.emulator.wait_held(timeout=60)
        assert os.path.exists(f"{scanned.db_path}.lock") and _scan_running(scanned.db_path)
        code, output = finish(start_scan(scanned))
    finally:
        scanned.emulator.release()
    assert code == 1, (output, first.poll())
    assert "another scan is already running on this inventory" in output and "Traceback" not in output

    code, output = finish(first)
    assert code == 0, output
    assert inventory_grants(scanned.db_path) == expected_grants(scanned.tenant)
    with sqlite3.connect(scanned.db_path) as connection:
        assert connection.execute("pragma integrity_check").fetchone() == ("ok",)
        assert [row[0] for row in connection.execute("select status from scans order by id")] == ["succeeded"] * 2


def _scan_running(db_path: str) -> bool:
    with sqlite3.connect(db_path) as connection:
        return connection.execute("select count(*) from scans where status = 'running'").fetchone()[0] > 0
