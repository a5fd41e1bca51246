"""Sign in with Google and Sign in with Microsoft in a real browser (Playwright driving the system
Chromium) against the real `app-inventory serve`, through both emulated identity providers:
IT staff click the button, pick their account on the provider's page and reach users.json; a
district user who is not IT staff, an account of another domain or tenant, an expired or
forged token and a replayed answer are refused; removing someone from it_emails ends their
session at their next request; the access log records each, with the method."""

from __future__ import annotations

import os
import re
import sqlite3

import pytest

from tests.browser_fixtures import require_chromium
from tests.publish_fixtures import build_inventory, serving, write_config

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")

sync_api = require_chromium()


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    return build_inventory(tmp_path_factory.mktemp("sso-browser"))


def start_server(inventory, directory, idps, lines, name):
    config = write_config(directory, public=True, accounts=False, name=name, signin=lines)
    return serving(inventory.db_path, config, public=True, env={**os.environ, **idps.env}), config


@pytest.fixture(scope="module")
def server(inventory, idps, tmp_path_factory):
    running, _ = start_server(inventory, tmp_path_factory.mktemp("sso-server"), idps, idps.signin_lines(), "sso.toml")
    with running as server:
        idps.register([server.url])
        yield server




@pytest.fixture
def context(browser):
    context = browser.new_context()
    context.set_default_timeout(20_000)
    yield context
    context.close()


def click_through(page, server_url, provider, account):
    """The real buttons: ours, then the account on the provider's page (typed when not listed)."""
    page.goto(f"{server_url}/-/login")
    page.click(f"#sign-in-{provider}")
    page.wait_for_selector("button.account")
    button = page.locator(f'button.account[value="{account}"]')
    if button.count():
        button.click()
    else:
        page.fill("#account", account)
        page.click("text=Next")
    page.wait_for_url(re.compile(re.escape(server_url) + r"/($|-/sign-in/)"))


def session_cookie(context):
    return next((cookie for cookie in context.cookies() if cookie["name"] == "ds_actor"), None)


def last_sign_in(inventory):
    with sqlite3.connect(inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db")) as log:
        log.row_factory = sqlite3.Row
        return dict(log.execute("select * from sign_ins where event = 'sign_in' order by id desc limit 1").fetchone())


def refusal(page) -> str:
    return page.inner_text(".message-error")


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_it_staff_click_the_button_and_reach_users_json(server, inventory, idps, context, provider):
    account = idps.google_it if provider == "google" else idps.microsoft_it
    page = context.new_page()
    click_through(page, server.url, provider, account)
    assert page.url == f"{server.url}/" and session_cookie(context)["httpOnly"] is True
    response = page.goto(f"{server.url}/inventory/users.json?_shape=array&_size=3")
    assert response.status == 200 and len(response.json()) == 3 and EMAIL.search(response.text())
    entry = last_sign_in(inventory)
    assert (entry["outcome"], entry["auth"], entry["username"]) == ("succeeded", provider, account.lower())
    with sqlite3.connect(inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db")) as log:
        read = log.execute("select actor_id, auth, path from requests order by id desc limit 1").fetchone()
    assert read == (account.lower(), provider, "/inventory/users.json")


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_a_district_user_who_is_not_it_staff_is_refused(server, inventory, idps, context, provider):
    account = idps.google_staff if provider == "google" else idps.microsoft_staff
    page = context.new_page()
    click_through(page, server.url, provider, account)
    assert "who is not IT staff" in refusal(page) and session_cookie(context) is None
    assert page.goto(f"{server.url}/inventory/users.json").status == 404
    entry = last_sign_in(inventory)
    assert (entry["outcome"], entry["auth"], entry["username"]) == ("failed", provider, account.lower())


@pytest.mark.parametrize("provider, spoil, shown, logged", [
    ("google", "other_domain", "is not an account of the district's Google Workspace", "other-district.example, not district.example"),
    ("microsoft", "other_tenant", "could not be completed", "Invalid issuer"),
    ("google", "expired", "could not be completed", "Token expired"),
    ("microsoft", "expired", "could not be completed", "Signature has expired"),
    ("google", "forged", "could not be completed", "Could not verify token signature"),
    ("microsoft", "forged", "could not be completed", "Signature verification failed"),
])
def test_a_token_of_another_domain_or_tenant_expired_or_forged_is_refused(server, inventory, idps, context, provider,
                                                                          spoil, shown, logged):
    (idps.google if provider == "google" else idps.microsoft).spoil_next_id_token(spoil)
    page = context.new_page()
    click_through(page, server.url, provider, idps.google_it if provider == "google" else idps.microsoft_it)
    assert shown in refusal(page) and session_cookie(context) is None
    entry = last_sign_in(inventory)
    assert (entry["outcome"], entry["auth"]) == ("refused", provider) and logged in entry["reason"]


def test_another_district_s_google_account_is_refused(server, inventory, idps, context):
    idps.google.add_outside_account("teacher@other-district.example", hd="other-district.example")
    page = context.new_page()
    click_through(page, server.url, "google", "teacher@other-district.example")
    assert "Choose your district account" in refusal(page) and session_cookie(context) is None
    assert last_sign_in(inventory)["username"] == "teacher@other-district.example"


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_a_replayed_answer_is_refused(server, inventory, idps, browser, context, provider):
    page = context.new_page()
    callbacks = []
    page.on("request", lambda request: callbacks.append(request.url) if "/callback?" in request.url else None)
    click_through(page, server.url, provider, idps.google_it if provider == "google" else idps.microsoft_it)
    assert session_cookie(context) is not None and len(callbacks) == 1
    # The same browser goes back to the answer...
    page.goto(callbacks[0])
    assert "already used" in refusal(page) or "did not start in this browser" in refusal(page)
    assert last_sign_in(inventory)["outcome"] == "refused"
    # ...and someone who copied it from the address bar tries it in theirs.
    other = browser.new_context()
    try:
        stolen = other.new_page()
        stolen.goto(callbacks[0])
        assert "did not start in this browser" in refusal(stolen) and session_cookie(other) is None
    finally:
        other.close()
    entry = last_sign_in(inventory)
    assert (entry["outcome"], entry["auth"]) == ("refused", provider) and "no valid sign-in cookie" in entry["reason"]


def test_removing_someone_from_it_emails_ends_their_session_at_the_next_request(inventory, idps, context, tmp_path):
    running, config = start_server(inventory, tmp_path, idps, idps.signin_lines(), "removal.toml")
    with running as removal:
        idps.register([removal.url])
        google_page, microsoft_page = context.new_page(), None
        click_through(google_page, removal.url, "google", idps.google_it)
        other = context.browser.new_context()
        try:
            microsoft_page = other.new_page()
            click_through(microsoft_page, removal.url, "microsoft", idps.microsoft_it)
            for page in (google_page, microsoft_page):
                assert page.goto(f"{removal.url}/inventory/users.json").status == 200
            write_config(tmp_path, public=True, accounts=False, name="removal.toml",
                         signin=idps.signin_lines(it_emails=[idps.microsoft_it]))  # the Google account is out; no restart
            assert google_page.goto(f"{removal.url}/inventory/users.json").status == 404
            assert microsoft_page.goto(f"{removal.url}/inventory/users.json").status == 200
        finally:
            other.close()
    with sqlite3.connect(inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db")) as log:
        ended = log.execute("select event, auth, username, reason from sign_ins where event = 'session_ended' "
                            "order by id desc limit 1").fetchone()
    assert ended == ("session_ended", "google", idps.google_it.lower(), "no longer IT staff in the configuration")


def test_in_the_demo_it_staff_sign_in_with_the_district_s_google_or_microsoft_account(browser, tmp_path):
    """`app-inventory demo` configures both buttons against its emulators; its IT technician
    signs in with each by clicking them, and reaches users.json."""
    import subprocess
    import sys

    from scanner.demo.run import demo_it_person
    from scanner.demo.tenants import demo_district
    from tests.conftest import free_port

    port = free_port()
    command = [sys.executable, "-m", "scanner", "--db", str(tmp_path / "demo.db"), "demo", "--users", "300", "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    output = []
    try:
        for line in process.stdout:  # the demo scans, then prints where it serves
            output.append(line)
            if "Press Ctrl-C" in line:
                break
        assert process.poll() is None, "".join(output)
        printed = "".join(output)
        it_email = demo_it_person(demo_district(300)).email
        assert "Sign in with Google" in printed and it_email in printed
        base = f"http://127.0.0.1:{port}"
        for provider in ("google", "microsoft"):
            context = browser.new_context()
            try:
                page = context.new_page()
                page.set_default_timeout(20_000)
                page.goto(f"{base}/-/login")
                assert page.locator("#id_password").count() == 1  # the demo's password account stays
                page.click(f"#sign-in-{provider}")
                page.locator("button.account").first.click()  # the IT technician, first on the provider's page
                page.wait_for_url(f"{base}/")
                response = page.goto(f"{base}/inventory/users.json?_shape=array&_size=1")
                assert response.status == 200 and EMAIL.search(response.text())
                assert page.goto(f"{base}/-/actor.json").json()["actor"] == {"id": it_email, "auth": provider, "role": "it"}
            finally:
                context.close()
    finally:
        process.terminate()
        process.communicate(timeout=30)
