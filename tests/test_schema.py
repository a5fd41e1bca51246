"""Migrations are frozen, and a database made by the first one upgrades in place."""

import dataclasses
import datetime as dt
import hashlib
import json
import inspect

from sqlite_utils import Database, Migrations

from scanner import schema, store

# Each applied migration's source, hashed when it was frozen. A migration that a district
# has already applied must never change: add the next number instead. If this fails,
# undo the edit to the old migration (do not update the hash).
FROZEN = {
    "0001_initial": "8d5046db7260",
    "0002_users_is_admin": "d836948bdfd6",
    "0003_unapproved_usage_table": "62a571308d71",
    "0004_people_and_products": "7e456109e69e",
    "0005_posture": "7e853ddff74b",
    "0006_chrome": "058b85d47dcb",
    "0007_revoke": "469437a0acd1",
    "0008_review": "bb1582361ef8",
    "0009_incremental": "bd4c8fe7b108",
    "0010_integer_keys": "d46225ed0be8",
    "0011_change_rows": "9b3bff5a6c65",
    "0012_compact_people": "98a86c64f5ca",
    "0013_compact_posture": "23f86d0559d4",
    "0014_compact_change_rows": "fd486b92a1be",
}


def source_hash(function) -> str:
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:12]


def test_applied_migrations_are_unchanged():
    migrations = {m.name: m.fn for m in schema.migrations._migrations}
    assert list(migrations)[: len(FROZEN)] == list(FROZEN)
    assert {name: source_hash(migrations[name]) for name in FROZEN} == FROZEN


def test_a_database_made_by_the_first_migration_upgrades_in_place(tmp_path):
    path = str(tmp_path / "old.db")
    old = Database(path)
    schema.migrations.apply(old, stop_before="0002_users_is_admin")
    assert [m.name for m in schema.migrations.applied(old)] == ["0001_initial"]
    now = "2026-01-05T08:00:00Z"
    old["users"].insert_all([
        {"id": "google:1", "provider": "google", "email": "t@d.org", "role": "staff", "first_seen": now, "last_seen": now},
        {"id": "google:2", "provider": "google", "email": "s@students.d.org", "role": "student", "first_seen": now, "last_seen": now},
    ])
    old["catalog"].insert({"id": "wordly", "name": "Wordly", "status": "conditional", "audience": "staff",
                           "google_client_ids": '["9-w.apps.googleusercontent.com"]', "microsoft_app_ids": "[]", "approved_scopes": "[]"})
    old["apps"].insert_all([
        {"id": "google:9-w.apps.googleusercontent.com", "provider": "google", "client_id": "9-w.apps.googleusercontent.com",
         "name": "Wordly", "ownership": "third_party", "first_seen": now, "last_seen": now, "status": "conditional", "catalog_id": "wordly"},
        {"id": "google:8-q.apps.googleusercontent.com", "provider": "google", "client_id": "8-q.apps.googleusercontent.com",
         "name": "Quizzy", "ownership": "third_party", "first_seen": now, "last_seen": now, "status": "unreviewed"},
    ])
    grant = {"provider": "google", "scopes": '["openid"]', "grant_type": "delegated", "tenant_wide": 0, "risk": "low",
             "first_seen": now, "last_seen": now}
    old["grants"].insert_all([
        {**grant, "id": "g1", "user_id": "google:1", "app_id": "google:9-w.apps.googleusercontent.com"},
        {**grant, "id": "g2", "user_id": "google:2", "app_id": "google:9-w.apps.googleusercontent.com"},
        {**grant, "id": "g3", "user_id": "google:1", "app_id": "google:8-q.apps.googleusercontent.com"},
        {**grant, "id": "g4", "user_id": "google:2", "app_id": "google:8-q.apps.googleusercontent.com", "revoked_at": now},
    ])
    old.close()

    db = store.open_db(path)
    assert [m.name for m in schema.migrations.applied(db)] == list(FROZEN)
    assert "is_admin" in db["users"].columns_dict
    # Migration 0003 filled the new table from what was there: a staff-only app on a
    # student's account, an unreviewed app; not a revoked grant, not a staff member's
    # use of the conditional app.
    # (Grant ids are made from the account and the app since 0010: what scanner.store.grant_id made.)
    g2, g3 = "google:2:9-w.apps.googleusercontent.com", "google:1:8-q.apps.googleusercontent.com"
    assert sorted((r["grant_id"], r["reason"]) for r in db["unapproved_usage"].rows) == [(g3, "unreviewed"), (g2, "outside audience")]
    # And today's views read the upgraded tables.
    for view in schema.VIEWS:
        list(db.query(f"select * from {view}"))
    assert {r["grant_id"] for r in db.query("select grant_id from unapproved_grants")} == {g2, g3}
    # Migration 0004's people and products were filled on opening, not at the next scan.
    assert {(r["id"], r["email"], r["role"]) for r in db["people"].rows} == {
        ("google:1", "t@d.org", "staff"), ("google:2", "s@students.d.org", "student")}
    assert {r["person_id"] for r in db["unapproved_usage"].rows} == {"google:1", "google:2"}
    products = {r["id"]: (r["people"], r["students"], r["staff"]) for r in db["products"].rows}
    assert products == {"catalog:wordly": (2, 1, 1), "google:8-q.apps.googleusercontent.com": (1, 0, 1)}


def test_a_database_that_applied_0005_first_gets_0004_after(tmp_path):
    """Migration 0005 (posture) reached districts before 0004 (people and products): an
    inventory with 0001-0003 and 0005 applied gets 0004 when it is opened, and its people."""
    earlier = Migrations("app_inventory")  # the same set, as released before 0004
    for migration in schema.migrations._migrations:
        if migration.name != "0004_people_and_products" and migration.name <= "0005_posture":
            earlier(name=migration.name)(migration.fn)
    path = str(tmp_path / "released.db")
    old = Database(path)
    earlier.apply(old)
    now = "2026-01-05T08:00:00Z"
    old["users"].insert({"id": "google:1", "provider": "google", "email": "t@d.org", "role": "staff", "first_seen": now, "last_seen": now})
    old.close()
    db = store.open_db(path)
    assert {m.name for m in schema.migrations.applied(db)} == set(FROZEN)
    assert {"person_id", "aliases"} <= set(db["users"].columns_dict) and "posture" in db.view_names()
    assert [(r["id"], r["email"]) for r in db["people"].rows] == [("google:1", "t@d.org")]


# What readers see, compared before and after the conversion (views and derived tables).
READ_BACK = {
    "grants": "select * from grants order by id",
    "unapproved_usage": "select * from unapproved_usage order by grant_id",
    "app_summary": "select * from app_summary order by id",
    "product_summary": "select * from product_summary order by id",
    "people": "select * from people order by id",
    "changes": "select * from changes order by id",
    "posture": "select * from posture order by id",
    "posture_current": "select * from posture_current order by provider, check_id, scope",
}


def two_scans(fake_tenant, tmp_path, monkeypatch) -> tuple[Database, dict]:
    """An inventory from two real scans (a revoked grant, a tenant-wide consent of each type,
    a last use, an account no listing named; in the second scan, new grants of each kind, to a
    Microsoft resource, as an application permission, tenant-wide), and what READ_BACK reads."""
    from scanner import timestamps
    from scanner.config import load_config
    from scanner.providers import App, Grant, LastUsed, PostureFinding, User
    from scanner.scan import run_scans
    from tests.conftest import district_tenant

    moments = iter(["2026-11-02T08:00:00+00:00", "2026-11-09T08:00:00+00:00"])
    now = {}
    monkeypatch.setattr(timestamps, "clock", lambda: now["at"])
    district_tenant(fake_tenant)
    fake_tenant.apps.append(App(id="a1", name="Roster Sync"))
    fake_tenant.grants += [
        Grant(user_id=None, app_id="a1", scopes=["User.Read"], resource="Microsoft Graph"),
        Grant(user_id=None, app_id="a1", scopes=["User.Read.All"], resource="Microsoft Graph", grant_type="application"),
        Grant(user_id="9", app_id="a1", scopes=["User.Read"]),  # an account the listing never named
    ]
    fake_tenant.last_used = [LastUsed(app_id="111-kahoot.apps.googleusercontent.com", user_id="3", at="2026-10-30T10:00:00Z")]
    # A person with two accounts (an alias of one is the other's address).
    fake_tenant.users.append(User(id="5", email="ana.rivera@district.org", name="Ana Rivera", role="staff",
                                  aliases=["Ms.Rivera@district.org"]))
    # Posture findings: one check that failed, then passed; one of an organizational unit, unknown.
    fake_tenant.posture = [
        PostureFinding(check_id="GWS.COMMONCONTROLS.10.3", title="Internal apps are not trusted automatically", expected="off",
                       actual="on", result="fail", fix="Admin console > API controls"),
        PostureFinding(check_id="GWS.CLASSROOM.2.1", title="Students join classes of the district only", expected="district",
                       actual="", result="unknown", fix="Admin console > Classroom", scope_kind="org_unit", scope="/Students",
                       reason="the scope is missing", requirement="SHOULD"),
    ]
    reference_path = str(tmp_path / "reference.db")
    for _ in range(2):
        now["at"] = dt.datetime.fromisoformat(next(moments))
        run_scans(reference_path, load_config(None), show_progress=False)
        fake_tenant.posture[0] = dataclasses.replace(fake_tenant.posture[0], actual="off", result="pass")
        fake_tenant.grants = fake_tenant.grants[1:]  # the next scan finds the first grant revoked
        fake_tenant.apps.append(App(id="a2", name="Gradebook Sync"))
        fake_tenant.grants += [
            Grant(user_id="1", app_id="a2", scopes=["Files.Read"], resource="SharePoint"),
            Grant(user_id=None, app_id="a2", scopes=["Sites.Read.All"], resource="SharePoint", grant_type="application"),
        ]
    reference = store.open_db(reference_path)
    expected = {name: list(reference.query(sql)) for name, sql in READ_BACK.items()}
    assert any(row["revoked_at"] for row in expected["grants"]) and any(row["tenant_wide"] for row in expected["grants"])
    assert expected["unapproved_usage"] and any(row["last_used"] for row in expected["grants"])
    assert [row["previous_result"] for row in expected["posture"]] == [None, None, "fail", "unknown"]
    return reference, expected


# Tables whose earlier columns the reference no longer stores, and what reads them as they were.
AS_RELEASED = {
    "unapproved": f"({schema.UNAPPROVED_KEYS})",
    "change_rows": f"""(select id, scan_id, {schema.change_kind_word('kind')} as kind, app_key, user_key, resource, application,
                       scope_set, detected_at, revoked_by_plan from change_rows)""",
}


def released(reference: Database, path: str, stop_before: str) -> Database:
    """An inventory in the shape migrations before `stop_before` made, its tables filled with
    what the reference's tables and views of the same names read."""
    old = Database(path)
    schema.migrations.apply(old, stop_before=stop_before)
    for table in old.table_names():
        if table != "_sqlite_migrations":
            columns = list(old[table].columns_dict)
            source = AS_RELEASED.get(table, f"[{table}]")
            old[table].insert_all(dict(zip(columns, row))
                                  for row in reference.execute(f"select {', '.join(columns)} from {source}"))
    return old


def test_an_inventory_made_before_integer_keys_is_converted_in_place(fake_tenant, tmp_path, monkeypatch):
    """Migration 0010 on an inventory in the shape 0001-0009 made: grants, accounts, apps and
    unapproved_usage as they were stored read back the same through the views, in the same file."""
    reference, expected = two_scans(fake_tenant, tmp_path, monkeypatch)
    path = str(tmp_path / "released.db")
    old = released(reference, path, "0010_integer_keys")
    assert old["grants"].count == len(expected["grants"])
    old.execute("delete from users where id = 'fake:9'")  # before 0010 a grant's account needed no row
    old.close()

    upgraded = store.open_db(path)
    assert "0010_integer_keys" in {m.name for m in schema.migrations.applied(upgraded)}
    assert {"grants", "unapproved_usage"} <= set(upgraded.view_names())
    assert {"grant_rows", "scope_sets", "unapproved"} <= set(upgraded.table_names())
    assert {name: list(upgraded.query(sql)) for name, sql in READ_BACK.items()} == expected
    # Grants name their account and app by key, and the account no listing named kept its grant.
    assert upgraded.execute("select count(*) from grant_rows where user_key != 0 and user_key not in "
                            "(select key from users)").fetchone()[0] == 0
    assert any(row["user_id"] == "fake:9" for row in upgraded.query("select user_id from grants"))


def test_change_records_made_before_0011_are_converted_in_place(fake_tenant, tmp_path, monkeypatch):
    """Migration 0011 on an inventory in the shape 0001-0010 made: every change record (a new
    app, new grants to a resource, as an application permission and tenant-wide, a revoked
    grant) reads back the same through the changes view, its grant id made again from keys."""
    reference, expected = two_scans(fake_tenant, tmp_path, monkeypatch)
    changes = expected["changes"]
    assert {"new_app", "new_grant", "revoked_grant"} <= {row["kind"] for row in changes}
    assert any(row["grant_id"] and row["grant_id"].endswith(":SharePoint:application") and row["user_id"] is None for row in changes)
    path = str(tmp_path / "released.db")
    old = released(reference, path, "0011_change_rows")
    assert old["changes"].count == len(changes)
    old.close()

    upgraded = store.open_db(path)
    assert "0011_change_rows" in {m.name for m in schema.migrations.applied(upgraded)}
    assert "changes" in upgraded.view_names() and "change_rows" in upgraded.table_names()
    assert {name: list(upgraded.query(sql)) for name, sql in READ_BACK.items()} == expected
    assert upgraded.execute("select typeof(detected_at), typeof(app_key) from change_rows limit 1").fetchone() == ("integer", "integer")

def test_people_and_unapproved_rows_made_before_0012_are_converted_in_place(fake_tenant, tmp_path, monkeypatch):
    """Migration 0012 on an inventory in the shape 0001-0011 made: people (one with two
    accounts) and unapproved usage read back the same through their views, though a person's
    lists are stored only where they differ from one account's, and no unapproved row keeps
    its reason."""
    reference, expected = two_scans(fake_tenant, tmp_path, monkeypatch)
    two = [row for row in expected["people"] if row["accounts"] == 2]
    assert len(two) == 1 and len(json.loads(two[0]["addresses"])) == 2
    assert {row["reason"] for row in expected["unapproved_usage"]} >= {"unreviewed"}
    path = str(tmp_path / "released.db")
    old = released(reference, path, "0012_compact_people")
    assert old["people"].count == len(expected["people"]) and "reason" in old["unapproved"].columns_dict
    old.close()

    upgraded = store.open_db(path)
    assert "0012_compact_people" in {m.name for m in schema.migrations.applied(upgraded)}
    assert "people" in upgraded.view_names() and "reason" not in upgraded["unapproved"].columns_dict
    assert {name: list(upgraded.query(sql)) for name, sql in READ_BACK.items()} == expected
    stored = {row[0]: row[1:] for row in upgraded.execute("select id, email, name, account_ids, addresses from person_rows")}
    assert stored.pop(two[0]["id"])[2:] == (two[0]["account_ids"], two[0]["addresses"])
    assert set(stored.values()) == {(None, None, None, None)}  # one account each: all theirs
    assert not {index.name for index in upgraded["unapproved"].indexes} - {"sqlite_autoindex_unapproved_1"}
    assert not {"idx_users_provider", "idx_users_role", "idx_users_org_unit", "idx_users_person_id_id"} & {
        index.name for index in upgraded["users"].indexes}
    assert [index.columns for index in upgraded["person_rows"].indexes] == [["id"]]  # its primary key, no other


def test_posture_rows_made_before_0013_are_converted_in_place(fake_tenant, tmp_path, monkeypatch):
    """Migration 0013 on an inventory in the shape 0001-0012 made: every scan's posture rows
    read back the same through the posture view, each check's words stored once."""
    reference, expected = two_scans(fake_tenant, tmp_path, monkeypatch)
    path = str(tmp_path / "released.db")
    old = released(reference, path, "0013_compact_posture")
    assert old["posture"].count == len(expected["posture"]) == 4
    old.close()

    upgraded = store.open_db(path)
    assert "0013_compact_posture" in {m.name for m in schema.migrations.applied(upgraded)}
    assert "posture" in upgraded.view_names() and {"posture_rows", "posture_checks"} <= set(upgraded.table_names())
    assert {name: list(upgraded.query(sql)) for name, sql in READ_BACK.items()} == expected
    assert upgraded["posture_checks"].count == 2


def test_change_records_made_before_0014_keep_their_kinds_as_numbers(fake_tenant, tmp_path, monkeypatch):
    """Migration 0014 on an inventory in the shape 0001-0013 made: every change record reads
    back the same through the changes view, its kind stored as a number and indexed by scan only."""
    reference, expected = two_scans(fake_tenant, tmp_path, monkeypatch)
    kinds = {row["kind"] for row in expected["changes"]}
    assert {"new_app", "new_grant", "revoked_grant"} <= kinds
    path = str(tmp_path / "released.db")
    old = released(reference, path, "0014_compact_change_rows")
    assert {row[0] for row in old.execute("select kind from change_rows")} == kinds
    old.close()

    upgraded = store.open_db(path)
    assert "0014_compact_change_rows" in {m.name for m in schema.migrations.applied(upgraded)}
    assert {name: list(upgraded.query(sql)) for name, sql in READ_BACK.items()} == expected
    assert {row[0] for row in upgraded.execute("select kind from change_rows")} == {schema.CHANGE_KIND_CODES[k] for k in kinds}
    assert [index.columns for index in upgraded["change_rows"].indexes] == [["scan_id", "kind"]]
