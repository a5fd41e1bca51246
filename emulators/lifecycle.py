"""Accounts coming and going in an emulated tenant, as in a district's week (for a benchmark).

A district's school year is not only apps authorized and revoked: students enrol and
leave, staff are hired, suspended and removed. `google_lifecycle` and `microsoft_lifecycle`
do that to a tenant, a few accounts at a time, deterministic for a seed:

- `add` new accounts (students at the student domain, staff at the district's), no grants yet;
- `suspend` existing accounts (they keep their grants, as a suspended account does);
- `remove` existing accounts (their grants go with them).

Each emulator serves them as a control (Google: the tenant change {"op": "lifecycle", ...};
Microsoft: the control `lifecycle`).
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from .google.tenant import DirectoryUser, GoogleTenant


def _plan(ids: list[str], rng: random.Random, suspend: int, remove: int) -> tuple[list[str], list[str]]:
    """Which accounts to suspend and which to remove (never both)."""
    chosen = rng.sample(ids, min(len(ids), suspend + remove))
    return chosen[:suspend], chosen[suspend:]


def google_lifecycle(tenant: GoogleTenant, *, add: int = 0, suspend: int = 0, remove: int = 0, seed: int = 0,
                     protect: tuple[str, ...] = ()) -> dict[str, int]:
    """Add, suspend and remove Google accounts; `protect` holds addresses never touched (the admin)."""
    rng = random.Random(seed)
    protected = {email.lower() for email in protect}
    with tenant.lock:
        ids = sorted(user.id for user in tenant.users.values()
                     if not user.is_admin and not user.suspended and user.primary_email.lower() not in protected)
    to_suspend, to_remove = _plan(ids, rng, suspend, remove)
    for user_id in to_suspend:
        tenant.users[user_id].suspended = True
    for user_id in to_remove:
        tenant.delete_user(user_id)
    domain = tenant.domain
    for n in range(add):
        key = f"{seed}-{n}"
        student = rng.random() < 0.9
        user = DirectoryUser(
            id=str(300_000_000_000_000_000_000 + random.Random(key).randrange(10**20)),
            primary_email=f"new.{key}@{'students.' if student else ''}{domain}",
            given_name="New", family_name=f"Account {key}",
            org_unit_path="/Students/Newcomers" if student else "/Staff/Newcomers",
        )
        if user.id not in tenant.users:
            tenant.add_user(user)
    return {"added": add, "suspended": len(to_suspend), "removed": len(to_remove)}


def microsoft_lifecycle(tenant: Any, *, add: int = 0, suspend: int = 0, remove: int = 0, seed: int = 0) -> dict[str, int]:
    """Add, disable and delete Microsoft member accounts (tenant: an emulators.microsoft MicrosoftTenant,
    held or on demand). A deleted account's consents go with it."""
    tenant.refresh()  # writes made through Graph first
    rng = random.Random(seed)
    to_suspend, to_remove = _plan(tenant.member_ids(enabled=True), rng, suspend, remove)
    tenant.disable_users(to_suspend)
    tenant.remove_users(to_remove)
    domain = tenant.domains[0]
    added = []
    for n in range(add):
        key = f"{seed}-{n}"
        address = f"new.{key}@{domain}"
        added.append({
            "id": str(uuid.UUID(int=random.Random(key).getrandbits(128))), "userPrincipalName": address, "mail": address,
            "displayName": f"New Account {key}", "givenName": "New", "surname": f"Account {key}", "department": None,
            "jobTitle": None, "officeLocation": None, "accountEnabled": True, "userType": "Member", "assignedLicenses": [],
            "businessPhones": [], "mobilePhone": None, "preferredLanguage": "en-US",
            "proxyAddresses": [f"SMTP:{address}"],
        })
    tenant.add_users([user for user in added if user["id"] not in tenant.user_by_id])  # a seed used twice adds no one twice
    return {"added": add, "suspended": len(to_suspend), "removed": len(to_remove)}


__all__ = ["google_lifecycle", "microsoft_lifecycle"]
