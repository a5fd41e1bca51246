"""Set-up mistakes a district admin can make, and the messages that say what to fix."""

from __future__ import annotations

import json

import pytest

from plugins.google.auth import SCOPES
from scanner import ConfigError
from emulators.google.oauth import new_service_account_key
from emulators.google.tenant import SCANNER_SCOPES, build_tenant
from tests.google_fixtures import key_fragments


def failed(place) -> str:
    scan = place.scan()
    assert scan["status"] == "failed"
    error = scan["error"]
    for fragment in key_fragments(place.key):
        assert fragment not in error
    assert "ya29." not in error and "PRIVATE KEY" not in error
    return error


@pytest.fixture
def small_district(district):
    return district(build_tenant(users=20, seed=1))


def test_the_scanner_asks_for_exactly_the_three_scopes():
    assert set(SCOPES) == set(SCANNER_SCOPES) and len(SCOPES) == 3


def test_missing_key_file_stops_the_scan_before_it_starts(small_district):
    """A missing key file is bad configuration: refused before any scan is recorded (exit 2)."""
    small_district.write_config(key_file="nowhere.json")
    with pytest.raises(ConfigError) as refused:
        small_district.scan()
    assert "[google] service_account_file" in str(refused.value) and "nowhere.json: file not found" in str(refused.value)


@pytest.mark.parametrize("content, says", [
    ("this is not json", "not a JSON key file"),
    (json.dumps({"installed": {"client_id": "x.apps.googleusercontent.com", "client_secret": "s"}}), "an OAuth client file, not a service account key"),
    (json.dumps({"type": "authorized_user", "refresh_token": "r"}), "'authorized_user' credentials file, not a service account key"),
    (json.dumps({"type": "service_account", "client_email": "a@b.iam.gserviceaccount.com"}), "the key lacks private_key, token_uri, client_id"),
])
def test_a_file_that_is_not_a_service_account_key(small_district, content, says):
    (small_district.directory / "bad.json").write_text(content, encoding="utf-8")
    small_district.write_config(key_file="bad.json")
    error = failed(small_district)
    assert says in error and "bad.json" in error


def test_a_damaged_private_key_is_named_but_never_quoted(small_district):
    key = dict(small_district.key)
    lines = key["private_key"].splitlines()
    key["private_key"] = "\n".join(lines[:3] + lines[-1:]) + "\n"  # truncated
    (small_district.directory / "damaged.json").write_text(json.dumps(key), encoding="utf-8")
    small_district.write_config(key_file="damaged.json")
    error = failed(small_district)
    assert "private_key is not a valid private key" in error
    assert lines[1] not in error and lines[2] not in error


def test_a_deleted_key_is_refused(small_district):
    # A new key for the same service account, which the Admin console (emulator) never saw.
    other = new_service_account_key(token_uri=small_district.emulator.token_uri, client_email=small_district.key["client_email"],
                                    client_id=small_district.key["client_id"])
    (small_district.directory / "old.json").write_text(json.dumps(other), encoding="utf-8")
    small_district.write_config(key_file="old.json")
    error = failed(small_district)
    assert "Google refused the key (Invalid JWT Signature.)" in error and "create a new JSON key" in error


def test_an_admin_email_google_does_not_know(small_district):
    small_district.write_config(admin_email="it-admn@district.example")
    error = failed(small_district)
    assert "admin_email it-admn@district.example" in error and "invalid_grant" in error
    assert "super admin" in error and "domain-wide delegation" in error
    assert small_district.emulator.stats()["token_errors"] == {"invalid_grant": 1}


def test_an_admin_email_that_is_not_an_admin(small_district):
    teacher = next(u for u in small_district.tenant.users.values() if not u.is_admin)
    small_district.write_config(admin_email=teacher.primary_email)
    error = failed(small_district)
    assert "403 Not Authorized to access this resource/api" in error
    assert f"admin_email {teacher.primary_email} is a super admin" in error
    assert small_district.emulator.stats()["forbidden"] >= 1


def test_delegation_missing_a_scope_lists_the_exact_scopes(district):
    place = district(build_tenant(users=20, seed=1), scopes=SCANNER_SCOPES[:2])
    error = failed(place)
    assert "unauthorized_client" in error
    assert f"client ID {place.key['client_id']}" in error
    assert ",".join(SCOPES) in error
    assert "Manage Domain Wide Delegation" in error
    assert place.emulator.stats()["token_errors"] == {"unauthorized_client": 1}


def test_a_failed_scan_leaves_the_previous_inventory(small_district):
    assert small_district.scan()["status"] == "succeeded"
    before = list(small_district.db().query("select * from grants order by id"))
    small_district.write_config(admin_email="nobody@district.example")
    failed(small_district)
    assert list(small_district.db().query("select * from grants order by id")) == before
