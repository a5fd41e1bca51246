"""What both emulated identity providers share for signing people in with OpenID Connect: the
authorization-code flow a web app such as `app-inventory serve` runs ("Sign in with Google",
"Sign in with Microsoft").

- `SigningKeys`: the RSA keys ID tokens are signed with, published as a JWK Set. `rotate()`
  makes a new key the signing key (the previous one stays published unless told otherwise);
  a foreign key, never published, signs forged tokens.
- `AuthorizationCodes`: the codes handed to the browser: random, single use, expiring after
  `CODE_LIFETIME` seconds of the emulator's clock.
- `pkce_matches()`: RFC 7636's check of the code verifier against the challenge.
- `SpoilQueue` and `spoil()`: tests ask for the next ID token to be spoiled in a named way
  (expired, forged, for another audience, another nonce; the providers add their own, such as
  another domain or tenant), so a browser test can see a bad token refused at the end of a
  real sign-in.
- `account_chooser()`: the small HTML page that lists the accounts to click, as the real
  sign-in pages do after the password and any second factor.

The keys are generated when an emulator starts (RSA 2048): no private key is ever committed.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from .clock import Clock

CODE_LIFETIME = 600  # seconds: both providers' authorization codes live about ten minutes
ID_TOKEN_LIFETIME = 3600
# Spoils every provider offers; each provider adds its own (another domain or tenant...).
COMMON_SPOILS = ("expired", "forged", "wrong_audience", "wrong_nonce")


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class SigningKeys:
    """The keys an identity provider signs ID tokens with; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._published: list[tuple[str, rsa.RSAPrivateKey]] = [(self._new_kid(), new_rsa_key())]  # signing key first
        self._foreign: rsa.RSAPrivateKey | None = None

    @staticmethod
    def _new_kid() -> str:
        return secrets.token_urlsafe(12)

    @property
    def signing_kid(self) -> str:
        with self._lock:
            return self._published[0][0]

    def rotate(self, *, keep_previous: bool = True) -> str:
        """A new signing key; the previous ones stay published (tokens they signed still verify)
        unless keep_previous is False. Returns the new key's id."""
        kid = self._new_kid()
        key = new_rsa_key()
        with self._lock:
            self._published = [(kid, key), *(self._published if keep_previous else [])]
        return kid

    def jwks(self, **extra: Any) -> dict[str, Any]:
        """The published public keys as a JWK Set; `extra` fields go in every key."""
        with self._lock:
            published = list(self._published)
        keys = []
        for kid, key in published:
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": jwk["n"], "e": jwk["e"], **extra})
        return {"keys": keys}

    def sign(self, claims: Mapping[str, Any], *, forged: bool = False) -> str:
        """An RS256 JWT with the signing key's id in its header; `forged`: signed by a key that
        is never published, under that same id (what a forger would send)."""
        with self._lock:
            kid, key = self._published[0]
            if forged:
                if self._foreign is None:
                    self._foreign = new_rsa_key()
                key = self._foreign
        return jwt.encode(dict(claims), key, algorithm="RS256", headers={"kid": kid, "typ": "JWT"})


@dataclass
class _Code:
    grant: dict[str, Any]
    expires_at: float


class AuthorizationCodes:
    """Authorization codes: single use, expiring by the emulator's clock; thread-safe."""

    def __init__(self, clock: Clock, lifetime: float = CODE_LIFETIME):
        self.clock, self.lifetime = clock, lifetime
        self._lock = threading.Lock()
        self._live: dict[str, _Code] = {}
        self._redeemed: set[str] = set()

    def issue(self, grant: dict[str, Any]) -> str:
        """A new code standing for `grant` (who signed in, for which client, nonce, PKCE...)."""
        code = secrets.token_urlsafe(32)
        with self._lock:
            now = self.clock.monotonic()
            self._live = {c: live for c, live in self._live.items() if live.expires_at > now}
            self._live[code] = _Code(dict(grant), now + self.lifetime)
        return code

    def redeem(self, code: str) -> tuple[dict[str, Any] | None, str | None]:
        """(the grant, None), or (None, "used" | "expired" | "unknown"). A code works once."""
        with self._lock:
            if code in self._redeemed:
                return None, "used"
            live = self._live.pop(code, None)
            if live is None:
                return None, "unknown"
            self._redeemed.add(code)
        if live.expires_at <= self.clock.monotonic():
            return None, "expired"
        return live.grant, None


def pkce_matches(verifier: str | None, challenge: str | None, method: str | None) -> bool:
    """RFC 7636: no challenge asks for no verifier; S256 compares base64url(sha256(verifier))."""
    if not challenge:
        return not verifier
    if not verifier:
        return False
    if (method or "plain") == "S256":
        computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    else:
        computed = verifier
    return secrets.compare_digest(computed, challenge)


class SpoilQueue:
    """Spoils asked for the next ID tokens, in order; thread-safe."""

    def __init__(self, allowed: Iterable[str]):
        self.allowed = tuple(allowed)
        self._lock = threading.Lock()
        self._queue: list[str] = []

    def add(self, kind: str) -> None:
        if kind not in self.allowed:
            raise ValueError(f"unknown spoil {kind!r}; use one of {', '.join(self.allowed)}")
        with self._lock:
            self._queue.append(kind)

    def take(self) -> str | None:
        with self._lock:
            return self._queue.pop(0) if self._queue else None


def spoil(claims: dict[str, Any], kind: str | None, now: float) -> tuple[dict[str, Any], bool]:
    """The common spoils applied to ID token claims: (claims, whether to forge the signature)."""
    claims = dict(claims)
    if kind == "expired":
        claims.update(iat=int(now) - 2 * ID_TOKEN_LIFETIME, exp=int(now) - ID_TOKEN_LIFETIME)
        if "nbf" in claims:
            claims["nbf"] = claims["iat"]
    elif kind == "wrong_audience":
        claims["aud"] = "another-app-" + secrets.token_hex(6)
    elif kind == "wrong_nonce":
        claims["nonce"] = secrets.token_urlsafe(16)
    return claims, kind == "forged"


# -- the account chooser ----------------------------------------------------------------------

@dataclass(frozen=True)
class Account:
    """An account the sign-in page offers (someone the browser could sign in as)."""

    email: str
    name: str
    note: str = ""


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
 body {{ font-family: sans-serif; max-width: 34em; margin: 3em auto; color: #202124; }}
 .emulated {{ color: #a50e0e; font-size: 0.9em; }}
 .error {{ background: #fce8e6; padding: 0.6em; border-radius: 4px; }}
 button.account {{ display: block; width: 100%; text-align: left; padding: 0.6em; margin: 0.3em 0;
   background: #fff; border: 1px solid #dadce0; border-radius: 4px; cursor: pointer; font-size: 1em; }}
 button.account small {{ color: #5f6368; }}
</style></head>
<body>
<h1>{title}</h1>
<p class="emulated">An emulator on this computer: no password is asked, and nothing leaves this machine.</p>
{error}
<p>Choose an account to continue to <strong>{client}</strong>:</p>
<form method="post" action="{action}">{hidden}
{buttons}
</form>
<form method="post" action="{action}">{hidden}
<p><label for="account">Or type another account's email address</label><br>
<input id="account" name="account" type="email" size="40" autocomplete="off">
<button type="submit">Next</button></p>
</form>
</body></html>
"""


def account_chooser(*, title: str, client: str, action: str, params: Mapping[str, str], accounts: Iterable[Account],
                    error: str | None = None) -> bytes:
    """The sign-in page: a button per account, each posting the original request with `account`."""
    hidden = "".join(f'\n<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
                     for name, value in params.items() if name != "account")
    buttons = "\n".join(
        f'<button class="account" type="submit" name="account" value="{html.escape(account.email)}">'
        f'{html.escape(account.name)} <small>{html.escape(account.email)}{" · " + html.escape(account.note) if account.note else ""}'
        "</small></button>"
        for account in accounts
    )
    return PAGE.format(title=html.escape(title), client=html.escape(client), action=html.escape(action), hidden=hidden,
                       buttons=buttons or "<p>No accounts.</p>",
                       error=f'<p class="error">{html.escape(error)}</p>' if error else "").encode()


def error_page(title: str, message: str) -> bytes:
    """What the provider shows instead of going back to the app (an unknown client or redirect URI)."""
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title></head>'
            f'<body><h1>{html.escape(title)}</h1><p class="error">{html.escape(message)}</p></body></html>').encode()


__all__ = ["Account", "AuthorizationCodes", "CODE_LIFETIME", "COMMON_SPOILS", "ID_TOKEN_LIFETIME", "SigningKeys",
           "SpoilQueue", "account_chooser", "error_page", "pkce_matches", "spoil"]
