import datetime as dt
import json
import logging
import re
import shutil
import sqlite3

import pytest

from scanner import store, timestamps
from scanner.config import load_config
from scanner.hookspecs import hookimpl
from scanner.plugin_manager import pm
from scanner.providers import App, Grant, LastUsed, User, UsersSeen
from scanner.scan import ScanLock, ScanLocked, run_scans
from scanner.store import writer
from tests.conftest import district_tenant
from tests.rows import by_id

NO_CONFIG = load_config(None)


class Clock:
    """Controls the clock (scanner.timestamps.clock) so scans a week apart can be told apart."""

    def __init__(self, monkeypatch, start="2026-11-02T08:00:00+00:00"):
        self.now = dt.datetime.fromisoformat(start)
        monkeypatch.setattr(timestamps, "clock", lambda: self.now)

    def advance(self, **delta):
        self.now += dt.timedelta(**delta)


@pytest.fixture
def clock(monkeypatch):
    return Clock(monkeypatch)


def scan(db_path, **kwargs):
    return run_scans(db_path, NO_CONFIG, show_progress=False, **kwargs)


def snapshot(db_path):
    """Everything a reader relies on, except the scans log itself."""
    db = store.open_db(db_path)
    return {table: list(db[table].rows) for table in ("users", "apps", "grants", "changes", "catalog_suggestions")}


def test_first_scan_fills_the_tables_as_design_says(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    outcome = scan(db_path)
    assert outcome.failures == []
    db = store.open_db(db_path)

    [row] = db["scans"].rows
    assert row["provider"] == "fake" and row["status"] == "succeeded" and row["mode"] == "full"
    assert row["tenant"] == "fake.example.org"
    assert (row["users_seen"], row["apps_seen"], row["grants_seen"]) == (4, 3, 4)
    assert row["api_calls"] == 11  # the fake counts one call per record
    assert row["started_at"] == row["finished_at"] == "2026-11-02T08:00:00Z"
    assert json.loads(row["state"]) == {"scans_so_far": 1}

    user = by_id(db, "users", "fake:4")
    assert user["email"] == "zoë.müller@students.district.org" and user["role"] == "student"
    assert user["first_seen"] == user["last_seen"] == "2026-11-02T08:00:00Z"
    assert (user["is_admin"], by_id(db, "users", "fake:1")["is_admin"]) == (None, 1)  # None: the service did not say

    grant = by_id(db, "grants", "fake:2:333-mailer.apps.googleusercontent.com")
    assert grant["user_id"] == "fake:2" and grant["app_id"] == "fake:333-mailer.apps.googleusercontent.com"
    assert json.loads(grant["scopes"]) == ["openid", "https://www.googleapis.com/auth/userinfo.email", "https://mail.google.com/"]
    assert grant["revoked_at"] is None and grant["tenant_wide"] == 0 and grant["risk"] == "high"

    apps = {app["name"]: app for app in db["apps"].rows}
    assert apps["Kahoot!"]["users"] == 2 and apps["Kahoot!"]["students"] == 1 and apps["Kahoot!"]["staff"] == 1
    assert apps["Kahoot!"]["risk"] == "low" and apps["Super Mail Merge"]["risk"] == "high"
    assert apps["Quizlet"]["status"] == "unreviewed" and apps["Quizlet"]["provider"] == "fake"

    # The first scan is the baseline: apps are new, individual grants are not reported as changes.
    kinds = [c["kind"] for c in db["changes"].rows]
    assert kinds == ["new_app"] * 3


def test_second_scan_records_new_grants_new_scopes_and_revocations(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    scan(db_path)
    clock.advance(days=7)
    kahoot = "111-kahoot.apps.googleusercontent.com"
    fake_tenant.apps.append(App(id="444-notes.apps.googleusercontent.com", name="Notes Helper"))
    fake_tenant.grants = [
        Grant(user_id="1", app_id=kahoot, scopes=["openid", "https://www.googleapis.com/auth/userinfo.email"]),
        # new scopes on an existing grant
        Grant(user_id="3", app_id=kahoot, scopes=["openid", "https://www.googleapis.com/auth/userinfo.email", "https://www.googleapis.com/auth/drive"]),
        # the Quizlet grant of user 4 is gone; the mail merge grant stays
        Grant(user_id="2", app_id="333-mailer.apps.googleusercontent.com", scopes=["openid"]),
        Grant(user_id="4", app_id="444-notes.apps.googleusercontent.com", scopes=["openid"]),
    ]
    outcome = scan(db_path)
    db = store.open_db(db_path)
    latest = outcome.scans[0]
    changes = {(c["kind"], c["user_id"], c["app_id"]): c for c in db.query("select * from changes where scan_id = ?", [latest["id"]])}
    assert set(changes) == {
        ("new_app", None, "fake:444-notes.apps.googleusercontent.com"),
        ("new_grant", "fake:4", "fake:444-notes.apps.googleusercontent.com"),
        ("new_scopes", "fake:3", f"fake:{kahoot}"),
        ("revoked_grant", "fake:4", "fake:222-quizlet.apps.googleusercontent.com"),
    }
    assert json.loads(changes[("new_scopes", "fake:3", f"fake:{kahoot}")]["scopes"]) == ["https://www.googleapis.com/auth/drive"]

    revoked = by_id(db, "grants", "fake:4:222-quizlet.apps.googleusercontent.com")
    assert revoked["revoked_at"] == "2026-11-09T08:00:00Z"
    kept = by_id(db, "grants", f"fake:1:{kahoot}")
    assert (kept["first_seen"], kept["last_seen"]) == ("2026-11-02T08:00:00Z", "2026-11-09T08:00:00Z")
    assert by_id(db, "apps", "fake:222-quizlet.apps.googleusercontent.com")["users"] == 0
    assert by_id(db, "apps", f"fake:{kahoot}")["risk"] == "high"  # the drive scope raised it

    view = list(db.query("select kind, app from changes_since_last_scan order by kind"))
    assert [row["kind"] for row in view] == ["new_app", "new_grant", "new_scopes", "revoked_grant"]


def test_a_revoked_grant_granted_again_is_a_new_grant(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    scan(db_path)
    removed = fake_tenant.grants.pop()
    clock.advance(days=1)
    scan(db_path)
    fake_tenant.grants.append(removed)
    clock.advance(days=1)
    outcome = scan(db_path)
    db = store.open_db(db_path)
    grant = by_id(db, "grants", "fake:2:333-mailer.apps.googleusercontent.com")
    assert grant["revoked_at"] is None and grant["first_seen"] == "2026-11-02T08:00:00Z"
    assert [c["kind"] for c in db.query("select kind from changes where scan_id = ?", [outcome.scans[0]["id"]])] == ["new_grant"]


def test_a_scan_failing_midway_changes_nothing(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    scan(db_path)
    before = snapshot(db_path)
    clock.advance(days=7)
    fake_tenant.grants = fake_tenant.grants[:1]  # would revoke three grants...
    fake_tenant.users.append(User(id="5", email="new@district.org", role="staff"))
    fake_tenant.fail_after = 6  # ...but the API stops answering after six records
    outcome = scan(db_path)
    assert outcome.failures == ["fake: the fake API stopped answering"]
    assert snapshot(db_path) == before
    db = store.open_db(db_path)
    failed = db["scans"].get(2)
    assert failed["status"] == "failed" and failed["error"] == "the fake API stopped answering"
    assert failed["finished_at"] == "2026-11-09T08:00:00Z"


def test_scan_finished_is_called_after_success_only(fake_tenant, db_path, clock):
    calls = []

    class Listener:
        __name__ = "Listener"

        @hookimpl
        def scan_finished(self, db, scan, changes):
            calls.append((scan["status"], dict(changes.counts), [c["kind"] for c in changes]))

    pm.register(Listener(), name="undo-listener")
    try:
        district_tenant(fake_tenant)
        scan(db_path)
        fake_tenant.fail_after = 2
        clock.advance(days=1)
        scan(db_path)
    finally:
        pm.unregister(name="undo-listener")
    assert calls == [("succeeded", {"new_app": 3}, ["new_app"] * 3)]


def test_the_scan_and_its_plugins_writes_reach_the_database_file(fake_tenant, db_path, clock, tmp_path):
    """Scans turn SQLite's automatic checkpoint off and copy the WAL beside the plugins
    (store.checkpoint_alongside): afterwards the file alone, without its WAL, has everything."""

    class Marker:
        __name__ = "Marker"

        @hookimpl
        def scan_finished(self, db, scan):
            db["plugin_marks"].insert({"scan_id": scan["id"]})

    pm.register(Marker(), name="marker")
    try:
        district_tenant(fake_tenant)
        scan(db_path)
    finally:
        pm.unregister(name="marker")
    expected = store.open_db(db_path).execute("select count(*) from grants").fetchone()[0]
    file_only = tmp_path / "file-only.db"
    shutil.copyfile(db_path, file_only)
    copy = sqlite3.connect(file_only)
    assert expected > 0
    assert copy.execute("select count(*) from grants").fetchone()[0] == expected
    assert copy.execute("select count(*) from plugin_marks").fetchone()[0] == 1
    copy.close()


def test_a_failing_plugin_does_not_stop_the_others(fake_tenant, db_path, clock):
    seen = []

    class Broken:
        __name__ = "Broken"

        @hookimpl
        def scan_finished(self, db, scan, changes):
            raise RuntimeError("mail server exploded")

    class Working:
        __name__ = "Working"

        @hookimpl
        def scan_finished(self, db, scan, changes):
            seen.append(scan["id"])

    pm.register(Broken(), name="undo-broken")
    pm.register(Working(), name="undo-working")
    try:
        district_tenant(fake_tenant)
        outcome = scan(db_path)
    finally:
        pm.unregister(name="undo-broken")
        pm.unregister(name="undo-working")
    assert seen == [1] and outcome.scans[0]["status"] == "succeeded"


def test_verbose_says_how_long_each_step_of_a_scans_end_took(fake_tenant, db_path, clock, caplog):
    """Where a slow scan's end goes (`app-inventory --verbose scan`), for an admin or a benchmark."""
    district_tenant(fake_tenant)
    caplog.set_level(logging.DEBUG)
    assert scan(db_path).failures == []
    steps = [re.fullmatch(r"fake: (finishing|after the scan): (.+) (\d+\.\d\d) s", message) for message in caplog.messages]
    steps = [step.groups() for step in steps if step]
    assert [name for _, name, _ in steps] == [
        "the last writes", "revoked grants", "people", "app counts", "matching", "unapproved", "products", "retention",
        "commit", "plugins",
    ]
    caplog.clear()
    caplog.set_level(logging.INFO)
    assert scan(db_path).failures == []
    assert "finishing" not in caplog.text


def test_incremental_scan_revokes_only_for_users_it_reread(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    scan(db_path)
    clock.advance(days=2)
    # User 4 dropped Quizlet and user 2 dropped the mail merge, but only user 4 is re-read.
    fake_tenant.grants = [g for g in fake_tenant.grants if g.user_id not in ("4", "2")]
    fake_tenant.incremental_users = ["4"]
    outcome = scan(db_path)
    assert outcome.scans[0]["mode"] == "incremental"
    db = store.open_db(db_path)
    assert by_id(db, "grants", "fake:4:222-quizlet.apps.googleusercontent.com")["revoked_at"] == "2026-11-04T08:00:00Z"
    assert by_id(db, "grants", "fake:2:333-mailer.apps.googleusercontent.com")["revoked_at"] is None
    # A forced full scan does revoke it.
    clock.advance(days=1)
    assert scan(db_path, force_full=True).scans[0]["mode"] == "full"
    assert by_id(store.open_db(db_path), "grants", "fake:2:333-mailer.apps.googleusercontent.com")["revoked_at"] == "2026-11-05T08:00:00Z"


def test_a_provider_asks_the_inventory_about_accounts_a_page_at_a_time(fake_tenant, db_path, clock):
    """An incremental scan's provider holds no set of every account (a million would not fit
    its memory budget, docs/scale.md): it asks for the digests of a page's accounts, and once
    listed, for the known accounts it has not yielded, as a User or in UsersSeen."""
    district_tenant(fake_tenant)
    fake_tenant.users[1].digest = 22
    answers = {}

    def probe(run):
        answers["digests"] = run.user_digests(["2", "4", "99"])
        try:
            answers["not_seen"] = sorted(run.users_not_seen())
        except RuntimeError as error:
            answers["not_seen"] = str(error)

    fake_tenant.probe = probe
    scan(db_path)
    assert answers["not_seen"] == "users_not_seen is for an incremental scan (set run.mode first)"
    clock.advance(days=1)
    fake_tenant.incremental_users = ["4"]
    fake_tenant.posture = [UsersSeen(["1"])]
    assert scan(db_path).scans[0]["mode"] == "incremental"
    assert answers == {"digests": {"2": 22, "4": None}, "not_seen": ["2", "3"]}


def test_incremental_needs_a_full_scan_in_the_last_seven_days(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    fake_tenant.incremental_users = ["4"]
    assert scan(db_path).scans[0]["mode"] == "full"  # no full scan yet
    clock.advance(days=6, hours=23)
    assert scan(db_path).scans[0]["mode"] == "incremental"
    clock.advance(hours=2)  # the last *full* scan is now over 7 days old
    assert scan(db_path).scans[0]["mode"] == "full"


def _app_counts_work(fake_tenant, db_path, clock, monkeypatch, holders: int) -> tuple[int, int]:
    """An incremental scan re-reads one of the `holders` accounts holding an app and finds its
    grant gone: (the SQLite steps, in hundreds, its app counts took; the app's users after)."""
    fake_tenant.apps = [App(id="a1", name="Quiz")]
    fake_tenant.users = [User(id=str(n), email=f"u{n}@x.org", name=f"U {n}", role="student") for n in range(holders)]
    fake_tenant.grants = [Grant(user_id=str(n), app_id="a1", scopes=["openid"]) for n in range(holders)]
    fake_tenant.incremental_users = None
    scan(db_path)
    clock.advance(days=1)
    fake_tenant.grants = fake_tenant.grants[1:]
    fake_tenant.incremental_users = ["0"]
    steps = []

    def counted(db):
        ticks = [0]

        def tick():
            ticks[0] += 1
            return 0

        db.conn.set_progress_handler(tick, 100)
        try:
            refresh(db)
        finally:
            db.conn.set_progress_handler(None, 100)
        steps.append(ticks[0])

    refresh = writer.refresh_changed_app_stats
    monkeypatch.setattr(writer, "refresh_changed_app_stats", counted)
    try:
        assert scan(db_path).scans[0]["mode"] == "incremental"
    finally:
        monkeypatch.setattr(writer, "refresh_changed_app_stats", refresh)
    return steps[0], store.open_db(db_path).execute("select users from apps").fetchone()[0]


def test_an_incremental_scans_app_counts_read_the_touched_grants_not_every_grant_of_their_apps(
        fake_tenant, tmp_path, clock, monkeypatch):
    # At a million accounts, SQLite's own choice walked each touched app's grants (10 s of a
    # weekly scan): the work must not grow with how many people hold the app.
    few, few_users = _app_counts_work(fake_tenant, str(tmp_path / "few.db"), clock, monkeypatch, holders=100)
    many, many_users = _app_counts_work(fake_tenant, str(tmp_path / "many.db"), clock, monkeypatch, holders=3000)
    assert (few_users, many_users) == (99, 2999)
    assert many < 2 * few + 10, (few, many)


def test_tenant_wide_and_application_grants(fake_tenant, db_path, clock):
    fake_tenant.apps = [App(id="a1", name="Roster Sync", ownership="third_party")]
    fake_tenant.grants = [
        Grant(user_id=None, app_id="a1", scopes=["User.Read", " EduRoster.ReadBasic "], resource="Microsoft Graph"),
        Grant(user_id=None, app_id="a1", scopes=["User.Read.All"], resource="Microsoft Graph", grant_type="application"),
    ]
    scan(db_path)
    db = store.open_db(db_path)
    delegated = by_id(db, "grants", "fake:*:a1:Microsoft Graph")
    assert delegated["user_id"] is None and delegated["tenant_wide"] == 1
    assert json.loads(delegated["scopes"]) == ["User.Read", "EduRoster.ReadBasic"]
    application = by_id(db, "grants", "fake:*:a1:Microsoft Graph:application")
    assert application["grant_type"] == "application" and application["tenant_wide"] == 1
    assert application["risk"] == "high"  # User.Read.All is medium; reaching everyone raises it
    assert by_id(db, "apps", "fake:a1")["tenant_wide"] == 1


def test_last_used_is_kept_per_grant_and_per_app(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    kahoot = "111-kahoot.apps.googleusercontent.com"
    fake_tenant.last_used = [
        LastUsed(app_id=kahoot, user_id="3", at="2026-10-30T10:00:00.123Z"),
        LastUsed(app_id=kahoot, user_id="3", at="2026-10-01T10:00:00Z"),
        LastUsed(app_id=kahoot, at="2026-11-01T00:00:00-8:00"),  # odd offsets happen in Graph docs
    ]
    scan(db_path)
    db = store.open_db(db_path)
    assert by_id(db, "grants", f"fake:3:{kahoot}")["last_used"] == "2026-10-30T10:00:00Z"
    assert by_id(db, "grants", f"fake:1:{kahoot}")["last_used"] is None
    assert by_id(db, "apps", f"fake:{kahoot}")["last_used"] == "2026-11-01T08:00:00Z"


def test_same_grant_twice_in_one_scan_merges_scopes(fake_tenant, db_path, clock):
    fake_tenant.apps = [App(id="a1", name="App")]
    store.ScanWriter.BATCH, old = 1, store.ScanWriter.BATCH  # force the two copies into different batches
    try:
        fake_tenant.grants = [Grant(user_id=None, app_id="a1", scopes=["User.Read"]), Grant(user_id=None, app_id="a1", scopes=["Mail.Read"])]
        outcome = scan(db_path)
    finally:
        store.ScanWriter.BATCH = old
    db = store.open_db(db_path)
    assert json.loads(by_id(db, "grants", "fake:*:a1")["scopes"]) == ["User.Read", "Mail.Read"]
    assert outcome.scans[0]["grants_seen"] == 1


def test_a_grant_written_before_its_account_is_listed_keeps_both(fake_tenant, db_path, clock):
    # The grant's account gets a placeholder row, then the listing fills it in: an update of a
    # row inserted in the same scan, which the people tracking once refused (a trigger's
    # `or ignore` overridden by the users upsert).
    fake_tenant.apps = [App(id="a1", name="App")]
    fake_tenant.users = [User(id="u1", email="ann@x.org", name="Ann", role="staff")]
    fake_tenant.grants = [Grant(user_id="u1", app_id="a1", scopes=["openid"])]
    fake_tenant.users_last = True
    store.ScanWriter.BATCH, old = 1, store.ScanWriter.BATCH  # the grant reaches the database before the account
    try:
        outcome = scan(db_path)
    finally:
        store.ScanWriter.BATCH = old
    assert outcome.scans[0]["status"] == "succeeded"
    db = store.open_db(db_path)
    assert by_id(db, "users", "fake:u1")["email"] == "ann@x.org"
    assert by_id(db, "grants", "fake:u1:a1")["user_id"] == "fake:u1"
    assert db.execute("select count(*) from users").fetchone()[0] == 1  # the placeholder became the account
    assert [row["email"] for row in db.query("select email from people")] == ["ann@x.org"]


def test_an_interrupted_scan_is_marked_failed_by_the_next_run(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    db = store.open_db(db_path)
    killed = store.start_scan(db, "fake", clock.now)  # as if the process died here
    clock.advance(hours=1)
    outcome = scan(db_path)
    assert outcome.scans[0]["status"] == "succeeded"
    row = store.open_db(db_path)["scans"].get(killed)
    assert row["status"] == "failed" and row["error"].startswith("interrupted")


def test_a_second_scan_refuses_while_one_holds_the_lock(fake_tenant, db_path):
    district_tenant(fake_tenant)
    with ScanLock(db_path):
        with pytest.raises(ScanLocked, match="another scan is already running"):
            scan(db_path)
    assert scan(db_path).scans[0]["status"] == "succeeded"


def test_retention_purges_old_history_but_keeps_the_latest_scan(fake_tenant, db_path, clock, tmp_path):
    config_file = tmp_path / "app-inventory.toml"
    config_file.write_text("[retention]\nhistory_days = 30\n")
    config = load_config(config_file)
    district_tenant(fake_tenant)
    run_scans(db_path, config, show_progress=False)
    # User 4 leaves the district: the grant is revoked and the account is no longer seen.
    fake_tenant.users.pop()
    fake_tenant.grants = [g for g in fake_tenant.grants if g.user_id != "4"]
    clock.advance(days=1)
    run_scans(db_path, config, show_progress=False)
    db = store.open_db(db_path)
    assert by_id(db, "grants", "fake:4:222-quizlet.apps.googleusercontent.com")["revoked_at"]
    assert db["users"].count == 4
    clock.advance(days=31)
    run_scans(db_path, config, show_progress=False)
    db = store.open_db(db_path)
    assert db.execute("select count(*) from grants where id = ?", ["fake:4:222-quizlet.apps.googleusercontent.com"]).fetchone()[0] == 0
    assert db["users"].count_where("id = 'fake:4'") == 0  # not seen for 31 days, no grants left
    assert db["users"].count == 3
    assert db["changes"].count_where("detected_at < '2026-11-04'") == 0
    assert [row["id"] for row in db["scans"].rows] == [3]


def test_views_exist_and_answer(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    scan(db_path)
    db = store.open_db(db_path)
    for view in ("grants", "app_summary", "scope_creep", "dpa_expiring", "changes_since_last_scan", "unknown_scopes",
                 "unapproved_usage"):
        assert view in db.view_names()
        list(db.query(f"select * from {view}"))
    assert "unapproved" in db.table_names()  # kept by the store (see test_matching)
    unapproved = list(db.query("select app, email from unapproved_usage order by email"))
    assert len(unapproved) == 4  # nothing is approved yet: every third-party grant needs review
    summary = {row["name"]: row for row in db.query("select * from app_summary")}
    assert summary["Kahoot!"]["users"] == 2


def test_unknown_scopes_are_medium_and_listed(fake_tenant, db_path, clock):
    fake_tenant.apps = [App(id="a1", name="Mystery")]
    fake_tenant.grants = [Grant(user_id=None, app_id="a1", scopes=["https://example.com/auth/everything"], grant_type="delegated")]
    fake_tenant.users = []
    scan(db_path)
    db = store.open_db(db_path)
    assert by_id(db, "grants", "fake:*:a1")["risk"] == "high"  # medium, raised for a tenant-wide grant
    assert list(db.query("select scope, apps from unknown_scopes")) == [{"scope": "https://example.com/auth/everything", "apps": 1}]


def test_schema_is_idempotent(db_path):
    store.open_db(db_path)
    first = store.open_db(db_path).execute("select sql from sqlite_master order by name").fetchall()
    second = store.open_db(db_path).execute("select sql from sqlite_master order by name").fetchall()
    assert first == second
    assert store.open_db(db_path).journal_mode == "wal"
    assert store.open_db(db_path)["scopes"].count >= 60


@pytest.mark.parametrize("sent, stored", [
    ("2026-11-20T13:02:11.123Z", "2026-11-20T13:02:11Z"),  # Google (fast path)
    ("2026-11-20T13:02:11.1234567Z", "2026-11-20T13:02:11Z"),  # Microsoft (fast path)
    ("2026-11-20T13:02:11Z", "2026-11-20T13:02:11Z"),
    ("2026-11-20T05:02:11-8:00", "2026-11-20T13:02:11Z"),
    ("2026-11-20T14:02:11.5+01:00", "2026-11-20T13:02:11Z"),
    ("2026-11-20T13:02:11", "2026-11-20T13:02:11Z"),  # no zone: UTC
])
def test_timestamps_from_apis_are_stored_in_one_format(sent, stored):
    assert timestamps.normalize_timestamp(sent) == stored


def test_a_timestamp_that_is_not_one_is_refused():
    with pytest.raises(ValueError, match="not an ISO 8601 timestamp: '2026-13-45T99:00:00Z'"):
        timestamps.normalize_timestamp("2026-13-45T99:00:00Z")


def test_insert_rows_writes_every_row_in_chunks_the_variable_limit_allows():
    conn = sqlite3.connect(":memory:")
    conn.execute("create table notes (user_id text primary key, app_id text, at text)")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)  # three rows of three a statement
    rows = [(f"u{i}", "app", f"2026-01-{i + 1:02d}") for i in range(10)] + [("u3", "app", "2026-02-01"), ("u4", "app", "2025-01-01")]

    store.insert_rows(conn, "insert into notes (user_id, app_id, at)", rows,
                      "on conflict do update set at = excluded.at where excluded.at > at")
    store.insert_rows(conn, "insert into notes (user_id, app_id, at)", [])

    got = dict(conn.execute("select user_id, at from notes"))
    assert len(got) == 10 and got["u9"] == "2026-01-10"
    assert got["u3"] == "2026-02-01" and got["u4"] == "2026-01-05"  # the later time wins, across chunks too


def test_app_counts_take_each_account_once_whatever_its_grants(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    kahoot = "111-kahoot.apps.googleusercontent.com"
    fake_tenant.grants += [  # a second resource for two accounts, and a consent for everyone
        Grant(user_id="3", app_id=kahoot, scopes=["User.Read"], resource="Microsoft Graph"),
        Grant(user_id="1", app_id=kahoot, scopes=["Mail.Read"], resource="Office 365 Exchange Online"),
        Grant(user_id=None, app_id=kahoot, scopes=["User.Read"]),
        Grant(user_id="4", app_id=kahoot, scopes=["openid"]),
    ]
    scan(db_path)
    app = by_id(store.open_db(db_path), "apps", f"fake:{kahoot}")
    assert (app["users"], app["students"], app["staff"], app["tenant_wide"]) == (3, 2, 1, 1)
    assert app["risk"] == "high"  # Mail.Read
