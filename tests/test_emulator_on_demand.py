"""The on-demand district and Google tenant (emulators.district_on_demand, emulators.google.on_demand):
the same people as build_district, and a tenant that answers, pages and changes exactly as a
GoogleTenant holding the same district does, while holding only what changed."""

from __future__ import annotations

import datetime as dt
import json
import tracemalloc

import pytest
import requests

from emulators.district import build_district
from emulators.district_on_demand import OnDemandDistrict
from emulators.google.on_demand import OnDemandGoogleTenant
from emulators.google.server import GoogleEmulator, new_service_account_key
from emulators.google.tenant import GoogleTenant, build_tenant, google_tenant
from tests.google_fixtures import ADMIN, expected_grants, inventory_grants

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)


def on_demand_pair(users: int = 600, **options) -> tuple[OnDemandGoogleTenant, GoogleTenant]:
    """An on-demand tenant and a GoogleTenant built from the same district, materialized."""
    district = OnDemandDistrict(users, seed=3, grants_per_user=6, extra_apps=5, providers=("google",), now=NOW,
                                domain="district.example")
    return OnDemandGoogleTenant(district, history=True, **options), google_tenant(district.materialize())


def snapshot(tenant: GoogleTenant) -> dict:
    """Everything the emulator serves from: users, addresses in order, tokens, org units, the audit log."""
    log = tenant.events
    return {
        "users": sorted((user.to_json() for user in tenant.users.values()), key=lambda u: u["id"]),
        # (users.list skips what it cannot find: the on-demand view keeps deleted users in it)
        "by_email": [(email, user_id) for email, user_id in tenant.users_by_email() if user_id in tenant.users],
        "tokens": sorted((user_id, token.client.client_id, token.scopes) for user_id, token in tenant.all_tokens()),
        "org_units": tenant.org_unit_paths(),
        "events": [(e.micros, e.seq, e.name, e.user.id, e.client.client_id, e.scopes)
                   for e in map(tenant.event, range(len(log)))],
        "digest": tenant.grants_digest(),
    }


def test_the_people_are_build_districts():
    for users, options in ((40, {}), (2600, {"grants_per_user": 8, "extra_apps": 10})):
        eager = build_district(users, seed=7, now=NOW, **options)
        lazy = OnDemandDistrict(users, seed=7, now=NOW, **options)
        assert list(lazy.people()) == eager.people
        assert [lazy.email(key) for key in range(users)] == [person.email for person in eager.people]
    # Addresses stay unique without a set of them, numbered as build_district numbers them.
    emails = [person.email for person in lazy.people()]
    assert len(set(emails)) == len(emails) and any("2@" in email for email in emails)


def test_a_persons_grants_are_the_same_every_time_and_follow_the_rates():
    district = OnDemandDistrict(4000, seed=1, grants_per_user=8, providers=("google",), now=NOW)
    assert district.grants_of(1234) == district.grants_of(1234)
    assert district.grants_of(1234) != district.grants_of(1235)
    total = sum(len(district.grants_of(key)) for key in range(district.size))
    assert 7.0 < total / district.size < 9.0


def test_refuses_a_district_whose_students_share_the_staffs_domain():
    with pytest.raises(ValueError, match="student domain"):
        OnDemandDistrict(10, domain="d.example", student_domain="d.example")


def test_holds_what_a_materialized_tenant_holds():
    lazy, eager = on_demand_pair()
    assert snapshot(lazy) == snapshot(eager)
    for user in list(eager.users.values())[::37]:
        for key in (user.id, user.primary_email, user.primary_email.upper(), *user.aliases):
            assert lazy.find_user(key) == user
    assert lazy.find_user("nobody@district.example") is None and lazy.find_user("100000000000000000001") is None


def test_changes_as_a_materialized_tenant_changes():
    lazy, eager = on_demand_pair()
    users = sorted(eager.users)
    holder = next(user_id for user_id in users if eager.tokens[user_id])
    client = eager.tokens[holder][0].client.client_id
    added = {"id": "100000000000000000042", "primaryEmail": "new.teacher@district.example",
             "name": {"givenName": "New", "familyName": "Teacher"}, "orgUnitPath": "/Staff/New School"}
    from emulators.google.tenant import DirectoryUser

    for tenant in (lazy, eager):
        assert tenant.revoke(holder, client, at=NOW)
        assert not tenant.revoke(holder, client, at=NOW)
        tenant.authorize(users[5], client, ["openid"], at=NOW)
        tenant.use(users[5], client, at=NOW + dt.timedelta(seconds=1))
        tenant.delete_user(users[9])
        tenant.add_user(DirectoryUser.from_json(added))
        tenant.authorize(added["id"], client, ["openid", "email"], at=NOW)
        tenant.churn(0.05, seed=2, at=NOW + dt.timedelta(minutes=5))
        tenant.users[users[11]].suspended = True  # as emulators.lifecycle suspends accounts
    assert snapshot(lazy) == snapshot(eager)
    assert lazy.find_user(users[11]).suspended and lazy.users.get(users[11]).suspended
    assert lazy.find_user(users[9]) is None and lazy.find_user("new.teacher@district.example").id == added["id"]
    with pytest.raises(ValueError, match="already taken"):
        lazy.add_user(DirectoryUser("100000000000000000043", eager.users[users[3]].primary_email, "A", "B"))
    with pytest.raises(KeyError):
        lazy.delete_user(users[9])
    # Only what changed is held: the users whose tokens changed, not the district's.
    assert len(lazy._held) < len(users) // 10 and len(lazy._held_users) == 1


def test_the_api_answers_the_same(rsa_key):
    lazy, eager = on_demand_pair(300)
    bodies = []
    for tenant in (lazy, eager):
        with GoogleEmulator(tenant, knobs={"delete_after_listed": [sorted(eager.users)[7]]}) as emulator:
            emulator.core.api._etag_salt = "same"
            key = new_service_account_key(token_uri=emulator.token_uri, private_key=rsa_key)
            emulator.delegate(key)
            bodies.append(api_answers(emulator, key))
    assert bodies[0] == bodies[1]
    assert len(bodies[0]["users"]) == 301 - 1 + 1  # the user deleted mid-listing was on the page that listed them


def api_answers(emulator: GoogleEmulator, key: dict) -> dict:
    """users.list page by page, every user's tokens.list, and the token log, as raw JSON (page tokens left out)."""
    from google.oauth2 import service_account
    import google.auth.transport.requests

    credentials = service_account.Credentials.from_service_account_info(
        key, scopes=["https://www.googleapis.com/auth/admin.directory.user.readonly",
                     "https://www.googleapis.com/auth/admin.directory.user.security",
                     "https://www.googleapis.com/auth/admin.reports.audit.readonly"]).with_subject(ADMIN)
    credentials.refresh(google.auth.transport.requests.Request())
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {credentials.token}"
    root = emulator.api_root

    def pages(url: str, params: dict) -> list[dict]:
        answers, token = [], None
        while True:
            body = session.get(url, params={**params, **({"pageToken": token} if token else {})}, timeout=30).json()
            token = body.pop("nextPageToken", None)
            answers.append(body)
            if not token:
                return answers

    users = [user for page in pages(root + "admin/directory/v1/users", {"customer": "my_customer", "maxResults": 40})
             for user in page.get("users", [])]
    tokens = {user["id"]: session.get(f"{root}admin/directory/v1/users/{user['id']}/tokens", timeout=30).json()
              for user in users}
    by_address = session.get(f"{root}admin/directory/v1/users/{users[3]['primaryEmail']}/tokens", timeout=30).json()
    log = pages(root + "admin/reports/v1/activity/users/all/applications/token", {"maxResults": 500})
    for page in log:
        del page["etag"]  # made from the clock's now, which moved between the two emulators
    assert sum(len(page.get("items", ())) for page in log) > 500
    return {"users": users, "tokens": tokens, "by_address": by_address, "log": json.dumps(log, sort_keys=True)}


def test_a_scan_finds_every_token(district):
    tenant = build_tenant(users=400, seed=5, grants_per_user=6, on_demand=True)
    made = district(tenant)
    assert made.scan(full=True)["status"] == "succeeded"
    assert inventory_grants(made.db_path) == expected_grants(tenant) != set()
    made.emulator.mutate([{"op": "churn", "fraction": 0.1, "seed": 4}])
    assert made.scan()["status"] == "succeeded"
    assert inventory_grants(made.db_path) == expected_grants(tenant)


def test_holds_far_less_than_a_materialized_tenant():
    def held(build) -> int:
        tracemalloc.start()
        tenant = build()
        size = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        assert len(tenant.users) == 20_001
        return size

    lazy = held(lambda: build_tenant(users=20_000, seed=1, grants_per_user=8, on_demand=True))
    eager = held(lambda: build_tenant(users=20_000, seed=1, grants_per_user=8))
    assert lazy < eager / 4
