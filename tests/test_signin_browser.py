"""The IT door against the real `app-inventory serve`, over HTTP and in a real browser
(Playwright driving the system Chromium): no HTTP Basic even with datasette-auth-passwords
installed, a removed account out at once, the cookie's flags behind a trusted proxy and
without one, login CSRF from another site, framing, signing out (issue 13, findings 1, 2, 7)."""

from __future__ import annotations

import base64
import contextlib
import http.server
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.publish_fixtures import (
    IT_HASH_VARIABLE, IT_PASSWORD, IT_PASSWORD_HASH, IT_USERNAME, build_inventory, serving, write_config,
)

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
SECRET = "a fixed DATASETTE_SECRET, as the README advises"


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    return build_inventory(tmp_path_factory.mktemp("door"))


def environment() -> dict[str, str]:
    return {**os.environ, IT_HASH_VARIABLE: IT_PASSWORD_HASH, "DATASETTE_SECRET": SECRET}


@pytest.fixture(scope="module")
def server(inventory):
    """Behind a web server on this machine: X-Forwarded-Proto is believed from 127.0.0.1."""
    config = write_config(inventory.db_path.parent, public=True, name="proxied.toml", serve=['trusted_proxies = ["127.0.0.1"]'])
    with serving(inventory.db_path, config, public=True, env=environment()) as running:
        yield running


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url, *, data=None, headers=None):
    """(status, headers, body) without following redirects or raising on 4xx."""
    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode() if data else None, headers=headers or {})
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


def sign_in(base_url, username=IT_USERNAME, password=IT_PASSWORD, headers=None):
    """POST the real form; returns (status, Set-Cookie header of the session, ds_actor value)."""
    _, form_headers, form = fetch(f"{base_url}/-/login", headers=headers)
    token = re.search(r'name="csrftoken" value="([^"]+)"', form).group(1)
    csrf = re.search(r"ds_csrftoken=([^;]+)", form_headers["set-cookie"]).group(1)
    status, answer, _ = fetch(f"{base_url}/-/login", data={"username": username, "password": password, "csrftoken": token},
                              headers={**(headers or {}), "Cookie": f"ds_csrftoken={csrf}"})
    cookie = next((value for value in answer.get_all("set-cookie") or [] if value.startswith("ds_actor=")), "")
    value = re.match(r"ds_actor=([^;]*)", cookie).group(1) if cookie else None
    return status, cookie, value


# -- over HTTP ------------------------------------------------------------------------------------

def test_basic_credentials_open_nothing_on_the_real_server(server, inventory):
    """Were datasette-auth-passwords installed (it is in a district upgrading), serve must not load it."""
    basic = {"Authorization": "Basic " + base64.b64encode(f"{IT_USERNAME}:{IT_PASSWORD}".encode()).decode()}
    for path in ("/inventory/users.json", "/inventory/public_apps.json?_col=id&_where=0+union+select+email+from+users+--+",
                 "/inventory.json?sql=select+email+from+users", "/-/actor.json"):
        status, _, body = fetch(server.url + path, headers=basic)
        assert status in (403, 404), (path, status)
        assert not EMAIL.search(body), path
    status, _, page = fetch(f"{server.url}/transparency", headers=basic)
    assert status == 200 and "IT home" not in page
    status, _, _ = fetch(f"{server.url}/transparency", headers={"Authorization": "Basic !!!"})
    assert status == 200


def test_the_cookie_is_secure_only_when_https_came_through_the_trusted_proxy(server, inventory):
    status, cookie, _ = sign_in(server.url)
    assert status == 302 and "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    status, cookie, _ = sign_in(server.url, headers={"X-Forwarded-Proto": "https"})
    assert status == 302 and "Secure" in cookie and "HttpOnly" in cookie
    # Without [serve] trusted_proxies, anyone could claim HTTPS or another address: nobody is believed.
    config = write_config(inventory.db_path.parent, public=True, name="direct.toml")
    with serving(inventory.db_path, config, public=True, env=environment()) as direct:
        status, cookie, _ = sign_in(direct.url, headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"})
        assert status == 302 and "Secure" not in cookie
    import sqlite3

    with sqlite3.connect(inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db")) as log:
        addresses = [row[0] for row in log.execute("select client_ip from sign_ins where outcome = 'succeeded'")]
    assert "203.0.113.9" not in addresses


def test_the_proxy_s_client_address_is_what_the_log_and_the_throttle_see(server, inventory):
    import sqlite3

    status, _, _ = sign_in(server.url, password="wrong password!", headers={"X-Forwarded-For": "198.51.100.7"})
    assert status == 200
    with sqlite3.connect(inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db")) as log:
        last = log.execute("select client_ip, outcome from sign_ins order by id desc limit 1").fetchone()
    assert last == ("198.51.100.7", "failed")


def test_a_removed_account_is_out_at_its_next_request_on_the_real_server(inventory, tmp_path):
    """Finding 1: before, alice's cookie outlived her removal, even across a restart."""
    config = write_config(tmp_path, public=True, name="removal.toml")
    with serving(inventory.db_path, config, public=True, env=environment()) as running:
        _, _, value = sign_in(running.url)
        cookie = {"Cookie": f"ds_actor={value}"}
        assert fetch(f"{running.url}/inventory/users.json", headers=cookie)[0] == 200
        write_config(tmp_path, public=True, name="removal.toml", accounts=False)  # the account is gone; no restart
        status, _, body = fetch(f"{running.url}/inventory/users.json", headers=cookie)
        assert status == 404 and not EMAIL.search(body)
        assert fetch(f"{running.url}/-/actor.json", headers=cookie)[0] == 403  # anonymous again


# -- in a browser ---------------------------------------------------------------------------------



@contextlib.contextmanager
def another_site(html: str):
    """A page on another origin (another port of 127.0.0.1), as an attacker's site would be."""
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=site.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{site.server_address[1]}/"
    finally:
        site.shutdown()
        site.server_close()


def browser_sign_in(page, base_url):
    page.goto(f"{base_url}/-/login")
    page.fill("#id_username", IT_USERNAME)
    page.fill("#id_password", IT_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base_url}/")


def session_cookie(context):
    return next((cookie for cookie in context.cookies() if cookie["name"] == "ds_actor"), None)


def test_the_browser_keeps_the_session_cookie_from_scripts(browser, server):
    context = browser.new_context()
    page = context.new_page()
    browser_sign_in(page, server.url)
    cookie = session_cookie(context)
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Lax" and cookie["secure"] is False
    assert "ds_actor" not in page.evaluate("document.cookie")
    response = page.goto(f"{server.url}/inventory/users")
    headers = response.headers
    assert headers["x-frame-options"] == "DENY" and "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["referrer-policy"] == "same-origin"
    context.close()
    # Behind the trusted proxy, over HTTPS, the browser gets a Secure cookie.
    proxied = browser.new_context(extra_http_headers={"X-Forwarded-Proto": "https"})
    page = proxied.new_page()
    browser_sign_in(page, server.url)
    assert session_cookie(proxied)["secure"] is True
    proxied.close()


def test_another_site_cannot_sign_a_browser_in(browser, server):
    """Login CSRF: a page elsewhere posts the sign-in form with the attacker's credentials to a
    browser that has no cookie for the inventory yet (asgi-csrf lets such a POST through)."""
    attack = f"""<form id=f method=post action="{server.url}/-/login">
      <input name=username value="{IT_USERNAME}"><input name=password value="{IT_PASSWORD}">
      <input name=csrftoken value="whatever"></form><script>document.getElementById('f').submit()</script>"""
    context = browser.new_context()
    page = context.new_page()
    with another_site(attack) as url:
        page.goto(url)
        page.wait_for_url(f"{server.url}/-/login")
        assert "expired" in page.inner_text("body")
    assert session_cookie(context) is None
    assert page.goto(f"{server.url}/inventory/users").status == 404
    context.close()


def test_another_site_cannot_frame_any_page(browser, server):
    """Clickjacking: the public page (which needs no cookie) must not render inside another site."""
    context = browser.new_context()
    page = context.new_page()
    with another_site(f'<iframe id=x src="{server.url}/transparency" width=800 height=600></iframe>') as url:
        page.goto(url)
        page.wait_for_timeout(1000)  # give the frame every chance to load
        assert page.frame_locator("#x").locator("text=Kahoot!").count() == 0
    context.close()


def test_log_out_in_the_menu_ends_the_session_on_the_server(browser, server):
    context = browser.new_context()
    page = context.new_page()
    browser_sign_in(page, server.url)
    value = session_cookie(context)["value"]
    page.click("details.nav-menu summary")
    page.click("button:has-text('Log out')")
    page.wait_for_url(re.compile(re.escape(server.url) + r"/(transparency)?$"))
    assert session_cookie(context) is None
    # The old cookie, replayed by someone who copied it, opens nothing.
    status, _, _ = fetch(f"{server.url}/inventory/users.json", headers={"Cookie": f"ds_actor={value}"})
    assert status == 404
    context.close()
