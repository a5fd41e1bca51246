"""An incremental Google scan lists the directory by address prefix, several searches at once
(plugins.google.users): every user exactly once, whatever restarts, odd addresses and search lag."""

from __future__ import annotations

import datetime as dt

import pytest

from emulators.google.api import Failure, _user_filter
from emulators.google.tenant import DirectoryUser, OAuthClient, build_tenant
from plugins.google.users import SHARDS
from tests.google_fixtures import expected_grants, inventory_grants

UTC = dt.timezone.utc
PROFILE = ["openid", "https://www.googleapis.com/auth/userinfo.email"]
QUIZ = OAuthClient("555555555555-brandnew.apps.googleusercontent.com", "Brand New Quiz")


def inventory_users(place) -> set[str]:
    return {row[0][7:] for row in place.db().execute("select id from users")}


def test_every_user_is_listed_once_across_shards_and_page_token_restarts(district, monkeypatch):
    monkeypatch.setattr("plugins.google.users.PAGE_SIZE", 25)  # several pages a shard
    tenant = build_tenant(users=800, seed=51)
    # Addresses no prefix search covers (Google allows these characters inside a username; a
    # directory synced from elsewhere can still start with one).
    odd = [DirectoryUser(f"10000000000000000{n:04d}", f"{c}odd{n}@district.example", "Odd", f"Start {n}", "/Staff")
           for n, c in enumerate("_-")]
    for user in odd:
        tenant.add_user(user)
        tenant.authorize(user.id, QUIZ, PROFILE)
    place = district(tenant)
    assert place.scan()["mode"] == "full"
    place.emulator.mutate([{"op": "churn", "fraction": 0.03, "seed": 4}])
    place.emulator.set_knobs(expire_page_tokens={"users.list": 5})
    place.emulator.reset_stats()

    scan = place.scan()

    assert scan["status"] == "succeeded", scan["error"]
    assert scan["mode"] == "incremental"
    stats = place.emulator.stats()
    assert stats["expired_page_tokens"]["users.list"] == 5 * 2  # listings did start again (each refusal tried twice)
    # Each user handed on once: counted once, and nobody's tokens listed but the changed users'
    # and the two known users no search returns (their tokens.list tells they still exist).
    assert scan["users_seen"] == len(tenant.users) == 803
    assert inventory_users(place) == set(tenant.users)
    assert inventory_grants(place.db_path) == expected_grants(tenant)
    authorized_or_revoked = {change["user_id"] for change in place.db().query(
        "select user_id from changes where scan_id = ?", [scan["id"]])}
    assert stats["calls"]["tokens.list"] == len(authorized_or_revoked | {f"google:{user.id}" for user in odd})
    # The odd addresses kept their grants (listed again, not taken for deleted users).
    assert place.db().execute("select count(*) from grants where revoked_at is null and user_id in (?, ?)",
                              [f"google:{user.id}" for user in odd]).fetchone()[0] == 2
    assert stats["calls"]["users.list"] >= len(SHARDS)


def test_accounts_the_search_does_not_show_yet(district):
    """Google's search data lags the directory (up to 36 hours): an account created just now is in
    no shard. If the token log names it, users.get reads it; if not, the next full scan finds it."""
    tenant = build_tenant(users=300, seed=52)
    place = district(tenant, knobs={"search_lag": 36 * 3600})
    assert place.scan()["mode"] == "full"
    just_now = dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    signed_up = DirectoryUser("100000000000000000555", "zed.new@district.example", "Zed", "New", "/Staff", creation_time=just_now)
    quiet = DirectoryUser("100000000000000000556", "yara.new@district.example", "Yara", "New", "/Staff", creation_time=just_now)
    place.emulator.mutate([
        {"op": "add_user", "user": signed_up.to_json()},
        {"op": "add_user", "user": quiet.to_json()},
        {"op": "authorize", "user": signed_up.id, "client": QUIZ.to_json(), "scopes": PROFILE},
    ])
    place.emulator.reset_stats()

    scan = place.scan()

    assert scan["status"] == "succeeded", scan["error"]
    assert scan["mode"] == "incremental"
    assert place.emulator.stats()["calls"]["users.get"] == 1
    assert signed_up.id in inventory_users(place) and quiet.id not in inventory_users(place)
    assert (f"google:{signed_up.id}", f"google:{QUIZ.client_id}") in {
        (row[0], row[1]) for row in place.db().execute("select user_id, app_id from grants where revoked_at is null")}
    assert place.db().execute("select email, name from users where id = ?", [f"google:{signed_up.id}"]).fetchone() == \
        ("zed.new@district.example", "Zed New")
    assert inventory_grants(place.db_path) == expected_grants(tenant)

    full = place.scan(full=True)  # one listing, no search: exact
    assert full["mode"] == "full" and quiet.id in inventory_users(place)


def test_the_emulated_search_takes_googles_clauses():
    users = [DirectoryUser("1", "ana@d.example", "Ana", "A", "/Students/High"),
             DirectoryUser("2", "bo@d.example", "Bo", "B", "/Students", suspended=True),
             DirectoryUser("3", "anna@d.example", "Anna", "C", "/Staff")]

    def found(query: str) -> list[str]:
        matches, _ = _user_filter(query, None)
        return [user.id for user in users if matches(user)]

    assert found("email:an*") == ["1", "3"]
    assert found("email:AN* orgUnitPath=/Students") == ["1"]  # a unit and every unit under it
    assert found("orgUnitPath=/Students isSuspended=true") == ["2"]
    assert found("email:bo@d.example") == ["2"]
    assert found("") == ["1", "2", "3"]
    with pytest.raises(Failure):
        found("email")
