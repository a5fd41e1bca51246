"""Who is a student and who is staff, from the [roles] section (one rule set for every provider)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def classify_role(
    roles: dict[str, Any],
    *,
    email: str,
    org_unit: str = "",
    license_skus: Iterable[str] = (),
    groups: Iterable[str] = (),
) -> str:
    """Return "student", "staff", or "unknown" when [roles] sets no rule at all.

    "unknown" is deliberate: with no rules, nobody can be told apart, and the
    alerts plugin never emails an account it cannot tell is staff.
    """
    domains = {d.lower().lstrip("@") for d in roles.get("student_domains") or []}
    org_units = [ou.rstrip("/") for ou in roles.get("student_org_units") or []]
    skus = {s.upper() for s in roles.get("student_license_skus") or []}
    student_groups = {g.lower() for g in roles.get("student_groups") or []}
    if not (domains or org_units or skus or student_groups):
        return "unknown"
    domain = email.rpartition("@")[2].lower()
    if domain in domains:
        return "student"
    if any(org_unit == ou or org_unit.startswith(ou + "/") for ou in org_units if ou):
        return "student"
    if skus & {s.upper() for s in license_skus}:
        return "student"
    if student_groups & {g.lower() for g in groups}:
        return "student"
    return "staff"
