"""The emulated identity providers' sign-in endpoints (emulators.google.openid,
emulators.microsoft.openid), through the real client libraries over real HTTP(S): the
discovery documents, the authorization-code flow with PKCE, codes that work once and expire
by the emulator's clock, keys that rotate, and the spoiled tokens the sign-in tests rely on
being refused by the libraries that verify them."""

from __future__ import annotations

import base64
import hashlib
import secrets
import warnings
from urllib.parse import parse_qs, urlsplit

import jwt
import msal
import pytest
import requests
from google.auth.transport.requests import Request
from google.oauth2 import id_token as google_id_token

from emulators.clock import ManualClock
from emulators.google.server import GoogleEmulator
from emulators.google.tenant import build_tenant as build_google_tenant
from emulators.microsoft.server import MicrosoftEmulator
from emulators.microsoft.tenant import build_tenant as build_microsoft_tenant

GOOGLE_CLIENT = "4242-signin.apps.googleusercontent.com"
GOOGLE_SECRET = "google-sign-in-secret"
MS_CLIENT = "5b0c4a3e-1d2f-4e6a-9b8c-7d6e5f4a3b2c"
MS_SECRET = "microsoft-sign-in-secret"
REDIRECT = "http://127.0.0.1:9/-/sign-in/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


# -- Google ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def google_tenant():
    return build_google_tenant(users=40, seed=3)


@pytest.fixture
def google_clock():
    return ManualClock()


@pytest.fixture
def google(google_tenant, google_clock):
    with GoogleEmulator(google_tenant, clock=google_clock) as emulator:
        emulator.register_sign_in_client(GOOGLE_CLIENT, GOOGLE_SECRET, [REDIRECT])
        yield emulator


def google_discovery(google):
    return requests.get(google.issuer + "/.well-known/openid-configuration", timeout=10).json()


def google_code(google, account, *, verifier_challenge=None, nonce="n-1", **extra):
    """Through the account chooser's form, as a browser posts it: (status, query of the redirect)."""
    params = {"client_id": GOOGLE_CLIENT, "redirect_uri": REDIRECT, "response_type": "code",
              "scope": "openid email profile", "state": "s-1", "nonce": nonce, **extra}
    if verifier_challenge:
        params.update(code_challenge=verifier_challenge, code_challenge_method="S256")
    answer = requests.post(google_discovery(google)["authorization_endpoint"], data={**params, "account": account},
                           allow_redirects=False, timeout=10)
    return answer.status_code, query_of(answer.headers.get("Location", ""))


def google_exchange(google, code, verifier=None, **overrides):
    form = {"grant_type": "authorization_code", "code": code, "client_id": GOOGLE_CLIENT, "client_secret": GOOGLE_SECRET,
            "redirect_uri": REDIRECT, **({"code_verifier": verifier} if verifier else {}), **overrides}
    return requests.post(google_discovery(google)["token_endpoint"], data=form, timeout=10)


def google_verify(google, token):
    return google_id_token.verify_token(token, Request(), audience=GOOGLE_CLIENT,
                                        certs_url=google_discovery(google)["jwks_uri"])


def admin_of(tenant):
    return next(user for user in tenant.users.values() if user.is_admin).primary_email


def test_google_discovery_names_the_emulator_s_endpoints(google):
    discovery = google_discovery(google)
    assert discovery["issuer"] == google.issuer
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        assert discovery[name].startswith(google.issuer + "/")
    assert "S256" in discovery["code_challenge_methods_supported"]
    assert requests.get(discovery["jwks_uri"], timeout=10).json()["keys"][0]["alg"] == "RS256"


def test_google_chooser_page_lists_the_admin_first(google, google_tenant):
    page = requests.get(google_discovery(google)["authorization_endpoint"], timeout=10, params={
        "client_id": GOOGLE_CLIENT, "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid email", "state": "x"})
    assert page.status_code == 200
    assert page.text.index(admin_of(google_tenant)) < page.text.index('name="account" type="email"')
    assert page.text.index(admin_of(google_tenant)) == min(page.text.index(u.primary_email)
                                                          for u in google_tenant.users.values() if u.primary_email in page.text)


def test_google_code_flow_gives_a_token_google_auth_verifies(google, google_tenant):
    verifier, challenge = pkce()
    status, back = google_code(google, admin_of(google_tenant), verifier_challenge=challenge)
    assert status == 302 and back["state"] == "s-1" and back["hd"] == google_tenant.domain
    answer = google_exchange(google, back["code"], verifier)
    assert answer.status_code == 200, answer.text
    claims = google_verify(google, answer.json()["id_token"])
    assert claims["email"] == admin_of(google_tenant) and claims["hd"] == google_tenant.domain
    assert claims["email_verified"] is True and claims["nonce"] == "n-1" and claims["iss"] == google.issuer


def test_google_code_works_once(google, google_tenant):
    _, back = google_code(google, admin_of(google_tenant))
    assert google_exchange(google, back["code"]).status_code == 200
    replay = google_exchange(google, back["code"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_google_code_expires_by_the_emulator_s_clock(google, google_tenant, google_clock):
    _, back = google_code(google, admin_of(google_tenant))
    google_clock.advance(601)
    late = google_exchange(google, back["code"])
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"
    _, back = google_code(google, admin_of(google_tenant))
    google_clock.advance(599)
    assert google_exchange(google, back["code"]).status_code == 200


@pytest.mark.parametrize("change, error", [
    ({"client_secret": "wrong"}, "invalid_client"),
    ({"redirect_uri": "http://127.0.0.1:9/elsewhere"}, "redirect_uri_mismatch"),
    ({"code_verifier": "not-the-verifier-" + "x" * 30}, "invalid_grant"),
])
def test_google_token_endpoint_refuses(google, google_tenant, change, error):
    verifier, challenge = pkce()
    _, back = google_code(google, admin_of(google_tenant), verifier_challenge=challenge)
    answer = google_exchange(google, back["code"], verifier, **change)
    assert answer.status_code in (400, 401) and answer.json()["error"] == error


def test_google_authorize_refuses_unknown_clients_and_redirects(google):
    endpoint = google_discovery(google)["authorization_endpoint"]
    unknown = requests.get(endpoint, params={"client_id": "nobody.apps.googleusercontent.com", "redirect_uri": REDIRECT,
                                             "response_type": "code", "scope": "openid"}, allow_redirects=False, timeout=10)
    assert unknown.status_code == 401 and "invalid_client" in unknown.text
    elsewhere = requests.get(endpoint, params={"client_id": GOOGLE_CLIENT, "redirect_uri": "https://evil.example/cb",
                                               "response_type": "code", "scope": "openid"}, allow_redirects=False, timeout=10)
    assert elsewhere.status_code == 400 and "redirect_uri_mismatch" in elsewhere.text and "Location" not in elsewhere.headers


def test_google_keys_rotate(google, google_tenant):
    before = google.mint_id_token(admin_of(google_tenant), client_id=GOOGLE_CLIENT)
    new_kid = google.rotate_signing_key()
    after = google.mint_id_token(admin_of(google_tenant), client_id=GOOGLE_CLIENT)
    assert jwt.get_unverified_header(after)["kid"] == new_kid != jwt.get_unverified_header(before)["kid"]
    assert google_verify(google, before)["email"] == google_verify(google, after)["email"]
    google.rotate_signing_key(keep_previous=False)
    with pytest.raises(jwt.PyJWKClientError):
        google_verify(google, after)  # its key is no longer published


@pytest.mark.parametrize("kind, error", [
    ("forged", jwt.InvalidSignatureError), ("expired", jwt.ExpiredSignatureError), ("wrong_audience", jwt.InvalidAudienceError),
])
def test_google_spoiled_tokens_fail_google_auth(google, google_tenant, kind, error):
    with pytest.raises(error):
        google_verify(google, google.mint_id_token(admin_of(google_tenant), client_id=GOOGLE_CLIENT, spoil=kind))


def test_google_spoiled_claims_verify_but_say_what_they_say(google, google_tenant):
    """Another domain, a consumer account, an unverified address: signed as Google signs them;
    only the relying party's own checks can refuse them."""
    admin = admin_of(google_tenant)
    other = google_verify(google, google.mint_id_token(admin, client_id=GOOGLE_CLIENT, spoil="other_domain"))
    assert other["hd"] == "other-district.example" and other["email"].endswith("@other-district.example")
    assert "hd" not in google_verify(google, google.mint_id_token(admin, client_id=GOOGLE_CLIENT, spoil="no_domain"))
    unverified = google_verify(google, google.mint_id_token(admin, client_id=GOOGLE_CLIENT, spoil="unverified_email"))
    assert unverified["email_verified"] is False


def test_google_spoil_next_applies_to_the_next_exchange_only(google, google_tenant):
    google.spoil_next_id_token("other_domain")
    for expected in ("other-district.example", google_tenant.domain):
        _, back = google_code(google, admin_of(google_tenant))
        assert google_verify(google, google_exchange(google, back["code"]).json()["id_token"])["hd"] == expected
    with pytest.raises(ValueError, match="unknown spoil"):
        google.spoil_next_id_token("nonsense")


def test_google_outside_accounts_sign_in_without_the_district_s_domain(google):
    google.add_outside_account("someone@gmail.example")
    google.add_outside_account("teacher@other-district.example", hd="other-district.example")
    _, consumer = google_code(google, "someone@gmail.example")
    claims = google_verify(google, google_exchange(google, consumer["code"]).json()["id_token"])
    assert "hd" not in claims and claims["email"] == "someone@gmail.example"
    _, other = google_code(google, "teacher@other-district.example")
    assert google_verify(google, google_exchange(google, other["code"]).json()["id_token"])["hd"] == "other-district.example"


def test_google_suspended_accounts_get_no_code(google):
    google.mutate([{"op": "add_user", "user": {"id": "118000000000000000001", "primaryEmail": "gone@district.example",
                                                "name": {"givenName": "Gone", "familyName": "Away"}, "suspended": True}}])
    status, _ = google_code(google, "gone@district.example")
    assert status == 200  # the chooser again, saying why


# -- Microsoft ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ms_tenant():
    return build_microsoft_tenant(users=60, seed=5)


@pytest.fixture
def ms_clock():
    return ManualClock()


@pytest.fixture
def microsoft(ms_tenant, ms_clock, monkeypatch):
    with MicrosoftEmulator(ms_tenant, clock=ms_clock, sign_in_pages=True) as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_pem_path)
        emulator.register_sign_in_app(MS_CLIENT, MS_SECRET, [REDIRECT])
        yield emulator


def member(tenant, index=0):
    return [u for u in tenant.users if u.get("userType") == "Member" and u.get("accountEnabled")][index]


def msal_app(microsoft, tenant):
    return msal.ConfidentialClientApplication(MS_CLIENT, client_credential=MS_SECRET, instance_discovery=False,
                                              authority=f"{microsoft.authority_host}/{tenant.tenant_id}",
                                              exclude_scopes=["offline_access"], token_cache=msal.TokenCache())


def ms_sign_in(microsoft, tenant, upn):
    """MSAL's flow through the emulator's (plain-HTTP) page: (app, flow, the redirect's query)."""
    app = msal_app(microsoft, tenant)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # MSAL recommends form_post; see plugins/signin
        flow = app.initiate_auth_code_flow(["email"], redirect_uri=REDIRECT, response_mode="query")
    assert flow["auth_uri"].startswith(microsoft.sign_in_pages_url + "/")
    answer = requests.post(flow["auth_uri"], data={"account": upn}, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return app, flow, query_of(answer.headers["Location"])


def ms_verify(microsoft, tenant, token):
    configuration = requests.get(f"{microsoft.authority_host}/{tenant.tenant_id}/v2.0/.well-known/openid-configuration",
                                 timeout=10).json()
    keys = jwt.PyJWKSet.from_dict(requests.get(configuration["jwks_uri"], timeout=10).json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next((k for k in keys.keys if k.key_id == kid), None)
    if key is None:
        raise jwt.PyJWKClientError(f"no key {kid}")
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=MS_CLIENT, issuer=configuration["issuer"])


def test_microsoft_msal_code_flow_gives_a_token_with_tid_and_groups(microsoft, ms_tenant):
    user = member(ms_tenant)
    app, flow, back = ms_sign_in(microsoft, ms_tenant, user["userPrincipalName"])
    result = app.acquire_token_by_auth_code_flow(flow, back)
    assert "id_token" in result, result
    claims = ms_verify(microsoft, ms_tenant, result["id_token"])
    assert claims["tid"] == ms_tenant.tenant_id and claims["oid"] == user["id"]
    assert claims["preferred_username"] == user["userPrincipalName"] and "idp" not in claims
    assert claims["groups"] == [g["id"] for g in ms_tenant.groups if user["id"] in g["members"]]


def test_microsoft_code_works_once_and_expires(microsoft, ms_tenant, ms_clock):
    upn = member(ms_tenant)["userPrincipalName"]
    app, flow, back = ms_sign_in(microsoft, ms_tenant, upn)
    assert "id_token" in app.acquire_token_by_auth_code_flow(flow, back)
    assert app.acquire_token_by_auth_code_flow(flow, back)["error_codes"] == [54005]
    app, flow, back = ms_sign_in(microsoft, ms_tenant, upn)
    ms_clock.advance(601)
    assert app.acquire_token_by_auth_code_flow(flow, back)["error_codes"] == [70008]


def test_msal_refuses_a_replayed_or_missing_state(microsoft, ms_tenant):
    app, flow, back = ms_sign_in(microsoft, ms_tenant, member(ms_tenant)["userPrincipalName"])
    with pytest.raises(ValueError, match="state"):
        app.acquire_token_by_auth_code_flow(flow, {**back, "state": "another"})
    with pytest.raises(ValueError, match="state"):
        app.acquire_token_by_auth_code_flow(flow, {k: v for k, v in back.items() if k != "state"})


def test_microsoft_wrong_secret_and_pkce_are_refused(microsoft, ms_tenant):
    upn = member(ms_tenant)["userPrincipalName"]
    _, flow, back = ms_sign_in(microsoft, ms_tenant, upn)
    wrong = msal.ConfidentialClientApplication(MS_CLIENT, client_credential="not the secret", instance_discovery=False,
                                               authority=f"{microsoft.authority_host}/{ms_tenant.tenant_id}",
                                               exclude_scopes=["offline_access"])
    assert wrong.acquire_token_by_auth_code_flow(flow, back)["error_codes"] == [7000215]
    app, flow, back = ms_sign_in(microsoft, ms_tenant, upn)
    assert app.acquire_token_by_auth_code_flow({**flow, "code_verifier": "x" * 43}, back)["error_codes"] == [50148]


def test_microsoft_keys_rotate_and_spoiled_tokens_fail(microsoft, ms_tenant):
    upn = member(ms_tenant)["userPrincipalName"]
    before = microsoft.mint_id_token(upn, client_id=MS_CLIENT)
    microsoft.rotate_signing_key()
    assert ms_verify(microsoft, ms_tenant, before)["oid"] == ms_verify(
        microsoft, ms_tenant, microsoft.mint_id_token(upn, client_id=MS_CLIENT))["oid"]
    for kind, error in (("forged", jwt.InvalidSignatureError), ("expired", jwt.ExpiredSignatureError),
                        ("wrong_audience", jwt.InvalidAudienceError), ("other_tenant", jwt.InvalidIssuerError)):
        with pytest.raises(error):
            ms_verify(microsoft, ms_tenant, microsoft.mint_id_token(upn, client_id=MS_CLIENT, spoil=kind))


def test_microsoft_groups_overage_and_guests(microsoft, ms_tenant):
    user = member(ms_tenant)
    microsoft.register_sign_in_app(MS_CLIENT, MS_SECRET, [REDIRECT], groups_limit=0)
    claims = ms_verify(microsoft, ms_tenant, microsoft.mint_id_token(user["userPrincipalName"], client_id=MS_CLIENT))
    assert "groups" not in claims and claims["_claim_names"] == {"groups": "src1"}
    guest = next(u for u in ms_tenant.users if u.get("userType") == "Guest")
    claims = ms_verify(microsoft, ms_tenant, microsoft.mint_id_token(guest["mail"], client_id=MS_CLIENT))
    assert claims["tid"] == ms_tenant.tenant_id and claims["idp"] != claims["iss"] and claims["preferred_username"] == guest["mail"]


def test_microsoft_authorize_refuses_unknown_apps_redirects_and_disabled_users(microsoft, ms_tenant):
    page = f"{microsoft.sign_in_pages_url}/{ms_tenant.tenant_id}/oauth2/v2.0/authorize"
    base = {"client_id": MS_CLIENT, "redirect_uri": REDIRECT, "response_type": "code", "scope": "openid", "state": "s"}
    assert "AADSTS700016" in requests.get(page, params={**base, "client_id": "00000000-0000-0000-0000-000000000001"}, timeout=10).text
    elsewhere = requests.get(page, params={**base, "redirect_uri": "https://evil.example/cb"}, allow_redirects=False, timeout=10)
    assert "AADSTS50011" in elsewhere.text and "Location" not in elsewhere.headers
    disabled = next((u for u in ms_tenant.users if not u.get("accountEnabled", True)), None)
    if disabled is not None:
        answer = requests.post(page, data={**base, "account": disabled["userPrincipalName"]}, allow_redirects=False, timeout=10)
        assert answer.status_code == 200 and "AADSTS50057" in answer.text


def test_google_directory_answers_has_member_for_a_delegated_admin_only(google, google_tenant, rsa_key):
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2 import service_account

    from emulators.google.server import new_service_account_key

    scope = "https://www.googleapis.com/auth/admin.directory.group.member.readonly"
    key = new_service_account_key(token_uri=google.token_uri, private_key=rsa_key)
    google.delegate(key, scopes=[scope])
    google.set_group_members("it@district.example", ["leads@district.example"])
    google.set_group_members("leads@district.example", ["someone@district.example"])
    url = google.api_root + "admin/directory/v1/groups/{}/hasMember/{}"
    assert requests.get(url.format("it@district.example", "someone@district.example"), timeout=10).status_code == 401
    admin = AuthorizedSession(service_account.Credentials.from_service_account_info(key, scopes=[scope], subject=admin_of(google_tenant)))
    assert admin.get(url.format("it@district.example", "someone@district.example"), timeout=10).json() == {"isMember": True}
    assert admin.get(url.format("it@district.example", "nobody@district.example"), timeout=10).json() == {"isMember": False}
    assert admin.get(url.format("missing@district.example", "someone@district.example"), timeout=10).status_code == 404
    staff = next(u.primary_email for u in google_tenant.users.values() if not u.is_admin and not u.suspended)
    not_admin = AuthorizedSession(service_account.Credentials.from_service_account_info(key, scopes=[scope], subject=staff))
    assert not_admin.get(url.format("it@district.example", "someone@district.example"), timeout=10).status_code == 403
