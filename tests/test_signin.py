"""The IT door, through Datasette's own client: sessions that end, no HTTP Basic, password
checks off the event loop, throttling without username enumeration, CSRF on the sign-in
form even without cookies, and the access log (issue 13, findings 1 to 4 and 7)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import re
import sqlite3
import stat
import threading

import pytest

import plugins.signin.passwords as passwords
import scanner.timestamps
from datasette import hookimpl as datasette_hookimpl
from scanner.config import load_config
from scanner.serve import build_datasette
from tests.publish_fixtures import (
    IT_HASH_VARIABLE, IT_PASSWORD, IT_PASSWORD_HASH, IT_USERNAME, build_inventory, sign_in_cookies, write_config,
)

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
SECOND_USER, SECOND_PASSWORD, SECOND_VARIABLE = "mlee", "another long passphrase", "APP_INVENTORY_TEST_HASH_MLEE"


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    return build_inventory(tmp_path_factory.mktemp("signin"))


@pytest.fixture(autouse=True)
def environment(monkeypatch):
    monkeypatch.setenv(IT_HASH_VARIABLE, IT_PASSWORD_HASH)
    monkeypatch.setenv(SECOND_VARIABLE, passwords.hash_password(SECOND_PASSWORD, iterations=1000))
    monkeypatch.setenv("DATASETTE_SECRET", "a fixed secret, as the README advises")


def two_accounts(directory, *, public=True, accounts=(IT_USERNAME, SECOND_USER), signin=(), name="signin.toml"):
    variables = {IT_USERNAME: IT_HASH_VARIABLE, SECOND_USER: SECOND_VARIABLE}
    table = ", ".join(f'{user} = "{variables[user]}"' for user in accounts)
    return write_config(directory, public=public, accounts=False, name=name,
                        signin=[f"password_accounts = {{ {table} }}", *signin])


@pytest.fixture
def config_path(inventory, tmp_path):
    return two_accounts(tmp_path)


@pytest.fixture
async def datasette(inventory, config_path):
    instance = build_datasette(inventory.db_path, load_config(config_path))
    await instance.invoke_startup()
    return instance


@pytest.fixture
def clock(monkeypatch):
    """Move the one clock the code reads (scanner.timestamps.clock)."""
    class Clock:
        offset = dt.timedelta()

        def advance(self, **kwargs):
            self.offset += dt.timedelta(**kwargs)

    moved = Clock()
    real = scanner.timestamps.clock
    monkeypatch.setattr(scanner.timestamps, "clock", lambda: real() + moved.offset)
    return moved


async def login_form(datasette):
    form = await datasette.client.get("/-/login")
    return re.search(r'name="csrftoken" value="([^"]+)"', form.text).group(1), form.cookies["ds_csrftoken"]


async def attempt(datasette, username, password, **headers):
    token, csrf = await login_form(datasette)
    return await datasette.client.post("/-/login", data={"username": username, "password": password, "csrftoken": token},
                                       cookies={"ds_csrftoken": csrf}, headers=headers)


def access_log(inventory, sql, params=()):
    path = inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db")
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(sql, params)]


async def actor_of(datasette, cookies):
    """Who Datasette thinks the cookies belong to (None: anonymous, to whom /-/actor.json is closed)."""
    response = await datasette.client.get("/-/actor.json", cookies=cookies)
    return None if response.status_code == 403 else response.json()["actor"]


# -- finding 1: sessions, not signed actors --------------------------------------------------------

async def test_a_signed_actor_cookie_is_not_a_session(datasette):
    """Before: any ds_actor cookie signed with DATASETTE_SECRET opened the inventory, forever."""
    forged = {"ds_actor": datasette.sign({"a": {"id": "alice", "role": "it"}}, "actor")}
    assert await actor_of(datasette, forged) is None
    response = await datasette.client.get("/inventory/users.json", cookies=forged)
    assert response.status_code == 404 and not EMAIL.search(response.text)
    # ...and the stale cookie is cleared.
    assert "ds_actor=;" in response.headers.get("set-cookie", "").replace('""', "")


async def test_a_removed_account_is_out_at_its_next_request(datasette, inventory, config_path):
    cookies = await sign_in_cookies(datasette, SECOND_USER, SECOND_PASSWORD)
    assert (await datasette.client.get("/inventory/users.json", cookies=cookies)).status_code == 200
    two_accounts(config_path.parent, accounts=(IT_USERNAME,))  # mlee is removed; no restart
    assert await actor_of(datasette, cookies) is None
    assert (await datasette.client.get("/inventory/users.json", cookies=cookies)).status_code == 404
    ended = access_log(inventory, "select end_reason from sessions where actor_id = ? and ended_at is not null", [SECOND_USER])
    assert ended[-1]["end_reason"] == "no longer IT staff in the configuration"
    # Put back in the configuration, the old session stays ended: a new sign-in is needed.
    two_accounts(config_path.parent)
    assert await actor_of(datasette, cookies) is None


async def test_a_configuration_that_no_longer_loads_lets_nobody_in(datasette, config_path):
    cookies = await sign_in_cookies(datasette)
    config_path.write_text(config_path.read_text() + "\n[serve\n", encoding="utf-8")
    assert (await datasette.client.get("/inventory/users.json", cookies=cookies)).status_code == 404
    two_accounts(config_path.parent)
    assert (await datasette.client.get("/inventory/users.json", cookies=cookies)).status_code == 200


async def test_a_session_ends_after_session_hours(datasette, inventory, clock):
    cookies = await sign_in_cookies(datasette)
    clock.advance(hours=7, minutes=59)
    assert (await actor_of(datasette, cookies))["id"] == IT_USERNAME
    clock.advance(minutes=2)
    assert await actor_of(datasette, cookies) is None
    assert (await datasette.client.get("/inventory/users.json", cookies=cookies)).status_code == 404
    assert access_log(inventory, "select reason from sign_ins where event = 'session_ended' order by id desc limit 1") == [
        {"reason": "expired"}]


async def test_signing_in_again_with_an_expired_session_cookie_works(datasette, clock):
    old = await sign_in_cookies(datasette)
    clock.advance(hours=9)
    token, csrf = await login_form(datasette)
    again = await datasette.client.post("/-/login", data={"username": IT_USERNAME, "password": IT_PASSWORD, "csrftoken": token},
                                        cookies={**old, "ds_csrftoken": csrf})
    assert again.status_code == 302
    session_cookies = [value for value in again.headers.get_list("set-cookie") if value.startswith("ds_actor=")]
    assert len(session_cookies) == 1 and "Max-Age=0" not in session_cookies[0]  # the new session, not its deletion
    assert (await actor_of(datasette, {"ds_actor": again.cookies["ds_actor"]}))["id"] == IT_USERNAME


async def test_session_hours_is_configurable(inventory, tmp_path, clock):
    datasette = build_datasette(inventory.db_path, load_config(two_accounts(tmp_path, signin=["session_hours = 1"])))
    cookies = await sign_in_cookies(datasette)
    assert "Max-Age=3600" in (await attempt(datasette, IT_USERNAME, IT_PASSWORD)).headers["set-cookie"]
    clock.advance(minutes=61)
    assert await actor_of(datasette, cookies) is None


async def test_every_sign_in_is_a_new_session_and_signing_out_ends_it_on_the_server(datasette, inventory):
    first = await sign_in_cookies(datasette)
    second = await sign_in_cookies(datasette)
    assert first["ds_actor"] != second["ds_actor"]
    page = await datasette.client.get("/", cookies=second)
    token = re.search(r'name="csrftoken" value="([^"]+)"', page.text).group(1)  # Datasette's own "Log out" button
    out = await datasette.client.post("/-/logout", data={"csrftoken": token},
                                      cookies={**second, "ds_csrftoken": page.cookies["ds_csrftoken"]})
    assert out.status_code == 302 and "ds_actor=" in out.headers["set-cookie"]
    # The cookie, kept and sent again, no longer opens anything: the session ended on the server.
    assert await actor_of(datasette, second) is None
    assert (await datasette.client.get("/inventory/users.json", cookies=second)).status_code == 404
    assert (await actor_of(datasette, first))["id"] == IT_USERNAME
    assert access_log(inventory, "select event from sign_ins order by id desc limit 1") == [{"event": "sign_out"}]


# -- finding 2: no HTTP Basic anywhere --------------------------------------------------------------

class BasicAuthPlugin:
    """Stands for any installed Datasette plugin that believes an Authorization header
    (datasette-auth-passwords did, on every URL)."""

    __name__ = "basic-auth-stand-in"

    @datasette_hookimpl
    def actor_from_request(self, request):
        header = request.headers.get("authorization", "")
        if header.startswith("Basic "):
            username, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (username, password) == (IT_USERNAME, IT_PASSWORD):
                return {"id": username, "role": "it"}
        return None


@pytest.fixture
def basic_auth_plugins():
    from datasette.plugins import pm

    stand_in = BasicAuthPlugin()
    pm.register(stand_in, name="basic-auth-stand-in")
    pm.load_setuptools_entrypoints("datasette", name="auth_passwords")  # if installed: the real thing
    try:
        yield
    finally:
        pm.unregister(name="basic-auth-stand-in")
        if pm.get_plugin("auth_passwords") is not None:
            pm.unregister(name="auth_passwords")


async def test_http_basic_credentials_open_nothing(basic_auth_plugins, inventory, config_path):
    datasette = build_datasette(inventory.db_path, load_config(config_path))
    basic = {"authorization": "Basic " + base64.b64encode(f"{IT_USERNAME}:{IT_PASSWORD}".encode()).decode()}
    for path in ("/inventory/users.json", "/-/actor.json", "/inventory.json?sql=select+email+from+users",
                 "/inventory/public_apps.json?_col=id&_where=0+union+select+email+from+users+--+"):
        response = await datasette.client.get(path, headers=basic)
        assert response.status_code in (200, 403, 404), path
        assert not EMAIL.search(response.text), path
    assert (await datasette.client.get("/-/actor.json", headers=basic)).status_code == 403  # anonymous
    # The public page is no password oracle: it looks the same with right and wrong credentials.
    wrong = {"authorization": "Basic " + base64.b64encode(f"{IT_USERNAME}:wrong".encode()).decode()}
    right_page = (await datasette.client.get("/transparency", headers=basic)).text
    assert "IT home" not in right_page and right_page == (await datasette.client.get("/transparency", headers=wrong)).text


async def test_a_malformed_authorization_header_is_no_error(basic_auth_plugins, inventory, config_path):
    datasette = build_datasette(inventory.db_path, load_config(config_path))
    for value in ("Basic !!!", "Basic", "Bearer x", "Basic " + base64.b64encode(b"\xff\xfe").decode()):
        response = await datasette.client.get("/transparency", headers={"authorization": value})
        assert response.status_code == 200, value


# -- finding 3: the password check is off the event loop -----------------------------------------------

async def test_a_slow_password_check_does_not_hold_up_other_visitors(datasette, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    events = []

    def slow_verify(password, encoded):
        events.append(("check started", threading.current_thread().name))
        entered.set()
        release.wait(20)  # at most: on the event loop it would block everything, this test included
        events.append(("check finished", None))
        return False

    monkeypatch.setattr(passwords, "verify_password", slow_verify)
    sign_in = asyncio.ensure_future(attempt(datasette, IT_USERNAME, "a wrong password"))
    for _ in range(400):
        if entered.is_set():
            break
        await asyncio.sleep(0.05)
    assert entered.is_set()
    page = await asyncio.wait_for(datasette.client.get("/transparency"), timeout=30)
    events.append(("public page answered", page.status_code))
    release.set()
    assert (await sign_in).status_code == 200
    assert [event for event, _ in events] == ["check started", "public page answered", "check finished"]
    assert events[0][1].startswith("password-check")


async def test_too_many_checks_at_once_are_refused_not_queued(datasette, monkeypatch):
    from plugins.signin.web import state_of

    monkeypatch.setattr(state_of(datasette).passwords, "max_waiting", 0)
    response = await attempt(datasette, IT_USERNAME, IT_PASSWORD)
    assert response.status_code == 429 and "busy" in response.text and "ds_actor" not in response.cookies


# -- finding 4: throttling, lockout, no username enumeration ---------------------------------------

@pytest.fixture
def pbkdf2_work(monkeypatch):
    """The PBKDF2 iterations computed, call by call."""
    work = []
    real = hashlib.pbkdf2_hmac

    def counted(name, password, salt, iterations, *args):
        work.append(iterations)
        return real(name, password, salt, iterations, *args)

    monkeypatch.setattr(passwords.hashlib, "pbkdf2_hmac", counted)
    return work


async def test_unknown_and_known_usernames_cost_the_same_work(datasette, pbkdf2_work):
    await attempt(datasette, IT_USERNAME, "a wrong password")
    known = list(pbkdf2_work)
    pbkdf2_work.clear()
    unknown = await attempt(datasette, "nobody-here", "a wrong password")
    assert known == [1000] and pbkdf2_work == known
    assert "Invalid username or password" in unknown.text


async def test_an_account_locks_after_failures_and_unlocks_later(datasette, inventory, clock, pbkdf2_work):
    for _ in range(5):
        assert "Invalid username or password" in (await attempt(datasette, SECOND_USER, "guess")).text
    pbkdf2_work.clear()
    locked = await attempt(datasette, SECOND_USER, SECOND_PASSWORD)
    assert locked.status_code == 429 and "Too many failed sign-ins for this account" in locked.text
    assert "ds_actor" not in locked.cookies and pbkdf2_work == []  # refused before any check
    # Another account is not affected.
    assert (await attempt(datasette, IT_USERNAME, IT_PASSWORD)).status_code == 302
    clock.advance(minutes=16)
    assert (await attempt(datasette, SECOND_USER, SECOND_PASSWORD)).status_code == 302
    rows = access_log(inventory, "select outcome, reason, auth, client_ip from sign_ins where username = ? order by id", [SECOND_USER])
    assert [row["outcome"] for row in rows][-7:] == ["failed"] * 5 + ["refused", "succeeded"]
    assert {row["auth"] for row in rows} == {"password"} and {row["client_ip"] for row in rows} == {"127.0.0.1"}


async def test_an_unknown_username_locks_the_same_way(datasette):
    for _ in range(5):
        await attempt(datasette, "not-an-account", "guess")
    locked = await attempt(datasette, "not-an-account", "guess")
    assert locked.status_code == 429 and "Too many failed sign-ins for this account" in locked.text


async def test_one_address_guessing_many_usernames_is_throttled(inventory, tmp_path):
    datasette = build_datasette(inventory.db_path, load_config(two_accounts(tmp_path, signin=["max_failures_per_address = 3"])))
    for n in range(3):
        await attempt(datasette, f"user{n}", "guess")
    refused = await attempt(datasette, IT_USERNAME, IT_PASSWORD)
    assert refused.status_code == 429 and "from your address" in refused.text


# -- finding 7: CSRF on the sign-in form, allow-debug, headers ---------------------------------------

async def test_a_sign_in_without_the_csrf_cookie_is_refused(datasette, inventory):
    """asgi-csrf lets a POST with no cookie at all through; a cross-site form would sign the
    victim's browser in as the attacker (login CSRF)."""
    token, _ = await login_form(datasette)
    for cookies in ({}, {"ds_csrftoken": "forged"}):
        response = await datasette.client.post("/-/login", data={"username": IT_USERNAME, "password": IT_PASSWORD,
                                                                  "csrftoken": token if cookies else "forged"}, cookies=cookies)
        assert response.status_code == 403 and "ds_actor" not in response.cookies
    assert access_log(inventory, "select reason from sign_ins order by id desc limit 1") == [{"reason": "no valid CSRF token"}]


async def test_allow_debug_is_for_it_staff_only(datasette):
    anonymous = await datasette.client.get("/-/allow-debug?actor={}&allow={}")
    assert anonymous.status_code == 403 and "allow_debug" not in anonymous.text.lower().replace("-", "_")
    cookies = await sign_in_cookies(datasette)
    assert (await datasette.client.get("/-/allow-debug", cookies=cookies)).status_code == 200


async def test_every_response_carries_the_security_headers(datasette):
    cookies = await sign_in_cookies(datasette)
    for path, signed_in in (("/transparency", False), ("/inventory/users", False), ("/-/metadata.json", False),
                            ("/inventory/users.csv", True), ("/-/login", False), ("/", True), ("/-/dashboards/overview", True)):
        response = await datasette.client.get(path, cookies=cookies if signed_in else None)
        headers = response.headers
        assert headers["x-frame-options"] == "DENY", path
        assert headers["referrer-policy"] == "same-origin", path
        assert headers["x-content-type-options"] == "nosniff", path
        policy = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in policy and "default-src 'self'" in policy and "form-action 'self'" in policy, path
        assert ("'unsafe-eval'" in policy) == path.startswith("/-/dashboards"), path


async def test_the_session_cookie_is_http_only_same_site_and_only_as_long_as_the_session(datasette):
    cookie = (await attempt(datasette, IT_USERNAME, IT_PASSWORD)).headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "max-age", "path"} <= attributes and "secure" not in attributes  # plain http here
    assert "samesite=lax" in cookie.lower() and "max-age=28800" in cookie.lower()


# -- the access log -------------------------------------------------------------------------------

async def test_reads_of_personal_data_are_logged_with_who_what_and_when(datasette, inventory):
    person = inventory.emails[3]
    cookies = await sign_in_cookies(datasette)
    before = access_log(inventory, "select max(id) as id from requests")[0]["id"] or 0
    await datasette.client.get("/inventory/apps_used_by_person.json", params={"person": person}, cookies=cookies)
    await datasette.client.get("/inventory/users/fake:s3", cookies=cookies)
    await datasette.client.get("/inventory.csv", params={"sql": "select email from users"}, cookies=cookies)
    await datasette.client.get("/transparency", cookies=cookies)  # the public list: not personal data
    await datasette.client.get("/-/static/app.css", cookies=cookies)
    await datasette.client.get("/inventory/users.json")  # anonymous: refused, and no one to log
    rows = access_log(inventory, "select * from requests where id > ? order by id", [before])
    assert [(row["path"], row["query"]) for row in rows] == [
        ("/inventory/apps_used_by_person.json", f"person={person}"),
        ("/inventory/users/fake:s3", None),
        ("/inventory.csv", "sql=select email from users"),
    ]
    assert {(row["actor_id"], row["auth"], row["client_ip"], row["method"]) for row in rows} == {
        (IT_USERNAME, "password", "127.0.0.1", "GET")}
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["at"]) for row in rows)


async def test_it_staff_read_the_access_log_in_datasette_and_nobody_can_change_it(datasette, inventory):
    cookies = await sign_in_cookies(datasette)
    log_page = await datasette.client.get("/access_log/sign_ins.json?_shape=array", cookies=cookies)
    assert log_page.status_code == 200 and any(row["username"] == IT_USERNAME for row in log_page.json())
    assert (await datasette.client.get("/access_log/sign_ins.json")).status_code == 404  # anonymous
    for sql in ("delete from requests", "update sign_ins set username = 'x'", "drop table requests"):
        response = await datasette.client.get("/access_log.json", params={"sql": sql}, cookies=cookies)
        assert response.status_code in (400, 403), sql
    path = inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Append-only even for a process that can write the file.
    with sqlite3.connect(path) as connection:
        for sql in ("update requests set actor_id = 'someone else'", "delete from requests", "delete from sign_ins"):
            with pytest.raises(sqlite3.IntegrityError):
                connection.execute(sql)


async def test_the_access_log_is_purged_by_retention(inventory, tmp_path):
    path = inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db")
    old = "2020-01-01T00:00:00Z"
    with sqlite3.connect(path) as connection:
        connection.execute("insert into requests (at, actor_id, auth, method, path) values (?, 'old', 'password', 'GET', '/inventory/users')", [old])
        connection.execute("insert into sign_ins (at, event, outcome, auth, username) values (?, 'sign_in', 'failed', 'password', 'old')", [old])
    datasette = build_datasette(inventory.db_path, load_config(two_accounts(tmp_path)))
    await datasette.invoke_startup()  # serve purges at start, then daily
    assert access_log(inventory, "select count(*) as n from requests where at = ?", [old]) == [{"n": 0}]
    assert access_log(inventory, "select count(*) as n from sign_ins where at = ?", [old]) == [{"n": 0}]
    assert access_log(inventory, "select count(*) as n from sign_ins")[0]["n"] > 0  # recent entries stay


async def test_every_table_and_column_of_the_access_log_is_described(datasette):
    from plugins.signin.settings import ACCESS_LOG_METADATA

    cookies = await sign_in_cookies(datasette)
    tables = (await datasette.client.get("/access_log.json", cookies=cookies)).json()["tables"]
    for table in tables:
        described = ACCESS_LOG_METADATA["tables"][table["name"]]
        assert described["description"] and set(described["columns"]) == set(table["columns"]), table["name"]
