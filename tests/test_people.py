"""One person, many accounts; one product, many clients (docs/people-and-products.md).

A district on two providers whose people overlap: an alias on one side, a different case
on the other, a chain of three accounts, a person with a staff and a student account. The
scans are real (two fake providers through scanner.scan), the email goes through a real
SMTP server, the public list through Datasette's own client.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner import store
from scanner.cli import cli
from scanner.config import load_config
from scanner.providers import App, Grant, User
from scanner.scan import run_scans
from scanner.serve import build_datasette
from tests.alerts_fixtures import PROFILE, alerts_rows, write_config
from tests.conftest import FakeTenant, registered_tenant
from tests.publish_fixtures import write_config as write_serve_config
from tests.rows import by_id

ROOT = Path(__file__).parent.parent
G, M = "fakegoogle", "fakemicrosoft"  # two providers, as Google and Microsoft would be

KAHOOT_G = "111-kahoot.apps.googleusercontent.com"
KAHOOT_M = "6f1c0a8e-1b2c-4d3e-8f90-0a1b2c3d4e5f"
QUIZLET_G = "222-quizlet.apps.googleusercontent.com"
MERGE_M = "7a2b3c4d-5e6f-4a8b-9c0d-1e2f3a4b5c6d"

ZOE, ANA, OKAFOR = "zoe.park@district.org", "ana.rivera@district.org", "mr.okafor@district.org"
SAM_STUDENT = "sam.taylor@students.district.org"
DIGEST_TO = "privacy-team@district.org"

CATALOG = [
    {"id": "kahoot", "name": "Kahoot!", "status": "denied", "status_original": "Not approved", "audience": "all",
     "google_client_ids": json.dumps([KAHOOT_G]), "microsoft_app_ids": json.dumps([KAHOOT_M]), "approved_scopes": "[]"},
    {"id": "quizlet", "name": "Quizlet", "status": "pending", "status_original": "Under review", "audience": "all",
     "google_client_ids": json.dumps([QUIZLET_G]), "microsoft_app_ids": "[]", "approved_scopes": "[]"},
]


def overlapping_district(google: FakeTenant, microsoft: FakeTenant) -> None:
    """Zoe: a Google account with an alias, the same address in another case on Microsoft,
    and a second Microsoft account at the alias (three accounts, one chained through the
    alias). Ana: an alias on the Microsoft side. Jamie: a student on both. Sam: staff on
    Google, a student on Microsoft with the staff address as an alias. Mr Okafor: Microsoft only."""
    google.users = [
        User(id="g1", email=ZOE, name="Zoe Park", role="staff", aliases=["zpark@district.org"]),
        User(id="g2", email=ANA, name="Ana Rivera", role="staff"),
        User(id="g3", email="jlee@students.district.org", name="Jamie Lee", role="student"),
        User(id="g4", email="sam.taylor@district.org", name="Sam Taylor", role="staff"),
    ]
    microsoft.users = [
        User(id="m1", email="Zoe.Park@District.org", name="Zoe Park", role="staff"),
        User(id="m5", email="ZPARK@district.org", name="Zoe Park (admin)", role="staff"),
        User(id="m2", email="arivera@district.org", name="Ana Rivera", role="staff", aliases=["Ana.Rivera@District.org"]),
        User(id="m3", email="JLee@students.district.org", name="Jamie Lee", role="student"),
        User(id="m4", email=SAM_STUDENT, name="Sam Taylor", role="student", aliases=["Sam.Taylor@district.org"]),
        User(id="m6", email=OKAFOR, name="Chidi Okafor", role="staff"),
    ]
    google.apps = [App(id=KAHOOT_G, name="Kahoot!"), App(id=QUIZLET_G, name="Quizlet")]
    microsoft.apps = [App(id=KAHOOT_M, name="Kahoot!", publisher="Kahoot ASA"), App(id=MERGE_M, name="Mail Merge Pro")]
    google.grants = [
        Grant(user_id="g1", app_id=KAHOOT_G, scopes=PROFILE),
        Grant(user_id="g2", app_id=QUIZLET_G, scopes=PROFILE),
        Grant(user_id="g3", app_id=KAHOOT_G, scopes=PROFILE),
        Grant(user_id="g4", app_id=QUIZLET_G, scopes=PROFILE),
    ]
    microsoft.grants = [
        Grant(user_id="m1", app_id=KAHOOT_M, scopes=["User.Read"]),
        Grant(user_id="m5", app_id=MERGE_M, scopes=["Mail.Send"]),
        Grant(user_id="m2", app_id=MERGE_M, scopes=["Mail.Send"]),
        Grant(user_id="m3", app_id=KAHOOT_M, scopes=["User.Read"]),
        Grant(user_id="m6", app_id=KAHOOT_M, scopes=["User.Read"]),
    ]


@contextlib.contextmanager
def two_providers():
    with registered_tenant(FakeTenant(), G) as google, registered_tenant(FakeTenant(), M) as microsoft:
        yield google, microsoft


def scan(db_path: str, config=None, *, only=()) -> None:
    outcome = run_scans(db_path, load_config(config), only=only, show_progress=False)
    assert outcome.failures == []


@pytest.fixture
def district(tmp_path):
    db_path = str(tmp_path / "inventory.db")
    with two_providers() as (google, microsoft):
        overlapping_district(google, microsoft)
        store.replace_catalog(store.open_db(db_path), [dict(row) for row in CATALOG])
        scan(db_path)
        yield db_path, google, microsoft


def people_of(db) -> dict[str, set[str]]:
    """Each person's primary address -> their account ids."""
    people: dict[str, set[str]] = {}
    for row in db.query("select people.email, users.id from users join people on people.id = users.person_id"):
        people.setdefault(row["email"], set()).add(row["id"])
    return people


# -- people ---------------------------------------------------------------------------------

def test_accounts_that_share_an_address_in_any_case_are_one_person(district):
    db = store.open_db(district[0])
    assert people_of(db) == {
        ZOE: {f"{G}:g1", f"{M}:m1", f"{M}:m5"},  # same address in another case, and a chain through an alias
        ANA: {f"{G}:g2", f"{M}:m2"},  # an alias on the Microsoft side
        "jlee@students.district.org": {f"{G}:g3", f"{M}:m3"},
        SAM_STUDENT: {f"{G}:g4", f"{M}:m4"},
        OKAFOR: {f"{M}:m6"},
    }
    zoe = by_id(db, "people", f"{G}:g1")
    assert zoe["email"] == ZOE and zoe["accounts"] == 3 and zoe["providers"] == f"{G},{M}"
    assert json.loads(zoe["addresses"]) == ["zoe.park@district.org", "zpark@district.org"]


def test_a_person_with_any_student_account_is_a_student_and_their_address_is_the_students(district):
    db = store.open_db(district[0])
    roles = {row["email"]: row["role"] for row in db["people"].rows}
    assert roles == {ZOE: "staff", ANA: "staff", "jlee@students.district.org": "student", SAM_STUDENT: "student", OKAFOR: "staff"}
    # Sam's Google account (staff) sorts first by id, but the primary address is of the person's role.
    assert by_id(db, "people", f"{G}:g4")["email"] == SAM_STUDENT


def test_the_primary_address_prefers_an_active_account(district):
    db_path, google, microsoft = district
    google.users[0].suspended = True  # Zoe's Google account
    scan(db_path)
    db = store.open_db(db_path)
    assert by_id(db, "people", f"{G}:g1")["email"] == "Zoe.Park@District.org"
    assert by_id(db, "people", f"{G}:g1")["suspended"] == 0
    for user in microsoft.users[:2]:
        user.suspended = True
    scan(db_path)
    assert by_id(store.open_db(db_path), "people", f"{G}:g1")["suspended"] == 1


def test_a_later_scan_of_one_provider_merges_people_and_keeps_the_others_rows_current(district):
    db_path, google, microsoft = district
    # Mr Okafor gets a Google account, with his Microsoft address as an alias.
    google.users.append(User(id="g0", email="chidi.okafor@district.org", name="Chidi Okafor", role="staff", aliases=[OKAFOR]))
    google.grants.append(Grant(user_id="g0", app_id=QUIZLET_G, scopes=PROFILE))
    scan(db_path, only=[G])  # Microsoft is not scanned again: its rows are not rebuilt
    db = store.open_db(db_path)
    # g0 sorts before m6: the person's id (and primary address) moves to the Google account,
    # and the Microsoft rows of unapproved_usage follow.
    assert by_id(db, "users", f"{M}:m6")["person_id"] == f"{G}:g0"
    assert {r["person_id"] for r in db.query("select person_id from unapproved_usage where user_id = ?", [f"{M}:m6"])} == {f"{G}:g0"}
    assert db.execute("select count(*) from people").fetchone()[0] == 5


# -- products -------------------------------------------------------------------------------

def test_a_product_joins_both_providers_clients_of_one_catalog_entry(district):
    db = store.open_db(district[0])
    apps = {row["id"]: row["product_id"] for row in db["apps"].rows}
    assert apps[f"{G}:{KAHOOT_G}"] == apps[f"{M}:{KAHOOT_M}"] == "catalog:kahoot"
    assert apps[f"{M}:{MERGE_M}"] == f"{M}:{MERGE_M}"  # no entry names it: its own product
    products = {row["id"]: row for row in db.query("select * from product_summary")}
    kahoot = products["catalog:kahoot"]
    # Accounts: Zoe g1 + m1, Jamie g3 + m3, Okafor m6 = 5; people: 3.
    assert (kahoot["people"], kahoot["students"], kahoot["staff"]) == (3, 1, 2)
    assert (kahoot["providers"], kahoot["clients"], kahoot["status"], kahoot["name"]) == (f"{G},{M}", 2, "denied", "Kahoot!")
    assert sum(row["users"] for row in db.query("select users from app_summary where product_id = 'catalog:kahoot'")) == 5
    # Sam used Quizlet from his staff account, but he is a student: counted as one.
    quizlet = products["catalog:quizlet"]
    assert (quizlet["people"], quizlet["students"], quizlet["staff"]) == (2, 1, 1)
    # Working rows only where a person changes a count: Sam's staff account (he is a student),
    # not Ana, whose one staff account using Quizlet counts as her, staff, already.
    working = {(row["product_id"], row["email"], row["accounts"]) for row in db.query(
        "select product_id, people.email, multi_account_usage.accounts from multi_account_usage join people on people.id = person_id")}
    assert {row for row in working if row[0] == "catalog:quizlet"} == {("catalog:quizlet", SAM_STUDENT, 1)}
    assert ("catalog:kahoot", ZOE, 2) in working
    merge = products[f"{M}:{MERGE_M}"]
    assert (merge["name"], merge["status"], merge["people"], merge["staff"]) == ("Mail Merge Pro", "unreviewed", 2, 2)


def test_one_account_holding_two_clients_of_a_product_is_one_person(tmp_path):
    """A catalog entry may name two Google clients (an app and its add-on): someone who
    connected both is one person, and so is someone who connected each from another account."""
    db_path = str(tmp_path / "inventory.db")
    addon = "444-kahoot-addon.apps.googleusercontent.com"
    with two_providers() as (google, microsoft):
        overlapping_district(google, microsoft)
        google.users.append(User(id="g9", email="lone.teacher@district.org", role="staff"))  # one account only
        google.apps.append(App(id=addon, name="Kahoot! add-on"))
        google.grants += [Grant(user_id=user, app_id=addon, scopes=PROFILE) for user in ("g1", "g2", "g9")]
        google.grants.append(Grant(user_id="g9", app_id=KAHOOT_G, scopes=PROFILE))
        catalog = [{**CATALOG[0], "google_client_ids": json.dumps([KAHOOT_G, addon])}, dict(CATALOG[1])]
        store.replace_catalog(store.open_db(db_path), catalog)
        scan(db_path)
    kahoot = store.open_db(db_path)["products"].get("catalog:kahoot")
    # Zoe (g1 both clients, m1), Jamie (g3, m3), Okafor (m6), and now Ana (g2, the add-on) and
    # the teacher with one account and both clients.
    assert (kahoot["people"], kahoot["students"], kahoot["staff"], kahoot["clients"]) == (5, 1, 4, 3)


def test_another_providers_app_of_the_same_product_is_suggested_never_merged(tmp_path):
    db_path = str(tmp_path / "inventory.db")
    with two_providers() as (google, microsoft):
        overlapping_district(google, microsoft)
        # Quizlet's Microsoft app, not in the catalog; and Mail Merge Pro on Google too.
        microsoft.apps.append(App(id="9d8c7b6a-5f4e-4d3c-8b2a-190817161514", name="Quizlet", publisher="Quizlet Inc."))
        google.apps.append(App(id="333-merge.apps.googleusercontent.com", name="Mail Merge Pro for Education"))
        google.grants.append(Grant(user_id="g2", app_id="333-merge.apps.googleusercontent.com", scopes=PROFILE))
        store.replace_catalog(store.open_db(db_path), [dict(row) for row in CATALOG])
        scan(db_path)
    db = store.open_db(db_path)
    suggested = {(r["app_id"], r["catalog_id"], r["same_as_app_id"]): r["reason"] for r in db["catalog_suggestions"].rows}
    quizlet_m, merge_g, merge_m = f"{M}:9d8c7b6a-5f4e-4d3c-8b2a-190817161514", f"{G}:333-merge.apps.googleusercontent.com", f"{M}:{MERGE_M}"
    assert suggested[(quizlet_m, "quizlet", f"{G}:{QUIZLET_G}")] == f"same name as the {G} app Quizlet"
    assert suggested[(quizlet_m, "quizlet", None)] == "name resembles the catalog entry"
    assert suggested[(merge_g, None, merge_m)] == f"same name as the {M} app Mail Merge Pro"
    assert suggested[(merge_m, None, merge_g)].startswith("same name as")
    # Nothing merged: each stays unreviewed and its own product.
    for app_id in (quizlet_m, merge_g, merge_m):
        row = by_id(db, "apps", app_id)
        assert (row["catalog_id"], row["status"], row["product_id"]) == (None, "unreviewed", app_id)


# -- alerts ---------------------------------------------------------------------------------

@pytest.fixture
def mailed(district, smtp_server, tmp_path):
    db_path, google, microsoft = district
    config = write_config(tmp_path / "alerts", smtp_server.port)
    scan(db_path, config)  # queue the alerts (scan_finished)
    return db_path, config, smtp_server.handler


def send(db_path, config, expect=0):
    result = CliRunner().invoke(cli, ["--db", db_path, "--config", str(config), "alerts", "send"])
    assert result.exit_code == expect, result.output
    return result


def test_one_email_per_person_listing_the_findings_of_all_their_accounts(mailed):
    db_path, config, server = mailed
    result = send(db_path, config)
    assert "Emailed 3 people about 6 findings" in result.output
    assert sorted(r.rcpt_tos[0] for r in server.people) == [ANA, OKAFOR, ZOE]  # once each, nobody twice
    [zoe] = server.to(ZOE)
    assert zoe.message["To"] == f"Zoe Park <{ZOE}>"
    text = " ".join(zoe.text.split())
    assert "Kahoot! (Fakegoogle sign-in)" in text and "Kahoot! (Fakemicrosoft sign-in)" in text
    assert "Mail Merge Pro (Fakemicrosoft sign-in) On your account ZPARK@district.org." in text
    assert "On your account Zoe.Park@District.org" not in text  # the same address: nothing to say
    [ana] = server.to(ANA)
    assert "Quizlet" in ana.text and "Mail Merge Pro" in ana.text and "arivera@district.org" in ana.text
    # Sam has a student account: a student, not emailed (at either address); his finding goes to IT.
    assert not server.to("sam.taylor@district.org") and not server.to(SAM_STUDENT)
    digest = " ".join(server.digests[0].text.split())
    assert "sam.taylor@district.org (student)" in digest
    # The digest counts people: Zoe, Ana, Okafor, Jamie and Sam hold open findings.
    assert "held by 5 people (3 staff, 2 students)" in digest
    # Every row of a person's email carries its Message-ID; the queue stays one row per account.
    zoe_rows = [r for r in alerts_rows(db_path) if r["user_id"] in (f"{G}:g1", f"{M}:m1", f"{M}:m5")]
    assert len(zoe_rows) == 3 and {(r["status"], r["message_id"], r["recipient"]) for r in zoe_rows} == {
        ("sent", zoe.message["Message-ID"], ZOE)}
    # A second run sends nothing.
    send(db_path, config)
    assert len(server.people) == 3


def test_exactly_once_holds_for_a_person_with_several_accounts_across_a_crash(mailed):
    """The server accepts Ana's message (two accounts, two rows), then SIGKILLs the sender
    before it hears "250". Neither row is sent again; the others are sent once."""
    db_path, config, server = mailed
    server.kill_after_accepting = 1
    process = subprocess.Popen(
        [sys.executable, "-m", "scanner", "--db", db_path, "--config", str(config), "alerts", "send"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    server.kill_pid = process.pid
    process.communicate(timeout=60)
    assert process.returncode == -9
    [accepted] = server.received
    assert accepted.rcpt_tos == [ANA]
    ana_rows = [r for r in alerts_rows(db_path) if r["user_id"] in (f"{G}:g2", f"{M}:m2")]
    assert len(ana_rows) == 2 and all(r["sending_since"] for r in ana_rows)

    send(db_path, config)
    send(db_path, config)
    assert [len(server.to(address)) for address in (ANA, OKAFOR, ZOE)] == [1, 1, 1]
    ana_rows = [r for r in alerts_rows(db_path) if r["user_id"] in (f"{G}:g2", f"{M}:m2")]
    assert {(r["status"], r["unconfirmed"], r["message_id"]) for r in ana_rows} == {("failed", 1, accepted.message["Message-ID"])}


# -- the public list ------------------------------------------------------------------------

def staff_on_both(n: int, prefix: str, role: str = "staff") -> tuple[list[User], list[User]]:
    """n people with a Google and a Microsoft account at the same address (other case on Microsoft)."""
    domain = "district.org" if role == "staff" else "students.district.org"
    google = [User(id=f"{prefix}g{i}", email=f"{prefix}{i}@{domain}", role=role) for i in range(n)]
    microsoft = [User(id=f"{prefix}m{i}", email=f"{prefix.upper()}{i}@{domain.upper()}", role=role) for i in range(n)]
    return google, microsoft


async def public_rows(db_path: str, tmp_path: Path) -> dict[str, dict]:
    datasette = build_datasette(db_path, load_config(write_serve_config(tmp_path, public=True, accounts=False)))
    await datasette.invoke_startup()
    response = await datasette.client.get("/inventory/public_apps.json?_shape=array")
    assert response.status_code == 200
    return {row["id"]: row for row in response.json()}


async def test_public_counts_are_distinct_people(tmp_path):
    db_path = str(tmp_path / "inventory.db")
    with two_providers() as (google, microsoft):
        google.users, microsoft.users = staff_on_both(15, "t")
        students_g, students_m = staff_on_both(3, "s", role="student")
        google.users += students_g
        microsoft.users += students_m
        google.apps, microsoft.apps = [App(id=KAHOOT_G, name="Kahoot!")], [App(id=KAHOOT_M, name="Kahoot!")]
        google.grants = [Grant(user_id=u.id, app_id=KAHOOT_G, scopes=PROFILE) for u in google.users]
        microsoft.grants = [Grant(user_id=u.id, app_id=KAHOOT_M, scopes=["User.Read"]) for u in microsoft.users]
        store.replace_catalog(store.open_db(db_path), [dict(row) for row in CATALOG])
        scan(db_path)
    db = store.open_db(db_path)
    assert db["users"].count == 36 and db["people"].count == 18
    assert (db["products"].get("catalog:kahoot")["staff"], db["products"].get("catalog:kahoot")["students"]) == (15, 3)
    rows = await public_rows(db_path, tmp_path)
    # 15 staff members (30 staff accounts), 3 students (6 accounts).
    assert (rows["kahoot"]["staff"], rows["kahoot"]["students"]) == ("10 to 19", "<10")


PUBLISHED = re.compile(r"^(\d[\d,]*) to (\d[\d,]*)$")


def possible_counts(published) -> range:
    """The true counts a published value is consistent with."""
    if isinstance(published, int):
        return range(published, published + 1)
    if published == "<10":
        return range(0, 10)
    low, high = PUBLISHED.match(published).groups()
    return range(int(low.replace(",", "")), int(high.replace(",", "")) + 1)


def possible_differences(a, b) -> range:
    """Every value a - b can take, given only the two published values."""
    first, second = possible_counts(a), possible_counts(b)
    return range(first.start - (second.stop - 1), (first.stop - 1) - second.start + 1)


async def test_two_publications_around_a_catalog_change_cannot_reveal_a_hidden_count(tmp_path):
    """The review's case: Kahoot!'s entry names both clients; 14 staff use the Google one and
    4 others the Microsoft one (18). The district moves the Microsoft app out of the entry
    (14). Exact counts, 18 then 14, would reveal the 4 people of the hidden app."""
    db_path = str(tmp_path / "inventory.db")
    with two_providers() as (google, microsoft):
        google.users = [User(id=f"g{i}", email=f"teacher{i}@district.org", role="staff") for i in range(14)]
        microsoft.users = [User(id=f"m{i}", email=f"other{i}@district.org", role="staff") for i in range(4)]
        google.apps, microsoft.apps = [App(id=KAHOOT_G, name="Kahoot!")], [App(id=KAHOOT_M, name="Kahoot!")]
        google.grants = [Grant(user_id=u.id, app_id=KAHOOT_G, scopes=PROFILE) for u in google.users]
        microsoft.grants = [Grant(user_id=u.id, app_id=KAHOOT_M, scopes=["User.Read"]) for u in microsoft.users]
        db = store.open_db(db_path)
        store.replace_catalog(db, [dict(row) for row in CATALOG])
        scan(db_path)
        before = await public_rows(db_path, tmp_path)
        store.replace_catalog(db, [{**CATALOG[0], "microsoft_app_ids": "[]"}, dict(CATALOG[1])])
        after = await public_rows(db_path, tmp_path)
    assert db["products"].get("catalog:kahoot")["staff"] == 14  # the exact count IT sees
    assert before["kahoot"]["staff"] == after["kahoot"]["staff"] == "10 to 19"
    hidden = possible_differences(before["kahoot"]["staff"], after["kahoot"]["staff"])
    assert 4 in hidden and len([d for d in hidden if d >= 0]) >= 10
    # No two published numbers, on one page or across the two, narrow a difference to fewer
    # than ten values (the "<10" rule's own uncertainty).
    numbers = [row[role] for page in (before, after) for row in page.values() for role in ("students", "staff")]
    for a in numbers:
        for b in numbers:
            assert len(possible_differences(a, b)) >= 10, (a, b)


async def test_the_public_page_explains_the_counting_rule(district, tmp_path):
    datasette = build_datasette(district[0], load_config(write_serve_config(tmp_path, public=True, accounts=False)))
    await datasette.invoke_startup()
    page = (await datasette.client.get("/transparency")).text
    flat = " ".join(html.unescape(page).split())  # the page's words come from a catalog, quotes escaped
    assert "Each person counts once, even with both a Google and a Microsoft school account" in flat
    assert 'any other count shows as its range of ten, like "20 to 29"' in flat
    assert "counts once for each" not in flat


# -- the store's fast paths agree with the definitions ----------------------------------------

ADDRESSES = ["a@d.org", "A@D.ORG", "b@d.org", "c@d.org", "s@s.d.org", "e@d.org", "f@d.org"]
CLIENTS = {G: ["c1", "c2", "c3"], M: ["m1", "m2"]}
# X names two clients on one provider (the exact path when both are in use) and one on the other.
PROPERTY_CATALOG = [
    {**CATALOG[0], "id": "x", "google_client_ids": '["c1", "c2"]', "microsoft_app_ids": '["m1"]'},
    {**CATALOG[1], "id": "y", "google_client_ids": '["c3"]', "microsoft_app_ids": "[]"},
]
# What a catalog import may change: an app leaves its entry, one joins, an entry goes.
CATALOG_CHANGES = [
    PROPERTY_CATALOG,
    [{**PROPERTY_CATALOG[0], "microsoft_app_ids": "[]"}, PROPERTY_CATALOG[1]],
    [{**PROPERTY_CATALOG[0], "google_client_ids": '["c1", "c2", "c3"]', "microsoft_app_ids": '["m1", "m2"]'}],
    [{**PROPERTY_CATALOG[1], "microsoft_app_ids": '["m2"]'}],
]
accounts = st.lists(st.tuples(
    st.sampled_from(ADDRESSES), st.lists(st.sampled_from(ADDRESSES), max_size=2),
    st.sampled_from(["student", "staff", "unknown"]), st.booleans(),
), max_size=7)
grant_picks = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2)), max_size=14)
# Accounts that share nothing: with many of them the store reads the few shared accounts'
# grants through an index, with few it reads every grant once (two plans, one answer).
quiet_accounts = st.sampled_from([0, 40])
district_state = st.tuples(accounts, accounts, grant_picks, grant_picks, quiet_accounts)


def expected_people_and_products(users: dict[str, User], google: FakeTenant, microsoft: FakeTenant, catalog) -> tuple[dict, dict]:
    """People and product counts straight from the definitions (docs/people-and-products.md):
    `users` is every account the inventory holds (an account no longer listed stays, as it
    was last seen, until retention forgets it); the grants are the tenants' current ones."""
    parent = {account: account for account in users}

    def root(account):
        while parent[account] != account:
            account = parent[account]
        return account

    holder: dict[str, str] = {}
    for account, user in sorted(users.items()):
        for address in [user.email, *user.aliases]:
            other = holder.setdefault(address.lower(), account)
            first, second = sorted((root(account), root(other)))
            parent[second] = first
    members: dict[str, list[str]] = {}
    for account in sorted(users):
        members.setdefault(root(account), []).append(account)
    rank = {"student": 0, "staff": 1, "unknown": 2}
    people = {}
    for person, accounts_of in members.items():
        roles = {users[a].role for a in accounts_of}
        role = "student" if "student" in roles else "staff" if "staff" in roles else "unknown"
        first = min(accounts_of, key=lambda a: (int(users[a].suspended), rank[users[a].role], a))
        people[person] = (users[first].email, role, len(accounts_of))
    person_of = {account: root(account) for account in users}
    product_of = {client: f"{provider}:{client}" for provider, clients in CLIENTS.items() for client in clients}
    for entry in catalog:
        for client in json.loads(entry["google_client_ids"]) + json.loads(entry["microsoft_app_ids"]):
            product_of[client] = f"catalog:{entry['id']}"
    using: dict[str, set[str]] = {}
    for provider, tenant in ((G, google), (M, microsoft)):
        for grant in tenant.grants:
            using.setdefault(product_of[grant.app_id], set()).add(person_of[f"{provider}:{grant.user_id}"])
    products = {
        product: (len(persons), sum(people[p][1] == "student" for p in persons), sum(people[p][1] == "staff" for p in persons))
        for product, persons in using.items()
    }
    return people, products


def set_state(google: FakeTenant, microsoft: FakeTenant, state) -> None:
    google_accounts, microsoft_accounts, google_picks, microsoft_picks, quiet = state
    for tenant, provider, listed, picks in ((google, G, google_accounts, google_picks), (microsoft, M, microsoft_accounts, microsoft_picks)):
        tenant.users = [User(id=f"u{i}", email=email, aliases=list(aliases), role=role, suspended=suspended)
                        for i, (email, aliases, role, suspended) in enumerate(listed)]
        tenant.users += [User(id=f"q{i}", email=f"q{i}.{provider}@d.org", role="staff") for i in range(quiet)]
        tenant.apps = [App(id=client, name=client) for client in CLIENTS[provider]]
        tenant.grants = [Grant(user_id=f"u{i}", app_id=CLIENTS[provider][c % len(CLIENTS[provider])], scopes=["openid"])
                         for i, c in dict.fromkeys(picks) if i < len(listed)]


@settings(max_examples=40, deadline=None)
@given(first=district_state, catalog=st.sampled_from(CATALOG_CHANGES), second=district_state)
def test_people_and_product_counts_follow_their_definitions_scan_after_scan(first, catalog, second):
    """Random districts on two providers (shared addresses in any case, chains, two accounts on
    one provider, mixed roles), scanned, then a catalog import, then changed and scanned again
    (the incremental paths): `people` and `products` always equal what the definitions give."""
    with tempfile.TemporaryDirectory() as folder, two_providers() as (google, microsoft):
        db_path = str(Path(folder) / "inventory.db")
        store.replace_catalog(store.open_db(db_path), [dict(row) for row in PROPERTY_CATALOG])
        held: dict[str, User] = {}

        def check(catalog_rows):
            people, products = expected_people_and_products(held, google, microsoft, catalog_rows)
            db = store.open_db(db_path)
            assert {r["id"]: (r["email"], r["role"], r["accounts"]) for r in db["people"].rows} == people
            found = {r["id"]: (r["people"], r["students"], r["staff"]) for r in db["products"].rows if r["people"]}
            assert found == products

        set_state(google, microsoft, first)
        scan(db_path)
        held |= {f"{G}:{u.id}": u for u in google.users} | {f"{M}:{u.id}": u for u in microsoft.users}
        check(PROPERTY_CATALOG)
        store.replace_catalog(store.open_db(db_path), [dict(row) for row in catalog])
        check(catalog)
        set_state(google, microsoft, second)
        scan(db_path)
        held |= {f"{G}:{u.id}": u for u in google.users} | {f"{M}:{u.id}": u for u in microsoft.users}
        check(catalog)
