import json

from sqlite_utils import Database

from scanner import schema, store
from scanner.cli import cli
from scanner.config import load_config
from scanner.matching import suggest_catalog_entry
from scanner.providers import App, Grant, User
from scanner.scan import run_scans
from tests.rows import by_id

KAHOOT = "957951205531-8bf6215da170cc0a96581b2aed932d84.apps.googleusercontent.com"
PADLET = "700000000001-padlet.apps.googleusercontent.com"
GRAMMAR = "700000000002-grammar.apps.googleusercontent.com"
G = "https://www.googleapis.com/auth/"

CATALOG = f"""name,status,google_client_ids,approved_scopes,audience
Kahoot!,Approved,{KAHOOT},openid;userinfo.email,all
Padlet,Teacher use only,{PADLET},openid,staff
Grammarly,Denied,,,all
"""


def scan(db_path):
    return run_scans(db_path, load_config(None), show_progress=False)


def setup_district(fake_tenant, tmp_path, runner, db_path):
    fake_tenant.users = [
        User(id="t1", email="teacher@district.org", role="staff"),
        User(id="s1", email="kid@students.district.org", role="student"),
    ]
    fake_tenant.apps = [
        App(id=KAHOOT, name="Kahoot!"),
        App(id=PADLET, name="Padlet"),
        App(id=GRAMMAR, name="Grammarly for Chrome"),  # not listed by id: suggestion only
        App(id="999-other.apps.googleusercontent.com", name="Kahoot! Clone"),  # same-ish name, other client id
    ]
    fake_tenant.grants = [
        Grant(user_id="t1", app_id=KAHOOT, scopes=["openid", G + "userinfo.email"]),
        Grant(user_id="s1", app_id=KAHOOT, scopes=["openid", G + "userinfo.email", G + "drive", G + "gmail.readonly"]),
        Grant(user_id="t1", app_id=PADLET, scopes=["openid"]),
        Grant(user_id="s1", app_id=PADLET, scopes=["openid"]),
        Grant(user_id="s1", app_id=GRAMMAR, scopes=["openid"]),
    ]
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(CATALOG)
    assert runner.invoke(cli, ["--db", db_path, "catalog", "import", str(catalog)]).exit_code == 0
    scan(db_path)
    return store.open_db(db_path)


def test_apps_match_by_exact_client_id_only(fake_tenant, tmp_path, runner, db_path):
    db = setup_district(fake_tenant, tmp_path, runner, db_path)
    apps = {row["name"]: row for row in db["apps"].rows}
    assert (apps["Kahoot!"]["catalog_id"], apps["Kahoot!"]["status"]) == ("kahoot", "approved")
    assert (apps["Padlet"]["catalog_id"], apps["Padlet"]["status"]) == ("padlet", "conditional")
    # Similar names never approve or deny: they stay unreviewed with a suggestion.
    assert (apps["Grammarly for Chrome"]["catalog_id"], apps["Grammarly for Chrome"]["status"]) == (None, "unreviewed")
    assert (apps["Kahoot! Clone"]["status"]) == "unreviewed"
    suggestions = {row["app_id"]: row["catalog_id"] for row in db["catalog_suggestions"].rows}
    assert suggestions[apps["Grammarly for Chrome"]["id"]] == "grammarly"
    assert apps["Kahoot!"]["id"] not in suggestions


def test_scope_creep_lists_grants_beyond_approved_scopes(fake_tenant, tmp_path, runner, db_path):
    db = setup_district(fake_tenant, tmp_path, runner, db_path)
    rows = list(db.query("select * from scope_creep"))
    assert [(r["email"], json.loads(r["extra_scopes"])) for r in rows] == [
        ("kid@students.district.org", [G + "drive", G + "gmail.readonly"])
    ]


def test_unapproved_usage_includes_conditional_apps_outside_their_audience(fake_tenant, tmp_path, runner, db_path):
    db = setup_district(fake_tenant, tmp_path, runner, db_path)
    rows = {(r["app"], r["email"], r["reason"]) for r in db.query("select * from unapproved_usage")}
    assert rows == {
        ("Padlet", "kid@students.district.org", "outside audience"),
        ("Grammarly for Chrome", "kid@students.district.org", "unreviewed"),
    }


def test_catalog_import_rematches_existing_apps(fake_tenant, tmp_path, runner, db_path):
    setup_district(fake_tenant, tmp_path, runner, db_path)
    updated = tmp_path / "catalog2.csv"
    updated.write_text(CATALOG.replace("Grammarly,Denied,,", f"Grammarly,Denied,{GRAMMAR},"))
    runner.invoke(cli, ["--db", db_path, "catalog", "import", str(updated)])
    db = store.open_db(db_path)
    assert by_id(db, "apps", f"fake:{GRAMMAR}")["status"] == "denied"
    # Removing an entry (an import with --replace that does not name it) returns its apps to unreviewed.
    smaller = tmp_path / "catalog3.csv"
    smaller.write_text("\n".join(CATALOG.splitlines()[:2]) + "\n")
    runner.invoke(cli, ["--db", db_path, "catalog", "import", str(smaller)])
    db = store.open_db(db_path)
    assert by_id(db, "apps", f"fake:{PADLET}")["status"] != "unreviewed"  # without --replace, entries not named stay
    runner.invoke(cli, ["--db", db_path, "catalog", "import", "--replace", str(smaller)])
    db = store.open_db(db_path)
    assert (by_id(db, "apps", f"fake:{PADLET}")["status"], by_id(db, "apps", f"fake:{PADLET}")["catalog_id"]) == ("unreviewed", None)


def unapproved(db_path):
    return {(r["app"], r["email"], r["reason"]) for r in store.open_db(db_path).query("select * from unapproved_usage")}


def test_unapproved_usage_follows_every_catalog_import(fake_tenant, tmp_path, runner, db_path):
    setup_district(fake_tenant, tmp_path, runner, db_path)
    denied = tmp_path / "denied.csv"
    denied.write_text(CATALOG.replace("Grammarly,Denied,,", f"Grammarly,Denied,{GRAMMAR},").replace("Teacher use only", "Approved"))
    assert runner.invoke(cli, ["--db", db_path, "catalog", "import", str(denied)]).exit_code == 0
    assert unapproved(db_path) == {("Grammarly for Chrome", "kid@students.district.org", "denied")}
    only_kahoot = tmp_path / "kahoot.csv"
    only_kahoot.write_text("\n".join(CATALOG.splitlines()[:2]) + "\n")
    assert runner.invoke(cli, ["--db", db_path, "catalog", "import", "--replace", str(only_kahoot)]).exit_code == 0
    assert unapproved(db_path) == {
        ("Padlet", "teacher@district.org", "unreviewed"), ("Padlet", "kid@students.district.org", "unreviewed"),
        ("Grammarly for Chrome", "kid@students.district.org", "unreviewed"),
    }


def test_unapproved_usage_is_the_view_it_replaced_after_each_scan(fake_tenant, tmp_path, runner, db_path):
    db = setup_district(fake_tenant, tmp_path, runner, db_path)
    fake_tenant.grants = fake_tenant.grants[1:] + [Grant(user_id="t1", app_id=GRAMMAR, scopes=["openid"])]
    fake_tenant.users[1] = User(id="s1", email="kid@students.district.org", role="staff")  # now staff: Padlet is fine
    scan(db_path)
    assert unapproved(db_path) == {
        ("Grammarly for Chrome", "kid@students.district.org", "unreviewed"),
        ("Grammarly for Chrome", "teacher@district.org", "unreviewed"),
    }
    from_view = {tuple(row) for row in db.execute(f"select * from ({schema.UNAPPROVED_USAGE})")}
    assert {tuple(row) for row in db.execute("select * from unapproved_usage")} == from_view


# What unapproved_usage was before migration 0003 made it a table.
OLD_UNAPPROVED_USAGE_VIEW = """
select grants.id as grant_id, apps.id as app_id, apps.name as app, apps.provider, apps.status, apps.risk,
  case when apps.status in ('unreviewed', 'pending', 'denied') then apps.status else 'outside audience' end as reason,
  users.id as user_id, users.email, users.name as user_name, users.role, users.org_unit,
  grants.scopes, grants.first_seen, grants.last_used, catalog.alternative
from grants join apps on apps.id = grants.app_id join users on users.id = grants.user_id
  left join catalog on catalog.id = apps.catalog_id
where grants.revoked_at is null and apps.ownership = 'third_party'
  and (apps.status in ('unreviewed', 'pending', 'denied')
       or (apps.status = 'conditional' and catalog.audience = 'staff' and users.role = 'student'))
"""


def test_an_inventory_from_before_the_table_is_migrated(fake_tenant, tmp_path, runner, db_path):
    """Inventories made before migration 0003 held unapproved_usage as a view: they get the
    table, filled (and the people and products of the later migrations)."""
    db = setup_district(fake_tenant, tmp_path, runner, db_path)
    expected = unapproved(db_path)
    old_path = str(tmp_path / "old.db")
    old = Database(old_path)
    schema.migrations.apply(old, stop_before="0003_unapproved_usage_table")
    for table in ("users", "catalog", "apps", "grants"):
        columns = list(old[table].columns_dict)
        old[table].insert_all(dict(zip(columns, row)) for row in db.execute(f"select {', '.join(columns)} from {table}"))
    old.create_view("unapproved_usage", OLD_UNAPPROVED_USAGE_VIEW)
    old.close()
    upgraded = store.open_db(old_path)
    assert "unapproved" in upgraded.table_names()  # a table again (by keys since 0010, unapproved_usage its view)
    assert unapproved(old_path) == expected and expected
    assert {row["email"] for row in upgraded["people"].rows} == {"teacher@district.org", "kid@students.district.org"}


def test_dpa_expiring_view(tmp_path, runner, db_path):
    catalog = tmp_path / "c.csv"
    catalog.write_text("name,status,dpa_url,dpa_expires\nOld,Approved,https://d.org/a.pdf,2020-01-01\nNew,Approved,https://d.org/b.pdf,2099-01-01\nNone,Approved,,\n")
    runner.invoke(cli, ["--db", db_path, "catalog", "import", str(catalog)])
    rows = list(store.open_db(db_path).query("select name, days_left from dpa_expiring"))
    assert [r["name"] for r in rows] == ["Old", "New"]
    assert rows[0]["days_left"] < 0 < rows[1]["days_left"]


def test_name_suggestions():
    names = {"kahoot": "Kahoot!", "quizlet": "Quizlet", "google-meet": "Google Meet"}
    assert suggest_catalog_entry("Kahoot! for Schools", names) == ("kahoot", 1.0)
    assert suggest_catalog_entry("Quizlet Live", names) == ("quizlet", 0.9)
    assert suggest_catalog_entry("Quizlett", names)[0] == "quizlet"
    assert suggest_catalog_entry("Totally Different", names) is None
    assert suggest_catalog_entry("!!!", names) is None
