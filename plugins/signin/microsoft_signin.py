"""Sign in with Microsoft: MSAL's authorization-code flow (ConfidentialClientApplication).

    start()   initiate_auth_code_flow: the authorize URL, with state, nonce and PKCE made by
              MSAL; the whole flow is kept until the browser comes back
    finish()  acquire_token_by_auth_code_flow: MSAL checks the state and the nonce and redeems
              the code with the client secret and the PKCE verifier; then the ID token is
              verified here with PyJWT against the tenant's published keys (the signature, exp,
              iat and nbf, the audience, the issuer of the district's tenant) and its tid must
              be [signin] microsoft_tenant_id

MSAL 1.38 and later no longer verify the ID token at all (only the state and the nonce; see
AzureAD/microsoft-authentication-library-for-python#911 and PR #943): OpenID Connect lets a
client that got the token straight from the token endpoint over TLS skip it, but checking the
signature, the times and the tenant costs little and does not depend on the TLS set-up.

The authority is the district's own tenant (`<authority_host>/<tenant id>`), never `common`
or `organizations`: only the tenant's accounts can sign in at all. Guests of the tenant (whose
token carries `idp`, their home identity provider) are refused: IT staff sign in with the
district's own accounts. Who is IT staff: the sign-in name (preferred_username, the UPN, which
the tenant's administrators set, unlike the optional `email` claim) in it_emails, or a group
object id of the `groups` claim in it_groups.

The scopes asked for are openid, profile and email: MSAL adds openid and profile itself, and
offline_access is excluded (no refresh token is wanted).
"""

from __future__ import annotations

import warnings
from typing import Any
from urllib.parse import urlsplit

import jwt
import msal
import requests

from .membership import Identity
from .settings import client_secret
from .sso import SignInRefused, fetch_json, http_session

NAME, LABEL = "microsoft", "Microsoft"
SCOPES = ["email"]  # with MSAL's own openid and profile: the least sign-in needs
CLOCK_SKEW = 60  # seconds


def configured(settings: dict[str, Any]) -> bool:
    return bool(settings.get("microsoft_client_id"))


def describe(settings: dict[str, Any]) -> str:
    return f"Sign in with Microsoft (tenant {settings['microsoft_tenant_id']})"


def authority(settings: dict[str, Any]) -> str:
    return f"{settings['microsoft_authority_host'].rstrip('/')}/{settings['microsoft_tenant_id']}"


def _application(settings: dict[str, Any], session: requests.Session) -> msal.ConfidentialClientApplication:
    options: dict[str, Any] = {
        "authority": authority(settings), "client_credential": client_secret(settings, "microsoft_client_secret_env", "[signin]"),
        "http_client": session, "token_cache": msal.TokenCache(),  # a cache of its own: nothing kept between sign-ins
        "exclude_scopes": ["offline_access"],
    }
    if urlsplit(settings["microsoft_authority_host"]).hostname not in msal.authority.WELL_KNOWN_AUTHORITY_HOSTS:
        options["instance_discovery"] = False  # MSAL would ask login.microsoftonline.com about this host
    try:
        return msal.ConfidentialClientApplication(settings["microsoft_client_id"], **options)
    except (ValueError, requests.RequestException) as error:
        raise SignInRefused(f"Microsoft sign-in at {authority(settings)} is not usable: {type(error).__name__}: "
                            f"{str(error).splitlines()[0][:200] if str(error) else ''}",
                            "Microsoft cannot be reached right now. Please try again later.") from None


def start(settings: dict[str, Any], redirect_uri: str) -> tuple[str, str, dict[str, Any]]:
    """(the URL to send the browser to, the state, MSAL's flow to keep until it comes back)."""
    with http_session() as session:
        app = _application(settings, session)
        with warnings.catch_warnings():
            # MSAL recommends response_mode=form_post; the answer comes back as a query instead, so the
            # browser's SameSite=Lax cookie binds it to this sign-in (docs/security-notes.md).
            warnings.simplefilter("ignore", UserWarning)
            flow = app.initiate_auth_code_flow(SCOPES, redirect_uri=redirect_uri, response_mode="query",
                                               prompt="select_account")
    return flow["auth_uri"], flow["state"], {"flow": flow}


def finish(settings: dict[str, Any], kept: dict[str, Any], redirect_uri: str, answer: dict[str, str]) -> tuple[Identity, str | None]:
    """The identity Microsoft vouches for; SignInRefused when it cannot be trusted."""
    flow = kept["flow"]
    with http_session() as session:
        app = _application(settings, session)
        try:
            result = app.acquire_token_by_auth_code_flow(flow, answer)
        except ValueError as error:  # MSAL: the state is missing or differs
            raise SignInRefused(f"MSAL refused the answer: {str(error)[:200]}") from None
        except RuntimeError as error:  # MSAL: the ID token's nonce is not this sign-in's
            raise SignInRefused(f"MSAL refused the ID token: {str(error).splitlines()[0][:200]}") from None
        if "error" in result:
            description = (result.get("error_description") or "").split(" Trace ID:")[0].strip()
            cancelled = result["error"] in ("access_denied", "consent_required", "interaction_required")
            raise SignInRefused(f"Microsoft answered {result['error']}: {description[:300]}",
                                "Sign-in with Microsoft was cancelled or refused." if cancelled else
                                "Microsoft refused the sign-in. Please try again.")
        if "id_token" not in result:
            raise SignInRefused("Microsoft's token answer has no ID token")
        configuration = fetch_json(session, f"{authority(settings)}/v2.0/.well-known/openid-configuration",
                                   "Microsoft's OpenID configuration")
        keys = fetch_json(session, configuration.get("jwks_uri") or "", "Microsoft's signing keys")
    claims = verify_id_token(result["id_token"], jwks=keys, client_id=settings["microsoft_client_id"],
                             issuer=configuration.get("issuer") or "", tenant_id=settings["microsoft_tenant_id"])
    note = None
    groups = claims.get("groups")
    if groups is None and "groups" in (claims.get("_claim_names") or {}):
        note = ("the token carried no groups (more than Entra puts in a token): in the app registration's Token "
                "configuration, emit only the groups assigned to the application")
    upn = str(claims.get("preferred_username") or "").lower()
    return Identity(auth=NAME, subject=str(claims["oid"]), email=upn or None, groups=tuple(groups or ()),
                    tenant=str(claims["tid"]).lower()), note


def verify_id_token(token: str, *, jwks: dict[str, Any], client_id: str, issuer: str, tenant_id: str) -> dict[str, Any]:
    """The claims of a Microsoft ID token that PyJWT verifies (signed by a key of `jwks`; exp,
    iat, nbf; audience; issuer) and that belongs to the district's tenant, not a guest's."""
    unverified = _unverified_name(token)
    try:
        header = jwt.get_unverified_header(token)
        key = next((k for k in jwt.PyJWKSet.from_dict(jwks).keys if k.key_id == header.get("kid")), None)
        if key is None:
            raise jwt.InvalidTokenError(f"no published key {header.get('kid')!r} signed it")
        claims = jwt.decode(token, key.key, algorithms=["RS256"], audience=client_id, issuer=issuer, leeway=CLOCK_SKEW,
                            options={"require": ["exp", "iat", "iss", "aud", "tid", "oid"]})
    except (jwt.PyJWTError, ValueError) as error:
        raise SignInRefused(f"Microsoft's ID token{unverified} failed verification: {str(error)[:200]}") from None
    if str(claims["tid"]).lower() != tenant_id.lower():
        raise SignInRefused(f"Microsoft's ID token{unverified} is from the tenant {claims['tid']}, not {tenant_id}",
                            "That account is not in the district's Microsoft tenant.")
    name = str(claims.get("preferred_username") or "").lower() or None
    if claims.get("idp") and str(claims["idp"]).rstrip("/") != str(claims["iss"]).rstrip("/"):
        raise SignInRefused(f"{name or claims['oid']} is a guest of the tenant (signed in at {claims['idp']})",
                            "Guest accounts cannot sign in here: use your district account.", username=name)
    return claims


def _unverified_name(token: str) -> str:
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    name = claims.get("preferred_username") if isinstance(claims, dict) else None
    return f" for {str(name)[:100]}" if name else ""
