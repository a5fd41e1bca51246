"""In a real browser (Playwright driving the system Chromium) against the real `app-inventory serve`:
IT staff sign in, open the dashboard and the app summary and facet it; the public page
shows the list without an email address. Screenshots go to each test's tmp_path, except
the two the docs show (docs/images/dashboard.png and transparency.png): those are saved
over the committed ones, from an inventory dated DOCS_DATE so they come out the same."""

import datetime as dt
import os
import re
from pathlib import Path

import pytest

from tests.browser_fixtures import require_chromium
from tests.publish_fixtures import IT_HASH_VARIABLE, IT_PASSWORD, IT_PASSWORD_HASH, IT_USERNAME, build_inventory, serving, write_config

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
DOCS_IMAGES = Path(__file__).parent.parent / "docs" / "images"
# The inventory's date in the docs' screenshots. Its catalog dates are then fixed too;
# the one still ahead (+400 days) enters the dashboard's 90-day count in mid-2027.
DOCS_DATE = dt.date(2026, 9, 14)

sync_api = require_chromium()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("browser")
    inventory = build_inventory(directory, on=DOCS_DATE)
    env = {**os.environ, IT_HASH_VARIABLE: IT_PASSWORD_HASH}
    with serving(inventory.db_path, write_config(directory, public=True), public=True, env=env) as running:
        running.inventory = inventory
        yield running




@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def save_screenshot(page, path):
    """A full-page screenshot for the docs (git sees a change only when the page looks different)."""
    picture = page.screenshot(full_page=True, animations="disabled", caret="hide")
    assert picture.startswith(b"\x89PNG") and len(picture) > 10_000, "the screenshot is empty"
    path.write_bytes(picture)


def sign_in(page, base_url):
    page.goto(f"{base_url}/-/login")
    page.fill("#id_username", IT_USERNAME)
    page.fill("#id_password", IT_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/")
    assert IT_USERNAME in page.inner_text("header")


def test_it_staff_sign_in_and_read_the_dashboard(page, server):
    sign_in(page, server.url)
    page.goto(f"{server.url}/-/dashboards/overview")
    for chart in ("apps-by-status", "high-risk-apps", "unapproved-by-school", "new-apps-per-scan"):
        # vega-embed draws each chart once the chart's SQL came back through Datasette.
        page.wait_for_selector(f"#chart-{chart} canvas, #chart-{chart} svg.marks", state="attached")
    page.wait_for_function("document.querySelector('#chart-unapproved-apps p') !== null")
    assert page.inner_text("#chart-unapproved-apps").strip() == "5"
    assert page.inner_text("#chart-people-unapproved").strip() == "20"
    page.wait_for_timeout(500)  # let the charts finish their entry transitions for the screenshot
    save_screenshot(page, DOCS_IMAGES / "dashboard.png")


def test_it_staff_facet_the_app_summary_by_status(page, server, tmp_path):
    sign_in(page, server.url)
    page.goto(f"{server.url}/inventory/app_summary")
    assert page.locator("table.rows-and-columns tbody tr").count() == 7
    facet = page.locator(".facet-info[data-column=status]")
    assert "unreviewed" in facet.inner_text()
    facet.get_by_role("link", name="unreviewed").click()
    page.wait_for_url(re.compile(r"status=unreviewed"))
    statuses = page.locator("table.rows-and-columns tbody td.col-status").all_inner_texts()
    assert sorted(statuses) == ["unreviewed", "unreviewed"]
    names = page.locator("table.rows-and-columns tbody td.col-name").all_inner_texts()
    assert sorted(names) == ["Homework Helper AI", "Super Mail Merge"]
    page.screenshot(path=str(tmp_path / "app_summary_unreviewed.png"), full_page=True)


def test_it_staff_break_unapproved_usage_down_by_reason_and_role(page, server):
    sign_in(page, server.url)
    page.goto(f"{server.url}/inventory/unapproved_usage")
    assert page.locator(".facet-info").count() == 0  # no default facets: they count every row
    rows = page.locator("table.rows-and-columns tbody tr").count()
    page.get_by_role("link", name="by reason and role").click()
    page.wait_for_url(re.compile(r"_facet=reason&_facet=role"))
    counts = {}
    for column in ("reason", "role"):
        facet = page.locator(f".facet-info[data-column={column}]")
        items = facet.locator("ul.tight-bullets li:not(.facet-truncated)").all_inner_texts()  # "unreviewed 14"
        counts[column] = sum(int(item.split()[-1].replace(",", "")) for item in items)
    assert counts == {"reason": rows, "role": rows}  # every row counted once in each breakdown


def test_the_public_page_renders_without_any_email_address(page, server):
    page.goto(f"{server.url}/")
    page.wait_for_url(f"{server.url}/transparency")
    assert page.title() == "Springfield Test District: apps used with school accounts"
    text = page.inner_text("body")
    html = page.content()
    assert "Kahoot!" in text and "<10" in text and "Not approved" in text
    assert not EMAIL.search(html), EMAIL.search(html)
    assert not any(name in text for name in server.inventory.names)
    save_screenshot(page, DOCS_IMAGES / "transparency.png")
    # An anonymous visitor who wanders off finds nothing, not even whether the table exists.
    page.goto(f"{server.url}/inventory/users")
    assert "Not found" in page.inner_text("h1")
    assert not EMAIL.search(page.content())
