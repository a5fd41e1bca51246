"""WCAG 2.1 A and AA in a real browser: axe-core (the pinned copy in tests/assets) runs inside
each page the public and IT staff use, in Debian's Chromium against the real `app-inventory serve`,
and must report no violation. The public page is also used with the keyboard only."""

import json
import os
from pathlib import Path

import pytest

from tests.browser_fixtures import require_chromium
from tests.publish_fixtures import IT_HASH_VARIABLE, IT_PASSWORD, IT_PASSWORD_HASH, IT_USERNAME, build_inventory, serving, write_config

AXE = Path(__file__).parent / "assets" / "axe.min.js"
AXE_VERSION = "4.14.1"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

# Pages anyone may open (the public page, the sign-in form, the sign-in prompt of an IT page, the 404).
PUBLIC_PAGES = ["/transparency", "/transparency?lang=es", "/-/login", "/-/dashboards", "/inventory/users"]
# Pages IT staff use: the front page, the database page (SQL form), the views and tables
# with filters, the canned-query forms and the dashboard.
IT_PAGES = [
    "/", "/inventory", "/inventory/app_summary", "/inventory/unapproved_usage", "/inventory/scope_creep",
    "/inventory/dpa_expiring", "/inventory/changes", "/inventory/changes_since_last_scan", "/inventory/people",
    "/inventory/product_summary", "/inventory/posture_current", "/inventory/posture", "/inventory/consent_requests",
    "/inventory/catalog", "/inventory/apps", "/inventory/alerts", "/inventory/users_of_app",
    "/inventory/apps_used_by_person", "/inventory/what_changed", "/-/dashboards/overview", "/transparency",
    # The review and revoke pages.
    "/-/review", "/inventory/review_queue", "/inventory/catalog_changes", "/inventory/requests_for_review",
    "/inventory/revoke_plans", "/inventory/revoke_actions", "/inventory/audit",
]

sync_api = require_chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("a11y")
    inventory = build_inventory(directory)
    env = {**os.environ, IT_HASH_VARIABLE: IT_PASSWORD_HASH}
    with serving(inventory.db_path, write_config(directory, public=True, contact="privacy@district.example"),
                 public=True, env=env) as running:
        yield running




@pytest.fixture(scope="module")
def it_state(browser, server):
    """A signed-in IT session's cookies, shared by the IT pages' contexts."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/-/login")
    page.fill("#id_username", IT_USERNAME)
    page.fill("#id_password", IT_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{server.url}/")
    state = context.storage_state()
    context.close()
    return state


def axe_violations(page) -> list[str]:
    """axe-core's WCAG 2.0/2.1 A and AA violations on the loaded page, one line each."""
    page.add_script_tag(path=str(AXE))
    assert page.evaluate("axe.version") == AXE_VERSION
    result = page.evaluate("tags => axe.run({runOnly: {type: 'tag', values: tags}})", WCAG_21_AA)
    return [f"{v['id']} ({v['impact']}): {v['help']} at {json.dumps([n['target'] for n in v['nodes']][:4])}"
            for v in result["violations"]]


def check(browser, url, state=None, *, expect_ok=False):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, storage_state=state)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        response = page.goto(url)
        if expect_ok:  # the page itself, not a refusal or a missing page that passes axe
            assert response.status == 200, f"{url}: {response.status}"
        page.wait_for_load_state("networkidle")
        violations = axe_violations(page)
        assert violations == [], f"{url}: " + "; ".join(violations)
    finally:
        context.close()


@pytest.mark.parametrize("path", PUBLIC_PAGES)
def test_pages_anyone_opens_pass_wcag_21_aa(browser, server, path):
    check(browser, server.url + path)


@pytest.mark.parametrize("path", IT_PAGES)
def test_pages_it_staff_use_pass_wcag_21_aa(browser, server, it_state, path):
    check(browser, server.url + path, it_state, expect_ok=True)


def test_the_public_page_works_with_the_keyboard_only(browser, server):
    """Tab reaches every link of the public page in order, each visibly outlined when it has the focus."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/transparency")
        links = page.eval_on_selector_all("a[href], button, input, select, textarea", "els => els.length")
        assert links >= 5
        reached = []
        for _ in range(links + 3):
            page.keyboard.press("Tab")
            focused = page.evaluate("""() => {
                const e = document.activeElement; if (!e || e === document.body) return null;
                const s = getComputedStyle(e);
                return {text: e.textContent.trim(), href: e.getAttribute('href'),
                        visible: (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2) || s.boxShadow !== 'none'};
            }""")
            if focused:
                reached.append(focused)
        hrefs = {item["href"] for item in reached}
        for wanted in ("?lang=es", "#counting"):
            assert any(h and h.endswith(wanted) for h in hrefs), f"Tab never reaches a link to {wanted}: {hrefs}"
        assert any(h and ".csv" in h for h in hrefs) and any(h and ".json" in h for h in hrefs)
        assert [item for item in reached if not item["visible"]] == [], "a focused control has no visible focus outline"
        # A skip link comes first and moves the focus to the content.
        assert reached[0]["href"] == "#main"
    finally:
        context.close()


def test_the_public_page_prints_without_navigation_and_keeps_its_download_links(browser, server):
    """Printed for a board meeting: no header or skip link, every column, the CSV and JSON addresses written out."""
    context = browser.new_context(viewport={"width": 600, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{server.url}/transparency")
        page.emulate_media(media="print")
        assert not page.is_visible("header") and not page.is_visible(".skip-link")
        assert page.is_visible("table.public-apps th:nth-child(3)"), "the narrow-screen rule hides a column on paper"
        for kind in ("csv", "json"):
            link = page.locator(f".downloads a[href*='.{kind}']")
            assert link.is_visible()
            written = link.evaluate("a => getComputedStyle(a, '::after').content")
            assert f"public_apps.{kind}" in written
        assert len(page.pdf(format="Letter")) > 10_000
    finally:
        context.close()


def test_every_dashboard_chart_has_its_table_linked(browser, server, it_state):
    """The charts' text alternative: the dashboard links to the table each chart is drawn from, and each opens."""
    context = browser.new_context(storage_state=it_state)
    try:
        page = context.new_page()
        page.goto(f"{server.url}/-/dashboards/overview")
        links = page.eval_on_selector_all("#chart-charts-as-tables a[href]", "els => els.map(a => a.getAttribute('href'))")
        assert len(links) == 5, links
        for link in links:
            assert page.request.get(server.url + link).status == 200, link
    finally:
        context.close()
