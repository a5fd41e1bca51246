"""Fault tolerance of the Microsoft 365 provider: real MSAL and requests against the HTTPS emulator.

Every kind of fault the emulator injects (429 with Retry-After, 500, 503, 504, connection
resets, timeouts, truncated JSON), page tokens that expire mid-listing and access tokens
that expire between pages must leave the inventory exactly as a scan without them.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter

import pytest
import requests
from sqlite_utils import Database

import plugins.microsoft.provider
from plugins.microsoft import client as microsoft_graph, scan as microsoft_scan
from plugins.microsoft.auth import GraphToken
from plugins.microsoft.client import GraphCallError, GraphClient
from scanner.config import load_config
from emulators.microsoft.graph import FAULT_KINDS
from emulators.apps import microsoft_app_id
from scanner.providers import App, Grant, User

from .microsoft_fixtures import expected_inventory, recorded_inventory, scan, write_config

READ_TIMEOUT = 0.5  # the client's read timeout in these tests (the scanner's default is 120 s)
STALL = 1.2  # how long a "timeout" fault stalls: longer than the read timeout
KAHOOT = microsoft_app_id("Kahoot!")  # the app with the most grants: its grant list has several pages


@pytest.fixture(autouse=True)
def short_read_timeout(monkeypatch):
    monkeypatch.setattr(microsoft_graph, "TIMEOUT", (5, READ_TIMEOUT))


@pytest.fixture
def client(ms_emulator, ms_tenant, tmp_path):
    """The provider's Graph client, signed in through MSAL, with quick retries."""
    config = load_config(write_config(tmp_path, ms_emulator, ms_tenant))
    session = requests.Session()
    graph = GraphClient(ms_emulator.graph_url, GraphToken.from_config(config, session), retries=3, backoff=0.05)
    yield graph
    graph.close()
    session.close()


def inventory_tables(db_path: str) -> dict[str, set]:
    """Everything a scan records about the tenant, without the times it was recorded at."""
    db = Database(db_path)
    return {
        "users": set(db.execute("select id, email, name, role, org_unit, suspended, is_admin from users")),
        "apps": set(db.execute("select id, client_id, name, publisher, verified_publisher, ownership, homepage, details, "
                               "last_used, status, risk, users, students, staff, tenant_wide from apps")),
        "grants": set(db.execute("select id, user_id, app_id, scopes, grant_type, resource, tenant_wide, risk, revoked_at from grants")),
        "scopes": set(db.execute("select provider, scope, label, risk, data_category from scopes")),
    }


def faults_seen(emulator) -> Counter:
    """Injected faults by kind, on whole requests and on $batch items alike."""
    counts: Counter = Counter()
    for name, n in emulator.stats()["faults"].items():
        counts[name.removeprefix("batch item ").replace("timeout mid-body", "timeout")] += n
    return counts


def unretried_faults(caplog) -> int:
    """Faults that no retry followed: the tenant-wide grants list gets three tries, not nine (the per-app
    listings stand in for it), so if it gave up, up to three of its faults were not retried."""
    gave_up = any("the tenant-wide grants list failed" in r.getMessage() for r in caplog.records)
    return 3 if gave_up else 0


# -- whole scans ---------------------------------------------------------------------------------

def test_ten_percent_faults_of_every_kind_give_the_fault_free_inventory(ms_emulator, ms_tenant, tmp_path, caplog):
    config = write_config(tmp_path, ms_emulator, ms_tenant)
    clean_db, faulty_db = str(tmp_path / "clean.db"), str(tmp_path / "faulty.db")
    assert scan(clean_db, config)["status"] == "succeeded"
    ms_emulator.reset_stats()
    ms_emulator.configure(fault_rate=0.1, fault_seed=5, fault_kinds=list(FAULT_KINDS), fault_retry_after=0.05,
                          fault_stall=STALL)
    # On top of the random tenth, one fault of each kind for certain (a retry can meet the next one).
    aimed = {"429": "/beta/reports/", "500": "/v1.0/$batch", "503": "/v1.0/servicePrincipals/", "504": "/v1.0/subscribedSkus",
             "reset": "/v1.0/users", "timeout": "/v1.0/$batch", "truncated": "/v1.0/organization"}
    for kind, path in aimed.items():
        ms_emulator.fault_next(path, kind)
    caplog.set_level(logging.WARNING)

    row = scan(faulty_db, config)

    assert row["status"] == "succeeded", row["error"]
    assert inventory_tables(faulty_db) == inventory_tables(clean_db)
    assert recorded_inventory(faulty_db) == expected_inventory(ms_tenant)
    faults = faults_seen(ms_emulator)
    assert set(faults) == set(FAULT_KINDS), faults
    assert sum(faults.values()) >= 12  # the seven aimed ones and about a tenth of some 80 requests
    assert row["retries"] >= sum(faults.values()) - unretried_faults(caplog)  # each fault was retried, and counted


def test_timeouts_alone_are_retried_and_counted(ms_emulator, ms_tenant, tmp_path, db_path, caplog):
    ms_emulator.configure(fault_rate=0.12, fault_seed=2, fault_kinds=["timeout"], fault_stall=STALL)
    ms_emulator.fault_next("/v1.0/$batch", "timeout")  # the application permissions come only through $batch
    ms_emulator.fault_next("/v1.0/oauth2PermissionGrants", "timeout")  # the list with fewer tries (it has a fallback)
    caplog.set_level(logging.WARNING)

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    assert recorded_inventory(db_path) == expected_inventory(ms_tenant)
    faults = ms_emulator.stats()["faults"]
    assert set(faults) <= {"timeout", "timeout mid-body"} and sum(faults.values()) >= 4, faults
    assert row["retries"] >= sum(faults.values()) - unretried_faults(caplog)


def test_page_tokens_expiring_mid_listings_are_recovered(ms_emulator, ms_tenant, tmp_path, db_path, monkeypatch, caplog):
    # Pages of 20 make every listing page: service principals, the sign-in report too.
    monkeypatch.setattr(microsoft_scan, "REPORT_INTERVAL", 0.05)
    ms_emulator.configure(max_page_size=20, reports_limit=100)
    kahoot_grants = f"/v1.0/servicePrincipals/{ms_tenant.sp_by_app_id[KAHOOT]['id']}/oauth2PermissionGrants"
    listings = ["/v1.0/servicePrincipals", "/v1.0/users", kahoot_grants, "/v1.0/oauth2PermissionGrants",
                "/beta/reports/servicePrincipalSignInActivities"]
    for listing in listings:  # the service principals are listed first, before anything else runs
        ms_emulator.expire_next_skiptokens(listing)
    yielded = record_what_the_provider_yields(monkeypatch)
    caplog.set_level(logging.WARNING)

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    assert recorded_inventory(db_path) == expected_inventory(ms_tenant)
    assert ms_emulator.stats()["expired_page_tokens"] == len(listings)
    restarts = [re.fullmatch(r"microsoft: Graph's page token for (\S+) expired after ([\d,]+) items were read; reading the "
                             r"list again from its first page( and skipping those)? \(fresh start 1 of at most 3\)", r.getMessage())
                for r in caplog.records if "page token" in r.getMessage()]
    assert all(restarts) and sorted(m[1] for m in restarts) == sorted(listings)
    assert {m[2] for m in restarts} == {"20"}  # each had read its first page of 20
    # The grant lists count afresh and hand their grants out again (the cross-check of the census
    # with the per-app lists agrees, so no warning); users and apps skip what they handed out.
    assert sorted(m[1] for m in restarts if not m[3]) == sorted([kahoot_grants, "/v1.0/oauth2PermissionGrants"])
    assert not [r.getMessage() for r in caplog.records if "tenant-wide grants list" in r.getMessage()]
    users = [r.id for r in yielded if isinstance(r, User)]
    assert len(users) == len(set(users)) == len(ms_tenant.users)
    apps = [r.id for r in yielded if isinstance(r, App)]
    assert len(apps) == len(set(apps))
    # Kahoot!'s first page of grants came twice, and each of its grants is recorded and counted once.
    grants = [(r.user_id, r.app_id, r.resource, r.grant_type, tuple(r.scopes)) for r in yielded if isinstance(r, Grant)]
    kahoot = [g for g in grants if g[1] == KAHOOT and g[3] == "delegated"]
    assert len(kahoot) == len(ms_tenant.grants_by_client[ms_tenant.sp_by_app_id[KAHOOT]["id"]]) + 20
    assert len(set(kahoot)) == len(kahoot) - 20
    expected = expected_inventory(ms_tenant)
    assert row["grants_seen"] == len(set(grants)) == sum(len(found) for found in expected.values())
    assert row["retries"] >= len(listings)


def test_a_page_token_that_keeps_expiring_fails_the_scan_and_keeps_the_inventory(ms_emulator, ms_tenant, tmp_path, db_path):
    config = write_config(tmp_path, ms_emulator, ms_tenant)
    assert scan(db_path, config)["status"] == "succeeded"
    before = inventory_tables(db_path)
    last_seen = Database(db_path).execute("select max(last_seen) from grants").fetchone()[0]
    ms_emulator.expire_next_skiptokens("/v1.0/users", times=100)
    ms_emulator.throttle_next("/beta/reports/", retry_after=30)  # a request waiting to retry when the scan fails
    with ms_emulator.mutate() as tenant:
        tenant.revoke_grants(KAHOOT)  # what a wrongly succeeding scan would revoke

    started = time.monotonic()
    row = scan(db_path, config)

    assert row["status"] == "failed"
    assert time.monotonic() - started < 10 and not graph_threads_after(2.0)  # the waiting request gave up with it
    assert row["error"].startswith("Microsoft Graph's page token for /v1.0/users kept expiring: the list was read again "
                                   "from its first page 3 times")
    assert "Directory_ExpiredPageToken" in row["error"] and "run the scan again later" in row["error"]
    assert ms_emulator.stats()["expired_page_tokens"] == 4  # the first expiry, then one for each fresh start
    assert inventory_tables(db_path) == before
    assert Database(db_path).execute("select max(last_seen) from grants").fetchone()[0] == last_seen


def test_a_tenant_wide_list_whose_page_token_keeps_expiring_falls_back(ms_emulator, ms_tenant, tmp_path, db_path, caplog):
    ms_emulator.expire_next_skiptokens("/v1.0/oauth2PermissionGrants", times=100)
    caplog.set_level(logging.WARNING)

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    assert recorded_inventory(db_path) == expected_inventory(ms_tenant)
    assert any("listing the grants of Microsoft's" in r.getMessage() and "Directory_ExpiredPageToken" in r.getMessage()
               for r in caplog.records)


def test_access_token_expiring_between_pages_is_renewed(ms_emulator, ms_tenant, tmp_path, db_path):
    ms_emulator.expire_tokens_at("/v1.0/users", nth=4)  # $count, page 1, page 2, then page 3
    kahoot_grants = f"/servicePrincipals/{ms_tenant.sp_by_app_id[KAHOOT]['id']}/oauth2PermissionGrants"
    ms_emulator.expire_tokens_at(kahoot_grants, nth=2)  # its second page

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    assert recorded_inventory(db_path) == expected_inventory(ms_tenant)
    # Each listing was refused after its first page, and went on (the two expiries may come close together).
    users = [e[2] for e in ms_emulator.events_for("/v1.0/users") if e[4] == "/v1.0/users"]
    assert users[0] == 200 and 401 in users and users[-1] == 200 and users.count(200) == -(-len(ms_tenant.users) // 50)
    kahoot = [e[2] for e in ms_emulator.events_for(kahoot_grants)]
    kahoot_pages = -(-len(ms_tenant.grants_by_client[ms_tenant.sp_by_app_id[KAHOOT]["id"]]) // 50)
    assert kahoot_pages >= 2 and kahoot[0] == 200 and 401 in kahoot and kahoot.count(200) == kahoot_pages
    assert ms_emulator.stats()["token_requests"] >= 4  # openid-configuration, the first token, and renewals


# -- the client alone ---------------------------------------------------------------------------

@pytest.mark.parametrize("mid_body", [False, True], ids=["before-answer", "mid-body"])
@pytest.mark.parametrize("target", ["GET", "$batch"])
def test_a_read_timeout_is_retried_and_counted(client, ms_emulator, ms_tenant, target, mid_body):
    ms_emulator.configure(fault_stall=STALL, timeout_mid_body=1.0 if mid_body else 0.0)
    path = "/v1.0/organization" if target == "GET" else "/v1.0/$batch"
    ms_emulator.fault_next(path, "timeout")

    started = time.monotonic()
    if target == "GET":
        assert client.get("/v1.0/organization")["value"][0]["id"] == ms_tenant.tenant_id
    else:
        sp = ms_tenant.service_principals[0]
        assert dict(client.batch_objects({"sp": f"/servicePrincipals/{sp['id']}?$select=id"}))["sp"]["id"] == sp["id"]

    assert READ_TIMEOUT <= time.monotonic() - started < STALL
    assert client.stats.retries == 1
    assert ms_emulator.stats()["faults"] == {"timeout mid-body" if mid_body else "timeout": 1}


def test_an_error_whose_body_is_cut_short_is_asked_again(client, ms_emulator):
    ms_emulator.fault_next("/v1.0/users", "truncated")
    with pytest.raises(GraphCallError) as caught:
        client.get("/v1.0/users?$top=1000")
    assert (caught.value.status, caught.value.code) == (400, "Request_UnsupportedQuery")  # read whole, the second time
    assert client.stats.retries == 1


def test_pages_start_again_and_skip_what_was_yielded(client, ms_emulator, ms_tenant, caplog):
    ms_emulator.expire_next_skiptokens("/v1.0/users", times=2)
    caplog.set_level(logging.WARNING)

    pages = list(client.pages("/v1.0/users?$select=id&$top=50"))

    ids = [user["id"] for page in pages for user in page]
    assert ids == [user["id"] for user in ms_tenant.users]
    assert client.stats.page_restarts == 2
    assert [r.getMessage() for r in caplog.records] == [
        "microsoft: Graph's page token for /v1.0/users expired after 50 items were read; reading the list again from its "
        "first page and skipping those (fresh start 1 of at most 3)",
        "microsoft: Graph's page token for /v1.0/users expired after 50 items were read; reading the list again from its "
        "first page and skipping those (fresh start 2 of at most 3)",
    ]


def test_batch_collections_start_again_after_an_expired_page_token(client, ms_emulator, ms_tenant):
    clients = [sp["id"] for sp in ms_tenant.service_principals if len(ms_tenant.assignments_by_principal.get(sp["id"], [])) > 2]
    assert clients
    ms_emulator.expire_next_skiptokens(f"/servicePrincipals/{clients[0]}/appRoleAssignments")

    collected = dict(client.batch_collect({sp_id: f"/servicePrincipals/{sp_id}/appRoleAssignments?$top=2" for sp_id in clients}))

    for sp_id in clients:
        assert sorted(a["id"] for a in collected[sp_id]) == sorted(a.id for a in ms_tenant.assignments_by_principal[sp_id])
    assert client.stats.page_restarts == 1 and ms_emulator.stats()["expired_page_tokens"] == 1

    ms_emulator.expire_next_skiptokens(f"/servicePrincipals/{clients[0]}/appRoleAssignments", times=10)
    with pytest.raises(GraphCallError) as caught:
        dict(client.batch_collect({clients[0]: f"/servicePrincipals/{clients[0]}/appRoleAssignments?$top=2"}))
    assert caught.value.expired_page_token and "read again from its first page 3 times" in caught.value.message


def graph_threads_after(seconds: float) -> list[threading.Thread]:
    """The provider's worker threads still alive after waiting up to `seconds` for them to end."""
    deadline = time.monotonic() + seconds
    while True:
        alive = [t for t in threading.enumerate() if t.name.startswith("graph")]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def record_what_the_provider_yields(monkeypatch) -> list:
    """Every record the Microsoft provider hands the core during the test, in order."""
    yielded: list = []
    scan_records = plugins.microsoft.provider.Microsoft365.scan

    def recording_scan(self, run):
        for record in scan_records(self, run):
            yielded.append(record)
            yield record

    monkeypatch.setattr(plugins.microsoft.provider.Microsoft365, "scan", recording_scan)
    return yielded
