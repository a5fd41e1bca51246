"""Queueing: which findings become alerts after a scan, and how rows follow the inventory."""

import json
from pathlib import Path

from click.testing import CliRunner
from sqlite_utils import Database

from plugins.alerts import queue as alerts_queue
from scanner import store
from scanner.cli import cli
from scanner.providers import App, Grant
from tests.alerts_fixtures import (
    CATALOG, DRIVE_FILE, MAIL, MAILER, PROFILE, alerts_district, alerts_rows, scan, set_catalog, write_config,
)


def findings(db_path):
    return sorted((r["email"], r["app"], r["kind"], r["status"]) for r in alerts_rows(db_path))


def test_a_succeeded_scan_queues_one_pending_row_per_user_app_and_kind(fake_tenant, tmp_path, db_path):
    alerts_district(fake_tenant)
    config = write_config(tmp_path, 25)
    set_catalog(db_path)
    scan(db_path, config)
    assert findings(db_path) == [
        ("jlee@students.district.org", "Kahoot!", "denied", "pending"),
        ("mr.okafor@district.org", "Kahoot!", "denied", "pending"),
        ("ms.rivera@district.org", "Quizlet", "unapproved", "pending"),
        ("ms.rivera@district.org", "Super Mail Merge", "unapproved", "pending"),
        ("zoe.muller@students.district.org", "Super Mail Merge", "unapproved", "pending"),
    ]
    row = alerts_rows(db_path)[0]
    assert row["first_detected"] == row["last_detected"] and row["attempts"] == 0 and row["sent_at"] is None
    scan(db_path, config)  # the same findings again: no new rows
    assert len(alerts_rows(db_path)) == 5


def test_a_failed_scan_queues_nothing(fake_tenant, tmp_path, db_path):
    from scanner.config import load_config
    from scanner.scan import run_scans

    alerts_district(fake_tenant)
    fake_tenant.fail_after = 6
    outcome = run_scans(db_path, load_config(write_config(tmp_path, 25)), show_progress=False)
    assert outcome.failures
    db = store.open_db(db_path)
    alerts_queue.ensure_alerts_tables(db)
    assert db["alerts"].count == 0


def test_only_third_party_apps_alert(fake_tenant, tmp_path, db_path):
    alerts_district(fake_tenant)
    fake_tenant.apps.append(App(id="999-ours.apps.googleusercontent.com", name="District SIS", ownership="internal"))
    fake_tenant.grants.append(Grant(user_id="1", app_id="999-ours.apps.googleusercontent.com", scopes=[*PROFILE, MAIL]))
    scan(db_path, write_config(tmp_path, 25))
    assert "District SIS" not in {app for _, app, _, _ in findings(db_path)}


def test_a_new_catalog_decision_replaces_the_pending_alert(fake_tenant, tmp_path, db_path):
    alerts_district(fake_tenant)
    config = write_config(tmp_path, 25)
    scan(db_path, config)  # no catalog yet: everything is unreviewed
    assert ("mr.okafor@district.org", "Kahoot!", "unapproved", "pending") in findings(db_path)
    set_catalog(db_path)  # Kahoot denied
    scan(db_path, config)
    rows = findings(db_path)
    assert ("mr.okafor@district.org", "Kahoot!", "unapproved", "suppressed") in rows
    assert ("mr.okafor@district.org", "Kahoot!", "denied", "pending") in rows


def test_revoked_grants_suppress_and_a_new_grant_revives(fake_tenant, tmp_path, db_path):
    alerts_district(fake_tenant)
    config = write_config(tmp_path, 25)
    scan(db_path, config)
    mailer = [g for g in fake_tenant.grants if g.user_id == "1" and g.app_id == MAILER][0]
    fake_tenant.grants.remove(mailer)
    scan(db_path, config)
    [row] = [r for r in alerts_rows(db_path) if r["email"] == "ms.rivera@district.org" and r["app"] == "Super Mail Merge"]
    assert row["status"] == "suppressed" and "access was removed" in row["note"]
    fake_tenant.grants.append(mailer)
    scan(db_path, config)
    [again] = [r for r in alerts_rows(db_path) if r["email"] == "ms.rivera@district.org" and r["app"] == "Super Mail Merge"]
    assert again["id"] == row["id"] and again["status"] == "pending" and again["suppressed_at"] is None


def test_scope_creep_is_its_own_kind_listing_the_extra_access(fake_tenant, smtp_server, tmp_path, db_path):
    alerts_district(fake_tenant)
    catalog = [dict(row) for row in CATALOG]
    catalog[1].update(status="approved", approved_scopes=json.dumps(PROFILE))  # Quizlet: approved for sign-in only
    set_catalog(db_path, catalog)
    config = write_config(tmp_path, smtp_server.port)
    scan(db_path, config)
    [row] = [r for r in alerts_rows(db_path) if r["app"] == "Quizlet"]
    assert row["kind"] == "scope_creep" and json.loads(row["details"]) == {"extra_scopes": [DRIVE_FILE]}
    # Stored as the key of the list in scope_sets, the details made from it by the view.
    assert store.open_db(db_path).execute(
        """select alert_rows.details, scope_sets.scopes from alert_rows join scope_sets on scope_sets.key = alert_rows.extra_scope_set
           where alert_rows.id = ?""", [row["id"]]).fetchone() == (None, json.dumps([DRIVE_FILE], separators=(",", ":")))

    assert CliRunner().invoke(cli, ["--db", db_path, "--config", str(config), "alerts", "send"]).exit_code == 0
    [ana] = smtp_server.handler.to("ms.rivera@district.org")
    flat = " ".join(ana.text.split())
    assert "Quizlet (Fake sign-in), by Quizlet Inc. Approved, but your account gave it more access than the district approved: - See and change only the Drive files" in flat


def test_alert_rows_made_before_0003_are_converted_in_place(fake_tenant, tmp_path, db_path):
    """Migration 0003 on alert rows in the shape 0002 made (kinds and statuses as words, a scope
    creep's details as JSON in each row, its reminder's too): the alerts view reads the same,
    kinds and statuses now small integers and the lists by key."""
    alerts_district(fake_tenant)
    catalog = [dict(row) for row in CATALOG]
    catalog[1].update(status="approved", approved_scopes=json.dumps(PROFILE))
    set_catalog(db_path, catalog)
    scan(db_path, write_config(tmp_path, 25))
    db = store.open_db(db_path)
    alerts_queue.ensure_alerts_tables(db)
    with db.atomic():
        db.execute("""insert into alert_rows (user_key, app_key, kind, status, extra_scope_set, first_detected, last_detected)
                      select user_key, app_key, kind + ?, ?, extra_scope_set, first_detected, last_detected
                      from alert_rows where kind = ?""",
                   [alerts_queue.REMINDER, alerts_queue.SENT, alerts_queue.KIND_CODES["scope_creep"]])
    expected = list(db.query("select * from alerts order by id"))
    assert {row["kind"] for row in expected} >= {"scope_creep", "scope_creep_reminder", "unapproved"}
    assert {row["status"] for row in expected} == {"pending", "sent"}
    with db.atomic():  # the same rows in 0002's shape
        db.execute("""create table rows_0002 as select a.id, a.user_key, a.app_key, a.app_ref, v.kind, v.status,
                        nullif(v.details, '{}') as details, a.first_detected, a.last_detected, a.sent_at, a.attempts,
                        a.message_id, a.last_error, a.sending_since, a.unconfirmed, a.recipient, a.suppressed_at, a.note
                      from alert_rows as a join alerts as v on v.id = a.id""")
        db.execute("drop view alerts")
        db.execute("drop table alert_rows")
        db.execute("drop table alert_runs")
        db.execute("delete from _sqlite_migrations where migration_set = 'alerts_email'")
    alerts_queue.migrations.apply(db, stop_before="0003_compact_rows")
    with db.atomic():
        db.execute("insert into alert_rows select * from rows_0002")
        db.execute("drop table rows_0002")
    assert db.execute("select typeof(kind) from alert_rows limit 1").fetchone() == ("text",)
    db.close()

    upgraded = store.open_db(db_path)
    alerts_queue.ensure_alerts_tables(upgraded)
    assert list(upgraded.query("select * from alerts order by id")) == expected
    assert upgraded.execute("select distinct typeof(kind), typeof(status) from alert_rows").fetchall() == [("integer", "integer")]
    assert upgraded.execute("select count(*) from alert_rows where kind % ? = ? and details is null and extra_scope_set is not null",
                            [alerts_queue.REMINDER, alerts_queue.KIND_CODES["scope_creep"]]).fetchone()[0] == 2


def test_outside_audience_follows_the_setting(fake_tenant, smtp_server, tmp_path, db_path):
    alerts_district(fake_tenant)
    catalog = [dict(row) for row in CATALOG] + [{
        "id": "mailmerge", "name": "Super Mail Merge", "status": "conditional", "status_original": "Staff only",
        "audience": "staff", "google_client_ids": json.dumps([MAILER]), "microsoft_app_ids": "[]",
        "approved_scopes": "[]", "alternative": None,
    }]
    set_catalog(db_path, catalog)
    on = write_config(tmp_path / "on", smtp_server.port)
    on_without_digest = write_config(tmp_path / "nodigest", smtp_server.port, it_digest_to=[])
    off = write_config(tmp_path / "off", smtp_server.port, alert_outside_audience=False)
    scan(db_path, off)
    # The scan queues this kind only when the setting asks for it.
    assert not [r for r in alerts_rows(db_path) if r["kind"] == "outside_audience"]
    scan(db_path, on)
    assert [(r["email"], r["status"]) for r in alerts_rows(db_path) if r["kind"] == "outside_audience"] == [
        ("zoe.muller@students.district.org", "pending")
    ]

    def send(config):
        result = CliRunner().invoke(cli, ["--db", db_path, "--config", str(config), "alerts", "send"])
        assert result.exit_code == 0, result.output
        return result

    def outside_audience():
        return [(r["email"], r["status"], r["note"]) for r in alerts_rows(db_path) if r["kind"] == "outside_audience"]

    assert "findings for IT are waiting" in send(on_without_digest).output
    assert outside_audience() == [("zoe.muller@students.district.org", "pending", None)]
    send(off)
    assert outside_audience() == [("zoe.muller@students.district.org", "suppressed", "not sent: [alerts] alert_outside_audience = false")]
    assert "zoe.muller" not in smtp_server.handler.digests[0].text
    send(on)
    assert outside_audience() == [("zoe.muller@students.district.org", "sent", None)]
    assert "zoe.muller@students.district.org (student)" in smtp_server.handler.digests[1].text
    assert "used outside its audience" in smtp_server.handler.digests[1].text


def test_the_plugin_is_loaded_with_its_hooks_and_tables_are_idempotent(runner, db_path):
    plugins = {p["name"]: p for p in json.loads(runner.invoke(cli, ["plugins"]).output)}
    assert plugins["plugins.alerts"]["hooks"] == ["catalog_changed", "register_commands", "register_config_sections", "scan_finished"]
    db = store.open_db(db_path)
    alerts_queue.ensure_alerts_tables(db)
    alerts_queue.ensure_alerts_tables(db)
    assert [m.name for m in alerts_queue.migrations.applied(db)] == ["0001_alerts", "0002_alert_rows", "0003_compact_rows"]
    assert {"alert_rows", "alert_runs"} <= set(db.table_names()) and "alerts" in db.view_names()
    result = runner.invoke(cli, ["--db", db_path, "alerts", "list"])
    assert result.exit_code == 0 and result.output.strip() == "No alerts."
    for args in (["--help"], ["send", "--help"], ["list", "--help"], ["retry", "--help"]):
        help_result = runner.invoke(cli, ["alerts", *args])
        assert help_result.exit_code == 0 and "Usage:" in help_result.output
    assert "--dry-run" in runner.invoke(cli, ["alerts", "send", "--help"]).output
    missing = db_path + ".missing"
    for args in (["list"], ["send", "--dry-run"], ["retry", "1"]):
        result = runner.invoke(cli, ["--db", missing, "alerts", *args])
        assert result.exit_code == 2 and "no inventory here; run `app-inventory scan` first" in result.output
    assert not Path(missing).exists()


def test_list_shows_pending_sent_failed_and_json(fake_tenant, tmp_path, db_path):
    alerts_district(fake_tenant)
    scan(db_path, write_config(tmp_path, 25))
    result = CliRunner().invoke(cli, ["--db", db_path, "alerts", "list"])
    assert result.output.splitlines()[0] == "5 pending"
    assert result.output.splitlines()[1].split() == ["ID", "STATUS", "KIND", "APP", "ACCOUNT", "TO", "DETECTED", "SENT", "TRIES", "NOTE"]
    lines = CliRunner().invoke(cli, ["--db", db_path, "alerts", "list", "--json"]).output.splitlines()
    first = json.loads(lines[0])
    assert first["status"] == "pending" and first["app"] == "Kahoot!" and first["email"] == "mr.okafor@district.org"
    assert CliRunner().invoke(cli, ["--db", db_path, "alerts", "list", "--status", "sent"]).output.strip() == "No alerts."


def test_an_alerts_table_in_the_released_shape_is_converted_in_place(fake_tenant, tmp_path, db_path):
    """Migration 0002 on an inventory whose alerts are stored as released (0001: ids, grant ids
    and timestamps as text in every row): each row reads back the same through the `alerts`
    view, in the same file. A decision about an app the inventory never saw keeps the app's
    id; a row of an account the inventory forgot is dropped."""
    import shutil

    alerts_district(fake_tenant)
    fake_tenant.apps.append(App(id="a1", name="Roster Sync"))
    fake_tenant.grants += [  # a tenant-wide consent, and one finding made of two grants (two resources)
        Grant(user_id=None, app_id="a1", scopes=["User.Read"], resource="Microsoft Graph"),
        Grant(user_id="2", app_id="a1", scopes=["Files.Read"], resource="SharePoint"),
        Grant(user_id="2", app_id="a1", scopes=["User.Read"], resource="Microsoft Graph"),
    ]
    set_catalog(db_path)
    scan(db_path, write_config(tmp_path, 25))
    reference = store.open_db(db_path)
    alerts_queue.ensure_alerts_tables(reference)
    with reference.atomic():
        reference.execute("""update alert_rows set status = 1, sent_at = '2026-11-03T09:00:00Z', attempts = 1,
                               message_id = '<m1@district.org>', recipient = 'mr.okafor@district.org'
                             where id = (select min(id) from alert_rows)""")
    expected = list(reference.query("select * from alerts order by id"))
    assert {row["user_id"] is None for row in expected} == {True, False} and {row["status"] for row in expected} == {"pending", "sent"}
    assert any(row["grant_id"].endswith(":Microsoft Graph") for row in expected if row["user_id"] == "fake:2")
    reference.execute("pragma wal_checkpoint(truncate)")
    reference.close()

    path = str(tmp_path / "released.db")
    shutil.copy(db_path, path)
    old = Database(path)
    old.execute("drop view alerts")
    old.execute("drop table alert_rows")
    old.execute("drop table alert_runs")
    old.execute("delete from _sqlite_migrations where migration_set = 'alerts_email'")
    alerts_queue.migrations.apply(old, stop_before="0002_alert_rows")
    decision = {**expected[0], "id": len(expected) + 1, "app_id": "google:never-seen.apps.googleusercontent.com",
                "kind": "decision", "status": "pending", "grant_id": None, "details": '{"consent_request_id": 7}',
                "sent_at": None, "attempts": 0, "message_id": None, "recipient": None}
    forgotten = {**decision, "id": len(expected) + 2, "user_id": "fake:gone", "kind": "unapproved", "app_id": expected[0]["app_id"]}
    old["alerts"].insert_all([*expected, decision, forgotten])
    old.close()

    upgraded = store.open_db(path)
    alerts_queue.ensure_alerts_tables(upgraded)
    assert "0002_alert_rows" in {m.name for m in alerts_queue.migrations.applied(upgraded)}
    assert "alerts" in upgraded.view_names() and "alert_rows" in upgraded.table_names()
    assert list(upgraded.query("select * from alerts order by id")) == [*expected, decision]
    # Stored by keys: no text id, grant id or timestamp text left in the rows.
    assert upgraded.execute("select count(*) from alert_rows where app_ref is not null").fetchone()[0] == 1
    assert upgraded.execute("select typeof(first_detected), typeof(user_key) from alert_rows limit 1").fetchone() == ("integer", "integer")


def test_retention_forgets_finished_alerts_not_seen_for_history_days_and_those_of_forgotten_accounts(fake_tenant, tmp_path, db_path):
    alerts_district(fake_tenant)
    set_catalog(db_path)
    scan(db_path, write_config(tmp_path, 25))
    db = store.open_db(db_path)
    alerts_queue.ensure_alerts_tables(db)
    now = "2027-06-01T08:00:00Z"
    ids = {row["email"]: row["id"] for row in db.query(
        "select min(alerts.id) as id, users.email from alerts join users on users.id = alerts.user_id group by users.email")}
    assert len(ids) == 4
    day = 24 * 3600
    with db.atomic():
        for email, status, days_ago in (("ms.rivera@district.org", "sent", 401), ("mr.okafor@district.org", "pending", 401),
                                         ("jlee@students.district.org", "sent", 10), ("zoe.muller@students.district.org", "failed", 0)):
            db.execute("update alert_rows set status = ?, last_detected = ? where id = ?",
                       [alerts_queue.STATUS_CODES[status], alerts_queue.unix(now) - days_ago * day, ids[email]])
        db.execute("delete from users where email = 'zoe.muller@students.district.org'")  # [retention] forgot the account
    before = db["alert_rows"].count
    assert alerts_queue.purge_alerts(db, now, 400) == 2
    left = {row[0] for row in db.execute("select id from alert_rows")}
    assert ids["ms.rivera@district.org"] not in left and ids["zoe.muller@students.district.org"] not in left
    assert {ids["mr.okafor@district.org"], ids["jlee@students.district.org"]} <= left  # pending, or seen lately
    assert len(left) == before - 2
