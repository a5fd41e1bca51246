"""Microsoft posture checks and consent requests against the emulated Graph, over real HTTPS:
every check's pass, fail and unknown paths, policy ids in any letter case and in beta's field,
the permission classifications behind low-impact consent, a missing permission (only the
checks that need it become unknown), and people's requests for admin consent next to the
catalog."""

import json

import pytest

from emulators.microsoft.server import MicrosoftEmulator
from emulators.microsoft.tenant import (
    SCANNER_PERMISSIONS, USER_CONSENT_LEGACY, USER_CONSENT_LOW, USER_CONSENT_OFF, USER_CONSENT_RECOMMENDED,
    admin_consent_request_policy, authorization_policy, build_tenant, permission_classification,
)
from scanner import store
from tests.microsoft_fixtures import SECRET_ENV, expected_inventory, recorded_inventory, scan, write_config

CHECKS = ("MS.AAD.5.1", "MS.AAD.5.2", "APPINV.MS.RISKY_APPS", "MS.AAD.5.3")


@pytest.fixture
def tenant_for(monkeypatch, tmp_path):
    """Serve a small tenant (made with these app permissions) and return (emulator, config, db path)."""
    started = []

    def make(permissions=SCANNER_PERMISSIONS, users=60):
        tenant = build_tenant(users=users, seed=7, permissions=permissions)
        emulator = MicrosoftEmulator(tenant).start()
        started.append(emulator)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_pem_path)
        monkeypatch.setenv(SECRET_ENV, tenant.registration.client_secret)
        folder = tmp_path / f"tenant{len(started)}"
        folder.mkdir()
        return emulator, write_config(folder, emulator, tenant), str(folder / "inventory.db")

    try:
        yield make
    finally:
        for emulator in started:
            emulator.stop()


def findings(db_path, scanned) -> dict[str, dict]:
    assert scanned["status"] == "succeeded", scanned["error"]
    rows = store.open_db(db_path).query("select * from posture where scan_id = ?", [scanned["id"]])
    found = {row["check_id"]: row for row in rows}
    assert set(found) == set(CHECKS) and all(row["scope_kind"] == "tenant" for row in found.values())
    return found


SAFE_LOW = [permission_classification(p) for p in ("openid", "profile", "User.Read")]
RISKY_LOW = SAFE_LOW + [permission_classification("Mail.Read"), permission_classification("Files.Read.All", "medium")]

# (authorization policy, classifications, admin consent policy) -> results of 5.1, 5.2, risky apps, 5.3
CASES = {
    "the district's defaults": (None, None, None, ("fail", "pass", "pass", "pass")),
    "locked down": (authorization_policy(USER_CONSENT_OFF, allowed_to_create_apps=False), None,
                    admin_consent_request_policy(True, ["u1", "u2"]), ("pass", "pass", "pass", "pass")),
    "legacy consent, workflow off": (authorization_policy(USER_CONSENT_LEGACY), None, admin_consent_request_policy(False),
                                     ("fail", "fail", "pass", "fail")),
    "microsoft-managed, no reviewers": (authorization_policy(USER_CONSENT_RECOMMENDED, risky_apps=True), None,
                                        admin_consent_request_policy(True, []), ("fail", "fail", "fail", "fail")),
    "low impact with risky classifications": (authorization_policy(USER_CONSENT_LOW), RISKY_LOW, None,
                                              ("fail", "fail", "pass", "pass")),
    "low impact, letter case and beta's field": (
        {"id": "authorizationPolicy", "allowUserConsentForRiskyApps": None,
         "defaultUserRolePermissions": {"allowedToCreateApps": False},
         "permissionGrantPolicyIdsAssignedToDefaultUserRole": ["managePermissionGrantsForSelf.Microsoft-User-Default-Low"]},
        SAFE_LOW, None, ("pass", "pass", "pass", "pass")),
    "a custom policy and values nobody knows": (
        {"id": "authorizationPolicy", "allowUserConsentForRiskyApps": "no",
         "defaultUserRolePermissions": {"allowedToCreateApps": "sometimes",
                                        "permissionGrantPoliciesAssigned": ["ManagePermissionGrantsForSelf.district-teachers"]}},
        None, {"isEnabled": None, "reviewers": []}, ("unknown", "unknown", "unknown", "unknown")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_check_passes_fails_or_is_unknown(tenant_for, case):
    authorization, classifications, admin_consent, expected = CASES[case]
    emulator, config, db_path = tenant_for()
    with emulator.mutate() as tenant:
        tenant.set_consent_settings(authorization=authorization, classifications=classifications, admin_consent=admin_consent)
    found = findings(db_path, scan(db_path, config))
    assert tuple(found[check]["result"] for check in CHECKS) == expected, {c: found[c]["actual"] for c in CHECKS}
    for row in found.values():
        assert (row["result"] == "unknown") == bool(row["reason"])  # an unknown says why; a pass or fail needs no excuse
    if case == "low impact with risky classifications":
        assert "Mail.Read (high risk)" in found["MS.AAD.5.2"]["actual"] and "Files.Read.All" not in found["MS.AAD.5.2"]["actual"]
    if case == "a custom policy and values nobody knows":
        assert "ManagePermissionGrantsForSelf.district-teachers" in found["MS.AAD.5.2"]["reason"]
        assert "'sometimes'" in found["MS.AAD.5.1"]["actual"]
    # The classifications are read only when users may consent to low-impact permissions.
    asked = emulator.events_for("delegatedPermissionClassifications")
    assert bool(asked) == (case in ("the district's defaults", "low impact with risky classifications",
                                    "low impact, letter case and beta's field"))


def test_without_policy_read_only_the_checks_are_unknown_naming_the_permission(tenant_for):
    permissions = tuple(p for p in SCANNER_PERMISSIONS if p != "Policy.Read.All")
    emulator, config, db_path = tenant_for(permissions)
    scanned = scan(db_path, config)
    found = findings(db_path, scanned)
    for row in found.values():
        assert row["result"] == "unknown" and "Microsoft Graph application permission Policy.Read.All" in row["reason"]
        assert "Grant admin consent" in row["reason"]
    # Everything else is there: the inventory, and the requests for admin consent.
    assert recorded_inventory(db_path) == expected_inventory(emulator.tenant)
    asked = sum(len(request["userConsentRequests"]) for request in emulator.tenant.app_consent_requests)
    assert asked > 0 and store.open_db(db_path).execute("select count(*) from consent_requests").fetchone()[0] == asked


def test_without_consent_request_read_the_checks_still_run_and_no_request_is_invented(tenant_for, caplog):
    permissions = tuple(p for p in SCANNER_PERMISSIONS if p != "ConsentRequest.Read.All")
    emulator, config, db_path = tenant_for(permissions)
    found = findings(db_path, scan(db_path, config))
    assert {row["result"] for row in found.values()} == {"pass", "fail"}
    assert store.open_db(db_path).execute("select count(*) from consent_requests").fetchone()[0] == 0
    assert "requests for admin consent are not recorded" in caplog.text and "ConsentRequest.Read.All" in caplog.text


def test_requests_for_admin_consent_are_recorded_and_joined_to_the_catalog(tenant_for):
    emulator, config, db_path = tenant_for(users=300)
    tenant = emulator.tenant
    magic = next(r for r in tenant.app_consent_requests if r["appDisplayName"] == "MagicSchool AI")
    store.replace_catalog(store.open_db(db_path), [{
        "id": "magicschool", "name": "MagicSchool AI", "status": "denied", "status_original": "Denied", "audience": "staff",
        "google_client_ids": "[]", "microsoft_app_ids": json.dumps([magic["appId"]]), "approved_scopes": "[]",
        "alternative": "Gemini for Education"}])
    scan(db_path, config)
    db = store.open_db(db_path)
    # Exactly what the tenant holds: who asked for which app and access, why, and where it stands.
    expected = {(asked["id"], request["appId"], asked["createdBy"]["user"]["id"], asked["status"], asked["reason"],
                 tuple(s["displayName"] for s in request["pendingScopes"]))
                for request in tenant.app_consent_requests for asked in request["userConsentRequests"]}
    recorded = {(row["id"].removeprefix("microsoft:"), row["client_id"], row["user_id"].removeprefix("microsoft:"),
                 row["status"], row["reason"], tuple(json.loads(row["scopes"])))
                for row in db.query("select * from consent_requests")}
    assert recorded == expected and len(expected) > 5
    waiting = [a for a in magic["userConsentRequests"] if a["status"] == "InProgress"]
    summary = {row["app"]: row for row in db.query("select * from consent_request_summary")}
    assert summary["MagicSchool AI"]["status"] == "denied" and summary["MagicSchool AI"]["people"] == len(waiting) > 0
    assert summary["MagicSchool AI"]["alternative"] == "Gemini for Education"
    assert {row["status"] for name, row in summary.items() if name != "MagicSchool AI"} == {"unreviewed"}
