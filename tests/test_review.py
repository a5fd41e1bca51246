"""Review in the inventory, through Datasette's own client and the command line: a decision
recorded by IT changes matching, unapproved_usage, the alert queue, the queue and the public
page at once and is kept in catalog_history; CSRF and a non-IT actor cannot write; export then
import changes nothing; an import never silently overwrites a browser decision (issue 17)."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
from click.testing import CliRunner

from scanner.cli import cli
from scanner.config import load_config
from scanner.serve import build_datasette
from tests.alerts_fixtures import smtp_server  # noqa: F401 (a fixture)
from tests.alerts_fixtures import write_config as alerts_config
from tests.publish_fixtures import (
    IT_HASH_VARIABLE, IT_PASSWORD_HASH, IT_USERNAME, build_inventory, sign_in_cookies, write_config,
)

MAILMERGE = "fake:333-mailmerge.apps.googleusercontent.com"


@pytest.fixture
def inventory(tmp_path):
    return build_inventory(tmp_path)


@pytest.fixture(autouse=True)
def it_account_hash(monkeypatch):
    monkeypatch.setenv(IT_HASH_VARIABLE, IT_PASSWORD_HASH)


async def make_datasette(inventory):
    config = load_config(write_config(inventory.db_path.parent, public=True))
    datasette = build_datasette(inventory.db_path, config)
    await datasette.invoke_startup()
    return datasette


def query(inventory, sql, params=()):
    with sqlite3.connect(inventory.db_path) as db:
        return db.execute(sql, params).fetchall()


async def csrf(datasette, cookies, path):
    page = await datasette.client.get(path, cookies=cookies)
    assert page.status_code == 200, page.text
    token = re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1)
    return token, {**cookies, "ds_csrftoken": page.cookies.get("ds_csrftoken") or cookies.get("ds_csrftoken", "")}


def decision_form(token, **fields):
    form = {"csrftoken": token, "product": MAILMERGE, "status": "approved", "audience": "staff",
            "dpa_url": "https://district.example/dpa/mailmerge.pdf", "dpa_expires": "2027-06-30",
            "alternative": "", "notes": "Vetted in the browser"}
    form.update(fields)
    return form


async def test_a_decision_changes_everything_that_follows_from_the_catalog_at_once(inventory):
    datasette = await make_datasette(inventory)
    cookies = await sign_in_cookies(datasette)
    queue = await datasette.client.get("/-/review", cookies=cookies)
    assert queue.status_code == 200 and "Super Mail Merge" in queue.text
    assert query(inventory, "select count(*) from unapproved_usage where app_id = ?", [MAILMERGE]) == [(4,)]
    token, cookies = await csrf(datasette, cookies, f"/-/review/decide?product={MAILMERGE}")
    form = await datasette.client.get(f"/-/review/decide?product={MAILMERGE}", cookies=cookies)
    assert 'value="https://mail.google.com/" checked' in form.text  # pre-filled with what is granted today
    response = await datasette.client.post("/-/review/decide", cookies=cookies, data={
        **decision_form(token), "approved_scopes": ["https://mail.google.com/", "openid"]})
    assert response.status_code == 302, response.text
    assert query(inventory, "select count(*) from unapproved_usage where app_id = ?", [MAILMERGE]) == [(0,)]
    assert query(inventory, "select status, catalog_id, product_id from apps where id = ?", [MAILMERGE]) == [
        ("approved", "super-mail-merge", "catalog:super-mail-merge")]
    entry = query(inventory, "select status, audience, approved_scopes, dpa_expires, notes from catalog where id = 'super-mail-merge'")
    assert entry == [("approved", "staff", json.dumps(["https://mail.google.com/", "openid"]), "2027-06-30", "Vetted in the browser")]
    assert query(inventory, "select changed_by, source, action, json_extract(after, '$.status') from catalog_history") [-1] == (
        IT_USERNAME, "browser", "added", "approved")
    queue = await datasette.client.get("/-/review", cookies=cookies)
    assert "Super Mail Merge" not in queue.text.split("Latest catalog changes")[0]
    public = await datasette.client.get("/transparency")
    assert "Super Mail Merge" in public.text
    # The alert queue followed: the four unapproved findings (never sent) are suppressed, and the
    # userinfo.email scope the decision left out is scope creep, a new finding for each account.
    assert query(inventory, "select kind, status, count(*) from alerts where app_id = ? group by kind, status order by kind",
                 [MAILMERGE]) == [("scope_creep", "pending", 4), ("unapproved", "suppressed", 4)]


async def test_without_the_csrf_token_or_as_someone_not_it_nothing_is_written(inventory):
    datasette = await make_datasette(inventory)
    cookies = await sign_in_cookies(datasette)
    before = query(inventory, "select * from catalog order by id")
    token, with_csrf = await csrf(datasette, cookies, f"/-/review/decide?product={MAILMERGE}")
    missing = await datasette.client.post("/-/review/decide", cookies=cookies, data=decision_form(""))
    assert missing.status_code == 403
    wrong = await datasette.client.post("/-/review/decide", cookies=with_csrf, data=decision_form(token + "x"))
    assert wrong.status_code == 403
    # A visitor with a valid CSRF pair but no IT session.
    anonymous = await datasette.client.get("/transparency")
    visitor = {"ds_csrftoken": anonymous.cookies.get("ds_csrftoken", with_csrf["ds_csrftoken"])}
    refused = await datasette.client.post("/-/review/decide", cookies=visitor, data=decision_form(visitor["ds_csrftoken"]))
    assert refused.status_code in (403, 404)
    staff_actor = {"ds_actor": datasette.sign({"a": {"id": "teacher@district.org", "role": "staff"}}, "actor"),
                   "ds_csrftoken": with_csrf["ds_csrftoken"]}
    refused = await datasette.client.post("/-/review/decide", cookies=staff_actor, data=decision_form(token))
    assert refused.status_code in (403, 404)
    assert (await datasette.client.get("/-/review", cookies=staff_actor)).status_code in (403, 404)
    assert query(inventory, "select * from catalog order by id") == before
    assert query(inventory, "select count(*) from catalog_history where source = 'browser'") == [(0,)]


async def test_a_bad_decision_is_refused_with_a_clear_message_and_writes_nothing(inventory):
    datasette = await make_datasette(inventory)
    cookies = await sign_in_cookies(datasette)
    token, cookies = await csrf(datasette, cookies, f"/-/review/decide?product={MAILMERGE}")
    response = await datasette.client.post("/-/review/decide", cookies=cookies, data=decision_form(token, dpa_expires="2027-02-30"))
    assert response.status_code == 400 and "dpa_expires &#39;2027-02-30&#39; must be a date" in response.text
    assert query(inventory, "select count(*) from catalog_history where source = 'browser'") == [(0,)]


def test_export_then_import_changes_nothing_in_every_format(inventory, tmp_path):
    runner = CliRunner()
    db = ["--db", str(inventory.db_path)]
    for suffix in ("csv", "yaml", "json"):
        first, second = tmp_path / f"first.{suffix}", tmp_path / f"second.{suffix}"
        result = runner.invoke(cli, [*db, "catalog", "export", str(first)])
        assert result.exit_code == 0, result.output
        before = query(inventory, "select * from catalog order by id")
        result = runner.invoke(cli, [*db, "catalog", "import", "--replace", str(first)])
        assert result.exit_code == 0 and "Catalog unchanged" in result.output, result.output
        assert query(inventory, "select * from catalog order by id") == before
        assert runner.invoke(cli, [*db, "catalog", "export", str(second)]).exit_code == 0
        assert first.read_bytes() == second.read_bytes()
    assert "Teacher use only" in (tmp_path / "first.csv").read_text()  # the district's own word, kept


async def test_an_import_never_silently_overwrites_a_decision_made_in_the_browser(inventory, tmp_path):
    runner = CliRunner()
    db = ["--db", str(inventory.db_path)]
    exported = tmp_path / "catalog.csv"
    assert runner.invoke(cli, [*db, "catalog", "export", str(exported)]).exit_code == 0
    datasette = await make_datasette(inventory)
    cookies = await sign_in_cookies(datasette)
    token, cookies = await csrf(datasette, cookies, "/-/review/decide?product=catalog:quizlet")
    response = await datasette.client.post("/-/review/decide", cookies=cookies, data={
        **decision_form(token), "product": "catalog:quizlet", "status": "denied", "alternative": "Kahoot!"})
    assert response.status_code == 302
    edited = tmp_path / "edited.csv"
    edited.write_text(exported.read_text().replace("Kahoot ASA", "Kahoot AS"), encoding="utf-8")
    # The old file names Quizlet as approved: importing it would undo the decision.
    result = runner.invoke(cli, [*db, "catalog", "import", "--replace", str(edited)])
    assert result.exit_code == 2 and "'quizlet' was decided in the browser by it_admin" in result.output
    assert query(inventory, "select status, vendor from catalog where id in ('quizlet', 'kahoot') order by id") == [
        ("approved", "Kahoot ASA"), ("denied", "Quizlet Inc.")]
    # A file that does not name it leaves it alone, and the import goes through.
    only_kahoot = tmp_path / "kahoot.csv"
    lines = edited.read_text().splitlines()
    only_kahoot.write_text("\n".join([lines[0], *[line for line in lines if line.startswith("kahoot,")]]) + "\n", encoding="utf-8")
    assert runner.invoke(cli, [*db, "catalog", "import", str(only_kahoot)]).exit_code == 0
    assert query(inventory, "select status from catalog where id = 'quizlet'") == [("denied",)]
    # After an export, the decision is in the file: importing it is no conflict.
    assert runner.invoke(cli, [*db, "catalog", "export", str(exported)]).exit_code == 0
    assert runner.invoke(cli, [*db, "catalog", "import", str(exported)]).exit_code == 0
    # And --overwrite-decisions does what it says.
    result = runner.invoke(cli, [*db, "catalog", "import", "--overwrite-decisions", str(edited)])
    assert result.exit_code == 0 and query(inventory, "select status from catalog where id = 'quizlet'") == [("approved",)]


def test_dpa_reminders_come_90_30_and_0_days_before_expiry_once_each(inventory):
    import datetime as dt

    from plugins.alerts import digest_news, queue
    from scanner import store

    db = store.open_db(str(inventory.db_path))
    queue.ensure_alerts_tables(db)
    db.execute("update catalog set dpa_expires = '2027-03-31' where id = 'kahoot'")
    db.execute("update catalog set dpa_expires = null where id != 'kahoot'")
    db.conn.commit()

    def told(day):
        news = digest_news.collect(db, today=day)
        digest_news.mark_reported(db, news, now=f"{day}T08:00:00Z", message_id="<m@d>")
        return [(r["name"], r["threshold"], r["days_left"]) for r in news.dpa_reminders]

    assert told(dt.date(2026, 12, 1)) == []  # 120 days left
    assert told(dt.date(2027, 1, 1)) == [("Kahoot!", 90, 89)]
    assert told(dt.date(2027, 1, 8)) == []  # once
    assert told(dt.date(2027, 3, 1)) == [("Kahoot!", 30, 30)]
    assert told(dt.date(2027, 3, 31)) == [("Kahoot!", 0, 0)]
    assert told(dt.date(2027, 4, 2)) == []
    # A renewed agreement (a new date) is reminded again when its time comes.
    db.execute("update catalog set dpa_expires = '2028-03-31' where id = 'kahoot'")
    db.conn.commit()
    assert told(dt.date(2028, 1, 15)) == [("Kahoot!", 90, 76)]


async def test_reading_the_queue_is_in_the_access_log(inventory):
    datasette = await make_datasette(inventory)
    cookies = await sign_in_cookies(datasette)
    assert (await datasette.client.get("/-/review", cookies=cookies)).status_code == 200
    with sqlite3.connect(inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db")) as log:
        assert log.execute("select actor_id, path from requests order by id desc limit 1").fetchone() == (IT_USERNAME, "/-/review")


def test_a_student_cannot_file_a_request(inventory):
    from scanner import ReviewError, request_review

    student = inventory.emails[0]
    with pytest.raises(ReviewError, match="students ask their teacher"):
        request_review(str(inventory.db_path), "catalog:kahoot", email=student, reason="fun", use="")
    staff = inventory.staff_emails[13]
    with pytest.raises(ReviewError, match="only of an app one of your accounts uses"):
        request_review(str(inventory.db_path), MAILMERGE, email=staff, reason="please", use="")


async def test_an_app_people_asked_for_that_nobody_uses_yet_is_in_the_queue_and_can_be_decided(inventory):
    new_app = "fake:888-newapp.apps.googleusercontent.com"
    with sqlite3.connect(inventory.db_path) as db:
        scan_id = db.execute("select max(id) from scans where status = 'succeeded' and provider = 'fake'").fetchone()[0]
        db.execute(
            """insert into consent_requests (id, provider, app_id, client_id, app_name, scopes, status, email, reason,
                 requested_at, first_seen, last_seen, seen_scan_id)
               values ('fake:req-new', 'fake', ?, '888-newapp.apps.googleusercontent.com', 'Brand New App', '[]', 'InProgress',
                 'kenji@district.org', 'for robotics club', '2026-11-01T08:00:00Z', 'x', 'x', ?)""", [new_app, scan_id])
    datasette = await make_datasette(inventory)
    cookies = await sign_in_cookies(datasette)
    queue = await datasette.client.get("/-/review", cookies=cookies)
    assert "Brand New App" in queue.text and "for robotics club" in queue.text
    token, cookies = await csrf(datasette, cookies, f"/-/review/decide?product={new_app}")
    response = await datasette.client.post("/-/review/decide", cookies=cookies, data={
        **decision_form(token), "product": new_app, "status": "denied", "alternative": "Kahoot!"})
    assert response.status_code == 302, response.text
    assert query(inventory, "select status, google_client_ids from catalog where name = 'Brand New App'") == [
        ("denied", json.dumps(["888-newapp.apps.googleusercontent.com"]))]


async def test_people_who_asked_through_a_provider_get_the_decision_once(inventory, smtp_server, tmp_path):  # noqa: F811
    """Requests kept by a provider (Microsoft's admin-consent workflow, Chrome extension requests)
    reach their requesters too: one email each once IT decides, found by the request's account or
    else its address; none for a request the provider already closed (the provider tells them)."""
    staff = inventory.staff_emails
    new_app = "fake:888-newapp.apps.googleusercontent.com"
    with sqlite3.connect(inventory.db_path) as db:
        scan_id, seen = db.execute("select id, finished_at from scans where status = 'succeeded' and provider = 'fake' "
                                   "order by id desc limit 1").fetchone()
        requests = [
            ("fake:req-mm", MAILMERGE, "333-mailmerge.apps.googleusercontent.com", "Super Mail Merge", "InProgress", "fake:t5", staff[5]),
            ("fake:req-new", new_app, "888-newapp.apps.googleusercontent.com", "Brand New App", "InProgress", None, staff[6].upper()),
            ("fake:req-closed", MAILMERGE, "333-mailmerge.apps.googleusercontent.com", "Super Mail Merge", "Completed", "fake:t7", staff[7]),
        ]
        db.executemany(
            """insert into consent_requests (id, provider, app_id, client_id, app_name, scopes, status, user_id, email, reason,
                 requested_at, first_seen, last_seen, seen_scan_id)
               values (?, 'fake', ?, ?, ?, '[]', ?, ?, ?, 'for the newsletter', ?, ?, ?, ?)""",
            [(*request, seen, seen, seen, scan_id) for request in requests])
    datasette = await make_datasette(inventory)
    cookies = await sign_in_cookies(datasette)
    for product, fields in ((MAILMERGE, {"status": "conditional"}), (new_app, {"status": "denied", "alternative": "Kahoot!"})):
        token, cookies = await csrf(datasette, cookies, f"/-/review/decide?product={product}")
        response = await datasette.client.post("/-/review/decide", cookies=cookies,
                                               data={**decision_form(token), "product": product, **fields})
        assert response.status_code == 302, response.text
    config = alerts_config(tmp_path, smtp_server.port)
    for _ in range(2):
        result = CliRunner().invoke(cli, ["--db", str(inventory.db_path), "--config", str(config), "alerts", "send"])
        assert result.exit_code == 0, result.output

    def decisions(address):
        return [m for m in smtp_server.handler.to(address) if "decision" in m.message["Subject"]]

    told_mm, told_new = decisions(staff[5]), decisions(staff[6])
    assert [m.message["Subject"] for m in told_mm] == ["The district's decision on Super Mail Merge"]
    assert "approved with conditions" in told_mm[0].text and "for the newsletter" in told_mm[0].text
    assert [m.message["Subject"] for m in told_new] == ["The district's decision on Brand New App"]
    assert "remove its access to your account.\n   Approved instead: Kahoot!.\n   You asked because: for the newsletter" in told_new[0].text
    assert decisions(staff[7]) == []
    # The two students who asked for ChatGPT before the catalog denied it (build_inventory) are
    # told only with notify_students, like every email to a student.
    decided = "select json_extract(details, '$.consent_request_id') from alerts where kind = 'decision' order by 1"
    assert query(inventory, decided) == [("fake:req-mm",), ("fake:req-new",)]
    result = CliRunner().invoke(cli, ["--db", str(inventory.db_path), "--config",
                                      str(alerts_config(tmp_path, smtp_server.port, notify_students=True)), "alerts", "send"])
    assert result.exit_code == 0, result.output
    assert query(inventory, decided) == [("fake:req-mm",), ("fake:req-new",), ("fake:req-s0",), ("fake:req-s1",)]
