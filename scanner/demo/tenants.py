"""The demo district as the two emulators serve it: one Google Workspace customer and
one Entra ID tenant holding the same people, each with the grants made through it."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import uuid
from collections import defaultdict

from emulators.google.tenant import GoogleTenant
from emulators.microsoft.tenant import (
    MICROSOFT_SERVICES_TENANT, SCANNER_APP_NAME, SCANNER_PERMISSIONS, SKUS, AppRegistration,
    AppRoleAssignment, DelegatedGrant, MicrosoftTenant, graph_role_id, graph_service_principal, service_principal,
    sign_in_activity, stable_guid, subscribed_sku,
)

from .apps import DISTRICT_TENANT_ID
from emulators.district import District, Person

GOOGLE_CUSTOMER_ID = "C04spr1ng"
ADMIN_LOCAL_PART = "it-admin"
MICROSOFT_CLIENT_ID = "0a9d6f7e-3c1b-4d2a-8e5f-6b7c8d9e0f1a"  # the scanner's app registration in the demo tenant
STUDENT_SKU, STAFF_SKU = "STANDARDWOFFPACK_STUDENT", "M365EDU_A3_FACULTY"


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def google_user_id(person: Person) -> str:
    """A 21-digit id, as Google's are, stable for the person."""
    return str(100_000_000_000_000_000_000 + int(hashlib.sha256(f"g{person.key}".encode()).hexdigest()[:15], 16))


def microsoft_user_id(person: Person) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://demo.example/users/{person.key}"))


def admin_email(district: District) -> str:
    return f"{ADMIN_LOCAL_PART}@{district.domain}"


def google_tenant(district: District) -> GoogleTenant:
    """The Google Workspace side: every person, the apps with Google client ids, and the
    token log (each grant's authorization and last use become audit events)."""
    people = {p.key: p for p in district.people}
    users = [{
        "id": "100000000000000000001", "primaryEmail": admin_email(district),
        "name": {"givenName": "District", "familyName": "IT Admin"}, "orgUnitPath": "/Staff/District Office", "isAdmin": True,
    }]
    users += [{
        "id": google_user_id(p), "primaryEmail": p.email, "name": {"givenName": p.given, "familyName": p.family},
        "orgUnitPath": p.google_org_unit, "suspended": False,
    } for p in district.people]
    clients = [{"clientId": app.google_id, "displayText": app.name, "scopes": list(app.google_scopes)}
               for app in district.apps if app.google_id]
    client_ids = {app.name: app.google_id for app in district.apps}
    grants = [{
        "userId": google_user_id(people[g.person]), "clientId": client_ids[g.app], "scopes": list(g.scopes),
        "authorizedAt": _iso(g.authorized_at), **({"lastUsedAt": _iso(g.last_used_at)} if g.last_used_at else {}),
    } for g in district.grants if g.provider == "google"]
    org_units = sorted({u["orgUnitPath"] for u in users} | {"/", "/Staff", "/Students"})
    return GoogleTenant.from_json({
        "customer_id": GOOGLE_CUSTOMER_ID, "domain": district.domain, "org_units": org_units,
        "users": users, "clients": clients, "grants": grants,
    })


def microsoft_tenant(district: District, *, client_secret: str) -> MicrosoftTenant:
    """The Entra ID side: every person (licensed as student or staff), a service principal per
    app, per-user consents, admin consents for everyone, application permissions, and last
    sign-ins (the district has Entra ID P1)."""
    rng = random.Random(district.name)
    people = {p.key: p for p in district.people}
    users = [{
        "id": microsoft_user_id(p), "userPrincipalName": p.email, "mail": p.email, "displayName": p.name,
        "givenName": p.given, "surname": p.family, "department": p.school,
        "jobTitle": "Student" if p.role == "student" else "Teacher", "officeLocation": p.school,
        "accountEnabled": True, "userType": "Member",
        "assignedLicenses": [{"disabledPlans": [], "skuId": SKUS[STUDENT_SKU if p.role == "student" else STAFF_SKU]}],
    } for p in district.people]
    graph = graph_service_principal()
    scanner = service_principal(app_id=MICROSOFT_CLIENT_ID, name=SCANNER_APP_NAME, owner=DISTRICT_TENANT_ID, audience="AzureADMyOrg")
    created = _iso(district.now - dt.timedelta(days=200))
    assignments = [AppRoleAssignment(scanner["id"], graph["id"], graph_role_id(p), created) for p in SCANNER_PERMISSIONS]
    owners = {"internal": DISTRICT_TENANT_ID, "first_party": MICROSOFT_SERVICES_TENANT}
    sps, grants, by_app = [graph, scanner], [], {}
    for app in district.apps:
        if not app.microsoft_id:
            continue
        sp = service_principal(
            app_id=app.microsoft_id, name=app.name, publisher=app.publisher,
            owner=owners.get(app.ownership) or stable_guid("vendor-tenant", app.publisher),
            verified=app.verified and app.ownership == "third_party",
            audience="AzureADMyOrg" if app.ownership == "internal" else "AzureADMultipleOrgs",
        )
        sps.append(sp)
        by_app[app.name] = sp
        if app.admin_consent_scopes:
            grants.append(DelegatedGrant(sp["id"], "AllPrincipals", None, graph["id"], " ".join(app.admin_consent_scopes)))
        assignments += [AppRoleAssignment(sp["id"], graph["id"], graph_role_id(p), created) for p in app.app_permissions]
    last_use: dict[str, dt.datetime] = defaultdict(lambda: district.now - dt.timedelta(days=365))
    for g in district.grants:
        if g.provider != "microsoft":
            continue
        sp = by_app[g.app]
        grants.append(DelegatedGrant(sp["id"], "Principal", microsoft_user_id(people[g.person]), graph["id"], " ".join(g.scopes)))
        if g.last_used_at:
            last_use[sp["appId"]] = max(last_use[sp["appId"]], g.last_used_at)
    for app in district.apps:  # apps with admin consent or app permissions sign in on their own
        if app.microsoft_id and (app.admin_consent_scopes or app.app_permissions):
            last_use[app.microsoft_id] = max(last_use[app.microsoft_id], district.now - dt.timedelta(hours=rng.randint(1, 72)))
    return MicrosoftTenant(
        tenant_id=DISTRICT_TENANT_ID, display_name=district.name, domains=[district.domain, district.student_domain],
        registration=AppRegistration(client_id=MICROSOFT_CLIENT_ID, client_secret=client_secret),
        premium=True, users=users,
        groups=[{"id": stable_guid("group", "All Students"), "displayName": "All Students",
                 "members": [u["id"] for u, p in zip(users, district.people) if p.role == "student"]}],
        subscribed_skus=[subscribed_sku(DISTRICT_TENANT_ID, part, SKUS[part], rng) for part in (STUDENT_SKU, STAFF_SKU)],
        service_principals=sps, grants=grants, assignments=assignments,
        sign_in_activities={app_id: sign_in_activity(app_id, moment, rng) for app_id, moment in last_use.items()},
    )

