"""The review loop in a real browser (Playwright driving the system Chromium) against the real
`app-inventory serve` (issue 17): a teacher signs in with the district's Google account
(staff_sign_in), sees only their own apps, asks for a review and cannot see or ask about anyone
else's; IT signs in, finds the request in the queue, records a decision, and unapproved_usage,
the queue and the public page change at once, with the history row; the teacher's request
shows the decision, and `alerts send` emails them the decision exactly once. The docs'
screenshots of the loop (docs/images/review-*.png) are taken here."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.browser_fixtures import require_chromium
from tests.alerts_fixtures import smtp_server  # noqa: F401 (a fixture)
from tests.publish_fixtures import (
    IT_HASH_VARIABLE, IT_PASSWORD, IT_PASSWORD_HASH, IT_USERNAME, build_inventory, serving, write_config,
)
from tests.sso_fixtures import idps  # noqa: F401 (a fixture)
from tests.test_browser_publish import DOCS_DATE, save_screenshot

DOCS_IMAGES = Path(__file__).parent.parent / "docs" / "images"
MAILMERGE = "fake:333-mailmerge.apps.googleusercontent.com"

sync_api = require_chromium()


@pytest.fixture(scope="module")
def loop(idps, tmp_path_factory):  # noqa: F811
    """The district's inventory served with IT's password account and staff sign-in with Google,
    for the district's own domain (its staff are accounts of the emulated identity provider)."""
    directory = tmp_path_factory.mktemp("review-browser")
    inventory = build_inventory(directory, on=DOCS_DATE)
    for email in inventory.staff_emails:
        idps.google.add_outside_account(email, hd="district.org")
    lines = [*idps.signin_lines(it_emails=["it-lead@district.org"], microsoft=False, google_domain="district.org"), "staff_sign_in = true"]
    config = write_config(directory, public=True, signin=lines, name="review.toml")
    env = {**os.environ, **idps.env, IT_HASH_VARIABLE: IT_PASSWORD_HASH}
    decided_at = dt.datetime.combine(DOCS_DATE, dt.time(9, 30), dt.timezone.utc)  # the screenshots' history row
    with serving(inventory.db_path, config, public=True, env=env, clock=decided_at) as server:
        idps.register([server.url])
        server.inventory, server.config = inventory, config
        yield server




def new_page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(20_000)
    return context.new_page()


def staff_sign_in(page, url, email):
    """The real button, then the account typed on the identity provider's page."""
    page.goto(f"{url}/-/login")
    page.click("#sign-in-google")
    page.wait_for_selector("button.account, #account")
    page.fill("#account", email)
    page.click("text=Next")
    page.wait_for_url(f"{url}/-/requests")


def it_sign_in(page, url):
    page.goto(f"{url}/-/login")
    page.fill("#id_username", IT_USERNAME)
    page.fill("#id_password", IT_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{url}/")


def query(loop, sql, params=()):
    with sqlite3.connect(loop.inventory.db_path) as db:
        return db.execute(sql, params).fetchall()


def test_the_whole_loop_from_a_request_to_the_decision_email(loop, browser, smtp_server, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(IT_HASH_VARIABLE, IT_PASSWORD_HASH)
    teacher, other = loop.inventory.staff_emails[0], loop.inventory.staff_emails[13]
    # -- a teacher signs in and sees only their own apps -----------------------------------------
    page = new_page(browser)
    staff_sign_in(page, loop.url, teacher)
    apps = sorted(page.locator("section.my-app h2").all_inner_texts())
    assert apps == ["Kahoot! (Kahoot ASA)", "Padlet (Wallwisher)", "Quizlet (Quizlet Inc.)", "Super Mail Merge"]
    # The inventory stays closed to them: its tables and the review queue.
    assert page.goto(f"{loop.url}/inventory/users.json").status == 404
    assert page.goto(f"{loop.url}/-/review").status == 403
    page.goto(f"{loop.url}/-/requests?product={MAILMERGE}")
    mine = page.locator(f'section.my-app[data-product="{MAILMERGE}"]')
    mine.locator("textarea[name=reason]").fill("Parent newsletters for my class, from a sheet of addresses")
    mine.locator("input[name=use]").fill("Grade 7 homeroom")
    save_screenshot(page, DOCS_IMAGES / "review-requests.png")
    mine.locator("button[type=submit]").click()
    page.wait_for_url(f"{loop.url}/-/requests")
    assert "Your request was sent to IT" in page.content()
    assert page.locator("tr.my-request").all_inner_texts()[0].startswith("Super Mail Merge")
    assert query(loop, "select email, status, use from review_requests") == [(teacher, "open", "Grade 7 homeroom")]

    # -- another teacher sees neither the app nor the request, and cannot ask about it ------------
    second = new_page(browser)
    staff_sign_in(second, loop.url, other)
    assert second.locator("section.my-app h2").all_inner_texts() == ["MathQuest (MathQuest LLC)"]
    assert "Parent newsletters" not in second.content() and second.locator("tr.my-request").count() == 0
    token = second.locator("input[name=csrftoken]").first.get_attribute("value")
    answer = second.request.post(f"{loop.url}/-/requests", form={"csrftoken": token, "product": MAILMERGE, "reason": "me too"})
    assert answer.status == 400 and "only of an app one of your accounts uses" in answer.text()
    # And no staff member can record a decision, even with a valid CSRF token.
    answer = second.request.post(f"{loop.url}/-/review/decide", form={"csrftoken": token, "product": MAILMERGE, "status": "approved"})
    assert answer.status == 403
    assert query(loop, "select count(*) from review_requests") == [(1,)]
    assert query(loop, "select count(*) from catalog_history where source = 'browser'") == [(0,)]

    # -- IT finds the request in the queue and decides -------------------------------------------
    it = new_page(browser)
    it_sign_in(it, loop.url)
    it.goto(f"{loop.url}/-/review")
    item = it.locator(f'section.review-item[data-product="{MAILMERGE}"]')
    assert "Parent newsletters for my class" in item.inner_text() and "4 staff" in item.inner_text()
    save_screenshot(it, DOCS_IMAGES / "review-queue.png")
    assert len(json.loads(it.goto(f"{loop.url}/inventory/unapproved_usage.json?_shape=array&app_id={MAILMERGE}").text())) == 4
    it.goto(f"{loop.url}/-/review")
    item.locator("a.decide").click()
    assert it.locator('input[name=approved_scopes][value="https://mail.google.com/"]').is_checked()  # granted today
    it.check('input[name=status][value="conditional"]')
    it.check('input[name=audience][value="staff"]')
    it.fill("#dpa_url", "https://district.example/dpa/mailmerge.pdf")
    it.fill("#dpa_expires", "2027-06-30")
    it.fill("#notes", "Staff newsletters only; reviewed with the privacy officer")
    save_screenshot(it, DOCS_IMAGES / "review-decide.png")
    it.click("button.record")
    it.wait_for_selector("text=Decision recorded")
    assert it.inner_text("#current-status") == "Approved with conditions" and it.inner_text("#unapproved-count") == "0"
    assert it.locator("tr.history-row").first.inner_text().startswith(tuple("0123456789"))
    assert IT_USERNAME in it.locator("tr.history-row").first.inner_text()
    save_screenshot(it, DOCS_IMAGES / "review-decided.png")

    # unapproved_usage, the queue, the public page and the history follow at once.
    assert json.loads(it.goto(f"{loop.url}/inventory/unapproved_usage.json?_shape=array&app_id={MAILMERGE}").text()) == []
    it.goto(f"{loop.url}/-/review")
    assert it.locator(f'section.review-item[data-product="{MAILMERGE}"]').count() == 0
    public = new_page(browser)
    public.goto(f"{loop.url}/transparency")
    assert "Super Mail Merge" in public.inner_text("body")
    history = query(loop, "select changed_by, source, action, json_extract(after, '$.status') from catalog_history "
                          "where source = 'browser'")
    assert history == [(IT_USERNAME, "browser", "added", "conditional")]

    # -- the teacher sees the decision, and gets one email with it ---------------------------------
    page.goto(f"{loop.url}/-/requests")
    assert page.locator("tr.my-request").first.inner_text().endswith("Approved with conditions")
    from scanner.cli import cli

    alerts = loop.config.read_text() + "\n".join([
        "[alerts]", 'smtp_host = "127.0.0.1"', f"smtp_port = {smtp_server.port}", 'smtp_security = "none"',
        'from_address = "IT Privacy <privacy@district.org>"', 'it_digest_to = ["privacy-team@district.org"]']) + "\n"
    config = tmp_path / "alerts.toml"
    config.write_text(alerts, encoding="utf-8")
    runner = CliRunner()
    for _ in range(2):
        result = runner.invoke(cli, ["--db", str(loop.inventory.db_path), "--config", str(config), "alerts", "send"])
        assert result.exit_code == 0, result.output
    decisions = [m for m in smtp_server.handler.to(teacher) if "decision" in m.message["Subject"].lower()]
    assert len(decisions) == 1
    assert "Super Mail Merge: approved with conditions" in decisions[0].text
    assert "Parent newsletters" in decisions[0].text
    digest = smtp_server.handler.digests[0].text
    assert "Requests waiting for a review" in digest and "Data privacy agreements expiring" in digest
