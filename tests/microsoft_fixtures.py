"""Shared helpers for the Microsoft tests: an emulated tenant over HTTPS, a config pointing at it,
and an oracle that reads the expected inventory straight from the tenant's data."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from sqlite_utils import Database

from scanner.config import load_config
from emulators.microsoft.server import MicrosoftEmulator
from emulators.microsoft.tenant import MICROSOFT_CORP_TENANT, MICROSOFT_SERVICES_TENANT, MicrosoftTenant, build_tenant
from scanner.scan import run_scans

SECRET_ENV = "APP_INVENTORY_TEST_MS_SECRET"
ROLES = """
[roles]
student_domains = ["students.springfield-schools.example"]
student_license_skus = ["STANDARDWOFFPACK_STUDENT", "M365EDU_A3_STUDENT"]
"""
_MICROSOFT = {MICROSOFT_SERVICES_TENANT, MICROSOFT_CORP_TENANT}


@pytest.fixture
def ms_tenant() -> MicrosoftTenant:
    """A small district (300 accounts), served in pages of 50 so every listing pages."""
    return build_tenant(users=300, seed=7)


@pytest.fixture
def ms_emulator(ms_tenant, monkeypatch):
    """The emulator over HTTPS, trusted through REQUESTS_CA_BUNDLE, with the app's secret exported."""
    with MicrosoftEmulator(ms_tenant, knobs={"max_page_size": 50}) as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_pem_path)
        monkeypatch.setenv(SECRET_ENV, ms_tenant.registration.client_secret)
        yield emulator


def write_config(directory: Path, emulator, tenant: MicrosoftTenant, *, microsoft_extra: str = "", roles: str = ROLES,
                 tenant_id: str | None = None, authority_host: str | None = None, client_id: str | None = None) -> Path:
    path = directory / "app-inventory.toml"
    path.write_text(f"""
[microsoft]
tenant_id = "{tenant_id or tenant.tenant_id}"
client_id = "{client_id or tenant.registration.client_id}"
authority_host = "{authority_host or emulator.authority_host}"
graph_url = "{emulator.graph_url}"
{microsoft_extra or f'client_secret_env = "{SECRET_ENV}"'}
{roles}
""", encoding="utf-8")
    return path


def scan(db_path: str, config_path: Path) -> dict:
    """One Microsoft scan through the core, as `app-inventory scan --provider microsoft` runs it."""
    outcome = run_scans(db_path, load_config(config_path), only=["microsoft"], show_progress=False)
    return outcome.scans[0]


def expected_inventory(tenant: MicrosoftTenant) -> dict[str, set]:
    """What a correct scan records, computed from the tenant's data (not from the scanner's code).

    Delegated grants: every oAuth2PermissionGrant, by (user or None, client appId, resource name, scopes).
    Application permissions: of every app not owned by Microsoft, by (appId, resource name, role names).
    """
    sps = tenant.sp_by_id
    delegated = set()
    for grant in tenant.grants:
        user = grant.principal_id if grant.consent_type == "Principal" else None
        delegated.add((user, sps[grant.client_id]["appId"], sps[grant.resource_id]["displayName"],
                       tuple(sorted(set(grant.scope.split())))))
    roles: dict[tuple[str, str], set[str]] = defaultdict(set)
    for assignment in tenant.assignments:
        client, resource = sps[assignment.principal_id], sps[assignment.resource_id]
        if client["appOwnerOrganizationId"] in _MICROSOFT:
            continue
        names = {role["id"]: role["value"] for role in resource.get("appRoles", [])}
        roles[(client["appId"], resource["displayName"])].add(names.get(assignment.app_role_id, assignment.app_role_id))
    return {"delegated": delegated,
            "application": {(app, resource, tuple(sorted(values))) for (app, resource), values in roles.items()}}


def recorded_inventory(db_path: str) -> dict[str, set]:
    """The active Microsoft grants in the inventory, in expected_inventory()'s shape."""
    db = Database(db_path)
    delegated, application = set(), set()
    for user_id, app_id, resource, scopes, grant_type, tenant_wide in db.execute(
        "select user_id, app_id, resource, scopes, grant_type, tenant_wide from grants "
        "where provider = 'microsoft' and revoked_at is null"
    ):
        assert tenant_wide == (user_id is None)
        app = app_id.removeprefix("microsoft:")
        scope_list = tuple(sorted(json.loads(scopes)))
        if grant_type == "delegated":
            delegated.add((user_id and user_id.removeprefix("microsoft:"), app, resource, scope_list))
        else:
            assert user_id is None
            application.add((app, resource, scope_list))
    return {"delegated": delegated, "application": application}
