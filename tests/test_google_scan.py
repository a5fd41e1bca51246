"""The real Google provider against the Admin SDK emulator over HTTP: what a scan records."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time

import pytest

from plugins.google.tokens import batch_size_for
from plugins.google.users import SHARDS
from emulators.clock import ManualClock
from emulators.google.tenant import DirectoryUser, GoogleTenant, OAuthClient, build_tenant, to_micros
from tests.google_fixtures import ADMIN, INTERNAL_PROJECT, expected_grants, inventory_grants
from tests.rows import by_id

UTC = dt.timezone.utc
PROFILE = ["openid", "https://www.googleapis.com/auth/userinfo.email"]


def users_pages(users: int) -> int:
    return math.ceil(users / 500)


def shard_pages(tenant: GoogleTenant) -> int:
    """users.list pages of an incremental scan's listing: one search a first character of the address."""
    return sum(max(1, users_pages(sum(1 for u in tenant.users.values() if u.primary_email.lower().startswith(shard[6]))))
               for shard in SHARDS)


def events_in_window(tenant: GoogleTenant) -> int:
    """Token log events a first scan reads: the last 180 days (the provider starts 5 minutes inside)."""
    cutoff = to_micros(dt.datetime.now(UTC) - dt.timedelta(days=180) + dt.timedelta(minutes=5))
    return sum(1 for micros in tenant.events.micros if micros >= cutoff)


def test_full_scan_records_exactly_the_tenants_users_apps_and_grants(district):
    tenant = build_tenant(users=1300, seed=11)  # 1,301 accounts: three users.list pages
    place = district(tenant)
    scan = place.scan()

    assert scan["status"] == "succeeded", scan["error"]
    assert scan["mode"] == "full" and scan["tenant"] == "district.example"
    assert inventory_grants(place.db_path) == expected_grants(tenant)
    db = place.db()
    users = {row["id"]: row for row in db.query("select * from users where provider = 'google'")}
    assert len(users) == len(tenant.users) == 1301
    for user in list(tenant.users.values())[:200]:
        row = users[f"google:{user.id}"]
        assert row["email"] == user.primary_email and row["name"] == f"{user.given_name} {user.family_name}"
        assert row["org_unit"] == user.org_unit_path and row["suspended"] == int(user.suspended)
        assert row["is_admin"] == int(user.is_admin)
        assert row["role"] == ("student" if user.org_unit_path.startswith("/Students/") else "staff")
    assert any(row["suspended"] for row in users.values())
    assert [row["email"] for row in users.values() if row["is_admin"]] == ["it-admin@district.example"]

    # Every call the emulator answered was counted, batch parts included; batches went to the
    # Directory batch endpoint under api_root, in batches of one second of quota.
    stats = place.emulator.stats()
    assert scan["api_calls"] == stats["api_calls"]
    assert stats["calls"]["users.list"] == users_pages(1301)
    assert stats["calls"]["tokens.list"] == 1301 == stats["batch_parts"]
    assert stats["http"]["batch"] == math.ceil(1301 / batch_size_for(2400))
    assert "tokens.list" not in stats["http"]  # never one HTTP request per user
    # The token log is read in up to 16 time windows side by side: a partial page each at most.
    pages = math.ceil(events_in_window(tenant) / 1000)
    assert pages <= stats["calls"]["activities.list"] <= pages + 16
    assert scan["api_calls"] == users_pages(1301) + 1301 + stats["calls"]["activities.list"]


def test_apps_keep_client_ids_names_flags_and_ownership(district):
    tenant = build_tenant(users=600, seed=4, grants_per_user=10)
    place = district(tenant)
    assert place.scan()["status"] == "succeeded"
    apps = {row["client_id"]: row for row in place.db().query("select * from apps where provider = 'google'")}
    held = {token.client.client_id: token.client for _, token in tenant.all_tokens()}
    assert set(apps) == set(held)
    for client_id, client in held.items():
        row = apps[client_id]
        details = json.loads(row["details"])
        assert row["name"] == client.display_text
        assert details["anonymous"] == client.anonymous and details["nativeApp"] == client.native_app
        assert details["projectNumber"] == client_id.split("-")[0]
        assert row["ownership"] == ("internal" if client_id.startswith(INTERNAL_PROJECT + "-") else "third_party")
    # The same name from two developers stays two apps.
    quiz = [row for row in apps.values() if row["name"] == "Quiz Master"]
    assert len(quiz) == 2 and quiz[0]["id"] != quiz[1]["id"]
    assert any(row["ownership"] == "internal" for row in apps.values())
    assert any(json.loads(row["details"])["anonymous"] for row in apps.values())
    assert any(json.loads(row["details"])["nativeApp"] for row in apps.values())


def _handmade_tenant() -> GoogleTenant:
    clients = [OAuthClient(f"{700000000000 + n}-app{n}.apps.googleusercontent.com", f"Script project {n}") for n in range(400)]
    return GoogleTenant.from_json({
        "domain": "district.example",
        "clients": [c.to_json() for c in clients] + [
            {"clientId": "99-emoji.apps.googleusercontent.com", "displayText": "Lectura fácil 📚 読書"}],
        "users": [
            {"id": "100000000000000000001", "primaryEmail": ADMIN, "name": {"givenName": "IT", "familyName": "Admin"},
             "orgUnitPath": "/IT", "isAdmin": True},
            {"id": "100000000000000000002", "primaryEmail": "nobody@district.example",
             "name": {"givenName": "Zoë", "familyName": "Nguyễn-Müller"}, "orgUnitPath": "/Staff"},
            {"id": "100000000000000000003", "primaryEmail": "power@district.example",
             "name": {"givenName": "Siobhán", "familyName": "Ó Briain"}, "orgUnitPath": "/Staff"},
            {"id": "100000000000000000004", "primaryEmail": "jlee@students.district.example",
             "name": {"givenName": "李", "familyName": "小龍"}, "orgUnitPath": "/Students/HS"},
        ],
        "grants": [{"userId": "100000000000000000003", "clientId": c.client_id, "scopes": PROFILE + [f"scope/{n}"]}
                   for n, c in enumerate(clients)]
                  + [{"userId": "100000000000000000004", "clientId": "99-emoji.apps.googleusercontent.com",
                      "scopes": PROFILE + ["https://www.googleapis.com/auth/drive.file"],
                      "authorizedAt": "2026-01-01T00:00:00Z"}],
    })


def test_empty_and_large_token_lists_and_unicode(district):
    tenant = _handmade_tenant()
    place = district(tenant)
    assert place.scan()["status"] == "succeeded"
    assert inventory_grants(place.db_path) == expected_grants(tenant)
    db = place.db()
    assert db.execute("select count(*) from grants where user_id = 'google:100000000000000000003'").fetchone()[0] == 400
    assert db.execute("select count(*) from grants where user_id = 'google:100000000000000000002'").fetchone()[0] == 0
    assert by_id(db, "users", "google:100000000000000000002")["name"] == "Zoë Nguyễn-Müller"
    assert by_id(db, "users", "google:100000000000000000004")["name"] == "李 小龍"
    assert by_id(db, "apps", "google:99-emoji.apps.googleusercontent.com")["name"] == "Lectura fácil 📚 読書"


def test_last_used_comes_from_activity_and_authorize_events(district):
    tenant = build_tenant(users=300, seed=8)
    place = district(tenant)
    assert place.scan()["status"] == "succeeded"
    since = dt.datetime.now(UTC) - dt.timedelta(days=180) + dt.timedelta(minutes=5)
    rows = list(place.db().query("select user_id, app_id, last_used from grants"))
    assert rows and sum(1 for row in rows if row["last_used"]) > len(rows) // 2
    for row in rows:
        want = tenant.latest_use(row["user_id"][7:], row["app_id"][7:], since=since)
        assert row["last_used"] == (want.strftime("%Y-%m-%dT%H:%M:%SZ") if want else None)


def test_an_edition_without_activity_events_still_scans(district):
    tenant = build_tenant(users=300, seed=8)
    place = district(tenant, knobs={"activity_events": False})
    scan = place.scan()
    assert scan["status"] == "succeeded"
    assert inventory_grants(place.db_path) == expected_grants(tenant)
    since = dt.datetime.now(UTC) - dt.timedelta(days=180) + dt.timedelta(minutes=5)
    rows = list(place.db().query("select user_id, app_id, last_used from grants"))
    for row in rows:  # only authorizations inside the 180 days are evidence now
        want = tenant.latest_use(row["user_id"][7:], row["app_id"][7:], since=since, activity=False)
        assert row["last_used"] == (want.strftime("%Y-%m-%dT%H:%M:%SZ") if want else None)
    assert any(row["last_used"] is None for row in rows)


def test_incremental_scan_finds_new_and_revoked_grants_with_far_fewer_calls(district):
    tenant = build_tenant(users=1000, seed=21)
    place = district(tenant)
    full = place.scan()
    assert full["status"] == "succeeded" and full["mode"] == "full"

    ids = [user_id for user_id in tenant.users if tenant.tokens[user_id]][1:6]
    gainer, loser, leaver, user_only, _ = ids
    kahoot = next(c for c in tenant.clients_list if c.display_text == "Kahoot!")
    new_app = OAuthClient("555555555555-brandnew.apps.googleusercontent.com", "Brand New Quiz")
    lost = tenant.tokens[loser][0].client.client_id
    newcomer = DirectoryUser("100000000000000000777", "new.teacher@district.example", "Ana", "Núñez", "/Staff/Lincoln Elementary")
    place.emulator.mutate([
        {"op": "authorize", "user": gainer, "client": new_app.to_json(), "scopes": PROFILE},
        {"op": "revoke", "user": loser, "client": lost},
        {"op": "add_user", "user": newcomer.to_json()},
        {"op": "authorize", "user": newcomer.id, "client": kahoot.client_id, "scopes": PROFILE},
        {"op": "delete_user", "user": leaver},
        {"op": "use", "user": user_only, "client": tenant.tokens[user_only][0].client.client_id},
    ])
    place.emulator.reset_stats()
    incremental = place.scan()

    assert incremental["status"] == "succeeded", incremental["error"]
    assert incremental["mode"] == "incremental"
    assert inventory_grants(place.db_path) == expected_grants(tenant)
    stats = place.emulator.stats()
    # users.list pages (by address prefix), one token-log page, and tokens.list for exactly the gainer,
    # the loser, the newcomer and the leaver (known, not listed: a 404 says it was deleted).
    pages = shard_pages(tenant)
    assert stats["calls"] == {"users.list": pages, "activities.list": 1, "tokens.list": 4}
    assert incremental["api_calls"] == stats["api_calls"] == pages + 1 + 4
    assert incremental["api_calls"] < full["api_calls"] / 10

    changes = {(row["kind"], row["user_id"], row["app_id"]) for row in place.db().query(
        "select kind, user_id, app_id from changes where scan_id = ?", [incremental["id"]])}
    assert ("new_grant", f"google:{gainer}", f"google:{new_app.client_id}") in changes
    assert ("revoked_grant", f"google:{loser}", f"google:{lost}") in changes
    assert ("new_grant", f"google:{newcomer.id}", f"google:{kahoot.client_id}") in changes
    leaver_grants = {("revoked_grant", f"google:{leaver}", f"google:{t}") for t in
                     (row["app_id"][7:] for row in place.db().query("select app_id from grants where user_id = ?", [f"google:{leaver}"]))}
    assert leaver_grants and leaver_grants <= changes
    used = place.db().execute("select last_used from grants where user_id = ? and app_id = ?",
                              [f"google:{user_only}", f"google:{tenant.tokens[user_only][0].client.client_id}"]).fetchone()[0]
    assert used >= full["started_at"]


def test_forced_stale_or_reports_unavailable_scans_are_full(district, monkeypatch, caplog):
    tenant = build_tenant(users=200, seed=5)
    place = district(tenant)
    assert place.scan()["mode"] == "full"
    assert place.scan(full=True)["mode"] == "full"
    assert place.scan()["mode"] == "incremental"

    # The Reports API refuses (no Reports privilege): a full scan, and last-used dates wait.
    place.emulator.set_knobs(reports_error=403)
    before = dict(place.db().execute("select id, last_used from grants").fetchall())
    caplog.set_level(logging.WARNING)
    unavailable = place.scan()
    assert unavailable["status"] == "succeeded" and unavailable["mode"] == "full"
    assert "Reports API is unavailable" in caplog.text
    assert dict(place.db().execute("select id, last_used from grants").fetchall()) == before
    # ...and the cursor stays where it was, so the next scans still read from the last good one.
    assert json.loads(unavailable["state"]) == json.loads(place.scans[-2]["state"])

    # No full scan succeeded in the last 7 days: full, whatever else.
    place.emulator.set_knobs(reports_error=None)
    from scanner import timestamps
    later = timestamps.utc_now() + dt.timedelta(days=8)
    monkeypatch.setattr(timestamps, "clock", lambda: later)
    assert place.scan()["mode"] == "full"


def test_ten_percent_faults_give_the_same_inventory(district):
    tenant = build_tenant(users=800, seed=31)
    calm = district(tenant)
    calm_scan = calm.scan()
    stormy = district(tenant, knobs={"fault_rate": 0.1, "fault_seed": 7, "batch_fault_rate": 0.1})
    stormy_scan = stormy.scan()

    assert stormy_scan["status"] == "succeeded", stormy_scan["error"]
    stats = stormy.emulator.stats()
    assert sum(stats["faults"].values()) > 50 and set(stats["faults"]) >= {"403", "429", "500", "503"}
    assert stormy_scan["retries"] >= sum(v for k, v in stats["faults"].items() if k != "batch")
    assert inventory_grants(stormy.db_path) == inventory_grants(calm.db_path) == expected_grants(tenant)
    columns = "id, user_id, app_id, scopes, last_used"
    assert list(stormy.db().query(f"select {columns} from grants order by id")) == \
        list(calm.db().query(f"select {columns} from grants order by id"))
    assert calm_scan["retries"] == 0


def test_pacing_keeps_under_the_quota(district):
    # 628 users: 631 calls against a quota of 600 a minute (10 a second, bursts of 600).
    tenant = build_tenant(users=627, seed=2)
    place = district(tenant, knobs={"quota_per_minute": 600}, requests_per_minute=600)
    started = time.monotonic()
    scan = place.scan()
    elapsed = time.monotonic() - started
    assert scan["status"] == "succeeded"
    assert place.emulator.stats()["quota_rejected"] == 0 and scan["retries"] == 0
    assert inventory_grants(place.db_path) == expected_grants(tenant)
    # The bucket holds 580 calls (two seconds' worth kept back); the rest went at 10 a second.
    assert elapsed >= (scan["api_calls"] - 580) / 10 - 0.5


def test_pacing_above_the_quota_meets_403s_and_recovers(district):
    tenant = build_tenant(users=627, seed=2)
    place = district(tenant, knobs={"quota_per_minute": 600}, requests_per_minute=6000)
    scan = place.scan()
    stats = place.emulator.stats()
    assert scan["status"] == "succeeded", scan["error"]
    assert stats["quota"]["directory"] > 0 and scan["retries"] >= stats["quota_rejected"]
    assert inventory_grants(place.db_path) == expected_grants(tenant)


def test_a_user_deleted_during_the_scan_is_skipped_and_counted(district, caplog):
    tenant = build_tenant(users=120, seed=3)
    doomed = [user_id for user_id in tenant.users if tenant.tokens[user_id]][:2]
    place = district(tenant, knobs={"delete_after_listed": doomed})
    caplog.set_level(logging.INFO)
    scan = place.scan()
    assert scan["status"] == "succeeded", scan["error"]
    assert "2 users were deleted during the scan and skipped" in caplog.text
    assert inventory_grants(place.db_path) == expected_grants(tenant)
    assert not any(user in doomed for user, _, _ in inventory_grants(place.db_path))


def test_an_access_token_expiring_mid_scan_is_renewed(district):
    tenant = build_tenant(users=400, seed=6)
    # Tokens die after half a second though the endpoint promises an hour; 20-call batches
    # with 0.1 s latency make the scan outlast several.
    place = district(tenant, knobs={"token_lifetime": 0.5, "token_expires_in": 3599, "latency": 0.1},
                     requests_per_minute=1200)
    scan = place.scan()
    assert scan["status"] == "succeeded", scan["error"]
    stats = place.emulator.stats()
    assert stats["unauthenticated"] > 0 and stats["tokens_issued"] >= 2
    assert inventory_grants(place.db_path) == expected_grants(tenant)


def test_progress_reports_users_calls_retries_and_eta(district, caplog):
    from scanner.config import load_config
    from scanner.scan import run_scans

    tenant = build_tenant(users=1500, seed=9)
    place = district(tenant)
    caplog.set_level(logging.INFO, logger="scanner.progress")
    run_scans(place.db_path, load_config(place.config_path), only=["google"], show_progress=True)
    lines = [record.getMessage() for record in caplog.records if record.name == "scanner.progress"]
    assert any("google: users" in line and "/1,501" in line and "calls" in line and "retries" in line and "ETA" in line
               for line in lines), lines
    assert lines[-1].startswith("google: users 1,501/1,501 (100%)")


@pytest.mark.parametrize("fraction", [0.02])
def test_cli_scan_of_a_2000_user_district_with_faults_then_incremental(district, runner, fraction):
    """The issue's "done when": app-inventory scan --provider google, 10% faults, then a cheap rescan."""
    from scanner.cli import cli

    tenant = build_tenant(users=2000, seed=2026, grants_per_user=4)
    place = district(tenant, knobs={"fault_rate": 0.1, "fault_seed": 3})
    args = ["--db", place.db_path, "--config", str(place.config_path), "scan", "--provider", "google"]
    started = time.monotonic()
    result = runner.invoke(cli, args)
    full_seconds = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "google: full scan 1 succeeded: 2,001 users" in result.output
    assert inventory_grants(place.db_path) == expected_grants(tenant)
    full = place.db()["scans"].get(1)

    changed = place.emulator.mutate([{"op": "churn", "fraction": fraction, "seed": 1}])[0]
    assert changed["authorized"] and changed["revoked"]
    started = time.monotonic()
    result = runner.invoke(cli, args)
    incremental_seconds = time.monotonic() - started
    assert result.exit_code == 0, result.output
    incremental = place.db()["scans"].get(2)
    assert incremental["mode"] == "incremental"
    assert inventory_grants(place.db_path) == expected_grants(tenant)
    assert incremental["api_calls"] < 0.1 * full["api_calls"]
    print(f"\nfull: {full['api_calls']} calls, {full['retries']} retries, {full_seconds:.1f}s; "
          f"incremental: {incremental['api_calls']} calls, {incremental_seconds:.1f}s")


def test_audit_events_that_show_up_late_are_caught_by_the_next_scan(district):
    tenant = build_tenant(users=150, seed=12)
    # Google's clock stands 30 s ahead of the scanner's, and still until the test moves it.
    clock = ManualClock(dt.datetime.now(UTC) + dt.timedelta(seconds=30))
    place = district(tenant, knobs={"report_lag": 60.0}, clock=clock)  # events show a minute after they happen
    assert place.scan()["mode"] == "full"
    user = next(u for u in tenant.users if tenant.tokens[u])
    late = OAuthClient("424242424242-late.apps.googleusercontent.com", "Late Arrival")
    happened = dt.datetime.now(UTC) - dt.timedelta(seconds=5)  # before the cursor of every scan from here on
    place.emulator.mutate([{"op": "authorize", "user": user, "client": late.to_json(), "scopes": PROFILE,
                            "at": happened.isoformat()}])
    blind = place.scan()  # the authorization is not in the log yet: nobody to re-list
    assert blind["mode"] == "incremental"
    assert (user, late.client_id, tuple(sorted(PROFILE))) not in inventory_grants(place.db_path)
    clock.advance(60)  # now it shows, dated before the blind scan's cursor
    caught = place.scan()  # re-reads the hours before its cursor, where the event now shows
    assert caught["mode"] == "incremental"
    assert inventory_grants(place.db_path) == expected_grants(tenant)


def test_the_token_log_is_read_in_contiguous_windows_within_180_days():
    from plugins.google.reports import time_windows

    now = dt.datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    windows = time_windows(now - dt.timedelta(days=400), now)
    assert len(windows) == 16
    assert windows[0][0] == now - dt.timedelta(days=180) + dt.timedelta(minutes=5)
    assert all(windows[n][1] == windows[n + 1][0] for n in range(15)) and windows[-1][1] is None
    assert time_windows(now - dt.timedelta(hours=30), now) == [(now - dt.timedelta(hours=30), None)]
    assert len(time_windows(now - dt.timedelta(days=7, hours=6), now)) == 7
