"""Google API answers -> inventory records. Pure functions, no I/O (tested on recorded answers).

    user_record(user, roles)        a Directory users.list entry -> User
    token_records(user_id, tokens, apps_seen, internal_projects)
                                    a tokens.list answer -> App (once a client) and Grant records

An OAuth client whose id starts with one of the district's own Google Cloud project
numbers ([google] internal_project_numbers) is "internal"; every other client is
"third_party" (the Directory API does not say who published a client).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from scanner import App, Grant, User, classify_role

_PROJECT_NUMBER = re.compile(r"^(\d+)[-.]")


def project_number(client_id: str) -> str | None:
    """The Google Cloud project number an OAuth client id starts with (as GAM derives it), if any."""
    match = _PROJECT_NUMBER.match(client_id)
    return match.group(1) if match else None


def user_record(user: dict[str, Any], roles: dict[str, Any]) -> User:
    """One users.list entry as a User, its role from the [roles] rules, its aliases from
    `aliases` and `emails` (see account_addresses)."""
    email, org_unit = user.get("primaryEmail", ""), user.get("orgUnitPath", "")
    return User(
        id=user["id"], email=email, name=(user.get("name") or {}).get("fullName", ""),
        role=classify_role(roles, email=email, org_unit=org_unit), org_unit=org_unit,
        suspended=bool(user.get("suspended", False)), is_admin=bool(user.get("isAdmin", False)),
        aliases=account_addresses(user),
    )


def account_addresses(user: dict[str, Any]) -> list[str]:
    """The account's own addresses besides primaryEmail: its `aliases`, and the `emails`
    entries without a `type`. Typed entries (home, work, other, custom) are contact details
    an administrator typed in, not addresses of this account: a shared home address must
    never make two people one."""
    addresses = [alias for alias in user.get("aliases") or [] if isinstance(alias, str)]
    for entry in user.get("emails") or []:
        if isinstance(entry, dict) and not entry.get("type") and isinstance(entry.get("address"), str):
            addresses.append(entry["address"])
    primary = (user.get("primaryEmail") or "").lower()
    return [address for address in dict.fromkeys(addresses) if address.lower() != primary]


def app_record(token: dict[str, Any], internal_projects: Iterable[str]) -> App:
    """The App a token was issued to (the token names its client and the client's display text)."""
    client_id = token["clientId"]
    project = project_number(client_id)
    details: dict[str, Any] = {"anonymous": bool(token.get("anonymous", False)),
                               "nativeApp": bool(token.get("nativeApp", False))}
    if project:
        details["projectNumber"] = project
    return App(id=client_id, name=token.get("displayText") or client_id, details=details,
               ownership="internal" if project and project in internal_projects else "third_party")


def token_records(
    user_id: str, tokens: Iterable[dict[str, Any]], apps_seen: set[str], internal_projects: Iterable[str]
) -> Iterator[App | Grant]:
    """A user's tokens.list items as records: an App the first time a client is seen
    (apps_seen is updated), then a Grant of the token's scopes. Items without a clientId
    are skipped."""
    for token in tokens:
        client_id = token.get("clientId")
        if not client_id:
            continue
        if client_id not in apps_seen:
            apps_seen.add(client_id)
            yield app_record(token, internal_projects)
        # userKey is the user's numeric id (never the email).
        yield Grant(user_id=token.get("userKey") or user_id, app_id=client_id, scopes=list(token.get("scopes", [])))
