"""What Sign in with Google and Sign in with Microsoft share: the sign-ins under way, and how a
sign-in is refused.

A sign-in under way is kept here, in memory, from the moment the browser is sent to the
identity provider until it comes back: the `state` sent along, the nonce, the PKCE verifier
(Google) or MSAL's whole flow (Microsoft). The browser holds only a signed cookie naming it,
so the answer must come back to the browser that started the sign-in (a link from someone
else's sign-in does nothing), and once: `take()` removes it, so a replayed answer finds
nothing. A sign-in not finished within PENDING_MINUTES is forgotten; at most MAX_PENDING are
kept (the oldest go first), so a flood of started sign-ins cannot fill the memory. A restart
forgets them all: whoever was on the provider's page starts again.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import requests

from scanner import utc_now

PENDING_MINUTES = 10
MAX_PENDING = 1000
HTTP_TIMEOUT = 30  # seconds, for each request to an identity provider


class SignInRefused(Exception):
    """A sign-in that cannot be trusted or completed. `reason` goes to the access log; `message`
    is what the person sees; `username` is who the provider said it was, when it said so."""

    def __init__(self, reason: str, message: str = "The sign-in could not be completed. Please try again.",
                 username: str | None = None):
        super().__init__(reason)
        self.reason, self.message, self.username = reason, message, username


@dataclass
class PendingSignIn:
    provider: str  # "google" | "microsoft"
    state: str
    redirect_uri: str
    secrets: dict[str, Any]  # what only this server may know: nonce, PKCE verifier, MSAL's flow
    started_at: dt.datetime = field(default_factory=utc_now)


class PendingSignIns:
    """Sign-ins under way, by a random id the browser's cookie carries; thread-safe."""

    def __init__(self, *, lifetime: dt.timedelta = dt.timedelta(minutes=PENDING_MINUTES), limit: int = MAX_PENDING):
        self.lifetime, self.limit = lifetime, limit
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, PendingSignIn] = OrderedDict()

    def add(self, pending: PendingSignIn) -> str:
        """Keep a sign-in under way; returns the id for the browser's cookie."""
        key = secrets.token_urlsafe(24)
        with self._lock:
            self._forget_old()
            self._pending[key] = pending
            while len(self._pending) > self.limit:
                self._pending.popitem(last=False)
        return key

    def take(self, key: str) -> PendingSignIn | None:
        """The sign-in under way with this id, removed; None when unknown, taken already, or too old."""
        with self._lock:
            pending = self._pending.pop(key, None)
        if pending is None or utc_now() - pending.started_at > self.lifetime:
            return None
        return pending

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)

    def _forget_old(self) -> None:
        cutoff = utc_now() - self.lifetime
        for key in [key for key, pending in self._pending.items() if pending.started_at < cutoff]:
            del self._pending[key]


def http_session() -> requests.Session:
    """For the identity provider's endpoints; trusts what requests trusts (REQUESTS_CA_BUNDLE)."""
    session = requests.Session()
    session.headers["User-Agent"] = "app-inventory sign-in"
    return session


def fetch_json(session: requests.Session, url: str, what: str) -> dict[str, Any]:
    """GET a JSON document of the identity provider, or SignInRefused saying what could not be read."""
    try:
        response = session.get(url, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as error:
        raise SignInRefused(f"cannot read the {what} at {url}: {type(error).__name__}: {_first_line(error)}",
                            "The identity provider cannot be reached right now. Please try again later.") from None
    if not isinstance(document, dict):
        raise SignInRefused(f"the {what} at {url} is not a JSON object")
    return document


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else ""
