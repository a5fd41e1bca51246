"""Queueing: which findings become alerts after a scan, and how rows follow the inventory."""

import json
from pathlib import Path

from click.testing import CliRunner

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

    assert CliRunner().invoke(cli, ["--db", db_path, "--config", str(config), "alerts", "send"]).exit_code == 0
    [ana] = smtp_server.handler.to("ms.rivera@district.org")
    flat = " ".join(ana.text.split())
    assert "Quizlet (Fake sign-in), by Quizlet Inc. Approved, but your account gave it more access than the district approved: - See and change only the Drive files" in flat


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
    assert [m.name for m in alerts_queue.migrations.applied(db)] == ["0001_alerts"]
    assert {"alerts", "alert_runs"} <= set(db.table_names())
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
