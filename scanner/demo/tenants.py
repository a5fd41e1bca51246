"""The demo's district and the two emulators' tenants of it: Springfield Public Schools, its
people in one Google Workspace customer and one Entra ID tenant, drawn with the demo's apps
(scanner.demo.apps) by the synthetic-district generator the tests and the benchmark use
(emulators.district)."""

from __future__ import annotations

import datetime as dt

from emulators.district import DOMAIN, District, build_district
from emulators.google.chrome import district_fleet
from emulators.google.tenant import GoogleTenant, google_tenant
from emulators.microsoft.tenant import STUDENT_SKU, MicrosoftTenant, microsoft_tenant

from .apps import DEMO_APPS, DISTRICT_TENANT_ID

STUDENT_DOMAIN = f"students.{DOMAIN}"
MIN_USERS = 10  # two accounts a school, at least
GOOGLE_CUSTOMER_ID = "C04spr1ng"
MICROSOFT_CLIENT_ID = "0a9d6f7e-3c1b-4d2a-8e5f-6b7c8d9e0f1a"  # the scanner's app registration in the demo tenant

__all__ = ["DOMAIN", "GOOGLE_CUSTOMER_ID", "MICROSOFT_CLIENT_ID", "STUDENT_DOMAIN", "STUDENT_SKU", "admin_email",
           "demo_district", "demo_google_tenant", "demo_microsoft_tenant"]


def demo_district(users: int = 3000, *, seed: int = 2026, now: dt.datetime | None = None) -> District:
    """The demo's district of `users` accounts: the demo's apps, Google first (Microsoft consents
    come from 30% as many students and 60% as many staff as Google grants), grants made over
    the last two years, nobody suspended."""
    if users < MIN_USERS:
        raise ValueError(f"the demo district needs at least {MIN_USERS} users, got {users}")
    return build_district(users, seed=seed, apps=DEMO_APPS, microsoft_share=(0.3, 0.6), history_days=700,
                          suspended_share=0.0, now=now)


def admin_email(district: District) -> str:
    """The Google super admin the scanner impersonates."""
    return f"it-admin@{district.domain}"


def demo_google_tenant(district: District) -> GoogleTenant:
    tenant = google_tenant(district, customer_id=GOOGLE_CUSTOMER_ID, admin_email=admin_email(district))
    # Extensions in the district's managed browsers (the chrome provider): approved, unreviewed,
    # denied, sideloaded, admin-installed, Google's own, and some with <all_urls>.
    tenant.chrome = district_fleet(tenant, seed=district.seed, student_domain=district.student_domain)
    return tenant


def demo_microsoft_tenant(district: District, *, client_secret: str) -> MicrosoftTenant:
    return microsoft_tenant(district, tenant_id=DISTRICT_TENANT_ID, client_id=MICROSOFT_CLIENT_ID, client_secret=client_secret)
