"""The school-year benchmark's parts (scan_bench.py --weeks): a clock the benchmark sets in the
emulators (SettableClock) and in the scanner (bench/clocked_scan.py), accounts that come and
go (emulators.lifecycle), and a short year played end to end."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path

import pytest
import requests

from emulators.clock import SettableClock
from emulators.google.server import GoogleEmulator, GoogleEmulatorProcess
from emulators.google.tenant import build_tenant as build_google
from emulators.lifecycle import google_lifecycle, microsoft_lifecycle
from emulators.microsoft.tenant import build_tenant as build_microsoft

BENCH = Path(__file__).resolve().parent.parent / "bench"
A_YEAR_ON = time.time() + 365 * 86400


def test_a_settable_clock_moves_dates_not_durations():
    clock = SettableClock()
    before = clock.monotonic()
    clock.set(A_YEAR_ON)
    assert abs(clock.time() - A_YEAR_ON) < 5
    assert clock.now().year == dt.datetime.fromtimestamp(A_YEAR_ON, dt.timezone.utc).year
    assert clock.monotonic() - before < 5  # quotas and token lifetimes keep the machine's pace
    time.sleep(0.05)
    assert clock.time() > A_YEAR_ON  # and time runs on from the moment set


def test_only_an_emulator_with_a_settable_clock_lets_its_date_be_set():
    with GoogleEmulator(build_google(users=5), clock=SettableClock()) as emulator:
        emulator.control("set_clock", {"time": A_YEAR_ON})
        assert abs(emulator.clock.time() - A_YEAR_ON) < 5
    with GoogleEmulatorProcess(build={"users": 5, "seed": 3}) as emulator:
        with pytest.raises(requests.HTTPError, match="cannot be set"):
            emulator.set_clock(A_YEAR_ON)
    with GoogleEmulatorProcess(build={"users": 5, "seed": 3}, settable_clock=True) as emulator:
        emulator.set_clock(A_YEAR_ON)  # accepted


def test_google_accounts_come_and_go_but_the_admin_stays():
    tenant = build_google(users=60, seed=4)
    admins = {user.id for user in tenant.users.values() if user.is_admin}
    before = set(tenant.users)
    outcome = google_lifecycle(tenant, add=3, suspend=2, remove=4, seed=7)
    assert outcome == {"added": 3, "suspended": 2, "removed": 4}
    removed, added = before - set(tenant.users), set(tenant.users) - before
    assert len(removed) == 4 and len(added) == 3 and not removed & admins
    assert all(not tenant.tokens.get(user_id) for user_id in removed)  # their grants went with them
    assert sum(tenant.users[user_id].suspended for user_id in before - removed) >= 2
    assert all(tenant.users[user_id].primary_email.startswith("new.") for user_id in added)
    assert admins <= set(tenant.users) and not any(tenant.users[user_id].suspended for user_id in admins)


def test_microsoft_accounts_come_and_go_with_their_consents():
    tenant = build_microsoft(users=60, seed=4)
    members = {user["id"] for user in tenant.users if user.get("userType") != "Guest"}
    outcome = microsoft_lifecycle(tenant, add=2, suspend=3, remove=3, seed=9)
    tenant.reindex()
    assert outcome == {"added": 2, "suspended": 3, "removed": 3}
    now = {user["id"]: user for user in tenant.users}
    removed = members - set(now)
    assert len(removed) == 3 and not any(grant.principal_id in removed for grant in tenant.grants)
    assert sum(not user["accountEnabled"] for user in now.values() if user["id"] in members) >= 3
    assert sum(user["userPrincipalName"].startswith("new.") for user in now.values()) == 2


def test_the_clocked_launcher_sets_the_scanners_clock_and_google_auths(monkeypatch):
    import google.auth._helpers

    import scanner.timestamps

    monkeypatch.syspath_prepend(str(BENCH))
    monkeypatch.setattr(scanner.timestamps, "clock", scanner.timestamps.clock)  # restored after the test
    monkeypatch.setattr(google.auth._helpers, "utcnow", google.auth._helpers.utcnow)
    from clocked_scan import install_clock

    install_clock(A_YEAR_ON)
    assert abs(scanner.timestamps.utc_now().timestamp() - A_YEAR_ON) < 5
    assert abs(google.auth._helpers.utcnow().replace(tzinfo=dt.timezone.utc).timestamp() - A_YEAR_ON) < 5


def test_a_short_school_year_runs_end_to_end(tmp_path, monkeypatch):
    """Three weeks: Google full, incremental (which needs both clocks to agree on the audit
    log's dates), full; every scan dated on the bench's week, a week apart."""
    monkeypatch.syspath_prepend(str(BENCH))
    import scan_bench

    for name in ("REQUESTS_CA_BUNDLE", scan_bench.SECRET_ENV):  # the bench sets them: restored after the test
        monkeypatch.delenv(name, raising=False)

    figures_file = tmp_path / "year.json"
    scan_bench.main(["--users", "300", "--weeks", "3", "--latency", "0", "--workdir", str(tmp_path),
                     "--json", str(figures_file)])
    figures = json.loads(figures_file.read_text(encoding="utf-8"))
    assert figures["history_google_modes"] == {"full": 2, "incremental": 1}
    assert len(figures["history_bytes_by_week"]) == 3 and figures["history_growth_ratio"] > 0.5
    assert figures["history_tables"]["grant_rows"]["last_rows"] > 0
    db = sqlite3.connect(tmp_path / "bench.db")
    started = [dt.datetime.fromisoformat(row[0].replace("Z", "+00:00"))
               for row in db.execute("select started_at from scans where provider = 'google' order by id")]
    incremental = db.execute("""select count(*) from changes join scans on scans.id = changes.scan_id
                                  where scans.provider = 'google' and scans.mode = 'incremental' and kind = 'new_grant'""").fetchone()[0]
    cursor, last_start = db.execute("select json_extract(state, '$.reports_cursor'), started_at from scans "
                                    "where provider = 'google' order by id desc limit 1").fetchone()
    db.close()
    assert cursor[:16] == last_start[:16]  # the audit log's position is on the scanner's clock too
    assert incremental > 0  # the week's churn, read from the audit log by the scanner's dates
    assert [round((b - a) / dt.timedelta(days=1)) for a, b in zip(started, started[1:])] == [7, 7]
    assert started[0] > dt.datetime.now(dt.timezone.utc)  # the bench's year starts next Monday
