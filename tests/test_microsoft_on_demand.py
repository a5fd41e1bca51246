"""The on-demand Microsoft tenant (emulators.microsoft.on_demand) against the tenant it stands for:
`microsoft_tenant(district.materialize())`, the same district with every account and grant held."""

from __future__ import annotations

import datetime as dt
import gc
from dataclasses import replace
import tracemalloc

import pytest
import requests

from emulators.apps import DISTRICT_APPS
from emulators.district_on_demand import OnDemandDistrict
from emulators.lifecycle import microsoft_lifecycle
from emulators.microsoft.on_demand import OnDemandMicrosoftTenant
from emulators.microsoft.server import MicrosoftEmulator
from emulators.microsoft.tenant import GRAPH_APP_ID, SHAREPOINT_APP_ID, MicrosoftTenant, build_tenant, microsoft_tenant
from plugins.microsoft.auth import GraphToken
from plugins.microsoft.client import GraphClient
from plugins.microsoft.revoke import WRITE_PERMISSIONS
from scanner.config import load_config

from .microsoft_fixtures import SECRET_ENV, expected_inventory, recorded_inventory, scan, write_config

WRITE_CLIENT = "5a0c2f7e-1d2b-4c8e-9f00-2b7c0de1e7a1"  # revocation's own registration (docs/revoke.md)
NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)


def district(users: int = 300, seed: int = 7, apps=None) -> OnDemandDistrict:
    """build_tenant(on_demand=True)'s district."""
    return OnDemandDistrict(users, seed=seed, grants_per_user=8, providers=("microsoft",), suspended_share=0.02, now=NOW,
                            apps=apps)


def pair(users: int = 300, seed: int = 7, apps=None) -> tuple[OnDemandMicrosoftTenant, MicrosoftTenant]:
    """The on-demand tenant and the same tenant held (one guest each, as build_tenant gives)."""
    made = district(users, seed, apps)
    return OnDemandMicrosoftTenant(made, guests=1), microsoft_tenant(made.materialize(), guests=1)


def same_lists(on_demand: MicrosoftTenant, held: MicrosoftTenant) -> None:
    assert on_demand.to_json() == held.to_json()
    assert list(on_demand.grants) == held.grants
    assert sorted(on_demand.grants_by_client) == sorted(held.grants_by_client)
    for client, grants in held.grants_by_client.items():
        assert list(on_demand.grants_by_client[client]) == grants, client
    for group in held.groups:
        assert list(on_demand.group_members(group["id"])) == held.group_members(group["id"])


@pytest.fixture
def tenants():
    return pair()


def test_the_on_demand_tenant_is_the_held_tenant(tenants):
    on_demand, held = tenants
    assert len(held.users) == 301 and len(held.grants) > 1000
    same_lists(on_demand, held)
    assert on_demand.app_consent_requests == held.app_consent_requests and held.app_consent_requests
    for user in held.users[::17]:
        assert on_demand.user_by_id[user["id"]] == user
        assert on_demand.find_user(user["userPrincipalName"].upper()) == user
    assert on_demand.find_user("00000000-0000-4000-8000-000000000000") is None


def test_build_tenant_on_demand_serves_the_same_people():
    on_demand = build_tenant(users=120, seed=4, grants_per_user=8, on_demand=True)
    held = build_tenant(users=120, seed=4, grants_per_user=8)
    assert isinstance(on_demand, OnDemandMicrosoftTenant) and not isinstance(held, OnDemandMicrosoftTenant)
    # The people and their accounts are build_district's; only the grants are drawn per person.
    assert on_demand.to_json()["users"] == held.to_json()["users"]
    assert on_demand.tenant_id == held.tenant_id and on_demand.registration == held.registration


def test_scope_creep_and_sharepoint_grants_are_made_alike():
    """An app's grants are made from a code per grant (SharePoint or not, scope creep or not)."""
    creeping = [replace(app, creep_rate=0.4, creep_microsoft=("Files.ReadWrite.All",)) if app.microsoft_scopes else app
                for app in DISTRICT_APPS]
    on_demand, held = pair(200, seed=11, apps=creeping)
    sharepoint = held.sp_by_app_id[SHAREPOINT_APP_ID]["id"]
    assert sum("Files.ReadWrite.All" in grant.scope.split() for grant in held.grants) > 20
    assert sum(grant.resource_id == sharepoint for grant in held.grants) > 20
    same_lists(on_demand, held)


@pytest.mark.parametrize("users", [1, 2, 4, 5])
def test_tiny_districts(users):
    on_demand, held = pair(users, seed=3)
    same_lists(on_demand, held)
    assert len(on_demand.users) == users + 1


def pages(emulator: MicrosoftEmulator, tenant: MicrosoftTenant, tmp_path, monkeypatch, paths: list[str]) -> dict[str, list]:
    """Every page of each path through the project's Graph client: (status, values) per page."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_pem_path)
    monkeypatch.setenv(SECRET_ENV, tenant.registration.client_secret)
    directory = tmp_path / tenant.tenant_id
    directory.mkdir(exist_ok=True)
    config = load_config(write_config(directory, emulator, tenant))
    session = requests.Session()
    graph = GraphClient(emulator.graph_url, GraphToken.from_config(config, session), retries=0)
    try:
        return {path: [page for page in graph.pages(path, headers={"ConsistencyLevel": "eventual"})] for path in paths}
    finally:
        graph.close()
        session.close()


def graph_paths(tenant: MicrosoftTenant) -> list[str]:
    clients = sorted(tenant.grants_by_client)
    return ["/v1.0/users?$top=40", "/v1.0/users?$filter=accountEnabled eq false&$top=3",
            "/v1.0/oauth2PermissionGrants?$top=97", "/v1.0/oauth2PermissionGrants?$select=clientId&$top=999",
            *(f"/v1.0/servicePrincipals/{client}/oauth2PermissionGrants?$top=13" for client in clients),
            *(f"/v1.0/groups/{group['id']}/members?$top=30" for group in tenant.groups)]


def test_identical_graph_pages_over_https(tenants, tmp_path, monkeypatch):
    on_demand, held = tenants
    paths = graph_paths(held)
    with MicrosoftEmulator(on_demand, knobs={"max_page_size": 50}) as one, MicrosoftEmulator(held, knobs={"max_page_size": 50}) as other:
        served = pages(one, on_demand, tmp_path, monkeypatch, paths)
        expected = pages(other, held, tmp_path, monkeypatch, paths)
    assert served == expected
    assert len(served["/v1.0/oauth2PermissionGrants?$top=97"]) == -(-len(held.grants) // 50) > 10  # it paged
    disabled = [user for page in served["/v1.0/users?$filter=accountEnabled eq false&$top=3"] for user in page]
    assert disabled and len(disabled) == sum(not user["accountEnabled"] for user in held.users)


def test_a_scan_of_the_on_demand_tenant_records_its_grants(tenants, tmp_path, monkeypatch, db_path):
    on_demand, held = tenants
    with MicrosoftEmulator(on_demand, knobs={"max_page_size": 50}) as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_pem_path)
        monkeypatch.setenv(SECRET_ENV, on_demand.registration.client_secret)
        row = scan(db_path, write_config(tmp_path, emulator, on_demand))
    assert row["status"] == "succeeded", row["error"]
    assert recorded_inventory(db_path) == expected_inventory(on_demand) == expected_inventory(held)


def test_a_deleted_grant_stays_deleted_over_https(tenants, monkeypatch):
    on_demand, held = tenants
    kami = on_demand.sp_by_app_id[next(sp["appId"] for sp in on_demand.service_principals if sp["displayName"] == "Kami")]["id"]
    victim = on_demand.grants_by_client[kami][3]
    on_demand.add_registration(WRITE_CLIENT, "write-secret", list(WRITE_PERMISSIONS))
    with MicrosoftEmulator(on_demand) as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_pem_path)
        token = requests.post(f"{emulator.authority_host}/{on_demand.tenant_id}/oauth2/v2.0/token", data={
            "grant_type": "client_credentials", "client_id": WRITE_CLIENT, "client_secret": "write-secret",
            "scope": f"{emulator.graph_url}/.default"},
            timeout=30).json()["access_token"]
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        url = f"{emulator.graph_url}/v1.0/oauth2PermissionGrants/{victim.id}"
        assert session.get(url, timeout=30).status_code == 200
        assert session.delete(url, timeout=30).status_code == 204
        assert session.get(url, timeout=30).status_code == 404
        assert session.delete(url, timeout=30).status_code == 404
        listed = session.get(f"{emulator.graph_url}/v1.0/servicePrincipals/{kami}/oauth2PermissionGrants?$top=999", timeout=30).json()
        everything = session.get(f"{emulator.graph_url}/v1.0/oauth2PermissionGrants?$top=999", timeout=30).json()
    assert victim.id not in {grant["id"] for grant in listed["value"]}
    assert victim.id not in {grant["id"] for grant in everything["value"]}
    assert held.delete_grant(victim.id)
    held.add_registration(WRITE_CLIENT, "write-secret", list(WRITE_PERMISSIONS))
    held.refresh()
    same_lists(on_demand, held)


def test_writes_of_revocation_match_the_held_tenant(tenants):
    on_demand, held = tenants
    grants = list(held.grants)
    deleted = grants[5:400:7]
    narrowed, restored = grants[401], deleted[2]  # restored: deleted, then made again (listed last)
    for tenant in tenants:
        for grant in deleted:
            assert tenant.delete_grant(grant.id)
        assert not tenant.delete_grant(deleted[0].id)
        assert tenant.set_grant_scope(narrowed.id, "User.Read") == narrowed._replace(scope="User.Read")
        assert tenant.create_grant(*restored) == restored
        assert tenant.create_grant(*restored) is None
        assert tenant.set_grant_scope(restored.id, "openid") is not None
        graph = tenant.sp_by_app_id[GRAPH_APP_ID]["id"]
        assignment = tenant.assignments_by_resource[graph][-1]
        assert tenant.delete_assignment(graph, assignment.id)
        tenant.refresh()
        assert assignment not in tenant.assignments_by_resource[graph]
    assert on_demand.grants[-1] == restored._replace(scope="openid")
    assert on_demand.grant_by_id(deleted[1].id) is None and on_demand.grant_by_id(narrowed.id).scope == "User.Read"
    same_lists(on_demand, held)


def test_lifecycle_between_scans_matches_the_held_tenant(tenants):
    on_demand, held = tenants
    disabled = sum(not user["accountEnabled"] for user in held.users)
    for tenant in tenants:
        assert microsoft_lifecycle(tenant, add=7, suspend=9, remove=11, seed=5) == {"added": 7, "suspended": 9, "removed": 11}
        tenant.reindex()
    assert len(on_demand.users) == 301 + 7 - 11
    assert sum(not user["accountEnabled"] for user in on_demand.users) == disabled + 9
    assert sum(user["displayName"].startswith("New Account") for user in on_demand.users) == 7
    same_lists(on_demand, held)
    # Churn and a second year of accounts, over what changed.
    changed = on_demand.churn(0.1, seed=3)
    assert changed == held.churn(0.1, seed=3) and changed["authorized"] and changed["revoked"]
    same_lists(on_demand, held)
    for tenant in tenants:
        microsoft_lifecycle(tenant, add=3, suspend=2, remove=4, seed=6)
        tenant.reindex()
    same_lists(on_demand, held)


def test_removing_the_it_technician_takes_their_tools_too(tenants):
    on_demand, held = tenants
    technician = held.users[0]["id"]
    assert sum(grant.principal_id == technician for grant in held.grants) > 5
    for tenant in tenants:
        tenant.remove_users([technician])
    assert not any(grant.principal_id == technician for grant in on_demand.grants)
    assert technician not in on_demand.user_by_id and on_demand.find_user(technician) is None
    same_lists(on_demand, held)


def test_account_methods(tenants):
    on_demand, held = tenants
    assert on_demand.member_ids() == held.member_ids() and len(held.member_ids()) == 300
    assert on_demand.member_ids(enabled=True) == held.member_ids(enabled=True) != held.member_ids()
    chosen = held.member_ids(enabled=True)[:3]
    for tenant in tenants:
        tenant.disable_users(chosen)
        tenant.add_users([{**held.users[1], "id": "11111111-2222-4333-8444-555555555555", "userPrincipalName": "new@x.example"}])
        with pytest.raises(ValueError):
            tenant.add_users([held.users[2]])
    assert all(not on_demand.user_by_id[user_id]["accountEnabled"] for user_id in chosen)
    assert on_demand.find_user("NEW@x.example")["id"] == "11111111-2222-4333-8444-555555555555"
    same_lists(on_demand, held)


def test_mutations_by_name_match(tenants):
    on_demand, held = tenants
    kahoot = next(sp["appId"] for sp in held.service_principals if sp["displayName"] == "Kahoot!")
    user = held.users[40]["id"]
    for tenant in tenants:
        assert tenant.revoke_grants(kahoot, user_id=held.grants_by_client[held.sp_by_app_id[kahoot]["id"]][0].principal_id) == 1
        tenant.add_grant(kahoot, "User.Read Files.Read", user_id=user)
        tenant.add_grant(kahoot, "User.Read", user_id=user)  # replaces the one just made
    assert on_demand.revoke_grants(kahoot) == held.revoke_grants(kahoot) > 5
    same_lists(on_demand, held)


def test_a_large_district_costs_far_less_than_a_held_one():
    """Peak traced memory of building 50,000 accounts on demand, against 5,000 held (ten times fewer;
    tracing makes a bigger build slow; on this machine about 8 MB on demand against 24 MB held)."""
    def peak(**build) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            tenant = build_tenant(seed=1, grants_per_user=8, **build)
            assert len(tenant.grants) > 7 * build["users"]
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    held = peak(users=5_000)
    on_demand = peak(users=50_000, on_demand=True)
    assert on_demand < held / 2, (on_demand, held)
