"""Sign in with Microsoft, emulated: the Microsoft identity platform's authorization-code flow
(v2.0 endpoints) for the tenant's people, as MSAL's `initiate_auth_code_flow` /
`acquire_token_by_auth_code_flow` use it.

    GET  /{tenant}/v2.0/.well-known/openid-configuration   (emulators.microsoft.signin)
    GET  /{tenant}/discovery/v2.0/keys, /common/discovery/v2.0/keys   the signing keys (JWK Set)
    GET  /{tenant}/oauth2/v2.0/authorize   the account chooser page; POST: its form (or a
                              login_hint naming an account: straight back)
    POST /{tenant}/oauth2/v2.0/token       grant_type=authorization_code (client_credentials
                              stays with emulators.microsoft.signin)

An app registration for sign-in is registered first (`register_app`: client id, secret,
redirect URIs, whether ID tokens carry the `groups` claim), apart from the scanner's own
registration, as a district keeps them apart. Codes are single use and expire after ten
minutes of the emulator's clock; PKCE is checked; the code's client and redirect URI must
match the token request's.

ID tokens (v2.0) carry aud, iss (`<authority>/<tenant id>/v2.0`), iat, nbf, exp, name, oid,
preferred_username (the UPN; a guest's own address), email (with the email scope), sub
(pairwise), tid, ver, nonce, and `groups` (object ids of the user's groups) when the
registration asks for it; past `groups_limit` groups, the overage claims
(`_claim_names` / `_claim_sources`) instead, as Entra does past 200. A guest's token carries
`idp`, the identity provider of their home account.

A browser cannot trust the emulator's throwaway certificate, so `SignInPages` can serve the
authorize page alone over plain HTTP on 127.0.0.1 (MicrosoftEmulator(sign_in_pages=True)); the
discovery document then points the authorization endpoint there. MSAL, the token endpoint
and the keys stay on HTTPS.

Bad tokens for tests (`spoil_next`, or `mint_id_token(spoil=...)`): the common spoils of
emulators.openid, plus "other_tenant" (tid and issuer of another tenant).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from ..openid import (
    COMMON_SPOILS, ID_TOKEN_LIFETIME, Account, AuthorizationCodes, SigningKeys, SpoilQueue, account_chooser,
    error_page, pkce_matches, spoil,
)
from ..server import EmulatorHandler, ServedEmulator, UnknownControl
from .tenant import MicrosoftTenant

SPOILS = (*COMMON_SPOILS, "other_tenant")
CONSUMER_TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"  # personal Microsoft accounts
GROUPS_LIMIT = 200  # JWT: past this many groups, Entra sends the overage claims instead
PAGE_ACCOUNTS = 40
HTML = "text/html; charset=utf-8"
JSON = "application/json; charset=utf-8"
CODE_PROBLEMS = {  # AADSTS code and message for a code that cannot be redeemed
    "used": (54005, "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
                    "existing refresh token."),
    "expired": (70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new "
                       "interactive authorization request for this user and resource."),
    "unknown": (9002313, "Invalid request. Request is malformed or invalid."),
}
_AUTHORIZE = re.compile(r"^/([^/]+)/oauth2/v2\.0/authorize$")
_TOKEN = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")
_KEYS = re.compile(r"^/([^/]+)/discovery/v2\.0/keys$")


@dataclass
class PageAnswer:
    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SignInApp:
    """An app registration that signs people in (Entra admin center > App registrations)."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]
    groups_claim: bool = True  # Token configuration > Add groups claim (security groups)
    groups_limit: int = GROUPS_LIMIT


class UserSignIn:
    """Signs the tenant's people in to registered apps; thread-safe."""

    def __init__(self, base_url: str, tenant: Callable[[], MicrosoftTenant], clock,
                 error: Callable[[int, str, int, str], Any]):
        self.base_url = base_url.rstrip("/")  # the authority (HTTPS): the issuer, the token endpoint, the keys
        self.tenant = tenant
        self.clock = clock
        self.keys = SigningKeys()
        self.codes = AuthorizationCodes(clock)
        self.spoils = SpoilQueue(SPOILS)
        self._error = error  # Entra's error body (emulators.microsoft.signin)
        self._lock = threading.Lock()
        self._apps: dict[str, SignInApp] = {}
        self._remembered: list[str] = []  # listed first, as a browser lists the accounts it signed in with

    def register_app(self, app: SignInApp) -> None:
        with self._lock:
            self._apps[app.client_id] = app

    def remember_accounts(self, names: list[str]) -> None:
        """List these accounts (UPN or address) first on the chooser page."""
        with self._lock:
            self._remembered = [name.lower() for name in names]

    def _app(self, client_id: str) -> SignInApp | None:
        with self._lock:
            return self._apps.get(client_id)

    # -- HTTP ------------------------------------------------------------------------------

    def handles(self, method: str, path: str, body: bytes) -> bool:
        if _AUTHORIZE.match(path) or _KEYS.match(path):
            return True
        return bool(_TOKEN.match(path)) and method == "POST" and _form(body).get("grant_type") == "authorization_code"

    def answer(self, method: str, path: str, query: str, body: bytes) -> PageAnswer:
        keys = _KEYS.match(path)
        if keys:
            if keys.group(1) != "common" and not self._is_tenant(keys.group(1)):
                return self._fail(400, "invalid_tenant", 90002, f"Tenant '{keys.group(1)}' not found.")
            jwks = self.keys.jwks(issuer=f"{self.base_url}/{{tenantid}}/v2.0")
            return PageAnswer(200, json.dumps(jwks).encode(), headers={"Cache-Control": "max-age=86400, private"})
        authorize = _AUTHORIZE.match(path)
        if authorize:
            params = dict(parse_qsl(query, keep_blank_values=True))
            if method == "POST":
                params.update(_form(body))
            return self.authorize(authorize.group(1), path, params)
        return self._token(_TOKEN.match(path).group(1), _form(body))

    def _fail(self, status: int, error: str, code: int, message: str) -> PageAnswer:
        answer = self._error(status, error, code, message)
        return self._json(answer.status, answer.body)

    def _json(self, status: int, payload: dict) -> PageAnswer:
        return PageAnswer(status, json.dumps(payload).encode(), headers={"Cache-Control": "no-store, no-cache"})

    def _is_tenant(self, name: str) -> bool:
        tenant = self.tenant()
        return name.lower() == tenant.tenant_id.lower() or name.lower() in {d.lower() for d in tenant.domains}

    # -- the authorization endpoint --------------------------------------------------------

    def authorize(self, tenant_name: str, path: str, params: dict[str, str]) -> PageAnswer:
        """The authorize endpoint (on the authority, or on the plain-HTTP sign-in pages)."""
        if not self._is_tenant(tenant_name):
            return PageAnswer(400, error_page("Sign in", f"AADSTS90002: Tenant '{tenant_name}' not found."), HTML)
        client_id = params.get("client_id", "")
        app = self._app(client_id)
        if app is None:
            message = (f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory "
                       f"'{self.tenant().display_name}'.")
            return PageAnswer(400, error_page("Sign in", message), HTML)
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in app.redirect_uris:
            message = (f"AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match the "
                       f"redirect URIs configured for the application '{client_id}'.")
            return PageAnswer(400, error_page("Sign in", message), HTML)
        if params.get("response_type") != "code":
            return _back(redirect_uri, {"error": "unsupported_response_type", "state": params.get("state"),
                                        "error_description": "AADSTS70005: response_type must be code."})
        if "openid" not in params.get("scope", "").split():
            return _back(redirect_uri, {"error": "invalid_request", "state": params.get("state"),
                                        "error_description": "AADSTS900144: The request body must contain the scope openid."})
        chosen = params.get("account") or params.get("login_hint")
        error = None
        if chosen:
            user, error = self._user(chosen)
            if user is not None:
                code = self.codes.issue({
                    "user_id": user["id"], "client_id": client_id, "redirect_uri": redirect_uri,
                    "nonce": params.get("nonce"), "scope": params.get("scope", ""),
                    "code_challenge": params.get("code_challenge"), "code_challenge_method": params.get("code_challenge_method"),
                })
                back = {"code": code, "state": params.get("state"), "session_state": str(uuid.uuid4())}
                if params.get("client_info") == "1":
                    back["client_info"] = self._client_info(user)
                return _back(redirect_uri, back)
            if not params.get("account"):
                error = None  # an unknown login_hint only preselects nobody
        page = account_chooser(title="Sign in with Microsoft", client=client_id, action=path, params=params,
                               accounts=self._listed_accounts(), error=error)
        return PageAnswer(200, page, HTML)

    def _user(self, name: str) -> tuple[dict | None, str | None]:
        lowered = name.lower()
        for user in self.tenant().users:
            if lowered in ((user.get("userPrincipalName") or "").lower(), (user.get("mail") or "").lower()):
                if not user.get("accountEnabled", True):
                    return None, "AADSTS50057: The user account is disabled."
                return user, None
        return None, ("AADSTS50034: The user account does not exist in the directory. To sign into this application, "
                      "the account must be added to the directory.")

    def _listed_accounts(self) -> list[Account]:
        tenant = self.tenant()
        first_domain = tenant.domains[0].lower() if tenant.domains else ""
        with self._lock:
            remembered = {name: rank for rank, name in enumerate(self._remembered)}
        users = [u for u in tenant.users if u.get("accountEnabled", True)]
        users.sort(key=lambda u: (min(remembered.get((u.get(key) or "").lower(), len(remembered)) for key in ("userPrincipalName", "mail")),
                                  u.get("userType") == "Guest", not u["userPrincipalName"].lower().endswith("@" + first_domain),
                                  u["userPrincipalName"].lower()))
        return [Account(u.get("mail") or u["userPrincipalName"], u.get("displayName") or u["userPrincipalName"],
                        "guest" if u.get("userType") == "Guest" else "") for u in users[:PAGE_ACCOUNTS]]

    def _client_info(self, user: dict) -> str:
        info = {"uid": user["id"], "utid": self.tenant().tenant_id}
        return base64.urlsafe_b64encode(json.dumps(info).encode()).rstrip(b"=").decode()

    # -- the token endpoint ----------------------------------------------------------------

    def _token(self, tenant_name: str, form: dict[str, str]) -> PageAnswer:
        if not self._is_tenant(tenant_name):
            return self._fail(400, "invalid_tenant", 90002, f"Tenant '{tenant_name}' not found.")
        client_id = form.get("client_id", "")
        app = self._app(client_id)
        if app is None:
            return self._fail(400, "unauthorized_client", 700016,
                              f"Application with identifier '{client_id}' was not found in the directory.")
        if not secrets.compare_digest(form.get("client_secret") or "", app.client_secret):
            return self._fail(401, "invalid_client", 7000215,
                              "Invalid client secret provided. Ensure the secret being sent in the request is the "
                              f"client secret value, not the client secret ID, for a secret added to app '{client_id}'.")
        grant, problem = self.codes.redeem(form.get("code", ""))
        if grant is None:
            code, message = CODE_PROBLEMS.get(problem, CODE_PROBLEMS["unknown"])
            return self._fail(400, "invalid_grant", code, message)
        if grant["client_id"] != client_id:
            return self._fail(400, "invalid_grant", 70000, "The provided authorization code was issued to another client.")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return self._fail(400, "invalid_grant", 500112,
                              "The reply address does not match the reply address provided when requesting "
                              "Authorization code.")
        if not pkce_matches(form.get("code_verifier"), grant["code_challenge"], grant["code_challenge_method"]):
            return self._fail(400, "invalid_grant", 50148,
                              "The code_verifier does not match the code_challenge supplied in the authorization request.")
        user = self.tenant().user_by_id.get(grant["user_id"])
        if user is None or not user.get("accountEnabled", True):
            return self._fail(400, "invalid_grant", 50057, "The user account is disabled.")
        scopes = grant["scope"].split()
        id_token = self.mint_id_token(user["userPrincipalName"], client_id=client_id, nonce=grant["nonce"],
                                      with_email="email" in scopes, spoil_kind=self.spoils.take())
        answer = {"token_type": "Bearer", "scope": " ".join(s for s in scopes if s not in ("openid", "offline_access")) or "openid",
                  "expires_in": 3600, "ext_expires_in": 3600, "access_token": "emu." + secrets.token_urlsafe(32),
                  "id_token": id_token}
        if form.get("client_info") == "1":
            answer["client_info"] = self._client_info(user)
        return self._json(200, answer)

    # -- ID tokens -------------------------------------------------------------------------

    def mint_id_token(self, upn: str, *, client_id: str, nonce: str | None = None, with_email: bool = True,
                      spoil_kind: str | None = None) -> str:
        """A v2.0 ID token for one of the tenant's users, as the token endpoint issues it."""
        if spoil_kind is not None and spoil_kind not in SPOILS:
            raise ValueError(f"unknown spoil {spoil_kind!r}; use one of {', '.join(SPOILS)}")
        user, problem = self._user(upn)
        if user is None:
            raise ValueError(f"no user {upn!r}: {problem}")
        tenant = self.tenant()
        tid = tenant.tenant_id
        now = int(self.clock.time())
        guest = user.get("userType") == "Guest"
        claims: dict[str, Any] = {
            "aud": client_id, "iss": f"{self.base_url}/{tid}/v2.0", "iat": now, "nbf": now, "exp": now + ID_TOKEN_LIFETIME,
            "aio": secrets.token_urlsafe(24), "name": user.get("displayName") or "", "oid": user["id"],
            "preferred_username": (user.get("mail") if guest else user["userPrincipalName"]) or user["userPrincipalName"],
            "rh": secrets.token_urlsafe(12), "sid": str(uuid.uuid4()),
            "sub": base64.urlsafe_b64encode(hashlib.sha256(f"{user['id']}:{client_id}".encode()).digest()).rstrip(b"=").decode(),
            "tid": tid, "uti": secrets.token_urlsafe(16), "ver": "2.0",
        }
        if guest:
            claims["idp"] = f"https://sts.windows.net/{CONSUMER_TENANT}/"
        if with_email and user.get("mail"):
            claims["email"] = user["mail"]
        if nonce:
            claims["nonce"] = nonce
        app = self._app(client_id)
        if app is not None and app.groups_claim:
            groups = [group["id"] for group in tenant.groups if user["id"] in group.get("members", ())]
            if len(groups) > app.groups_limit:
                claims["_claim_names"] = {"groups": "src1"}
                claims["_claim_sources"] = {"src1": {"endpoint": f"https://graph.microsoft.com/v1.0/users/{user['id']}/getMemberObjects"}}
            else:
                claims["groups"] = groups
        if spoil_kind == "other_tenant":
            other = str(uuid.uuid4())
            claims.update(tid=other, iss=f"{self.base_url}/{other}/v2.0")
        claims, forged = spoil(claims, spoil_kind, now)
        return self.keys.sign(claims, forged=forged)


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _back(redirect_uri: str, params: dict[str, Any]) -> PageAnswer:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return PageAnswer(302, b"", HTML, headers={"Location": f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"})


# -- the authorize page over plain HTTP (for a browser) ---------------------------------------

class _PagesHandler(EmulatorHandler):
    server_version = "Microsoft-IIS/10.0"

    def serve(self, body: bytes) -> None:
        path, _, query = self.path.partition("?")
        user_sign_in: UserSignIn = self.emulator.user_sign_in
        match = _AUTHORIZE.match(path)
        if match is None:
            answer = PageAnswer(404, error_page("Not found", f"{path} is not a sign-in page"), HTML)
        else:
            params = dict(parse_qsl(query, keep_blank_values=True))
            if self.command == "POST":
                params.update(_form(body))
            answer = user_sign_in.authorize(match.group(1), path, params)
        self.send_answer(answer.status, answer.body, answer.content_type, answer.headers)


class SignInPages(ServedEmulator):
    """The authorize page alone, over plain HTTP on 127.0.0.1, for a browser that cannot trust
    the emulator's throwaway certificate (started and stopped with its MicrosoftEmulator)."""

    handler = _PagesHandler
    thread_name = "ms-sign-in-pages"

    def __init__(self, user_sign_in: UserSignIn, *, host: str = "127.0.0.1", clock=None):
        self.user_sign_in = user_sign_in
        super().__init__(host=host, port=0, tls=False, clock=clock)

    def provider_control(self, op: str, args: dict[str, Any]) -> Any:
        raise UnknownControl(f"the sign-in pages have no control {op!r}; use the MicrosoftEmulator's")
