"""The demo, end to end at small size: emulators on loopback, the real providers, the catalog,
matching and the summary; then Datasette over the result."""

import re
import json
import sqlite3

import pytest

from emulators.google.chrome import REQUESTED_EXTENSIONS
from scanner.cli import cli
from scanner.demo.tenants import demo_district
from scanner.demo.run import is_demo_inventory
from scanner.serve import build_datasette


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    from click.testing import CliRunner

    db_path = str(tmp_path_factory.mktemp("demo") / "demo.db")
    result = CliRunner().invoke(cli, ["--db", db_path, "demo", "--users", "300", "--no-serve"])
    assert result.exit_code == 0, result.output
    return db_path, result.output


def test_the_demo_scans_both_providers_for_real(demo_db):
    db_path, output = demo_db
    db = sqlite3.connect(db_path)
    scans = dict(db.execute("select provider, status from scans"))
    assert scans == {"google": "succeeded", "microsoft": "succeeded", "chrome": "succeeded"}
    # Every account of the district is in both directories (plus Google's super admin).
    district = demo_district(300)
    assert db.execute("select count(*) from users where provider = 'microsoft'").fetchone()[0] == len(district.people)
    assert db.execute("select count(*) from users where provider = 'google'").fetchone()[0] == len(district.people) + 1
    expected = {(g.provider, g.app.name) for g in district.grants}
    found = set(db.execute("select grants.provider, apps.name from grants join apps on apps.id = grants.app_id "
                           "where user_id is not null and grants.provider != 'chrome'"))
    assert found == expected
    # The browsers' extensions: approved, pending, denied, unreviewed, sideloaded, the district's own, Google's own.
    extensions = {name: (status, ownership, json.loads(details)["installType"]) for name, status, ownership, details in
                  db.execute("select name, status, ownership, details from apps where provider = 'chrome'")}
    assert extensions["Read&Write for Google Chrome"][0] == "approved" and extensions["uBlock Origin"][0] == "pending"
    assert extensions["Honey: Automatic Coupons & Rewards"][0] == "denied"
    assert extensions["Grammarly: AI Writing and Grammar Checker"][0] == "unreviewed"
    assert extensions["GoGuardian"][1:] == ("internal", "ADMIN") and extensions["Google Docs Offline"][1] == "first_party"
    assert extensions["Quick Screen Recorder (unpacked)"][2] == "SIDELOAD"
    assert "Scanned and matched in" in output and "alerts queued" in output


def test_the_demo_shows_what_a_district_needs_to_see(demo_db):
    db_path, _ = demo_db
    db = sqlite3.connect(db_path)
    statuses = {row[0] for row in db.execute("select distinct status from apps")}
    assert statuses == {"approved", "conditional", "denied", "pending", "unreviewed"}
    assert db.execute("select count(*) from scope_creep").fetchone()[0] > 0
    tenant_wide = {row[0] for row in db.execute("select apps.name from grants join apps on apps.id = grants.app_id where grants.tenant_wide = 1")}
    assert {"Clever", "Securly", "GoGuardian Admin", "Springfield SIS Sync"} <= tenant_wide
    ownership = dict(db.execute("select name, ownership from apps where provider = 'microsoft'"))
    assert ownership["Graph Explorer"] == "first_party" and ownership["Springfield SIS Sync"] == "internal"
    assert dict(db.execute("select name, ownership from apps where provider = 'google'"))["Springfield Library Portal"] == "internal"
    risky = {row[0] for row in db.execute("select name from apps where status = 'unreviewed' and risk = 'high'")}
    assert {"PDF Merge Pro", "Inbox AI Assistant"} & risky
    assert db.execute("select count(*) from dpa_expiring where days_left < 0").fetchone()[0] >= 1
    assert db.execute("select count(*) from apps where last_used is not null").fetchone()[0] > 10
    assert db.execute("select count(*) from alerts where status = 'pending'").fetchone()[0] > 0


def test_the_demo_shows_a_realistic_consent_posture_and_requests(demo_db):
    db_path, output = demo_db
    db = sqlite3.connect(db_path)
    results = {(provider, check, scope): result for provider, check, scope, result in
               db.execute("select provider, check_id, scope, result from posture_current")}
    # Google: unconfigured apps open to staff at the top, blocked in /Students and for under-18s.
    assert results[("google", "GWS.COMMONCONTROLS.10.4", "/")] == "fail"
    assert results[("google", "GWS.COMMONCONTROLS.10.4", "/Students")] == "pass"
    assert results[("google", "APPINV.GWS.UNDER18", "/")] == "pass"
    # Microsoft: users may consent to low-impact permissions (a pass), anyone may register apps.
    assert results[("microsoft", "MS.AAD.5.2", "")] == "pass" and results[("microsoft", "MS.AAD.5.1", "")] == "fail"
    assert "unknown" not in results.values()  # the demo delegates and grants everything the checks need
    district = demo_district(300)
    asked = {ask.app.name for ask in district.consent_requests} | {name for _, name, _ in REQUESTED_EXTENSIONS}
    summary = dict(db.execute("select app, status from consent_request_summary"))
    assert set(summary) <= asked and summary
    assert summary.get("ChatGPT", "denied") == "denied" and summary.get("MagicSchool AI", "pending") == "pending"
    assert "consent settings fail their check" in output


async def test_the_demo_inventory_is_served_with_its_public_page(demo_db):
    from scanner.config import load_config

    db_path, _ = demo_db
    datasette = build_datasette(db_path, load_config(None), public=True)
    page = await datasette.client.get("/transparency")
    assert page.status_code == 200 and "Kahoot!" in page.text
    assert not re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", page.text), "an email address is on the public page"


def test_the_demo_never_overwrites_a_real_inventory(runner, tmp_path, demo_db):
    real = tmp_path / "inventory.db"
    db = sqlite3.connect(real)
    db.execute("create table users (email text)")
    db.execute("insert into users values ('principal@realdistrict.org')")
    db.commit()
    db.close()
    result = runner.invoke(cli, ["--db", str(real), "demo", "--users", "20", "--no-serve"])
    assert result.exit_code == 2 and "was not made by the demo" in result.output
    assert sqlite3.connect(real).execute("select email from users").fetchall() == [("principal@realdistrict.org",)]
    assert is_demo_inventory(demo_db[0]) is True


def test_the_demo_refuses_an_inventory_with_only_a_catalog(runner, tmp_path):
    """An inventory that holds no account yet (only the district's catalog) is still not the demo's."""
    real = tmp_path / "inventory.db"
    mine = tmp_path / "mine.csv"
    mine.write_text("name,status\nKahoot!,Approved\nQuizlet,Denied\n", encoding="utf-8")
    assert runner.invoke(cli, ["--db", str(real), "catalog", "import", str(mine)]).exit_code == 0
    before = real.read_bytes()
    result = runner.invoke(cli, ["--db", str(real), "demo", "--users", "20", "--no-serve"])
    assert result.exit_code == 2 and "was not made by the demo" in result.output
    assert real.read_bytes() == before
    assert sorted(sqlite3.connect(real).execute("select name from catalog")) == [("Kahoot!",), ("Quizlet",)]
    assert is_demo_inventory(real) is False


def test_the_demo_runs_again_over_its_own_inventory(runner, tmp_path):
    db = tmp_path / "demo.db"
    for _ in range(2):
        result = runner.invoke(cli, ["--db", str(db), "demo", "--users", "10", "--no-serve"])
        assert result.exit_code == 0, result.output
    assert is_demo_inventory(db) is True
    assert sqlite3.connect(db).execute("select count(*) from scans").fetchone()[0] == 3  # google, microsoft, chrome


def test_the_demo_password_hash_is_the_demo_password():
    from plugins.signin.passwords import verify_password
    from scanner.demo.run import DEMO_IT_PASSWORD, DEMO_IT_PASSWORD_HASH

    assert verify_password(DEMO_IT_PASSWORD, DEMO_IT_PASSWORD_HASH)


def test_the_demo_finds_each_person_once_across_both_directories(demo_db):
    """Every person of the district has a Google and a Microsoft account, spelled the same, in
    another case, or through an alias on either side: each is one person with both accounts."""
    db_path, _ = demo_db
    db = sqlite3.connect(db_path)
    district = demo_district(300)
    # (A browser profile's account is the person's too: chrome never makes a person of its own.)
    accounts = dict(db.execute("select replace(providers, 'chrome,', ''), count(*) from people group by 1"))
    assert accounts == {"google,microsoft": len(district.people), "google": 1}  # and Google's super admin
    emails = {row[0] for row in db.execute("select email from users where provider = 'microsoft'")}
    spelled = {
        "another case": [p for p in district.people if p.microsoft_email and p.microsoft_email.lower() == p.email],
        "alias at Microsoft": [p for p in district.people if p.microsoft_aliases],
        "alias at Google": [p for p in district.people if p.google_aliases],
    }
    assert all(spelled.values()) and all(p.microsoft_address in emails for group in spelled.values() for p in group)
    # Products count people: Kahoot! on Google and on Microsoft is one product.
    kahoot = db.execute("select people, students + staff, providers from products where id = 'catalog:kahoot'").fetchone()
    using = {g.person for g in district.grants if g.app.name == "Kahoot!"}
    accounts = {(g.person, g.provider) for g in district.grants if g.app.name == "Kahoot!"}
    assert kahoot == (len(using), len(using), "google,microsoft") and len(accounts) > len(using)


def test_alerts_from_the_demo_reach_each_staff_member_once(demo_db, smtp_server, tmp_path):
    """The demo's alerts through a real SMTP server: each staff member emailed once, at their
    primary address, with their findings from both providers; no student; nothing resent."""
    import shutil

    from click.testing import CliRunner

    from tests.alerts_fixtures import write_config

    db_path = str(tmp_path / "demo.db")
    shutil.copy(demo_db[0], db_path)
    config = write_config(tmp_path, smtp_server.port)
    for _ in range(2):
        result = CliRunner().invoke(cli, ["--db", db_path, "--config", str(config), "alerts", "send"])
        assert result.exit_code == 0, result.output
    people = [message.rcpt_tos[0].lower() for message in smtp_server.handler.people]
    assert people and len(people) == len(set(people))  # none twice, whatever the case
    db = sqlite3.connect(db_path)
    staff = {row[0].lower() for row in db.execute("select email from people where role = 'staff'")}
    assert set(people) <= staff  # primary addresses of staff only: no student, no other spelling
    expected = {row[0].lower() for row in db.execute(
        """select distinct people.email from alerts join users on users.id = alerts.user_id
           join people on people.id = users.person_id
           where alerts.recipient is not null and alerts.recipient != 'it-digest'""")}
    assert set(people) == expected
    both = [m for m in smtp_server.handler.people if "(Google sign-in)" in m.text and "(Microsoft sign-in)" in m.text]
    assert both, "nobody got their Google and Microsoft findings in one email"
    assert len(smtp_server.handler.digests) == 2
