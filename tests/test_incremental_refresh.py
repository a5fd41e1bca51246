"""After an incremental scan the store refreshes only what the scan touched (scanner.store.incremental):
per-app counts, unapproved_usage and the alert queue must be exactly what recomputing them
from scratch gives."""

from __future__ import annotations

import csv
import io
import time

from click.testing import CliRunner

from emulators.google.tenant import DirectoryUser, OAuthClient, build_tenant
from plugins.alerts import queue as alerts_queue
from scanner import store
from scanner.cli import cli
from scanner.config import load_config
from scanner.shipped import example_catalog
from scanner.timestamps import iso, utc_now
from tests.google_fixtures import expected_grants, inventory_grants

PROFILE = ["openid", "https://www.googleapis.com/auth/userinfo.email"]


def import_example_catalog(place) -> None:
    """The example catalog's decisions, with the ids of the emulated apps of the same name (as the benchmark)."""
    ids = {client.display_text: client.client_id for client in place.tenant.clients_list}
    rows = list(csv.DictReader(io.StringIO(example_catalog().read_text(encoding="utf-8"))))
    for row in rows:
        row["google_client_ids"], row["microsoft_app_ids"] = ids.get(row["name"], ""), ""
    path = place.directory / "catalog.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = CliRunner().invoke(cli, ["--db", place.db_path, "--config", str(place.config_path), "catalog", "import", str(path)])
    assert result.exit_code == 0, result.output


def derived(db) -> dict[str, list]:
    """What the refresh keeps: per-app counts, unapproved_usage, and the alert rows (but when each was last seen)."""
    return {
        "apps": db.execute("select id, users, students, staff, tenant_wide, risk, last_used, status, product_id "
                           "from apps order by id").fetchall(),
        "unapproved_usage": db.execute("select * from unapproved_usage order by grant_id").fetchall(),
        "alerts": db.execute("select user_id, app_id, kind, status, grant_id, details, first_detected, suppressed_at, note "
                             "from alerts order by app_id, user_id, kind").fetchall(),
    }


def recomputed(place) -> dict[str, list]:
    """The same tables recomputed from scratch (rolled back afterwards)."""
    db = store.open_db(place.db_path)
    settings = load_config(place.config_path).section("alerts")
    db.execute("begin")
    try:
        store.refresh_derived(db)
        alerts_queue.sync_configured(db, iso(utc_now()), settings)
        return derived(db)
    finally:
        db.conn.rollback()


def test_an_incremental_scan_leaves_counts_unapproved_usage_and_alerts_as_a_recompute_would(district):
    tenant = build_tenant(users=600, seed=41)
    place = district(tenant)
    import_example_catalog(place)
    first = place.scan()
    assert first["mode"] == "full"
    before = derived(store.open_db(place.db_path))
    assert before == recomputed(place)

    holds = {user_id: {token.client.display_text for token in tenant.tokens[user_id]} for user_id in tenant.users}
    staff_only = {"Zoom", "Padlet", "Remind", "Grammarly"}
    # A staff account holding a staff-only app moves to a student unit: a student now (counts, outside audience).
    mover = next(u for u in tenant.users.values() if u.org_unit_path.startswith("/Staff") and holds[u.id] & staff_only
                 and "students" not in u.primary_email)
    suspended = next(u for u in tenant.users.values() if not u.suspended and len(holds[u.id]) > 2 and u is not mover)
    renamed = next(u for u in tenant.users.values() if holds[u.id] and u not in (mover, suspended))
    leaver = next(u for u in tenant.users.values() if holds[u.id] and u not in (mover, suspended, renamed))
    unreviewed = OAuthClient("555555555555-brandnew.apps.googleusercontent.com", "Brand New Quiz").to_json()
    place.emulator.mutate([
        {"op": "churn", "fraction": 0.05, "seed": 3},
        {"op": "add_user", "user": DirectoryUser("100000000000000000999", "new.student@students.district.example",
                                                 "New", "Student", "/Students/Central High").to_json()},
        {"op": "authorize", "user": "100000000000000000999", "client": unreviewed, "scopes": PROFILE},
        {"op": "authorize", "user": mover.id, "client": unreviewed, "scopes": PROFILE},
        {"op": "delete_user", "user": leaver.id},
    ])
    with tenant.lock:  # directory changes no token event tells of
        mover.org_unit_path = "/Students/Central High"
        suspended.suspended = True
        renamed.given_name, renamed.org_unit_path = "Renamed", renamed.org_unit_path + "/Annex"

    while iso(utc_now()) <= first["finished_at"]:  # a later second: last_seen tells the two scans apart
        time.sleep(0.05)
    scan = place.scan()
    assert scan["status"] == "succeeded", scan["error"]
    assert scan["mode"] == "incremental"
    assert inventory_grants(place.db_path) == expected_grants(tenant)
    after = derived(store.open_db(place.db_path))
    # The churn changed every table, so a refresh that skipped something would show here.
    for table in ("apps", "unapproved_usage", "alerts"):
        assert after[table] != before[table], table
    assert any(row[2] == "outside_audience" and row[0] == f"google:{mover.id}" for row in after["alerts"])
    assert after == recomputed(place)
    # Accounts listed unchanged were not written again (UsersSeen), but they were seen.
    db = store.open_db(place.db_path)
    assert db.execute("select count(*) from users where last_seen = ?", [scan["finished_at"]]).fetchone()[0] == len(tenant.users)
    assert db.execute("select name, org_unit from users where id = ?", [f"google:{renamed.id}"]).fetchone() == \
        (f"Renamed {renamed.family_name}", renamed.org_unit_path)

    # A second incremental scan with nothing new keeps them so, and writes no account again: the
    # digest of what users.list said is the same (a name changed behind its back stays).
    with db.conn:
        db.execute("update users set name = 'Written by hand' where id = ?", [f"google:{leaver.id}"])
        db.execute("update users set name = 'Written by hand' where id = ?", [f"google:{suspended.id}"])
    assert place.scan()["mode"] == "incremental"
    assert derived(store.open_db(place.db_path)) == after
    assert db.execute("select count(*) from users where name = 'Written by hand'").fetchone()[0] == 2
