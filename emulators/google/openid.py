"""Sign in with Google, emulated: Google's OpenID Connect endpoints for the tenant's people.

    GET  /.well-known/openid-configuration   the discovery document (issuer: the emulator's URL)
    GET  /oauth2/v3/certs                     the signing keys, a JWK Set
    GET  /o/oauth2/v2/auth                    the authorization endpoint: the account chooser page
    POST /o/oauth2/v2/auth                      (its form), or straight back with a code for a
                                                login_hint naming an account
    POST /token  grant_type=authorization_code  the code, exchanged for an ID token (the same
                                                endpoint as the service account's JWT grant)

An OAuth client must be registered first (`register_client`: id, secret, redirect URIs), as
in Google Cloud's Credentials page. Codes are single use and expire after ten minutes of the
emulator's clock; PKCE (S256 or plain) is checked when the request carried a challenge.

ID tokens carry what Google's do for a Workspace account: iss, azp, aud, sub (the directory
user id), hd (the domain of the account's address), email, email_verified, name,
given_name, family_name, nonce, iat, exp. Accounts from outside the tenant can be added
(`add_outside_account`: a consumer account has no hd, another district's has its own), as a
browser signed in to several accounts offers them all.

Bad tokens for tests (`spoil_next`, or `mint_id_token(spoil=...)`): the common spoils of
emulators.openid, plus "other_domain" (a Workspace account of another domain), "no_domain"
(a consumer account: no hd) and "unverified_email".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import threading
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..clock import Clock
from ..openid import (
    COMMON_SPOILS, ID_TOKEN_LIFETIME, Account, AuthorizationCodes, SigningKeys, SpoilQueue, account_chooser,
    error_page, pkce_matches, spoil,
)
from .api import Answer
from .tenant import GoogleTenant

DISCOVERY_PATH = "/.well-known/openid-configuration"
CERTS_PATH = "/oauth2/v3/certs"
AUTHORIZE_PATH = "/o/oauth2/v2/auth"
TOKEN_PATH = "/token"
SPOILS = (*COMMON_SPOILS, "other_domain", "no_domain", "unverified_email")
OTHER_DOMAIN = "other-district.example"
PAGE_ACCOUNTS = 40  # accounts listed on the chooser page (others can be typed)
SCOPE_ECHO = "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile"
HTML = "text/html; charset=utf-8"


class GoogleSignIn:
    """Signs the tenant's people in to registered OAuth clients; thread-safe."""

    def __init__(self, tenant: GoogleTenant, clock: Clock, issuer: str):
        self.tenant, self.clock, self.issuer = tenant, clock, issuer.rstrip("/")
        self.keys = SigningKeys()
        self.codes = AuthorizationCodes(clock)
        self.spoils = SpoilQueue(SPOILS)
        self._lock = threading.Lock()
        self._clients: dict[str, dict[str, Any]] = {}
        self._outside: dict[str, dict[str, Any]] = {}  # email -> {"name", "hd"}
        self._remembered: list[str] = []  # listed first, as a browser lists the accounts it signed in with

    # -- set-up (controls) -----------------------------------------------------------------

    def register_client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        """A web application's OAuth client, as Google Cloud's Credentials page makes one."""
        with self._lock:
            self._clients[client_id] = {"secret": client_secret, "redirect_uris": list(redirect_uris)}

    def add_outside_account(self, email: str, name: str = "", hd: str | None = None) -> None:
        """An account from outside the tenant the browser can also sign in as."""
        with self._lock:
            self._outside[email.lower()] = {"email": email, "name": name or email.split("@")[0], "hd": hd}

    def remember_accounts(self, emails: list[str]) -> None:
        """List these accounts first on the chooser page (a browser that signed in with them before)."""
        with self._lock:
            self._remembered = [email.lower() for email in emails]

    # -- HTTP ------------------------------------------------------------------------------

    def handles(self, method: str, path: str, body: bytes) -> bool:
        if path in (DISCOVERY_PATH, CERTS_PATH, AUTHORIZE_PATH):
            return True
        return path == TOKEN_PATH and method == "POST" and _form(body).get("grant_type") == "authorization_code"

    def answer(self, method: str, target: str, headers, body: bytes) -> Answer:
        parts = urlsplit(target)
        if parts.path == DISCOVERY_PATH:
            return _json(200, self.discovery(), cache=True)
        if parts.path == CERTS_PATH:
            return _json(200, self.keys.jwks(), cache=True)
        if parts.path == AUTHORIZE_PATH:
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            if method == "POST":
                params.update(_form(body))
            return self._authorize(params)
        return self._token(_form(body), headers.get("authorization"))

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + AUTHORIZE_PATH,
            "token_endpoint": self.issuer + TOKEN_PATH,
            "userinfo_endpoint": self.issuer + "/v1/userinfo",
            "revocation_endpoint": self.issuer + "/revoke",
            "jwks_uri": self.issuer + CERTS_PATH,
            "response_types_supported": ["code", "token", "id_token", "code token", "code id_token",
                                         "token id_token", "code token id_token", "none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "email", "email_verified", "exp", "family_name", "given_name", "iat", "iss",
                                 "name", "picture", "sub"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "grant_types_supported": ["authorization_code", "refresh_token",
                                      "urn:ietf:params:oauth:grant-type:device_code",
                                      "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        }

    # -- the authorization endpoint --------------------------------------------------------

    def _authorize(self, params: dict[str, str]) -> Answer:
        client_id = params.get("client_id", "")
        with self._lock:
            client = self._clients.get(client_id)
        if client is None:
            return Answer(401, error_page("Access blocked: Authorization Error",
                                          f"Error 401: invalid_client. The OAuth client was not found. ({client_id})"), HTML)
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client["redirect_uris"]:
            return Answer(400, error_page("Access blocked: This app's request is invalid",
                                          f"Error 400: redirect_uri_mismatch. {redirect_uri} is not registered for this client."),
                          HTML)
        if params.get("response_type") != "code":
            return _back(redirect_uri, {"error": "unsupported_response_type", "state": params.get("state")})
        if "openid" not in params.get("scope", "").split():
            return _back(redirect_uri, {"error": "invalid_scope", "state": params.get("state")})
        chosen = params.get("account") or params.get("login_hint")
        error = None
        if chosen:
            account, error = self._account(chosen)
            if account is not None:
                code = self.codes.issue({
                    "email": account["email"], "client_id": client_id, "redirect_uri": redirect_uri,
                    "nonce": params.get("nonce"), "code_challenge": params.get("code_challenge"),
                    "code_challenge_method": params.get("code_challenge_method"),
                })
                back = {"state": params.get("state"), "code": code, "scope": SCOPE_ECHO, "authuser": "0", "prompt": "none"}
                if account.get("hd"):
                    back["hd"] = account["hd"]
                return _back(redirect_uri, back)
            if not params.get("account"):
                error = None  # a login_hint that names nobody only preselects nothing
        page = account_chooser(title="Sign in with Google", client=client_id, action=AUTHORIZE_PATH, params=params,
                               accounts=self._listed_accounts(), error=error)
        return Answer(200, page, HTML)

    def _account(self, email: str) -> tuple[dict[str, Any] | None, str | None]:
        """The account for an address (the tenant's, or an outside one), or why not."""
        with self._lock:
            outside = self._outside.get(email.lower())
        if outside is not None:
            return dict(outside), None
        user = self.tenant.find_user(email)
        if user is None:
            return None, "Couldn't find your Google Account"
        if user.suspended:
            return None, "This account has been suspended. Contact your administrator."
        return {"email": user.primary_email, "name": f"{user.given_name} {user.family_name}".strip(),
                "given_name": user.given_name, "family_name": user.family_name, "sub": user.id,
                "hd": user.primary_email.rsplit("@", 1)[1]}, None

    def _listed_accounts(self) -> list[Account]:
        """Remembered accounts first, then admins, then the primary domain's accounts, then the others
        (up to PAGE_ACCOUNTS in all), then outside ones."""
        with self.tenant.lock:
            current = list(self.tenant.users.values())
        staff_suffix = "@" + self.tenant.domain.lower()
        with self._lock:
            remembered = {email: rank for rank, email in enumerate(self._remembered)}
        users = sorted((u for u in current if not u.suspended),
                       key=lambda u: (remembered.get(u.primary_email.lower(), len(remembered)), not u.is_admin,
                                      not u.primary_email.lower().endswith(staff_suffix), u.primary_email))
        listed = [Account(u.primary_email, f"{u.given_name} {u.family_name}".strip(), "administrator" if u.is_admin else "")
                  for u in users[:PAGE_ACCOUNTS]]
        with self._lock:
            listed += [Account(a["email"], a["name"], a["hd"] or "personal account") for a in self._outside.values()]
        return listed

    # -- the token endpoint ----------------------------------------------------------------

    def _token(self, form: dict[str, str], authorization: str | None) -> Answer:
        client_id, secret = form.get("client_id", ""), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):  # client_secret_basic
            try:
                client_id, _, secret = base64.b64decode(authorization[6:].strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return _json(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        with self._lock:
            client = self._clients.get(client_id)
        if client is None or secret is None or not secrets.compare_digest(secret, client["secret"]):
            return _json(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        grant, problem = self.codes.redeem(form.get("code", ""))
        if grant is None:
            return _json(400, {"error": "invalid_grant", "error_description": "Malformed auth code." if problem == "unknown" else "Bad Request"})
        if grant["client_id"] != client_id:
            return _json(400, {"error": "invalid_grant", "error_description": "Bad Request"})
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return _json(400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"})
        if not pkce_matches(form.get("code_verifier"), grant["code_challenge"], grant["code_challenge_method"]):
            missing = grant["code_challenge"] and not form.get("code_verifier")
            return _json(400, {"error": "invalid_grant", "error_description": "Missing code verifier." if missing else "Invalid code verifier."})
        id_token = self.mint_id_token(grant["email"], client_id=client_id, nonce=grant["nonce"], spoil_kind=self.spoils.take())
        return _json(200, {"access_token": "ya29." + secrets.token_urlsafe(48), "expires_in": 3599, "scope": SCOPE_ECHO,
                           "token_type": "Bearer", "id_token": id_token})

    # -- ID tokens -------------------------------------------------------------------------

    def mint_id_token(self, email: str, *, client_id: str, nonce: str | None = None, spoil_kind: str | None = None) -> str:
        """An ID token for an account, signed with the published key unless spoiled ("forged")."""
        if spoil_kind is not None and spoil_kind not in SPOILS:
            raise ValueError(f"unknown spoil {spoil_kind!r}; use one of {', '.join(SPOILS)}")
        account, problem = self._account(email)
        if account is None:
            raise ValueError(f"no account {email!r}: {problem}")
        now = int(self.clock.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "azp": client_id, "aud": client_id,
            "sub": account.get("sub") or _stable_sub(account["email"]),
            "email": account["email"], "email_verified": True, "name": account["name"],
            "iat": now, "exp": now + ID_TOKEN_LIFETIME,
        }
        if account.get("hd"):
            claims["hd"] = account["hd"]
        for name in ("given_name", "family_name"):
            if account.get(name):
                claims[name] = account[name]
        if nonce:
            claims["nonce"] = nonce
        if spoil_kind == "other_domain":
            local = claims["email"].split("@")[0]
            claims.update(hd=OTHER_DOMAIN, email=f"{local}@{OTHER_DOMAIN}", sub=str(10**20 + secrets.randbelow(10**20)))
        elif spoil_kind == "no_domain":
            claims.pop("hd", None)
        elif spoil_kind == "unverified_email":
            claims["email_verified"] = False
        claims, forged = spoil(claims, spoil_kind, now)
        return self.keys.sign(claims, forged=forged)


def _stable_sub(email: str) -> str:
    """A 21-digit subject for an outside account, the same every time."""
    return str(10**20 + int.from_bytes(hashlib.sha256(email.lower().encode()).digest()[:8], "big") % 10**20)


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _json(status: int, payload: dict[str, Any], *, cache: bool = False) -> Answer:
    headers = ({"Cache-Control": "public, max-age=3600"} if cache
               else {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate", "Pragma": "no-cache"})
    return Answer(status, json.dumps(payload).encode(), headers=headers)


def _back(redirect_uri: str, params: dict[str, Any]) -> Answer:
    """302 back to the app with the answer in the query string."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return Answer(302, b"", HTML, headers={"Location": f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"})
