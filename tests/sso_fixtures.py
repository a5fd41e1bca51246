"""Shared set-up for the Sign in with Google / Microsoft tests: both emulated identity providers
with a sign-in client registered, their district users, and the [signin] lines that point
`app-inventory serve` at them."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from emulators.google.server import GoogleEmulator, new_service_account_key
from emulators.google.tenant import build_tenant as build_google_tenant
from emulators.microsoft.server import MicrosoftEmulator
from emulators.microsoft.tenant import build_tenant as build_microsoft_tenant

GOOGLE_CLIENT_ID = "246810-signin.apps.googleusercontent.com"
GOOGLE_SECRET, GOOGLE_SECRET_ENV = "google-sign-in-secret-for-tests", "APP_INVENTORY_TEST_GOOGLE_SIGNIN_SECRET"
MICROSOFT_CLIENT_ID = "5b0c4a3e-1d2f-4e6a-9b8c-7d6e5f4a3b2c"
MICROSOFT_SECRET, MICROSOFT_SECRET_ENV = "microsoft-sign-in-secret-for-tests", "APP_INVENTORY_TEST_MS_SIGNIN_SECRET"
IT_GROUP = "it-staff@district.example"
GROUP_SCOPE = "https://www.googleapis.com/auth/admin.directory.group.member.readonly"


@dataclass
class IdentityProviders:
    google: GoogleEmulator
    microsoft: MicrosoftEmulator
    google_it: str  # a district account listed in it_emails
    google_staff: str  # a district account that is not IT staff
    google_in_group: str  # IT staff through IT_GROUP only
    microsoft_it: str  # a UPN listed in it_emails
    microsoft_staff: str
    microsoft_guest: str  # a guest's address
    microsoft_group: str  # the object id of a group microsoft_staff is in
    groups_key_file: Path

    @property
    def env(self) -> dict[str, str]:
        """What `app-inventory serve` needs in its environment to reach them."""
        return {GOOGLE_SECRET_ENV: GOOGLE_SECRET, MICROSOFT_SECRET_ENV: MICROSOFT_SECRET,
                "REQUESTS_CA_BUNDLE": self.microsoft.ca_pem_path}

    def register(self, base_urls: list[str]) -> None:
        """Register the redirect URIs of servers at these addresses with both providers."""
        self.google.register_sign_in_client(GOOGLE_CLIENT_ID, GOOGLE_SECRET,
                                            [f"{base}/-/sign-in/google/callback" for base in base_urls])
        self.microsoft.register_sign_in_app(MICROSOFT_CLIENT_ID, MICROSOFT_SECRET,
                                            [f"{base}/-/sign-in/microsoft/callback" for base in base_urls])

    def signin_lines(self, *, it_emails: list[str] | None = None, it_groups: list[str] = (), google: bool = True,
                     microsoft: bool = True, google_domain: str = "district.example", groups_key: bool = False) -> list[str]:
        """[signin] lines for these providers; it_emails defaults to the two IT accounts."""
        emails = [self.google_it, self.microsoft_it] if it_emails is None else it_emails
        lines = [f"it_emails = {json.dumps(emails)}", f"it_groups = {json.dumps(list(it_groups))}"]
        if google:
            lines += [f'google_client_id = "{GOOGLE_CLIENT_ID}"', f'google_client_secret_env = "{GOOGLE_SECRET_ENV}"',
                      f'google_domain = "{google_domain}"', f'google_issuer = "{self.google.issuer}"']
        if groups_key:
            lines += [f'google_groups_key_file = "{self.groups_key_file}"', f'google_groups_admin = "{self.google_it}"',
                      f'google_directory_url = "{self.google.api_root}"']
        if microsoft:
            lines += [f'microsoft_client_id = "{MICROSOFT_CLIENT_ID}"', f'microsoft_client_secret_env = "{MICROSOFT_SECRET_ENV}"',
                      f'microsoft_tenant_id = "{self.microsoft.tenant.tenant_id}"',
                      f'microsoft_authority_host = "{self.microsoft.authority_host}"']
        return lines


@contextlib.contextmanager
def identity_providers(directory: Path) -> Iterator[IdentityProviders]:
    """Both emulators running (the Microsoft sign-in page over plain HTTP, for a browser)."""
    google_tenant = build_google_tenant(users=40, seed=11)
    microsoft_tenant = build_microsoft_tenant(users=60, seed=12)
    with GoogleEmulator(google_tenant) as google, MicrosoftEmulator(microsoft_tenant, sign_in_pages=True) as microsoft:
        staff = sorted(u.primary_email for u in google_tenant.users.values()
                       if not u.is_admin and not u.suspended and u.primary_email.endswith("@district.example"))
        # In the order the sign-in page lists them, so a browser finds them on it.
        members = sorted((u for u in microsoft_tenant.users if u.get("userType") == "Member" and u.get("accountEnabled")
                          and u["userPrincipalName"].endswith("@springfield-schools.example")),
                         key=lambda u: u["userPrincipalName"].lower())
        group = next(g for g in microsoft_tenant.groups if members[1]["id"] in g["members"])
        key = new_service_account_key(token_uri=google.token_uri, client_email="signin-groups@district-inventory.iam.gserviceaccount.com")
        google.delegate(key, scopes=[GROUP_SCOPE])
        key_file = directory / "signin-groups-sa.json"
        key_file.write_text(json.dumps(key), encoding="utf-8")
        key_file.chmod(0o600)
        providers = IdentityProviders(
            google=google, microsoft=microsoft, google_it=next(u.primary_email for u in google_tenant.users.values() if u.is_admin),
            google_staff=staff[0], google_in_group=staff[1],
            microsoft_it=members[0]["userPrincipalName"], microsoft_staff=members[1]["userPrincipalName"],
            microsoft_guest=next(u["mail"] for u in microsoft_tenant.users if u.get("userType") == "Guest"),
            microsoft_group=group["id"], groups_key_file=key_file,
        )
        google.set_group_members(IT_GROUP, ["it-leads@district.example"])
        google.set_group_members("it-leads@district.example", [providers.google_in_group])  # nested
        yield providers


@pytest.fixture(scope="module")
def idps(tmp_path_factory):
    with identity_providers(tmp_path_factory.mktemp("idps")) as providers:
        previous = os.environ.get("REQUESTS_CA_BUNDLE")
        os.environ["REQUESTS_CA_BUNDLE"] = providers.microsoft.ca_pem_path
        try:
            yield providers
        finally:
            if previous is None:
                os.environ.pop("REQUESTS_CA_BUNDLE", None)
            else:
                os.environ["REQUESTS_CA_BUNDLE"] = previous
