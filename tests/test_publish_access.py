"""Who sees what, through Datasette's own client: IT staff see everything, anonymous
visitors only the suppressed public list, and only when the inventory is published."""

import csv
import io
import json
import re

import pytest
import yaml

from scanner.config import load_config
from scanner.serve import PUBLIC_TABLES, build_datasette, load_metadata
from tests.publish_fixtures import (
    DISTRICT_NAME, IT_HASH_VARIABLE, IT_PASSWORD, IT_PASSWORD_HASH, IT_USERNAME, build_inventory, sign_in_cookies,
    write_config,
)

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    return build_inventory(tmp_path_factory.mktemp("publish"))


@pytest.fixture(autouse=True)
def it_account_hash(monkeypatch):
    monkeypatch.setenv(IT_HASH_VARIABLE, IT_PASSWORD_HASH)


async def make_datasette(inventory, *, public):
    config = load_config(write_config(inventory.db_path.parent, public=public))
    datasette = build_datasette(inventory.db_path, config)
    await datasette.invoke_startup()
    return datasette


@pytest.fixture
async def public_ds(inventory):
    return await make_datasette(inventory, public=True)


@pytest.fixture
async def private_ds(inventory):
    return await make_datasette(inventory, public=False)


async def it_cookies(datasette):
    """The cookies of an IT staff session, signed in through the form."""
    return await sign_in_cookies(datasette)


async def all_tables(datasette):
    db = datasette.get_database("inventory")
    rows = await db.execute("select name from sqlite_master where type in ('table', 'view') and name not like 'sqlite_%' order by name")
    return [row[0] for row in rows]


def rows_by_id(text):
    return {row["id"]: row for row in json.loads(text)}


# -- canned queries -------------------------------------------------------------------------

def canned_query_cases(inventory):
    """(query, params, check) for every canned query; check(rows) asserts what it must find."""
    staff0, staff13 = inventory.staff_emails[0], inventory.staff_emails[13]

    def apps(rows):
        return sorted({row["app"] for row in rows})

    return {
        "apps_used_by_person": [
            ({"person": staff0.upper()}, lambda rows: apps(rows) == ["Kahoot!", "Padlet", "Quizlet", "Super Mail Merge"]),
            ({"person": "(staff 13)"}, lambda rows: apps(rows) == ["MathQuest"] and rows[0]["email"] == staff13),
            ({"person": ""}, lambda rows: rows == []),
        ],
        "users_of_app": [
            ({"app": "quizlet"}, lambda rows: len(rows) == 5 and {r["role"] for r in rows} == {"student", "staff"}
             and all(r["person"] in inventory.emails and r["connected_with"] == f"{r['person']} (fake)" for r in rows)),
            ({"app": "fake:555-padlet.apps.googleusercontent.com"}, lambda rows: len(rows) == 12),
        ],
        "unapproved_apps_by_org_unit": [
            ({"org_unit": "/Students"}, lambda rows: {(r["app"], r["reason"]) for r in rows} == {
                ("ChatGPT", "denied"), ("Padlet", "outside audience"), ("Homework Helper AI", "unreviewed")}
             and sum(r["people"] for r in rows if r["app"] == "ChatGPT") == 11),
            ({"org_unit": ""}, lambda rows: "Super Mail Merge" in apps(rows) and "MathQuest" in apps(rows)),
        ],
        "high_risk_apps": [
            ({"status": ""}, lambda rows: apps(rows) == ["Homework Helper AI", "Kahoot!", "Super Mail Merge"]
             and "Read, send, and permanently delete all your email" in next(r for r in rows if r["app"] == "Super Mail Merge")["high_risk_access"]),
            ({"status": "unreviewed"}, lambda rows: apps(rows) == ["Homework Helper AI", "Super Mail Merge"]),
        ],
        "scope_creep_by_app": [
            ({"app": ""}, lambda rows: [(r["app"], r["connections"], json.loads(r["extra_scopes"])) for r in rows]
             == [("Kahoot!", 3, ["https://www.googleapis.com/auth/drive"])]),
        ],
        "agreements_expiring": [
            ({"days": "30"}, lambda rows: [r["id"] for r in rows] == ["padlet", "quizlet"] and rows[0]["days_left"] < 0),
            ({"days": ""}, lambda rows: [r["id"] for r in rows] == ["padlet", "quizlet"]),
            ({"days": "5000"}, lambda rows: len(rows) == 4),
        ],
        "what_changed": [
            ({"kind": ""}, lambda rows: {(r["kind"], r["app"]) for r in rows} == {("new_app", "Homework Helper AI"), ("new_grant", "Homework Helper AI")}
             and len([r for r in rows if r["kind"] == "new_grant"]) == 2),
            ({"kind": "new_app"}, lambda rows: len(rows) == 1 and rows[0]["email"] is None),
        ],
    }


async def test_every_canned_query_runs_and_finds_what_it_should(public_ds, inventory):
    cases = canned_query_cases(inventory)
    queries = load_metadata()["databases"]["inventory"]["queries"]
    assert set(queries) == set(cases), "every canned query needs a case here"
    cookies = await it_cookies(public_ds)
    for name, runs in cases.items():
        assert queries[name]["title"] and queries[name]["description"]
        for params, check in runs:
            response = await public_ds.client.get(f"/inventory/{name}.json", params={**params, "_shape": "array"}, cookies=cookies)
            assert response.status_code == 200, (name, params, response.text)
            rows = response.json()
            assert check(rows), (name, params, rows)
            page = await public_ds.client.get(f"/inventory/{name}", params=params, cookies=cookies)
            assert page.status_code == 200 and queries[name]["title"] in page.text


async def test_every_dashboard_chart_query_runs_for_it_staff(public_ds):
    cookies = await it_cookies(public_ds)
    dashboard = load_metadata()["plugins"]["datasette-dashboards"]["overview"]
    page = await public_ds.client.get("/-/dashboards/overview", cookies=cookies)
    assert page.status_code == 200 and "Apps by status" in page.text
    assert {slug for row in dashboard["layout"] for slug in row} == set(dashboard["charts"])
    results = {}
    for slug, chart in dashboard["charts"].items():
        if chart["library"] == "markdown":  # text (the charts as tables), no query
            continue
        response = await public_ds.client.get("/inventory.json", params={"sql": chart["query"], "_shape": "objects"}, cookies=cookies)
        assert response.status_code == 200, (slug, response.text)
        results[slug] = response.json()["rows"]
    assert results["unapproved-apps"] == [{"apps": 5}]  # mail merge, ChatGPT, Padlet (students), MathQuest, Homework AI
    assert {row["status"]: row["apps"] for row in results["apps-by-status"]} == {
        "approved": 2, "unreviewed": 2, "denied": 1, "conditional": 1, "pending": 1}
    assert [row["new_apps"] for row in results["new-apps-per-scan"]] == [6, 1]
    assert results["posture-failing"] == [{"checks": 2}] and results["consent-requests-waiting"] == [{"requests": 2}]
    assert {row["result"]: row["checks"] for row in results["posture-by-provider"]} == {"fail": 2, "pass": 2, "unknown": 1}


# -- anonymous visitors ---------------------------------------------------------------------

async def test_anonymous_visitors_are_refused_everything_but_the_public_list(public_ds, inventory):
    tables = await all_tables(public_ds)
    assert {"users", "grants", "changes", "scans", "apps", "catalog", "unapproved_usage", "scope_creep",
            "changes_since_last_scan", "app_summary", "public_apps"} <= set(tables)
    for table in tables:
        for suffix in (".json", ".csv", ""):
            response = await public_ds.client.get(f"/inventory/{table}{suffix}")
            if table in PUBLIC_TABLES:
                assert response.status_code == 200, table
            else:
                # The same 404 as a table that does not exist: nobody learns which tables exist.
                missing = await public_ds.client.get(f"/inventory/no_such_{table}{suffix}")
                assert (response.status_code, response.text) == (404, missing.text), (table, suffix)
                assert not EMAIL.search(response.text), (table, suffix)
    for name in load_metadata()["databases"]["inventory"]["queries"]:
        response = await public_ds.client.get(f"/inventory/{name}.json", params={"person": inventory.emails[0]})
        assert response.status_code == 404, name
    refused = [
        "/inventory", "/inventory.json", "/inventory.db",
        "/inventory.json?sql=select+email+from+users", "/inventory?sql=select+email+from+users",
        "/-/sql?sql=select+email+from+users",
        "/inventory/public_apps.json?_where=1=1",
        "/-/metadata.json", "/-/databases.json", "/-/dashboards", "/-/dashboards/overview",
        "/-/permissions", "/inventory/users/fake:s1",
    ]
    for path in refused:
        response = await public_ds.client.get(path)
        # Datasette's own pages ask IT to sign in (as does SQL on the public table); anything else
        # in a database is not found.
        assert response.status_code == (403 if path.startswith("/-/") or "_where" in path else 404), path
        assert not EMAIL.search(response.text), path


async def test_a_table_added_later_is_it_only_by_default(public_ds):
    db = public_ds.get_database("inventory")
    await db.execute_write("create table if not exists later_plugin_table (email text, note text)")
    await db.execute_write("insert into later_plugin_table values ('someone@district.org', 'x')")
    try:
        assert (await public_ds.client.get("/inventory/later_plugin_table.json")).status_code == 404
        assert (await public_ds.client.get("/inventory/later_plugin_table.json", cookies=await it_cookies(public_ds))).status_code == 200
    finally:
        await db.execute_write("drop table later_plugin_table")


async def test_counts_show_as_under_10_or_a_band_of_ten_in_json_csv_and_html(public_ds, inventory):
    # Exact counts: Kahoot 25 students and 12 staff, ChatGPT 11 students, Padlet 10 staff.
    expected = {
        "kahoot": ("20 to 29", "10 to 19"), "quizlet": ("<10", "<10"), "chatgpt": ("10 to 19", "<10"),
        "padlet": ("<10", "10 to 19"), "book-creator": ("<10", "<10"), "mathquest": ("<10", "<10"),
    }
    response = await public_ds.client.get("/inventory/public_apps.json?_shape=array")
    rows = rows_by_id(response.text)
    assert {key: (row["students"], row["staff"]) for key, row in rows.items()} == expected
    assert set(rows["kahoot"]) == {
        "id", "app", "vendor", "status", "status_detail", "audience", "agreement_url", "agreement_expires",
        "agreement_status", "use_instead", "students", "staff"}
    assert rows["padlet"]["agreement_status"] == "expired" and rows["chatgpt"]["use_instead"] == "Gemini for Education"

    csv_response = await public_ds.client.get("/inventory/public_apps.csv?_size=max")
    csv_rows = {row["id"]: row for row in csv.DictReader(io.StringIO(csv_response.text))}
    assert {key: (row["students"], row["staff"]) for key, row in csv_rows.items()} == {
        key: (str(students), str(staff)) for key, (students, staff) in expected.items()}

    html = (await public_ds.client.get("/inventory/public_apps")).text
    assert "&lt;10" in html
    for response_text in (response.text, csv_response.text, html):
        assert not EMAIL.search(response_text)
        assert "Ana Rivera" not in response_text  # the catalog's internal notes stay internal
        assert not any(name in response_text for name in inventory.names)


async def test_the_public_page_lists_apps_without_a_name_or_email(public_ds, inventory):
    response = await public_ds.client.get("/transparency")
    assert response.status_code == 200
    page = response.text
    assert f"<title>{DISTRICT_NAME}: apps used with school accounts</title>" in page
    for words in ("Kahoot!", "Approved with conditions", "Teacher use only", "Not approved", "Gemini for Education",
                  "Under review", "&lt;10", "https://district.example/dpa/kahoot.pdf", "Usage last checked on",
                  "public_apps.csv", "public_apps.json"):
        assert words in page, words
    assert not EMAIL.search(page)
    assert not any(name in page for name in inventory.names)
    assert "Preview for IT staff" not in page
    # The front page sends visitors to the list; everything else asks IT to sign in.
    front = await public_ds.client.get("/")
    assert front.status_code == 302 and front.headers["location"] == "/transparency"
    prompt = await public_ds.client.get("/inventory/users")
    assert prompt.status_code == 404 and "/-/login" in prompt.text and "/transparency" in prompt.text


async def test_unpublished_inventory_shows_anonymous_visitors_only_a_sign_in_prompt(private_ds):
    for path in ("/", "/transparency", "/inventory/public_apps", "/inventory/public_apps.csv"):
        response = await private_ds.client.get(path)
        assert response.status_code == (404 if path.startswith("/inventory") else 403), path
        assert "Kahoot" not in response.text and "<10" not in response.text
    prompt = (await private_ds.client.get("/")).text
    assert "IT staff sign in" in prompt and "/transparency" not in prompt
    assert (await private_ds.client.get("/inventory/public_apps.json")).json()["ok"] is False
    # IT staff can preview the page before publishing it.
    preview = await private_ds.client.get("/transparency", cookies=await it_cookies(private_ds))
    assert preview.status_code == 200 and "Preview for IT staff" in preview.text and "Kahoot!" in preview.text


# -- IT staff -------------------------------------------------------------------------------

async def test_it_staff_see_every_table_view_and_custom_sql(public_ds, inventory):
    cookies = await it_cookies(public_ds)
    for table in await all_tables(public_ds):
        response = await public_ds.client.get(f"/inventory/{table}.json", cookies=cookies)
        assert response.status_code == 200, table
    users = await public_ds.client.get("/inventory/users.json?_shape=array&_size=max", cookies=cookies)
    assert {row["email"] for row in users.json()} == set(inventory.emails)
    sql = await public_ds.client.get("/-/sql?sql=select+count(*)+as+n+from+users", cookies=cookies)
    assert sql.status_code == 302
    result = await public_ds.client.get(sql.headers["location"].replace("/inventory?", "/inventory.json?") + "&_shape=array", cookies=cookies)
    assert result.json() == [{"n": len(inventory.emails)}]
    for path in ("/", "/inventory", "/inventory/unapproved_usage", "/-/permissions", "/-/metadata.json"):
        assert (await public_ds.client.get(path, cookies=cookies)).status_code == 200, path


async def test_it_staff_sign_in_with_the_login_form(public_ds):
    form = await public_ds.client.get("/-/login")
    token = re.search(r'name="csrftoken" value="([^"]+)"', form.text).group(1)
    csrf_cookie = form.cookies["ds_csrftoken"]
    wrong = await public_ds.client.post(
        "/-/login", data={"username": IT_USERNAME, "password": "wrong password!", "csrftoken": token},
        cookies={"ds_csrftoken": csrf_cookie})
    assert "Invalid username or password" in wrong.text and "ds_actor" not in wrong.cookies
    right = await public_ds.client.post(
        "/-/login", data={"username": IT_USERNAME, "password": IT_PASSWORD, "csrftoken": token},
        cookies={"ds_csrftoken": csrf_cookie})
    assert right.status_code == 302
    actor = await public_ds.client.get("/-/actor.json", cookies={"ds_actor": right.cookies["ds_actor"]})
    assert actor.json() == {"actor": {"id": IT_USERNAME, "auth": "password", "role": "it"}}
    users = await public_ds.client.get("/inventory/users.json", cookies={"ds_actor": right.cookies["ds_actor"]})
    assert users.status_code == 200


async def test_metadata_never_shows_password_hashes(public_ds):
    metadata = (await public_ds.client.get("/-/metadata.json", cookies=await it_cookies(public_ds))).text
    assert IT_PASSWORD_HASH not in metadata and "pbkdf2_sha256" not in metadata and IT_HASH_VARIABLE not in metadata
    assert "datasette-auth-passwords" not in json.loads(metadata).get("plugins", {})


async def test_there_is_no_password_tool(public_ds):
    response = await public_ds.client.post("/-/password-tool", data={"password": "x"})
    assert response.status_code in (403, 404) and "pbkdf2" not in response.text


def test_metadata_file_is_deny_by_default_on_its_own():
    """Served without `app-inventory serve` (plain `datasette -m metadata.yml`), nothing opens."""
    metadata = yaml.safe_load(open(__file__.replace("tests/test_publish_access.py", "metadata.yml"), encoding="utf-8"))
    assert metadata["allow"] == {"role": "it"} and metadata["allow_sql"] == {"role": "it"}
    text = json.dumps(metadata)
    assert '"allow": true' not in text and "password_hash" not in text
