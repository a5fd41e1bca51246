"""The emulated Google token endpoint: the JWT-bearer grant a service account with
domain-wide delegation uses, and the access tokens it hands out.

    POST /token  grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT>

The assertion is verified against the service account's registered public key; `aud`
is not checked (google-auth always puts Google's own endpoint there, whatever the
key's token_uri says). Failures answer as Google does:

- unknown service account: 400 invalid_grant "Invalid grant: account not found"
- bad signature (deleted or wrong key): 400 invalid_grant "Invalid JWT Signature."
- iat/exp out of range: 400 invalid_grant "Invalid JWT: Token must be a short-lived token ..."
- a scope not delegated to the client: 401 unauthorized_client
- a subject that is not a user of the tenant: 400 invalid_grant "Invalid email or User ID"

`new_service_account_key()` makes a key file (RSA 2048, generated at run time: no private
key is ever committed) for tests and the demo.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..clock import Clock
from .tenant import GoogleTenant, ServiceAccount

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
UNAUTHORIZED_CLIENT = (
    "Client is unauthorized to retrieve access tokens using this method, "
    "or client not authorized for any of the scopes requested."
)
BAD_TIMES = (
    "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
    "Check your iat and exp values in the JWT claim."
)


@dataclass(frozen=True)
class AccessToken:
    subject: str  # the impersonated user's email
    scopes: frozenset[str]
    expires_at: float  # on the emulator's clock (monotonic)


class TokenService:
    """Issues and checks access tokens for the tenant's delegated service accounts, by the emulator's clock
    (the assertion's iat/exp against its time; each access token's expiry)."""

    def __init__(self, tenant: GoogleTenant, lifetime: Callable[[], float], expires_in: Callable[[], int | None],
                 clock: Clock | None = None):
        self.tenant = tenant
        self.clock = clock or Clock()
        self._lifetime = lifetime  # seconds a token is accepted (a knob, read at issue time)
        self._expires_in = expires_in  # what the answer says
        self._tokens: dict[str, AccessToken] = {}
        self._lock = threading.Lock()

    def exchange(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """Answer POST /token: (status, JSON body)."""
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: " + form.get("grant_type", "")}
        try:
            header, claims, signed, signature = _split_jwt(form.get("assertion", ""))
        except ValueError:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT: malformed assertion."}
        account = self.tenant.service_accounts.get(claims.get("iss", ""))
        if account is None:
            return 400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
        if not _signature_ok(account, header.get("kid"), signed, signature):
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        now = self.clock.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if not isinstance(iat, int) or not isinstance(exp, int) or exp - iat > 3600 or iat > now + 300 or exp < now - 300:
            return 400, {"error": "invalid_grant", "error_description": BAD_TIMES}
        scopes = frozenset(str(claims.get("scope", "")).split())
        subject = claims.get("sub")
        if subject:
            if not scopes or not scopes <= set(account.scopes):
                return 401, {"error": "unauthorized_client", "error_description": UNAUTHORIZED_CLIENT}
            user = self.tenant.find_user(subject)
            if user is None or user.suspended:
                return 400, {"error": "invalid_grant", "error_description": "Invalid email or User ID"}
            subject = user.primary_email
        else:
            subject = account.client_email  # the service account itself: no Workspace data
        token = "ya29." + secrets.token_urlsafe(48)
        lifetime = float(self._lifetime())
        with self._lock:
            self._tokens[token] = AccessToken(subject, scopes, self.clock.monotonic() + lifetime)
        expires_in = self._expires_in()
        return 200, {"access_token": token, "expires_in": int(lifetime) - 1 if expires_in is None else int(expires_in),
                     "token_type": "Bearer"}

    def check(self, authorization: str | None) -> AccessToken | None:
        """The access token in an Authorization header, if it is one we issued and it has not expired."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        with self._lock:
            token = self._tokens.get(authorization[7:].strip())
        if token is None or self.clock.monotonic() >= token.expires_at:
            return None
        return token


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _split_jwt(assertion: str) -> tuple[dict, dict, bytes, bytes]:
    try:
        head, payload, signature = assertion.split(".")
        return (json.loads(_b64decode(head)), json.loads(_b64decode(payload)), f"{head}.{payload}".encode(),
                _b64decode(signature))
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise ValueError("malformed JWT") from error


def _signature_ok(account: ServiceAccount, kid: str | None, signed: bytes, signature: bytes) -> bool:
    candidates = [account.public_keys[kid]] if kid in account.public_keys else list(account.public_keys.values())
    for pem in candidates:
        key = serialization.load_pem_public_key(pem.encode())
        try:
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
            return True
        except InvalidSignature:
            continue
    return False


# -- service account keys (tests and the demo) ------------------------------------------------

def new_service_account_key(*, token_uri: str, client_email: str = "app-inventory@district-inventory.iam.gserviceaccount.com",
                            project_id: str = "district-inventory", client_id: str | None = None,
                            private_key: rsa.RSAPrivateKey | None = None) -> dict[str, str]:
    """The JSON key file Google Cloud gives for a service account, with a fresh (or given) RSA key."""
    key = private_key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem.decode(),
        "client_email": client_email,
        "client_id": client_id or str(100_000_000_000_000_000_000 + secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/" + client_email.replace("@", "%40"),
        "universe_domain": "googleapis.com",
    }


def public_key_pem(key_info: dict[str, str]) -> str:
    """The public half of a key file's private key, as the emulator registers it."""
    key = serialization.load_pem_private_key(key_info["private_key"].encode(), password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def delegation_for(key_info: dict[str, str], scopes) -> dict[str, Any]:
    """What the Admin console's domain-wide delegation page holds for this key's client (JSON, no secrets)."""
    return {"client_email": key_info["client_email"], "client_id": key_info["client_id"],
            "public_keys": {key_info["private_key_id"]: public_key_pem(key_info)}, "scopes": list(scopes)}

