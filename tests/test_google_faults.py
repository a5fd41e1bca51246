"""The real Google provider keeps its inventory exact when the Admin SDK misbehaves: error answers,
429s with Retry-After, reset and stalled connections, answers cut short (single calls, batches
and the token endpoint), and page tokens Google stops honouring mid-listing."""

from __future__ import annotations

import datetime as dt
import email.utils
import logging

import pytest
from googleapiclient.model import JsonModel

import plugins.google.auth as google_auth
import plugins.google.calls as google_calls
import plugins.google.reports as google_reports
import plugins.google.users as google_users
from plugins.google.calls import parse_retry_after
from emulators.google.api import FAULT_KINDS
from emulators.google.tenant import GoogleTenant, build_tenant
from tests.google_fixtures import expected_grants, inventory_grants, inventory_snapshot

CONNECTION_KINDS = ("reset", "timeout", "truncated")


@pytest.fixture(autouse=True)
def quick_district(monkeypatch):
    """Small pages (more paged calls to fail), a short read timeout with stalls just past it, and
    short backoffs: the retry rules are the real ones, only their waits shrink. Retry-After stays
    at the emulator's 1 s, so a retry that ignored it would come back early and be counted."""
    monkeypatch.setattr(google_auth, "HTTP_TIMEOUT", 2.0)
    monkeypatch.setattr(google_calls, "RETRY_BASE_SECONDS", 0.05)
    monkeypatch.setattr(google_users, "PAGE_SIZE", 50)
    monkeypatch.setattr(google_reports, "PAGE_SIZE", 100)


STALL = {"stall_seconds": 2.5}  # longer than the 2 s read timeout (an answer on a busy machine is not)
_calm: dict[tuple[int, int], tuple[GoogleTenant, dict]] = {}


def calm_district(district, users: int, seed: int) -> tuple[GoogleTenant, dict]:
    """A tenant and the inventory a fault-free scan of it gives (made once: a tenant's event
    times follow the clock when it is built)."""
    if (users, seed) not in _calm:
        tenant = build_tenant(users=users, seed=seed)
        place = district(tenant)
        assert place.scan()["status"] == "succeeded"
        _calm[(users, seed)] = tenant, inventory_snapshot(place.db_path)
    return _calm[(users, seed)]


def test_ten_percent_faults_of_every_kind_give_the_fault_free_inventory(district):
    tenant, calm = calm_district(district, 400, 41)
    # Seed 152 resets the 3rd batch request, cuts the 6th short and stalls the 10th; single calls
    # (users.list, activities.list), batch parts and the token endpoint draw from all kinds too.
    stormy = district(tenant, knobs={"fault_rate": 0.1, "batch_fault_rate": 0.1, "token_fault_rate": 0.1,
                                     "fault_kinds": FAULT_KINDS, "fault_seed": 152, **STALL})
    scan = stormy.scan()

    assert scan["status"] == "succeeded", scan["error"]
    stats = stormy.emulator.stats()
    faults = stats["faults"]
    assert {"429", "500", "503", "403"} <= set(faults) and {f"batch.{kind}" for kind in CONNECTION_KINDS} <= set(faults)
    assert sum(faults.values()) > 40
    assert stats["retry_after_ignored"] == 0  # every 429 was retried after its Retry-After, not before
    assert scan["retries"] >= faults["429"] + faults["500"] + faults["503"] + faults["403"]
    assert inventory_snapshot(stormy.db_path) == calm
    assert inventory_grants(stormy.db_path) == expected_grants(tenant)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_each_kind_of_fault_alone_is_survived(district, kind):
    tenant, calm = calm_district(district, 200, 42)
    # Connection faults never hit batch parts, so single calls can take more of them. Seed 340
    # fails the first batch request and the first token request (the sign-in tries again).
    rate = 0.3 if kind in CONNECTION_KINDS else 0.1
    stormy = district(tenant, knobs={"fault_rate": rate, "batch_fault_rate": 0.1, "token_fault_rate": 0.1,
                                     "fault_kinds": [kind], "fault_seed": 340, **STALL})
    scan = stormy.scan()

    assert scan["status"] == "succeeded", scan["error"]
    stats = stormy.emulator.stats()
    faults = stats["faults"]
    assert faults.get(kind, 0) >= 3 and faults.get(f"batch.{kind}", 0) >= 1, faults
    if kind != "403":  # the token endpoint does not answer with the API's rateLimitExceeded
        assert faults.get(f"token.{kind}", 0) >= 1, faults
    assert stats["retry_after_ignored"] == 0
    assert inventory_snapshot(stormy.db_path) == calm


def test_access_token_renewals_that_meet_faults_are_tried_again(district):
    tenant, calm = calm_district(district, 200, 42)
    # Tokens die after 0.3 s though the endpoint promises an hour, and half the renewals fail:
    # seed 28 has the token endpoint stall, reset, answer 503 and cut its answer short by turns
    # (the sign-in itself goes through).
    place = district(tenant, knobs={"token_lifetime": 0.3, "token_expires_in": 3599, "latency": 0.1,
                                    "token_fault_rate": 0.5, "fault_kinds": ["503", *CONNECTION_KINDS],
                                    "fault_seed": 28, **STALL},
                     requests_per_minute=1200)
    scan = place.scan()

    assert scan["status"] == "succeeded", scan["error"]
    stats = place.emulator.stats()
    assert {"token.503", "token.reset", "token.timeout", "token.truncated"} <= set(stats["faults"]), stats
    assert stats["tokens_issued"] >= 3 and stats["unauthenticated"] > 0
    assert inventory_snapshot(place.db_path) == calm


def test_page_tokens_expiring_mid_listing_are_recovered_without_loss_or_repeats(district, caplog):
    tenant, calm = calm_district(district, 300, 43)
    # The 1st and 2nd users.list page tokens and three activities.list ones are refused when used.
    place = district(tenant, knobs={"expire_page_tokens": {"users.list": 2, "activities.list": 3}})
    caplog.set_level(logging.WARNING)
    scan = place.scan()

    assert scan["status"] == "succeeded", scan["error"]
    stats = place.emulator.stats()
    # users.list: each refused token is tried twice (Google's 503 looks like a passing outage).
    assert stats["expired_page_tokens"] == {"users.list": 4, "activities.list": 3}
    assert "listing users again from the start, skipping the 50 already read (restart 1 of at most 3)" in caplog.text
    assert "restart 2 of at most 3" in caplog.text  # the second restart found nothing new before its token died
    assert caplog.text.count("Google stopped honouring an activities.list page token") == 3
    # Every user was handed on once: one tokens.list each, and the restarts re-read only users.list pages.
    assert stats["calls"]["tokens.list"] == 301
    assert stats["calls"]["users.list"] == 7 + 2 * 2 + 2
    assert inventory_snapshot(place.db_path) == calm
    assert "Reports API is unavailable" not in caplog.text


def test_an_activities_page_token_that_never_works_still_reads_the_whole_log(district, caplog, monkeypatch):
    tenant, calm = calm_district(district, 300, 43)
    monkeypatch.setattr(google_reports, "PAGE_SIZE", 20)
    place = district(tenant, knobs={"expire_page_tokens": {"activities.list": 10**6}})
    caplog.set_level(logging.WARNING)
    scan = place.scan()

    assert scan["status"] == "succeeded", scan["error"]
    refused = place.emulator.stats()["expired_page_tokens"]["activities.list"]
    # Each refusal restarts the query from the oldest event read: one page a query, to the end.
    assert refused >= 10 and caplog.text.count("reading the token log again from") == refused
    assert "Reports API is unavailable" not in caplog.text
    assert inventory_snapshot(place.db_path) == calm  # last-used dates included


def test_a_users_page_token_that_keeps_expiring_fails_the_scan_and_keeps_the_inventory(district):
    tenant = build_tenant(users=300, seed=44)
    place = district(tenant)
    assert place.scan()["status"] == "succeeded"
    before = inventory_snapshot(place.db_path)
    place.emulator.mutate([{"op": "churn", "fraction": 0.1, "seed": 2}])
    place.emulator.set_knobs(expire_page_tokens={"users.list": 10**6})

    failed = place.scan(full=True)

    assert failed["status"] == "failed"
    assert failed["error"].startswith("users.list kept losing its place: Google refused its page token 4 times in a "
                                      "row without a new user in between (last: 503 backendError: Service "
                                      "unavailable. Please try again). Scan again later")
    assert place.emulator.stats()["expired_page_tokens"] == {"users.list": 8}
    assert inventory_snapshot(place.db_path) == before
    assert inventory_grants(place.db_path) != expected_grants(tenant)  # the churn is for a later scan to find


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    assert 25 <= parse_retry_after(email.utils.format_datetime(later, usegmt=True)) <= 30
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # already past


@pytest.mark.parametrize("content", [
    b'{"items": [{"clientId": "1-a.apps.googleusercontent.com", "displayText": "\\u00c9cole"}], "n": 1.5}',
    b'{"largest": 18446744073709551615, "smallest": -9223372036854775808}',
    b'{"x": NaN}',
    b'{"cut": [1, 2',  # an answer cut short
    b"<html>Service Unavailable</html>",
    b"",
])
def test_answers_decode_as_the_client_library_would(content):
    expected = JsonModel().deserialize(content)
    assert repr(google_calls.OrjsonModel().deserialize(content)) == repr(expected)
