"""Sign in with Google: OpenID Connect's authorization-code flow, with PKCE and a nonce.

    start()   the discovery document (under [signin] google_issuer) gives the endpoints; the
              browser goes to the authorization endpoint with state, nonce, a PKCE challenge
              and hd (a hint only: the ID token's hd is what counts)
    finish()  the code goes to the token endpoint with the client secret and the PKCE verifier;
              the ID token that comes back is verified with google-auth (google.auth.jwt.decode
              against the keys Google publishes at the discovery document's jwks_uri: the
              signature, iat and exp, the audience); then the issuer, the nonce, email_verified
              and hd must be what this district expects

google.oauth2.id_token.verify_oauth2_token does the same against Google's fixed URLs; the
lower-level google.auth.jwt.decode is used here so the keys can come from the configured
issuer (the emulator in the demo and the tests), with a little clock skew allowed, and with
iat and exp required (the JWK Set path of id_token.verify_token does not require exp).

Who is IT staff is decided by the caller (membership.is_it_staff). Google's ID tokens carry no
groups: the Google groups in it_groups are checked here, at sign-in, through the Directory API
(members.hasMember) as a service account allowed to read group membership.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from typing import Any
from urllib.parse import quote, urlencode

import requests
from cryptography.hazmat.primitives import serialization
from google.auth import exceptions as google_exceptions
from google.auth import jwt as google_jwt
from jwt.algorithms import RSAAlgorithm

from .membership import Identity
from .settings import client_secret, is_group_address
from .sso import HTTP_TIMEOUT, SignInRefused, fetch_json, http_session

log = logging.getLogger(__name__)

NAME, LABEL = "google", "Google"
SCOPES = "openid email profile"  # the least Sign in with Google needs
GOOGLE_ISSUER = "https://accounts.google.com"
LEGACY_ISSUER = "accounts.google.com"  # Google's ID tokens may carry either
CLOCK_SKEW = 60  # seconds of difference between this server's clock and Google's that are forgiven
GROUP_MEMBER_SCOPE = "https://www.googleapis.com/auth/admin.directory.group.member.readonly"


def configured(settings: dict[str, Any]) -> bool:
    return bool(settings.get("google_client_id"))


def describe(settings: dict[str, Any]) -> str:
    return f"Sign in with Google ({settings['google_domain']})"


def start(settings: dict[str, Any], redirect_uri: str) -> tuple[str, str, dict[str, Any]]:
    """(the URL to send the browser to, the state, the secrets to keep until it comes back)."""
    discovery = _discovery(settings)
    state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    query = urlencode({
        "client_id": settings["google_client_id"], "redirect_uri": redirect_uri, "response_type": "code",
        "scope": SCOPES, "state": state, "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256",
        "hd": settings["google_domain"], "prompt": "select_account",
    })
    endpoint = discovery["authorization_endpoint"]
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}", state, {"nonce": nonce, "verifier": verifier}


def finish(settings: dict[str, Any], kept: dict[str, Any], redirect_uri: str, answer: dict[str, str]) -> tuple[Identity, str | None]:
    """The identity Google vouches for, from its answer at the redirect URI (whose state the
    caller has checked already); SignInRefused when it cannot be trusted."""
    if answer.get("error"):
        raise SignInRefused(f"Google answered {answer['error']}", "Sign-in with Google was cancelled or refused.")
    if not answer.get("code"):
        raise SignInRefused("Google's answer has no code")
    secret = client_secret(settings, "google_client_secret_env", "[signin]")
    with http_session() as session:
        discovery = _discovery(settings, session)
        try:
            response = session.post(discovery["token_endpoint"], timeout=HTTP_TIMEOUT, data={
                "grant_type": "authorization_code", "code": answer["code"], "redirect_uri": redirect_uri,
                "client_id": settings["google_client_id"], "client_secret": secret, "code_verifier": kept["verifier"],
            })
            tokens = response.json()
        except (requests.RequestException, ValueError) as error:
            raise SignInRefused(f"Google's token endpoint did not answer: {type(error).__name__}",
                                "Google cannot be reached right now. Please try again later.") from None
        if response.status_code != 200 or not isinstance(tokens, dict) or "id_token" not in tokens:
            error = tokens.get("error") if isinstance(tokens, dict) else None
            raise SignInRefused(f"Google's token endpoint refused the code: {response.status_code} {error or ''}".strip())
        keys = public_keys(fetch_json(session, discovery["jwks_uri"], "Google's signing keys"))
    claims = verify_id_token(tokens["id_token"], keys=keys, client_id=settings["google_client_id"],
                             issuer=settings["google_issuer"], domain=settings["google_domain"], nonce=kept["nonce"])
    email = claims["email"].lower()
    groups, note = group_memberships(settings, email)
    return Identity(auth=NAME, subject=str(claims["sub"]), email=email, groups=groups, tenant=claims["hd"].lower()), note


def verify_id_token(token: str, *, keys: dict[str, bytes], client_id: str, issuer: str, domain: str,
                    nonce: str | None) -> dict[str, Any]:
    """The claims of a Google ID token that google-auth verifies (signature by one of `keys`,
    iat and exp, audience) and that is for this district: the issuer, the nonce of this
    sign-in, a verified address, hd equal to the Workspace domain. SignInRefused otherwise."""
    unverified = _unverified_email(token)
    try:
        claims = google_jwt.decode(token, certs=keys, audience=client_id, clock_skew_in_seconds=CLOCK_SKEW)
    except (ValueError, google_exceptions.GoogleAuthError) as error:
        raise SignInRefused(f"Google's ID token{unverified} failed verification: {_short(error)}") from None
    issuers = {issuer.rstrip("/")} | ({LEGACY_ISSUER} if issuer.rstrip("/") == GOOGLE_ISSUER else set())
    if str(claims.get("iss", "")).rstrip("/") not in issuers:
        raise SignInRefused(f"Google's ID token{unverified} comes from another issuer ({claims.get('iss')!r})")
    if nonce is not None and not secrets.compare_digest(str(claims.get("nonce", "")), nonce):
        raise SignInRefused(f"Google's ID token{unverified} is not for this sign-in (its nonce differs)")
    email = claims.get("email")
    if not email or claims.get("email_verified") is not True:
        raise SignInRefused(f"Google's ID token{unverified} carries no verified email address",
                            "That Google account has no verified email address.")
    hd = str(claims.get("hd") or "")
    if hd.lower() != domain.lower():
        shown = f"the Google Workspace domain {hd}" if hd else "a personal Google account (no Workspace domain)"
        raise SignInRefused(f"{email} signed in from {shown}, not {domain}",
                            f"{email} is not an account of the district's Google Workspace ({domain}). "
                            "Choose your district account.", username=email.lower())
    return claims


def public_keys(jwks: dict[str, Any]) -> dict[str, bytes]:
    """key id -> public key (PEM), from a JWK Set: the form google.auth.jwt.decode takes."""
    keys = {}
    for jwk in jwks.get("keys") or ():
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or not jwk.get("kid") or jwk.get("use", "sig") != "sig":
            continue
        try:
            public = RSAAlgorithm.from_jwk(jwk)
        except Exception:  # a malformed key is skipped: tokens it would sign are refused
            continue
        keys[jwk["kid"]] = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if not keys:
        raise SignInRefused("Google's signing keys hold no usable RSA key")
    return keys


def group_memberships(settings: dict[str, Any], email: str) -> tuple[tuple[str, ...], str | None]:
    """The Google groups of it_groups this person belongs to (directly or nested), asked of the
    Directory API; ((), a note saying why) when it cannot be asked."""
    wanted = [group for group in settings.get("it_groups") or () if is_group_address(group)]
    if not wanted or not settings.get("google_groups_key_file"):
        return (), None
    from google.auth.transport.requests import AuthorizedSession
    from google.oauth2 import service_account

    try:
        credentials = service_account.Credentials.from_service_account_file(
            str(settings["google_groups_key_file"]), scopes=[GROUP_MEMBER_SCOPE], subject=settings["google_groups_admin"])
    except (OSError, ValueError) as error:
        log.warning("signin: google_groups_key_file cannot be used: %s", type(error).__name__)
        return (), "the Google groups could not be checked (google_groups_key_file cannot be used)"
    root = settings["google_directory_url"].rstrip("/")
    found = []
    with AuthorizedSession(credentials) as session:
        for group in wanted:
            url = f"{root}/admin/directory/v1/groups/{quote(group, safe='@')}/hasMember/{quote(email, safe='@')}"
            try:
                response = session.get(url, timeout=HTTP_TIMEOUT)
            except (requests.RequestException, google_exceptions.GoogleAuthError) as error:
                log.warning("signin: cannot ask the Directory API about %s: %s", group, _short(error))
                return tuple(found), f"the Google groups could not be checked ({type(error).__name__})"
            if response.status_code == 200 and response.json().get("isMember") is True:
                found.append(group)
            elif response.status_code != 200:
                # 404: no such group (or the person is outside the domain); 403: the delegation lacks the scope.
                log.warning("signin: the Directory API answered %s for the group %s", response.status_code, group)
    return tuple(found), None


def _discovery(settings: dict[str, Any], session: requests.Session | None = None) -> dict[str, Any]:
    issuer = settings["google_issuer"].rstrip("/")
    if session is None:
        with http_session() as own:
            return _discovery(settings, own)
    document = fetch_json(session, f"{issuer}/.well-known/openid-configuration", "Google's discovery document")
    if str(document.get("issuer", "")).rstrip("/") != issuer:
        raise SignInRefused(f"the discovery document at {issuer} names another issuer ({document.get('issuer')!r})")
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not isinstance(document.get(key), str):
            raise SignInRefused(f"the discovery document at {issuer} has no {key}")
    return document


def _unverified_email(token: str) -> str:
    """' for x@y' from a token not yet verified, for the log only (never trusted)."""
    try:
        claims = google_jwt.decode(token, verify=False)
    except Exception:
        return ""
    email = claims.get("email") if isinstance(claims, dict) else None
    return f" for {str(email)[:100]}" if email else ""


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]
