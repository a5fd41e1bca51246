"""The Microsoft emulator answers as Microsoft Graph and the identity platform do (real MSAL, real HTTPS)."""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections import Counter

import msal
import pytest
import requests

from emulators.clock import ManualClock
from emulators.microsoft.server import MicrosoftEmulator, MicrosoftEmulatorProcess
from emulators.microsoft.tenant import (
    GRAPH_APP_ID,
    MicrosoftTenant,
    build_tenant,
    delegated_grant_id,
    sign_in_activity_id,
)


@pytest.fixture
def tenant() -> MicrosoftTenant:
    return build_tenant(users=120, seed=5)


@pytest.fixture
def clock() -> ManualClock:
    """The emulator's time, standing still until a test advances it."""
    return ManualClock()


@pytest.fixture
def emulator(tenant, clock, monkeypatch):
    with MicrosoftEmulator(tenant, clock=clock) as running:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", running.ca_pem_path)
        yield running


def msal_app(emulator, tenant, *, secret=None, client_id=None, tenant_id=None) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id or tenant.registration.client_id, client_credential=secret or tenant.registration.client_secret,
        authority=f"{emulator.authority_host}/{tenant_id or tenant.tenant_id}", instance_discovery=False,
        azure_region=False, http_client=requests.Session(),
    )


@pytest.fixture
def graph(emulator, tenant):
    """A requests session signed in as the scanner's app registration."""
    token = msal_app(emulator, tenant).acquire_token_for_client([f"{emulator.graph_url}/.default"])["access_token"]
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    yield session
    session.close()


def test_grant_ids_have_graphs_format():
    # Both examples from the Graph documentation.
    assert delegated_grant_id("263a5b01-03e5-408e-8557-bab681df104c", "1804a6f8-e623-4520-8f40-ba1b0c11c42d", None) \
        == "AVs6JuUDjkCFV7q2gd8QTPimBBgj5iBFj0C6GwwRxC0"
    assert delegated_grant_id("85477313-ea43-4c7d-b8a4-54fed35d0b60", "27fb395a-fb00-45fe-865e-e71db689eea0",
                              "7d54cb02-aaa3-4016-9f9c-a4b49422dd9b") == "E3NHhUPqfUy4pFT-010LYFo5-ycA-_5Fhl7nHbaJ7qACy1R9o6oWQJ-cpLSUIt2b"
    assert sign_in_activity_id("83f45296-fb8f-4aaa-a399-ac51084e02b7") == "ODNmNDUyOTYtZmI4Zi00YWFhLWEzOTktYWM1MTA4NGUwMmI3"


def test_msal_signs_in_with_one_discovery_and_one_token_request_then_caches(emulator, tenant):
    app = msal_app(emulator, tenant)
    first = app.acquire_token_for_client([f"{emulator.graph_url}/.default"])
    second = app.acquire_token_for_client([f"{emulator.graph_url}/.default"])

    assert first["token_type"] == "Bearer" and first["expires_in"] == 3599
    assert first["token_source"] == "identity_provider" and second["token_source"] == "cache"
    assert emulator.stats()["token_requests"] == 2  # openid-configuration, then the token


def test_openid_configuration_and_instance_discovery_documents(emulator, tenant):
    config = requests.get(f"{emulator.url}/{tenant.tenant_id}/v2.0/.well-known/openid-configuration").json()
    assert config["token_endpoint"] == f"{emulator.url}/{tenant.tenant_id}/oauth2/v2.0/token"
    assert config["authorization_endpoint"].endswith("/oauth2/v2.0/authorize")
    assert config["issuer"] == f"{emulator.url}/{tenant.tenant_id}/v2.0"
    discovery = requests.get(f"{emulator.url}/common/discovery/instance",
                             params={"api-version": "1.1", "authorization_endpoint": config["authorization_endpoint"]}).json()
    assert discovery["tenant_discovery_endpoint"].endswith("/v2.0/.well-known/openid-configuration")
    by_domain = requests.get(f"{emulator.url}/{tenant.domains[0]}/v2.0/.well-known/openid-configuration")
    assert by_domain.status_code == 200


def test_token_endpoint_errors_come_back_as_dicts(emulator, tenant):
    scope = [f"{emulator.graph_url}/.default"]
    wrong_secret = msal_app(emulator, tenant, secret="nope").acquire_token_for_client(scope)
    assert wrong_secret["error"] == "invalid_client" and wrong_secret["error_codes"] == [7000215]
    assert wrong_secret["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert "Trace ID:" in wrong_secret["error_description"] and wrong_secret["correlation_id"]
    unknown = msal_app(emulator, tenant, client_id="0000aaaa-0000-0000-0000-000000000000").acquire_token_for_client(scope)
    assert unknown["error"] == "unauthorized_client" and unknown["error_codes"] == [700016]
    resource = msal_app(emulator, tenant).acquire_token_for_client(["https://example.org/.default"])
    assert resource["error"] == "invalid_resource" and resource["error_codes"] == [500011]
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        msal_app(emulator, tenant, tenant_id="contoso.onmicrosoft.com")


def test_graph_requires_a_valid_token(emulator, tenant, graph):
    def error_of(response):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
        return response.json()["error"]["message"]

    assert error_of(requests.get(f"{emulator.url}/v1.0/users")) == "Access token is empty."
    assert "CompactToken parsing failed" in error_of(requests.get(f"{emulator.url}/v1.0/users", headers={"Authorization": "Bearer x.y"}))
    assert graph.get(f"{emulator.url}/v1.0/users").status_code == 200
    emulator.expire_tokens()
    assert error_of(graph.get(f"{emulator.url}/v1.0/users")) == "Access token has expired or is not yet valid."


def test_error_json_shape(emulator, graph):
    response = graph.get(f"{emulator.url}/v1.0/users?$top=1000", headers={"client-request-id": "abc-123"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "Request_UnsupportedQuery"
    assert error["message"] == "Invalid page size specified: '1000'. Must be between 1 and 999 inclusive."
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert error["innerError"]["client-request-id"] == "abc-123"
    assert response.headers["request-id"] == error["innerError"]["request-id"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", error["innerError"]["date"])


def test_paging_select_and_top(emulator, tenant, graph):
    first = graph.get(f"{emulator.url}/v1.0/users?$select=id,department&$top=50").json()
    assert first["@odata.context"] == f"{emulator.url}/v1.0/$metadata#users(id,department)"
    assert all(set(user) == {"id", "department"} for user in first["value"])
    assert "$skiptoken=" in first["@odata.nextLink"]
    seen = [u["id"] for u in first["value"]]
    link = first["@odata.nextLink"]
    while link:
        page = graph.get(link).json()
        seen += [u["id"] for u in page["value"]]
        link = page.get("@odata.nextLink")
    assert seen == [u["id"] for u in tenant.users]
    default = graph.get(f"{emulator.url}/v1.0/users?$top=1").json()["value"][0]
    assert set(default) == {"businessPhones", "displayName", "givenName", "id", "jobTitle", "mail", "mobilePhone",
                            "officeLocation", "preferredLanguage", "surname", "userPrincipalName"}  # no accountEnabled
    assert len(graph.get(f"{emulator.url}/v1.0/users").json()["value"]) == 100  # the default page size
    unknown = graph.get(f"{emulator.url}/v1.0/users?$select=shoeSize").json()["error"]
    assert unknown["message"] == "Could not find a property named 'shoeSize' on type 'microsoft.graph.user'."
    forged = first["@odata.nextLink"][:-3] + "AAA"
    assert graph.get(forged).status_code == 400


def test_users_carry_proxy_addresses_as_exchange_writes_them(emulator, tenant, graph):
    """proxyAddresses: "SMTP:" the primary address (the mail), "smtp:" the others (a quarter of
    the staff have their Google address there), and Exchange's SIP address."""
    users = graph.get(f"{emulator.url}/v1.0/users?$select=userPrincipalName,mail,proxyAddresses,userType&$top=999").json()["value"]
    for user in users:
        assert user["proxyAddresses"][0] == f"SMTP:{user['mail']}"
        assert sum(proxy.startswith("SMTP:") for proxy in user["proxyAddresses"]) == 1
    members = [user for user in users if user["userType"] == "Member"]
    assert all(user["mail"] == user["userPrincipalName"] for user in members)
    assert any(proxy.startswith("smtp:") for user in members for proxy in user["proxyAddresses"])
    assert all(proxy.startswith("SIP:") for user in members for proxy in user["proxyAddresses"][-1:])


def test_counts_and_advanced_queries(emulator, tenant, graph):
    assert graph.get(f"{emulator.url}/v1.0/users/$count").status_code == 400
    counted = graph.get(f"{emulator.url}/v1.0/users/$count", headers={"ConsistencyLevel": "eventual"})
    assert counted.text == str(len(tenant.users)) and counted.headers["Content-Type"].startswith("text/plain")
    page = graph.get(f"{emulator.url}/v1.0/users?$count=true&$top=5", headers={"ConsistencyLevel": "eventual"}).json()
    assert page["@odata.count"] == len(tenant.users)
    advanced = graph.get(f"{emulator.url}/v1.0/servicePrincipals?$filter=appOwnerOrganizationId ne null").json()["error"]
    assert advanced["code"] == "Request_UnsupportedQuery" and "ConsistencyLevel:eventual" in advanced["message"]
    graph_sp = graph.get(f"{emulator.url}/v1.0/servicePrincipals?$filter=appId eq '00000003-0000-0000-c000-000000000000'").json()
    assert [sp["displayName"] for sp in graph_sp["value"]] == ["Microsoft Graph"]
    by_alternate_key = graph.get(f"{emulator.url}/v1.0/servicePrincipals(appId='00000003-0000-0000-c000-000000000000')?$select=id,appRoles").json()
    assert {"id", "appRoles"} <= set(by_alternate_key) and by_alternate_key["appRoles"]


def test_grant_and_assignment_shapes(emulator, tenant, graph):
    grants = graph.get(f"{emulator.url}/v1.0/oauth2PermissionGrants?$top=999").json()
    assert grants["@odata.context"] == f"{emulator.url}/v1.0/$metadata#oauth2PermissionGrants"
    grant = next(g for g in grants["value"] if g["consentType"] == "AllPrincipals")
    assert set(grant) == {"clientId", "consentType", "id", "principalId", "resourceId", "scope"}
    assert grant["principalId"] is None and grant["id"] == delegated_grant_id(grant["clientId"], grant["resourceId"], None)
    client = next(sp for sp in tenant.service_principals if sp["displayName"] == "Securly")
    assignments = graph.get(f"{emulator.url}/v1.0/servicePrincipals/{client['id']}/appRoleAssignments").json()
    assert assignments["@odata.context"] == f"{emulator.url}/v1.0/$metadata#appRoleAssignments"
    first = assignments["value"][0]
    assert first["principalType"] == "ServicePrincipal" and first["resourceDisplayName"] == "Microsoft Graph"
    assert base64.urlsafe_b64decode(first["id"] + "==")[:16] == uuid.UUID(client["id"]).bytes_le
    missing = graph.get(f"{emulator.url}/v1.0/servicePrincipals/00000000-0000-0000-0000-00000000abcd/oauth2PermissionGrants")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "Request_ResourceNotFound"


def test_batch(emulator, tenant, graph):
    url = f"{emulator.url}/v1.0/$batch"
    too_many = graph.post(url, json={"requests": [{"id": str(n), "method": "GET", "url": "/users"} for n in range(21)]})
    assert too_many.status_code == 400
    duplicate = graph.post(url, json={"requests": [{"id": "a", "method": "GET", "url": "/users"}, {"id": "A", "method": "GET", "url": "/users"}]})
    assert duplicate.status_code == 400
    securly = next(sp["id"] for sp in tenant.service_principals if sp["displayName"] == "Securly")
    emulator.throttle_next("/appRoleAssignments", retry_after=2.5)
    answer = graph.post(url, json={"requests": [
        {"id": "1", "method": "GET", "url": f"/servicePrincipals/{securly}/appRoleAssignments"},
        {"id": "2", "method": "GET", "url": "servicePrincipals/00000000-0000-0000-0000-00000000abcd"},
        {"id": "3", "method": "GET", "url": "/subscribedSkus", "dependsOn": ["2"]},
        {"id": "4", "method": "GET", "url": "/organization"},
    ]})
    assert answer.status_code == 200
    items = {item["id"]: item for item in answer.json()["responses"]}
    assert items["1"]["status"] == 429 and items["1"]["headers"]["Retry-After"] == "2.500"
    assert items["1"]["body"]["error"]["code"] == "TooManyRequests"
    assert items["2"]["status"] == 404
    assert items["3"]["status"] == 424  # its dependency failed
    assert items["4"]["status"] == 200 and items["4"]["body"]["value"][0]["id"] == tenant.tenant_id
    stats = emulator.stats()
    assert stats["batch_envelopes"] == 3 and stats["batch_items"] == 4  # refused batches run no item


def test_resource_unit_throttling(emulator, graph, clock):
    emulator.configure(ru_budget=5, ru_window=2.0)
    users = f"{emulator.url}/v1.0/users?$top=5"  # 2 RU, -1 for $top < 20: 1 RU
    statuses = [graph.get(users).status_code for _ in range(3)]
    clock.advance(1.5)
    statuses += [graph.get(users).status_code for _ in range(2)]
    throttled = graph.get(users)
    assert statuses == [200] * 5 and throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "0.500"  # when the first three units leave the 2 s window
    assert throttled.headers["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    assert throttled.headers["x-ms-throttle-scope"].startswith("Tenant_Application/Read/")
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    clock.advance(0.25)
    assert graph.get(users).status_code == 429
    clock.advance(0.3)
    assert graph.get(users).status_code == 200
    emulator.configure(ru_budget=1, retry_after="absent")
    graph.get(f"{emulator.url}/v1.0/users?$top=5")
    assert "Retry-After" not in graph.get(f"{emulator.url}/v1.0/users?$top=5").headers


def test_reports_limit_and_premium(emulator, graph):
    url = f"{emulator.url}/beta/reports/servicePrincipalSignInActivities"
    statuses = [graph.get(url).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    assert graph.get(f"{emulator.url}/v1.0/reports/servicePrincipalSignInActivities").status_code == 400  # beta only
    with emulator.mutate() as tenant:
        tenant.premium = False
    emulator.configure(reports_limit=100)
    error = graph.get(url).json()["error"]
    assert error["code"] == "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
    assert error["message"] == "Neither tenant is B2C or tenant doesn't have premium license"


def test_permissions_are_checked(emulator, tenant, graph):
    with emulator.mutate() as changed:
        changed.remove_app_permission(changed.registration.client_id, "AuditLog.Read.All")
        changed.remove_app_permission(changed.registration.client_id, "Directory.Read.All")
    token = msal_app(emulator, tenant).acquire_token_for_client([f"{emulator.graph_url}/.default"])["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    refused = requests.get(f"{emulator.url}/v1.0/users", headers=headers)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "Authorization_RequestDenied"
    assert requests.get(f"{emulator.url}/v1.0/oauth2PermissionGrants", headers=headers).status_code == 200
    assert graph.get(f"{emulator.url}/v1.0/users").status_code == 200  # a token keeps the roles it was issued with


def test_faults_are_seeded_and_each_kind_breaks_the_wire(emulator, graph):
    def run(seed):
        emulator.configure(fault_rate=0.5, fault_seed=seed, fault_kinds=["500", "503"])
        return [graph.get(f"{emulator.url}/v1.0/organization").status_code for _ in range(12)]

    assert run(3) == run(3) and 200 in run(3) and set(run(3)) > {200}
    emulator.configure(fault_rate=1.0, fault_kinds=["reset"])
    with pytest.raises(requests.ConnectionError):
        graph.get(f"{emulator.url}/v1.0/organization")
    emulator.configure(fault_kinds=["truncated"])
    truncated = graph.get(f"{emulator.url}/v1.0/organization")
    assert truncated.status_code == 200
    with pytest.raises(ValueError):
        truncated.json()
    emulator.configure(fault_kinds=["429"], fault_retry_after=0.25)
    throttled = graph.get(f"{emulator.url}/v1.0/organization")
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "0.250"


def test_timeout_fault_stalls_then_drops_the_connection(emulator, graph, clock):
    url = f"{emulator.url}/v1.0/organization"
    emulator.configure(fault_rate=1.0, fault_kinds=["timeout"], fault_stall=0.6, timeout_mid_body=0.0)
    with pytest.raises(requests.ReadTimeout):  # nothing comes back within the client's read timeout
        graph.get(url, timeout=(5, 0.2))
    clock.wait_for_sleepers(1)  # the emulator stalls (however slowly this machine got there), until its clock moves
    clock.advance(0.6)
    clock.wait_for_sleepers(0)

    patient: list[BaseException] = []  # a patient client sees the connection dropped after the stall

    def wait_for_answer() -> None:
        try:
            graph.get(url, timeout=(5, 60))
        except requests.ConnectionError as error:
            patient.append(error)

    waiting = threading.Thread(target=wait_for_answer)
    waiting.start()
    clock.wait_for_sleepers(1)
    clock.advance(0.5)
    waiting.join(0.5)
    assert waiting.is_alive() and not patient  # 0.5 s into a 0.6 s stall: nothing yet
    clock.advance(0.1)
    waiting.join(30)
    assert len(patient) == 1
    emulator.configure(timeout_mid_body=1.0)
    with graph.get(url, timeout=(5, 0.2), stream=True) as response:  # the status line and headers do come
        assert response.status_code == 200 and int(response.headers["Content-Length"]) > 0
        with pytest.raises(requests.ConnectionError):  # then half the body, then nothing
            response.content
    assert emulator.stats()["faults"] == {"timeout": 2, "timeout mid-body": 1}


def test_truncation_hides_no_other_fault_and_spares_text(emulator, tenant, graph):
    emulator.configure(fault_rate=1.0, fault_kinds=["truncated"])
    counted = graph.get(f"{emulator.url}/v1.0/users/$count", headers={"ConsistencyLevel": "eventual"})
    assert counted.text == str(len(tenant.users))  # text cannot be seen to be cut, so it is not
    envelope = graph.post(f"{emulator.url}/v1.0/$batch", json={"requests": [{"id": "1", "method": "GET", "url": "/organization"}]})
    with pytest.raises(ValueError):
        envelope.json()
    assert emulator.stats()["faults"] == {"truncated": 1}  # and no fault inside the envelope nobody can read


def test_aimed_faults_and_a_token_expiring_mid_listing(emulator, graph):
    emulator.fault_next("/v1.0/organization", "503", times=2)
    statuses = [graph.get(f"{emulator.url}/v1.0/organization").status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    with pytest.raises(ValueError):
        emulator.fault_next("/v1.0/organization", "meteor")
    emulator.expire_tokens_at("/v1.0/users", nth=2)
    first = graph.get(f"{emulator.url}/v1.0/users?$top=50")
    assert first.status_code == 200
    refused = graph.get(first.json()["@odata.nextLink"])
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert graph.get(f"{emulator.url}/v1.0/organization").status_code == 401  # every token issued so far


def test_skiptokens_expire_with_graphs_error(emulator, tenant, graph, clock):
    def expired(response):
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["message"] == "The specified page token value has expired and can no longer be included in your request."
        return error["code"] == "Directory_ExpiredPageToken"

    emulator.configure(skiptoken_lifetime=60)
    first = graph.get(f"{emulator.url}/v1.0/users?$top=50").json()
    clock.advance(59)
    assert graph.get(first["@odata.nextLink"]).status_code == 200  # 59 s old: still good
    clock.advance(2)
    assert expired(graph.get(first["@odata.nextLink"]))
    emulator.configure(skiptoken_lifetime=0.0)
    assert graph.get(first["@odata.nextLink"]).status_code == 200  # lifetime 0: for ever

    kahoot = next(sp["id"] for sp in tenant.service_principals if sp["displayName"] == "Kahoot!")
    grants = f"/servicePrincipals/{kahoot}/oauth2PermissionGrants"
    emulator.expire_next_skiptokens(grants)
    assert graph.get(first["@odata.nextLink"]).status_code == 200  # another listing
    page = graph.get(f"{emulator.url}/v1.0{grants}?$top=10").json()
    assert graph.get(f"{emulator.url}/v1.0{grants}?$top=10").status_code == 200  # no token: never expired
    assert expired(graph.get(page["@odata.nextLink"]))
    assert graph.get(page["@odata.nextLink"]).status_code == 200  # only the next one
    emulator.expire_next_skiptokens(grants)
    batch = graph.post(f"{emulator.url}/v1.0/$batch", json={"requests": [
        {"id": "1", "method": "GET", "url": page["@odata.nextLink"].split("/v1.0", 1)[1]}]}).json()
    item = batch["responses"][0]
    assert item["status"] == 400 and item["body"]["error"]["code"] == "Directory_ExpiredPageToken"
    assert emulator.stats()["expired_page_tokens"] == 3
    forged = graph.get(page["@odata.nextLink"].replace("$skiptoken=RFNwd", "$skiptoken=RFNwe"))
    assert forged.status_code == 400 and forged.json()["error"]["code"] == "Request_BadRequest"


def test_tenant_wide_grants_list_misbehaviour(emulator, tenant, graph):
    url = f"{emulator.url}/v1.0/oauth2PermissionGrants?$top=100"

    def all_grants():
        seen, link, pages = [], url, []
        while link:
            page = graph.get(link).json()
            pages.append(len(page["value"]))
            seen += page["value"]
            link = page.get("@odata.nextLink")
        return seen, pages

    complete, _ = all_grants()
    assert len(complete) == len(tenant.grants)
    emulator.configure(grants_list_short_pages=True)
    short, pages = all_grants()
    assert max(pages) == 50 and len(short) == len(tenant.grants)
    emulator.configure(grants_list_short_pages=False, grants_list_drop_rate=0.1)
    incomplete, _ = all_grants()
    assert 0.8 * len(tenant.grants) < len(incomplete) < len(tenant.grants)
    emulator.configure(grants_list_unavailable=True)
    unavailable = graph.get(url)
    assert unavailable.status_code == 503 and unavailable.json()["error"]["code"] == "serviceNotAvailable"


def test_tenant_json_round_trip(tenant):
    again = MicrosoftTenant.from_json(json.loads(json.dumps(tenant.to_json())))
    assert again.to_json() == tenant.to_json()
    assert again.grants == tenant.grants and again.assignments == tenant.assignments


def test_build_tenant_is_deterministic_and_scales():
    assert build_tenant(users=50, seed=1).to_json() == build_tenant(users=50, seed=1).to_json()
    big = build_tenant(users=3000, seed=1, grants_per_user=8, extra_apps=40)
    assert 7 < len(big.grants) / len(big.users) < 9
    consents = Counter(grant.principal_id for grant in big.grants
                       if grant.consent_type == "Principal" and grant.resource_id == big.sp_by_app_id[GRAPH_APP_ID]["id"])
    assert 25 <= max(consents.values()) <= 40  # a long tail of heavy users, capped
    assert sum(1 for sp in big.service_principals if sp["displayName"].startswith("EdTech Tool")) == 40


def test_churn_changes_the_consents_of_a_fraction_of_members_deterministically():
    tenant = build_tenant(users=500, seed=3)
    before = {(g.client_id, g.principal_id) for g in tenant.grants if g.consent_type == "Principal"}
    again = build_tenant(users=500, seed=3)
    result = tenant.churn(0.02, seed=9)
    assert result == again.churn(0.02, seed=9)
    assert result["users"] == 10 and result["authorized"] + result["revoked"] == 10
    after = {(g.client_id, g.principal_id) for g in tenant.grants if g.consent_type == "Principal"}
    changed_users = {user for _, user in before ^ after}
    assert len(before - after) == result["revoked"] and len(after - before) == result["authorized"]
    assert 0 < len(changed_users) <= 10
    guests = {u["id"] for u in tenant.users if u.get("userType") == "Guest"}
    assert not changed_users & guests
    served = {(g.client_id, g.principal_id) for grants in tenant.grants_by_client.values() for g in grants
              if g.consent_type == "Principal"}
    assert served == after  # reindexed: what the emulator serves is the changed tenant


def test_child_process_emulator(monkeypatch):
    knobs = {"latency": 0.01}
    with MicrosoftEmulatorProcess(generate={"users": 40, "seed": 2}, knobs=knobs) as process:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", process.ca_pem_path)
        app = msal.ConfidentialClientApplication(
            process.client_id, client_credential="emulator-secret-do-not-use", authority=f"{process.authority_host}/{process.tenant_id}",
            instance_discovery=False, azure_region=False, http_client=requests.Session())
        token = app.acquire_token_for_client([f"{process.graph_url}/.default"])
        assert "access_token" in token, token
        users = requests.get(f"{process.graph_url}/v1.0/users?$top=999", verify=process.ca_pem_path,
                             headers={"Authorization": f"Bearer {token['access_token']}"}).json()["value"]
        assert len(users) == 40 + 1  # and one guest
        stats = process.stats()
        assert stats["endpoints"]["GET /v1.0/users"] == 1 and stats["token_requests"] == 2
        assert process.configure(fault_rate=0.5)["fault_rate"] == 0.5
        process.configure(fault_rate=0.0)
        process.fault_next("/v1.0/organization", "504")
        process.expire_next_skiptokens("/v1.0/users")
        process.expire_tokens_at("/v1.0/subscribedSkus")
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        assert requests.get(f"{process.graph_url}/v1.0/organization", headers=headers).status_code == 504
        page = requests.get(f"{process.graph_url}/v1.0/users?$top=10", headers=headers).json()
        assert requests.get(page["@odata.nextLink"], headers=headers).json()["error"]["code"] == "Directory_ExpiredPageToken"
        assert requests.get(f"{process.graph_url}/v1.0/subscribedSkus", headers=headers).status_code == 401
        kahoot = next(sp["appId"] for sp in process.tenant_json()["service_principals"] if sp["displayName"] == "Kahoot!")
        assert process.mutate_tenant("revoke_grants", kahoot) > 0
        assert process.mutate_tenant("revoke_grants", kahoot) == 0
        process.mutate_tenant("set_premium", False)
        with pytest.raises(requests.HTTPError):
            process.mutate_tenant("reindex")  # only the listed changes
        tenant = MicrosoftTenant.from_json(process.tenant_json())
        assert tenant.premium is False
        tenant.users = tenant.users[:3]
        process.replace_tenant(tenant)
        assert len(process.tenant_json()["users"]) == 3
        with pytest.raises(requests.HTTPError):
            requests.get(f"{process.url}/_emulator/stats", verify=process.ca_pem_path).raise_for_status()
        pid = process.pid
    assert pid
