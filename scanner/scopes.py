"""Scope knowledge: plain-word labels, risk and data category for OAuth scopes.

The data ships in scanner/data/scopes.csv and is loaded into the `scopes` table.
A grant's risk is the highest risk among its scopes; a scope the file does not
know counts as medium (and shows in the `unknown_scopes` view). Application
permissions and tenant-wide consents reach every account, so they rate one
level higher than the same scope granted by one user.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from functools import lru_cache
from importlib.resources import files

RISKS = ("low", "medium", "high")
RISK_RANK = {risk: rank for rank, risk in enumerate(RISKS)}
UNKNOWN_SCOPE_RISK = "medium"
GOOGLE_SCOPE_PREFIX = "https://www.googleapis.com/auth/"


@lru_cache(maxsize=1)
def scope_rows() -> tuple[dict[str, str], ...]:
    """The shipped scope knowledge, one dict per (provider, scope)."""
    with files("scanner").joinpath("data/scopes.csv").open(encoding="utf-8", newline="") as handle:
        return tuple(dict(row) for row in csv.DictReader(handle))


@lru_cache(maxsize=1)
def _risk_lookup() -> dict[tuple[str, str], str]:
    """Risk by (provider, scope), and by (None, scope) for providers the file does not name."""
    lookup = {(None, row["scope"]): row["risk"] for row in scope_rows()}
    lookup.update({(row["provider"], row["scope"]): row["risk"] for row in scope_rows()})
    return lookup


def highest_risk(risks: Iterable[str]) -> str:
    return max(risks, key=RISK_RANK.__getitem__, default="low")


def scope_risk(provider: str, scope: str) -> str:
    """A scope's risk (low, medium, high) from the shipped scope knowledge; medium when it does not know it."""
    lookup = _risk_lookup()
    return lookup.get((provider, scope)) or lookup.get((None, scope), UNKNOWN_SCOPE_RISK)


def grant_risk(provider: str, scopes: Iterable[str], *, reaches_everyone: bool = False) -> str:
    """Risk of one grant; `reaches_everyone` for application permissions and tenant-wide consents."""
    risk = _scopes_risk(provider, tuple(scopes))
    if reaches_everyone:
        risk = RISKS[min(RISK_RANK[risk] + 1, len(RISKS) - 1)]
    return risk


@lru_cache(maxsize=4096)
def _scopes_risk(provider: str, scopes: tuple[str, ...]) -> str:
    """The highest risk of a set of scopes (a large scan sees the same few sets a million times)."""
    return highest_risk(scope_risk(provider, scope) for scope in scopes)


def expand_scope(scope: str) -> str:
    """Let a catalog name a Google scope by its short form ("drive.readonly")."""
    scope = scope.strip()
    known = _risk_lookup()
    if ("google", scope) not in known and ("google", GOOGLE_SCOPE_PREFIX + scope) in known:
        return GOOGLE_SCOPE_PREFIX + scope
    return scope
