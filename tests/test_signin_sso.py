"""Sign in with Google and Sign in with Microsoft, through Datasette's own client and the two
emulated identity providers over real HTTP(S): who gets in, every way a sign-in is refused
(and recorded), sessions that end when the configuration changes, and the verification of ID
tokens with the emulators' keys (plugins/signin: google_signin.py, microsoft_signin.py, sso.py)."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

import scanner.timestamps
from plugins.signin import google_signin, microsoft_signin
from plugins.signin.membership import Identity, is_it_staff
from plugins.signin.settings import check_settings
from plugins.signin.sso import PendingSignIn, PendingSignIns, SignInRefused
from scanner import ConfigError
from scanner.config import load_config
from scanner.serve import build_datasette
from tests.publish_fixtures import IT_HASH_VARIABLE, IT_PASSWORD_HASH, build_inventory, write_config
from tests.sso_fixtures import (
    GOOGLE_CLIENT_ID, GOOGLE_SECRET, IT_GROUP, MICROSOFT_CLIENT_ID, MICROSOFT_SECRET, MICROSOFT_SECRET_ENV,
)

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
ERROR = re.compile(r'class="message-error">([^<]*)<')


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    return build_inventory(tmp_path_factory.mktemp("sso"))


@pytest.fixture(scope="module", autouse=True)
def registered(idps):
    idps.register(["http://localhost"])  # Datasette's test client asks for http://localhost


@pytest.fixture(autouse=True)
def secrets_in_environment(monkeypatch, idps):
    for name, value in idps.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATASETTE_SECRET", "a fixed secret for the sign-in tests")


async def serving(inventory, directory, lines, *, accounts=False):
    config = write_config(directory, public=True, accounts=accounts, name="sso.toml", signin=lines)
    datasette = build_datasette(inventory.db_path, load_config(config))
    await datasette.invoke_startup()
    return datasette, config


async def sign_in(datasette, provider, account, *, flow_cookie=True):
    """Click the button, pick the account on the provider's page, come back: the callback's
    answer, and the callback's path (to replay it) and the flow cookie."""
    start = await datasette.client.get(f"/-/sign-in/{provider}")
    assert start.status_code == 302, start.text
    flow = start.cookies["ds_sign_in"]
    page = requests.post(start.headers["location"], data={"account": account}, allow_redirects=False, timeout=30)
    assert page.status_code == 302, page.text
    back = urlsplit(page.headers["Location"])
    path = f"{back.path}?{back.query}"
    answer = await datasette.client.get(path, cookies={"ds_sign_in": flow} if flow_cookie else {})
    return answer, path, flow


def session_of(answer) -> dict[str, str]:
    return {"ds_actor": answer.cookies["ds_actor"]}


def last_sign_in(inventory) -> dict:
    with sqlite3.connect(inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db")) as log:
        log.row_factory = sqlite3.Row
        return dict(log.execute("select * from sign_ins order by id desc limit 1").fetchone())


def access_log(inventory, sql, params=()):
    with sqlite3.connect(inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db")) as log:
        log.row_factory = sqlite3.Row
        return [dict(row) for row in log.execute(sql, params)]


# -- who gets in --------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", ["google", "microsoft"])
async def test_it_staff_sign_in_and_read_per_person_rows(inventory, tmp_path, idps, provider):
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines())
    account = idps.google_it if provider == "google" else idps.microsoft_it
    answer, _, _ = await sign_in(datasette, provider, account)
    assert answer.status_code == 302 and answer.headers["location"] == "/"
    assert "ds_sign_in=" in answer.headers.get("set-cookie", "")  # the flow cookie is cleared
    users = await datasette.client.get("/inventory/users.json?_size=5", cookies=session_of(answer))
    assert users.status_code == 200 and EMAIL.search(users.text)
    actor = (await datasette.client.get("/-/actor.json", cookies=session_of(answer))).json()["actor"]
    assert actor == {"id": account.lower(), "auth": provider, "role": "it"}
    entry = last_sign_in(inventory)
    assert (entry["event"], entry["outcome"], entry["auth"], entry["username"]) == ("sign_in", "succeeded", provider, account.lower())
    read = access_log(inventory, "select * from requests order by id desc limit 1")[0]
    assert read["actor_id"] == account.lower() and read["auth"] == provider and read["path"] == "/inventory/users.json"


@pytest.mark.parametrize("provider", ["google", "microsoft"])
async def test_a_district_user_who_is_not_it_staff_is_refused(inventory, tmp_path, idps, provider):
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines())
    account = idps.google_staff if provider == "google" else idps.microsoft_staff
    answer, _, _ = await sign_in(datasette, provider, account)
    assert answer.status_code == 403 and "ds_actor" not in answer.cookies
    assert ERROR.search(answer.text).group(1) == f"You signed in as {account.lower()}, who is not IT staff on this server."
    entry = last_sign_in(inventory)
    assert (entry["outcome"], entry["auth"], entry["username"]) == ("failed", provider, account.lower())
    assert entry["reason"].startswith("not IT staff")


async def test_a_microsoft_group_in_it_groups_makes_its_members_it_staff(inventory, tmp_path, idps):
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines(it_emails=[], it_groups=[idps.microsoft_group.upper()],
                                                                        google=False))
    answer, _, _ = await sign_in(datasette, "microsoft", idps.microsoft_staff)
    assert answer.status_code == 302
    assert (await datasette.client.get("/inventory/users.json", cookies=session_of(answer))).status_code == 200


async def test_a_google_group_in_it_groups_is_checked_through_the_directory_api(inventory, tmp_path, idps):
    """Nested: google_in_group is in it-leads@, which is in it-staff@."""
    lines = idps.signin_lines(it_emails=[], it_groups=[IT_GROUP], microsoft=False, groups_key=True)
    datasette, _ = await serving(inventory, tmp_path, lines)
    before = idps.google.stats()["http"].get("members.hasMember", 0)
    answer, _, _ = await sign_in(datasette, "google", idps.google_in_group)
    assert answer.status_code == 302
    assert idps.google.stats()["http"]["members.hasMember"] == before + 1
    answer, _, _ = await sign_in(datasette, "google", idps.google_staff)
    assert answer.status_code == 403 and last_sign_in(inventory)["outcome"] == "failed"


async def test_a_guest_of_the_tenant_is_refused(inventory, tmp_path, idps):
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines(it_emails=[idps.microsoft_guest], google=False))
    answer, _, _ = await sign_in(datasette, "microsoft", idps.microsoft_guest)
    assert answer.status_code == 403 and "Guest accounts" in ERROR.search(answer.text).group(1)
    assert "guest" in last_sign_in(inventory)["reason"]


async def test_an_outside_google_account_is_refused_even_when_listed(inventory, tmp_path, idps):
    idps.google.add_outside_account("someone@gmail.example")
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines(it_emails=["someone@gmail.example"], microsoft=False))
    answer, _, _ = await sign_in(datasette, "google", "someone@gmail.example")
    assert answer.status_code == 403
    assert last_sign_in(inventory)["reason"] == "someone@gmail.example signed in from a personal Google account (no Workspace domain), not district.example"


# -- tokens that cannot be trusted --------------------------------------------------------------

@pytest.mark.parametrize("provider, spoil, reason", [
    ("google", "other_domain", "signed in from the Google Workspace domain other-district.example, not district.example"),
    ("google", "no_domain", "a personal Google account"),
    ("google", "expired", "Token expired"),
    ("google", "forged", "Could not verify token signature"),
    ("google", "wrong_audience", "wrong audience"),
    ("google", "wrong_nonce", "not for this sign-in"),
    ("google", "unverified_email", "no verified email address"),
    ("microsoft", "other_tenant", "Invalid issuer"),
    ("microsoft", "expired", "Signature has expired"),
    ("microsoft", "forged", "Signature verification failed"),
    ("microsoft", "wrong_audience", "Audience doesn't match"),
    ("microsoft", "wrong_nonce", "MSAL refused the ID token"),
])
async def test_a_spoiled_id_token_is_refused_and_recorded(inventory, tmp_path, idps, provider, spoil, reason):
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines())
    emulator = idps.google if provider == "google" else idps.microsoft
    emulator.spoil_next_id_token(spoil)
    answer, _, _ = await sign_in(datasette, provider, idps.google_it if provider == "google" else idps.microsoft_it)
    assert answer.status_code == 403 and "ds_actor" not in answer.cookies
    entry = last_sign_in(inventory)
    assert (entry["outcome"], entry["auth"]) == ("refused", provider)
    assert reason in entry["reason"], entry["reason"]


async def test_a_token_of_another_tenant_is_refused_even_when_its_issuer_matches(idps):
    """The tid check on its own: a token whose issuer is the district's but whose tid is not."""
    keys = requests.get(f"{idps.microsoft.authority_host}/common/discovery/v2.0/keys", timeout=10).json()
    token = idps.microsoft.mint_id_token(idps.microsoft_it, client_id=MICROSOFT_CLIENT_ID)
    issuer = f"{idps.microsoft.authority_host}/{idps.microsoft.tenant.tenant_id}/v2.0"
    claims = microsoft_signin.verify_id_token(token, jwks=keys, client_id=MICROSOFT_CLIENT_ID, issuer=issuer,
                                              tenant_id=idps.microsoft.tenant.tenant_id)
    assert claims["oid"]
    with pytest.raises(SignInRefused, match="is from the tenant"):
        microsoft_signin.verify_id_token(token, jwks=keys, client_id=MICROSOFT_CLIENT_ID, issuer=issuer,
                                         tenant_id="00000000-0000-0000-0000-000000000042")


# -- state ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("provider", ["google", "microsoft"])
async def test_a_replayed_answer_is_refused(inventory, tmp_path, idps, provider):
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines())
    answer, path, flow = await sign_in(datasette, provider, idps.google_it if provider == "google" else idps.microsoft_it)
    assert answer.status_code == 302
    again = await datasette.client.get(path, cookies={"ds_sign_in": flow})
    assert again.status_code == 403 and "ds_actor" not in again.cookies
    assert "already used" in ERROR.search(again.text).group(1)
    assert last_sign_in(inventory)["reason"] == "the sign-in is unknown, already finished or expired (a replayed state?)"


async def test_a_missing_or_foreign_state_is_refused(inventory, tmp_path, idps):
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines())
    start = await datasette.client.get("/-/sign-in/google")
    flow = start.cookies["ds_sign_in"]
    page = requests.post(start.headers["location"], data={"account": idps.google_it}, allow_redirects=False, timeout=30)
    answer = parse_qs(urlsplit(page.headers["Location"]).query)
    without_state = await datasette.client.get(f"/-/sign-in/google/callback?code={answer['code'][0]}",
                                               cookies={"ds_sign_in": flow})
    assert without_state.status_code == 403 and last_sign_in(inventory)["reason"] == "the answer carries no state"
    # An answer meant for another browser's sign-in: its state is not this browser's.
    start = await datasette.client.get("/-/sign-in/google")
    mine = start.cookies["ds_sign_in"]
    theirs = await datasette.client.get("/-/sign-in/google")
    page = requests.post(theirs.headers["location"], data={"account": idps.google_it}, allow_redirects=False, timeout=30)
    back = urlsplit(page.headers["Location"])
    crossed = await datasette.client.get(f"{back.path}?{back.query}", cookies={"ds_sign_in": mine})
    assert crossed.status_code == 403 and "ds_actor" not in crossed.cookies
    assert last_sign_in(inventory)["reason"] == "the answer's state is not the sign-in's under way"
    # ...and with no sign-in cookie at all (a link sent by someone else).
    lost, _, _ = await sign_in(datasette, "google", idps.google_it, flow_cookie=False)
    assert lost.status_code == 403
    assert last_sign_in(inventory)["reason"] == "no sign-in under way in this browser (no valid sign-in cookie)"


async def test_an_answer_refused_by_the_provider_is_recorded(inventory, tmp_path, idps):
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines())
    start = await datasette.client.get("/-/sign-in/google")
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    answer = await datasette.client.get(f"/-/sign-in/google/callback?error=access_denied&state={state}",
                                        cookies={"ds_sign_in": start.cookies["ds_sign_in"]})
    assert answer.status_code == 403 and "cancelled" in ERROR.search(answer.text).group(1)
    assert last_sign_in(inventory)["reason"] == "Google answered access_denied"


def test_sign_ins_under_way_are_taken_once_expire_and_are_bounded(monkeypatch):
    pending = PendingSignIns(limit=3)
    first = pending.add(PendingSignIn("google", "s1", "http://x/cb", {}))
    assert pending.take(first).state == "s1" and pending.take(first) is None
    real = scanner.timestamps.clock
    late = pending.add(PendingSignIn("google", "s2", "http://x/cb", {}))
    monkeypatch.setattr(scanner.timestamps, "clock", lambda: real() + dt.timedelta(minutes=11))
    assert pending.take(late) is None
    keys = [pending.add(PendingSignIn("google", f"s{n}", "http://x/cb", {})) for n in range(5)]
    assert len(pending) == 3 and pending.take(keys[0]) is None and pending.take(keys[4]).state == "s4"


# -- sessions follow the configuration -------------------------------------------------------------

@pytest.mark.parametrize("provider", ["google", "microsoft"])
async def test_removing_someone_from_it_emails_ends_their_session_at_the_next_request(inventory, tmp_path, idps, provider):
    datasette, config = await serving(inventory, tmp_path, idps.signin_lines())
    account = idps.google_it if provider == "google" else idps.microsoft_it
    answer, _, _ = await sign_in(datasette, provider, account)
    cookies = session_of(answer)
    assert (await datasette.client.get("/inventory/users.json", cookies=cookies)).status_code == 200
    others = [email for email in (idps.google_it, idps.microsoft_it) if email != account]
    write_config(tmp_path, public=True, accounts=False, name="sso.toml", signin=idps.signin_lines(it_emails=others))
    refused = await datasette.client.get("/inventory/users.json", cookies=cookies)
    assert refused.status_code == 404 and not EMAIL.search(refused.text)
    ended = access_log(inventory, "select end_reason, auth from sessions where actor_id = ? order by rowid desc limit 1",
                       [account.lower()])[0]
    assert ended == {"end_reason": "no longer IT staff in the configuration", "auth": provider}


async def test_changing_the_workspace_domain_ends_google_sessions(inventory, tmp_path, idps):
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines())
    answer, _, _ = await sign_in(datasette, "google", idps.google_it)
    write_config(tmp_path, public=True, accounts=False, name="sso.toml",
                 signin=idps.signin_lines(google_domain="another.example"))
    assert (await datasette.client.get("/inventory/users.json", cookies=session_of(answer))).status_code == 404


async def test_sign_in_keeps_working_when_the_provider_rotates_its_keys(inventory, tmp_path, idps):
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines())
    for emulator, provider, account in ((idps.google, "google", idps.google_it), (idps.microsoft, "microsoft", idps.microsoft_it)):
        emulator.rotate_signing_key(keep_previous=False)
        answer, _, _ = await sign_in(datasette, provider, account)
        assert answer.status_code == 302, last_sign_in(inventory)["reason"]


# -- the page, start-up and settings ------------------------------------------------------------------

async def test_the_page_shows_what_is_configured(inventory, tmp_path, idps, monkeypatch):
    monkeypatch.setenv(IT_HASH_VARIABLE, IT_PASSWORD_HASH)
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines(microsoft=False))
    page = (await datasette.client.get("/-/login")).text
    assert 'id="sign-in-google"' in page and 'id="sign-in-microsoft"' not in page and "id_password" not in page
    assert (await datasette.client.get("/-/sign-in/microsoft")).status_code == 404
    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines(google=False), accounts=True)
    page = (await datasette.client.get("/-/login")).text
    assert 'id="sign-in-microsoft"' in page and 'id="sign-in-google"' not in page and "id_password" in page


async def test_a_missing_client_secret_stops_serve_at_start_up(inventory, tmp_path, idps, monkeypatch):
    monkeypatch.delenv(MICROSOFT_SECRET_ENV)
    config = write_config(tmp_path, public=True, accounts=False, name="sso.toml", signin=idps.signin_lines())
    datasette = build_datasette(inventory.db_path, load_config(config))
    with pytest.raises(ConfigError, match=f"microsoft_client_secret_env: environment variable {MICROSOFT_SECRET_ENV} is not set"):
        await datasette.invoke_startup()


async def test_the_start_up_message_names_the_redirect_uris(inventory, tmp_path, idps):
    from scanner.serve import describe_addresses, served_lines

    datasette, _ = await serving(inventory, tmp_path, idps.signin_lines())
    message = describe_addresses("inventory.db", "127.0.0.1", 8001, public=True, plugin_lines=served_lines(datasette))
    assert "Sign in with Google (district.example)" in message
    assert "http://127.0.0.1:8001/-/sign-in/google/callback" in message
    assert "http://127.0.0.1:8001/-/sign-in/microsoft/callback" in message


GOOD = {"it_emails": ["a@district.example"], "google_client_id": GOOGLE_CLIENT_ID, "google_client_secret_env": "G",
        "google_domain": "district.example"}


@pytest.mark.parametrize("values, message", [
    ({**GOOD, "google_client_id": "246810-signin"}, "ending in .apps.googleusercontent.com"),
    ({**GOOD, "google_domain": None}, "google_domain is required"),
    ({**GOOD, "google_client_secret_env": "the secret itself!"}, "names the environment variable"),
    ({**GOOD, "it_emails": []}, "nobody is IT staff"),
    ({**GOOD, "it_emails": ["not an address"]}, "is not an email address"),
    ({**GOOD, "it_groups": [IT_GROUP]}, "Google's ID tokens carry no groups"),
    ({"it_emails": ["a@b.example"], "google_domain": "district.example"}, "google_client_id is not"),
    ({"it_emails": ["a@b.example"], "microsoft_client_id": MICROSOFT_CLIENT_ID, "microsoft_client_secret_env": "M",
      "microsoft_tenant_id": "district.onmicrosoft.com"}, "Directory (tenant) ID"),
    ({"it_emails": ["a@b.example"], "microsoft_client_id": MICROSOFT_CLIENT_ID, "microsoft_client_secret_env": "M",
      "microsoft_tenant_id": "8c9d0e1f-2a3b-4c5d-8e6f-7a8b9c0d1e2f", "microsoft_authority_host": "http://127.0.0.1:1"},
     "https:// URL"),
    ({**GOOD, "site_url": "https://apps.district.example/inventory"}, "without a path"),
])
def test_settings_that_cannot_work_are_refused_with_what_to_fix(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_settings({k: v for k, v in values.items() if v is not None}, "app-inventory.toml: [signin]")


def test_membership_needs_the_same_domain_or_tenant_and_a_listed_address_or_group():
    settings = {"google_client_id": GOOGLE_CLIENT_ID, "google_domain": "District.example", "it_emails": ["IT@district.example"],
                "microsoft_client_id": MICROSOFT_CLIENT_ID, "microsoft_tenant_id": "AB-tenant", "it_groups": ["G-1"]}
    assert is_it_staff(Identity("google", "1", "it@district.example", tenant="district.example"), settings)
    assert not is_it_staff(Identity("google", "1", "it@district.example", tenant="other.example"), settings)
    assert not is_it_staff(Identity("google", "1", "it@district.example", tenant="district.example"),
                           {**settings, "google_client_id": None})
    assert is_it_staff(Identity("microsoft", "o", "x@y", groups=("g-1",), tenant="ab-tenant"), settings)
    assert not is_it_staff(Identity("microsoft", "o", "x@y", groups=("g-2",), tenant="ab-tenant"), settings)
    assert not is_it_staff(Identity("password", "it@district.example"), settings)


# -- the verification alone, with the emulators' keys ------------------------------------------------

def google_keys(idps):
    return google_signin.public_keys(requests.get(idps.google.issuer + "/oauth2/v3/certs", timeout=10).json())


def verify_google(idps, token, nonce="n"):
    return google_signin.verify_id_token(token, keys=google_keys(idps), client_id=GOOGLE_CLIENT_ID, issuer=idps.google.issuer,
                                         domain="district.example", nonce=nonce)


def test_google_verification_accepts_the_real_thing(idps):
    claims = verify_google(idps, idps.google.mint_id_token(idps.google_it, client_id=GOOGLE_CLIENT_ID, nonce="n"))
    assert claims["email"] == idps.google_it and claims["hd"] == "district.example"


@pytest.mark.parametrize("spoil, match", [
    ("forged", "Could not verify token signature"), ("expired", "Token expired"), ("wrong_audience", "wrong audience"),
    ("other_domain", "other-district.example, not district.example"), ("no_domain", "personal Google account"),
    ("unverified_email", "no verified email address"), ("wrong_nonce", "nonce differs"),
])
def test_google_verification_refuses(idps, spoil, match):
    token = idps.google.mint_id_token(idps.google_it, client_id=GOOGLE_CLIENT_ID, nonce="n", spoil=spoil)
    with pytest.raises(SignInRefused, match=match):
        verify_google(idps, token)


def test_google_verification_refuses_another_issuer_and_an_unpublished_key(idps):
    token = idps.google.mint_id_token(idps.google_it, client_id=GOOGLE_CLIENT_ID, nonce="n")
    with pytest.raises(SignInRefused, match="another issuer"):
        google_signin.verify_id_token(token, keys=google_keys(idps), client_id=GOOGLE_CLIENT_ID,
                                      issuer="https://accounts.google.com", domain="district.example", nonce="n")
    with pytest.raises(SignInRefused, match="not found"):
        google_signin.verify_id_token(token, keys={"another-kid": next(iter(google_keys(idps).values()))},
                                      client_id=GOOGLE_CLIENT_ID, issuer=idps.google.issuer, domain="district.example", nonce="n")


@pytest.mark.parametrize("spoil, match", [
    ("forged", "Signature verification failed"), ("expired", "Signature has expired"),
    ("wrong_audience", "Audience doesn't match"), ("other_tenant", "Invalid issuer"),
])
def test_microsoft_verification_refuses(idps, spoil, match):
    keys = requests.get(f"{idps.microsoft.authority_host}/common/discovery/v2.0/keys", timeout=10).json()
    token = idps.microsoft.mint_id_token(idps.microsoft_it, client_id=MICROSOFT_CLIENT_ID, spoil=spoil)
    with pytest.raises(SignInRefused, match=match):
        microsoft_signin.verify_id_token(token, jwks=keys, client_id=MICROSOFT_CLIENT_ID,
                                         issuer=f"{idps.microsoft.authority_host}/{idps.microsoft.tenant.tenant_id}/v2.0",
                                         tenant_id=idps.microsoft.tenant.tenant_id)


async def test_while_the_configuration_does_not_load_the_page_says_so_and_nobody_signs_in(inventory, tmp_path, idps):
    datasette, config = await serving(inventory, tmp_path, idps.signin_lines())
    config.write_text(config.read_text() + "\nthis is not toml\n", encoding="utf-8")
    page = await datasette.client.get("/-/login")
    assert "configuration does not load" in ERROR.search(page.text).group(1) and 'id="sign-in-google"' not in page.text
    assert (await datasette.client.get("/-/sign-in/google")).status_code == 404


def test_no_client_secret_reaches_the_access_log(inventory):
    """Run last in this module: by now the log holds every kind of sign-in above."""
    assert len(access_log(inventory, "select * from sign_ins where auth in ('google', 'microsoft')")) > 20
    text = inventory.db_path.with_name(f"{inventory.db_path.stem}-access.db").read_bytes()
    assert GOOGLE_SECRET.encode() not in text and MICROSOFT_SECRET.encode() not in text
