"""Google posture checks against the emulated Cloud Identity Policy API, over real HTTP:
every check's pass, fail and unknown paths, the enum values Google documents and the ones
real tenants send, both field spellings, Google's reduction of several policies, paging
quirks, and the scopes or API a district has not enabled (the scan still succeeds)."""

from collections import Counter

import pytest

from emulators.google.tenant import POSTURE_SCOPES, SCANNER_SCOPES, build_tenant
from plugins.google.auth import ORGUNIT_SCOPE, POLICY_SCOPE
from tests.google_fixtures import expected_grants, inventory_grants

UNCONFIGURED = "api_controls.unconfigured_third_party_apps"
ALL_CHECKS = {"GWS.COMMONCONTROLS.10.1", "GWS.COMMONCONTROLS.10.2", "GWS.COMMONCONTROLS.10.3", "GWS.COMMONCONTROLS.10.4",
              "APPINV.GWS.UNDER18", "GWS.COMMONCONTROLS.11.1", "GWS.CLASSROOM.2.1"}


@pytest.fixture
def place(district):
    """A small district with the posture scopes delegated, and the Policy API on the emulator."""
    made = district(build_tenant(users=20, seed=1), scopes=SCANNER_SCOPES + POSTURE_SCOPES)
    made.write_config(extra=f'policy_api_root = "{made.emulator.api_root}"')
    return made


def findings(place, scan) -> dict[tuple[str, str], dict]:
    assert scan["status"] == "succeeded", scan["error"]
    rows = place.db().query("select * from posture where scan_id = ? order by id", [scan["id"]])
    found: dict[tuple[str, str], dict] = {}
    for row in rows:
        assert (row["check_id"], row["scope"]) not in found
        found[(row["check_id"], row["scope"])] = row
    return found


def results(place, scan) -> dict[tuple[str, str], str]:
    return {key: row["result"] for key, row in findings(place, scan).items()}


def set_policy(place, setting, value, org_unit="/", **kwargs):
    place.emulator.mutate([{"op": "set_policy", "setting": setting, "value": value, "org_unit": org_unit, **kwargs}])


def test_the_district_s_settings_are_checked_per_org_unit(place):
    """The synthetic district's defaults: open at the top, blocked in /Students and for under-18s.
    The root's under-18 setting comes from the admin's policy, not Google's SYSTEM one below it."""
    found = findings(place, place.scan())
    assert {key: row["result"] for key, row in found.items()} == {
        ("GWS.COMMONCONTROLS.10.1", ""): "fail", ("GWS.COMMONCONTROLS.10.2", ""): "fail",
        ("GWS.COMMONCONTROLS.10.3", "/"): "fail",
        ("GWS.COMMONCONTROLS.10.4", "/"): "fail", ("GWS.COMMONCONTROLS.10.4", "/Students"): "pass",
        ("APPINV.GWS.UNDER18", "/"): "pass", ("APPINV.GWS.UNDER18", "/Students"): "pass",
        ("GWS.COMMONCONTROLS.11.1", "/"): "pass", ("GWS.CLASSROOM.2.1", "/"): "fail",
    }
    open_services = found[("GWS.COMMONCONTROLS.10.1", "")]["actual"]
    assert "Drive" not in open_services and "Gmail" not in open_services and "Classroom" in open_services
    assert "high-risk scopes only: Drive" in found[("GWS.COMMONCONTROLS.10.2", "")]["actual"]
    root = found[("GWS.COMMONCONTROLS.10.4", "/")]
    assert root["scope_kind"] == "org_unit" and "UNSPECIFIED_UBER_BLOCK" in root["actual"] and "any third-party app" in root["actual"]
    assert root["fix"].startswith("Admin console > Security > Access and data control > API controls > Settings")
    assert found[("GWS.CLASSROOM.2.1", "/")]["requirement"] == "SHOULD"
    # Only the settings the checks need were asked for, in one page; org unit names once.
    calls = place.emulator.stats()["calls"]
    assert calls["policies.list"] == 1 and calls["orgunits.list"] == 1
    assert inventory_grants(place.db_path) == expected_grants(place.tenant)  # and the inventory as ever


# (org unit, value of api_controls.unconfigured_third_party_apps, 10.4's result, the under-18 check's result)
UNCONFIGURED_VARIANTS = [
    ("/v/docs-block", {"access_level": "BLOCK_ALL", "access_level_under18": "BLOCK_ALL"}, "pass", "pass"),
    ("/v/tenant-block", {"accessLevel": "BLOCK_ALL_SCOPES", "accessLevelUnder18": "BLOCK_ALL_SCOPES"}, "pass", "pass"),
    ("/v/docs-sign-in", {"access_level": "ALLOW_SIGN_IN_ONLY", "access_level_under18": "ALLOW_SIGN_IN_ONLY"}, "fail", "fail"),
    ("/v/tenant-sign-in", {"accessLevel": "ALLOW_SIGN_IN_SCOPES_ONLY", "accessLevelUnder18": "ALLOW_SIGN_IN_SCOPES_ONLY"},
     "fail", "fail"),
    ("/v/uber", {"accessLevel": "UNSPECIFIED_UBER_BLOCK", "accessLevelUnder18": "UNDERAGE_UBER_BLOCK_UNSPECIFIED"},
     "fail", "unknown"),
    ("/v/unspecified", {"accessLevel": "ACCESS_LEVEL_UNSPECIFIED", "accessLevelUnder18": "ACCESS_LEVEL_UNDER18_UNSPECIFIED"},
     "fail", "unknown"),
    ("/v/lower-case", {"accessLevel": "block_all_scopes", "accessLevelUnder18": "block_all"}, "pass", "pass"),
    ("/v/new-value", {"accessLevel": "ALLOW_VERIFIED_APPS_ONLY", "accessLevelUnder18": 3}, "unknown", "unknown"),
    ("/v/missing", {}, "unknown", "unknown"),
]
# (org unit, setting, value, check, result)
OTHER_VARIANTS = [
    ("/w/trust-on", "api_controls.internal_apps", {"trust_internal_apps": True}, "GWS.COMMONCONTROLS.10.3", "fail"),
    ("/w/trust-off", "api_controls.internal_apps", {"trustInternalApps": False}, "GWS.COMMONCONTROLS.10.3", "pass"),
    ("/w/trust-text", "api_controls.internal_apps", {"trustInternalApps": "false"}, "GWS.COMMONCONTROLS.10.3", "unknown"),
    ("/w/any-app", "workspace_marketplace.apps_access_options", {"access_level": "ALLOW_ALL"}, "GWS.COMMONCONTROLS.11.1", "fail"),
    ("/w/listed", "workspace_marketplace.apps_access_options", {"accessLevel": "ALLOW_LISTED_APPS"}, "GWS.COMMONCONTROLS.11.1", "pass"),
    ("/w/listed-internal", "workspace_marketplace.apps_access_options",
     {"accessLevel": "ALLOW_LISTED_APPS", "allowAllInternalApps": True}, "GWS.COMMONCONTROLS.11.1", "fail"),
    ("/w/none", "workspace_marketplace.apps_access_options",
     {"access_level": "ALLOW_NONE", "allow_all_internal_apps": False}, "GWS.COMMONCONTROLS.11.1", "pass"),
    ("/w/odd", "workspace_marketplace.apps_access_options", {"accessLevel": "ALLOW_SOME"}, "GWS.COMMONCONTROLS.11.1", "unknown"),
    ("/w/classroom-on", "classroom.api_data_access", {"enable_api_access": True}, "GWS.CLASSROOM.2.1", "fail"),
    ("/w/classroom-off", "classroom.api_data_access", {"enableApiAccess": False}, "GWS.CLASSROOM.2.1", "pass"),
    ("/w/classroom-odd", "classroom.api_data_access", {"enableApiAccess": None}, "GWS.CLASSROOM.2.1", "unknown"),
]


def test_every_enum_value_and_both_field_spellings_per_org_unit(place):
    for org_unit, value, _, _ in UNCONFIGURED_VARIANTS:
        set_policy(place, UNCONFIGURED, value, org_unit)
    for org_unit, setting, value, _, _ in OTHER_VARIANTS:
        set_policy(place, setting, value, org_unit)
    found = findings(place, place.scan())
    for org_unit, value, adults, under18 in UNCONFIGURED_VARIANTS:
        assert found[("GWS.COMMONCONTROLS.10.4", org_unit)]["result"] == adults, (org_unit, value)
        assert found[("APPINV.GWS.UNDER18", org_unit)]["result"] == under18, (org_unit, value)
    for org_unit, setting, value, check, result in OTHER_VARIANTS:
        assert found[(check, org_unit)]["result"] == result, (org_unit, value)
    # An unknown value is named, with what to do; "unspecified" for under-18s says what it means.
    new_value = found[("GWS.COMMONCONTROLS.10.4", "/v/new-value")]
    assert "ALLOW_VERIFIED_APPS_ONLY" in new_value["reason"] and "does not know" in new_value["reason"]
    assert "access_level_under18 = 3" in found[("APPINV.GWS.UNDER18", "/v/new-value")]["actual"]
    assert "Education editions block unconfigured apps" in found[("APPINV.GWS.UNDER18", "/v/uber")]["reason"]
    assert "allow_all_internal_apps = true" in found[("GWS.COMMONCONTROLS.11.1", "/w/listed-internal")]["actual"]
    # Never a pass without a value to back it.
    assert all(row["result"] != "pass" or row["actual"] for row in found.values())


@pytest.mark.parametrize("services, first, second", [
    # Every service restricted for all its scopes.
    ([{"scopesGroup": group, "isEnabled": False} for group in (
        "DRIVE_ALL", "GMAIL_ALL", "CALENDAR_ALL", "CONTACTS_ALL", "GSUITE_ADMIN_ALL", "VAULT_ALL", "CLOUD_PLATFORM",
        "CLOUD_BILLING", "CLOUD_ML", "APPS_SCRIPT_API", "APPS_SCRIPT_RUNTIME", "CLASSROOM_ALL", "TASKS", "GROUPS", "CHAT",
        "SIGN_IN", "MEET", "CLOUD_SEARCH")], "pass", "pass"),
    # The same, as the docs spell the fields, with Drive and Gmail restricted for high-risk scopes only.
    ([{"scopes_group": group} for group in (
        "DRIVE_HIGH_RISK", "GMAIL_HIGH_RISK", "CALENDAR_ALL", "CONTACTS_ALL", "GSUITE_ADMIN_ALL", "VAULT_ALL", "CLOUD_PLATFORM",
        "CLOUD_BILLING", "CLOUD_ML", "APPS_SCRIPT_API", "APPS_SCRIPT_RUNTIME", "CLASSROOM_ALL", "TASKS", "GROUPS", "CHAT_ALL",
        "SIGN_IN", "MEET", "CLOUD_SEARCH")], "pass", "fail"),
    # Nothing restricted: the API lists only restricted services.
    (None, "fail", "fail"),
    ([{"scopesGroup": "DRIVE_ALL", "isEnabled": "sometimes"}], "unknown", "unknown"),
])
def test_google_services_access_is_checked_for_the_whole_tenant(place, services, first, second):
    place.emulator.mutate([{"op": "remove_policies", "setting": "api_controls.google_services"}])
    if services is not None:
        set_policy(place, "api_controls.google_services", {"services": services}, "/Students")
    found = results(place, place.scan())
    assert (found[("GWS.COMMONCONTROLS.10.1", "")], found[("GWS.COMMONCONTROLS.10.2", "")]) == (first, second)


def test_a_setting_google_returns_no_policy_for_is_unknown_not_passed(place):
    place.emulator.mutate([{"op": "remove_policies", "setting": UNCONFIGURED}])
    found = findings(place, place.scan())
    for check in ("GWS.COMMONCONTROLS.10.4", "APPINV.GWS.UNDER18"):
        assert [key for key in found if key[0] == check] == [(check, "")]
        row = found[(check, "")]
        assert row["result"] == "unknown" and row["scope_kind"] == "tenant"
        assert f"no policy for settings/{UNCONFIGURED}" in row["reason"]


def test_group_policies_and_the_highest_sort_order_win(place):
    set_policy(place, UNCONFIGURED, {"accessLevel": "ALLOW_SIGN_IN_SCOPES_ONLY"}, "/Staff", sort_order=300.0)
    set_policy(place, UNCONFIGURED, {"accessLevel": "BLOCK_ALL_SCOPES"}, "/Staff", kind="SYSTEM", sort_order=2.0)
    set_policy(place, UNCONFIGURED, {"accessLevel": "BLOCK_ALL_SCOPES"}, "/", group="03x7sx9l1coaches")
    found = findings(place, place.scan())
    assert found[("GWS.COMMONCONTROLS.10.4", "/Staff")]["result"] == "fail"
    group = found[("GWS.COMMONCONTROLS.10.4", "groups/03x7sx9l1coaches")]
    assert (group["scope_kind"], group["result"]) == ("group", "pass")


def test_without_the_policy_scope_every_check_is_unknown_and_the_scan_succeeds(district):
    place = district(build_tenant(users=20, seed=1))  # the three scopes of the inventory only
    found = findings(place, place.scan())
    assert set(key[0] for key in found) == ALL_CHECKS and all(key[1] == "" for key in found)
    for row in found.values():
        assert row["result"] == "unknown" and row["actual"] == "not read"
        assert "the scope is not delegated" in row["reason"] and POLICY_SCOPE in row["reason"]
        assert f"client ID {place.key['client_id']}" in row["reason"] and "Manage Domain Wide Delegation" in row["reason"]
    stats = place.emulator.stats()
    # One token request for the policy scope alone, refused; nothing else asked of the Policy API.
    assert stats["token_errors"] == {"unauthorized_client": 1} and "policies.list" not in stats["calls"]
    assert inventory_grants(place.db_path) == expected_grants(place.tenant)


def test_without_the_org_unit_scope_the_checks_run_and_name_org_units_by_id(district):
    place = district(build_tenant(users=20, seed=1), scopes=SCANNER_SCOPES + (POLICY_SCOPE,))
    place.write_config(extra=f'policy_api_root = "{place.emulator.api_root}"')
    found = findings(place, place.scan())
    students = f"orgUnits/{place.tenant.org_unit_id('/Students')}"
    assert found[("GWS.COMMONCONTROLS.10.4", students)]["result"] == "pass"
    assert found[("GWS.COMMONCONTROLS.10.4", f"orgUnits/{place.tenant.org_unit_id('/')}")]["result"] == "fail"
    assert place.emulator.stats()["token_errors"] == {"unauthorized_client": 1}
    assert ORGUNIT_SCOPE not in {row["reason"] for row in found.values()}


def test_a_policy_api_the_project_has_not_enabled_makes_the_checks_unknown(place):
    place.emulator.set_knobs(policy_api_disabled=True)
    found = findings(place, place.scan())
    assert {row["result"] for row in found.values()} == {"unknown"}
    reason = next(iter(found.values()))["reason"]
    assert "Cloud Identity API is off" in reason and "APIs & Services > Library > Cloud Identity API" in reason


def test_empty_first_pages_and_an_expired_page_token_lose_nothing(place):
    # 120 more policies the filter selects: two pages of 100, after an empty one; the first
    # page token handed out is refused, so the listing starts again.
    for n in range(120):
        set_policy(place, "api_controls.internal_apps", {"trustInternalApps": n % 2 == 0}, f"/many/unit {n:03d}")
    place.emulator.set_knobs(policy_blank_pages=1, expire_page_tokens={"policies.list": 1})
    found = results(place, place.scan())
    assert found[("GWS.COMMONCONTROLS.10.4", "/Students")] == "pass" and found[("GWS.CLASSROOM.2.1", "/")] == "fail"
    stats = place.emulator.stats()
    assert stats["expired_page_tokens"] == {"policies.list": 1}
    # blank, refused; then blank, page 1, page 2.
    assert stats["calls"]["policies.list"] == 5
    by_check = Counter(key[0] for key in found)
    assert by_check["GWS.COMMONCONTROLS.10.3"] == 121 and by_check["GWS.COMMONCONTROLS.10.4"] == 2
    assert Counter(found[("GWS.COMMONCONTROLS.10.3", f"/many/unit {n:03d}")] for n in range(120)) == {"fail": 60, "pass": 60}
