"""The chrome provider's records from answers as the API sends them (pure)."""

from plugins.chrome.records import extension_permissions, extension_record, person_record, profile_grants, request_record

ROLES = {"student_domains": [], "student_org_units": ["/Students"]}
INSTALLED = {"appId": "a" * 32, "appType": "EXTENSION", "appInstallType": "NORMAL", "displayName": "Helper",
             "browserDeviceCount": "12", "osUserCount": "9", "profileCount": "10", "permissions": ["tabs", "<all_urls>"]}


def test_web_store_details_give_permissions_and_site_access():
    details = {"publisher": "Acme", "chromeAppInfo": {"permissions": [{"type": "cookies", "accessUserData": True}],
                                                      "siteAccess": [{"hostMatch": "https://*.acme.com/*"}], "googleOwned": False}}
    assert extension_permissions(INSTALLED, details) == ["cookies", "https://*.acme.com/*"]
    assert extension_permissions(INSTALLED, None) == ["tabs", "<all_urls>"]  # no Web Store page
    app = extension_record(INSTALLED, details)
    assert (app.publisher, app.ownership, app.details["profileCount"], app.details["webStore"]) == ("Acme", "third_party", 10, True)


def test_ownership_google_owned_and_admin_installed():
    assert extension_record(INSTALLED, {"chromeAppInfo": {"googleOwned": True}}).ownership == "first_party"
    admin = extension_record({**INSTALLED, "appInstallType": "ADMIN"}, None)
    assert admin.ownership == "internal" and admin.details["adminInstalled"] is True
    assert extension_record({**INSTALLED, "appInstallType": "SIDELOAD"}, None).details["webStore"] is False


def test_a_person_of_unknown_org_unit_is_never_taken_for_staff():
    assert person_record("Ann@District.example", ROLES, "/Staff/High").role == "staff"
    assert person_record("kid@district.example", ROLES, "/Students/High").role == "student"
    assert person_record("who@district.example", ROLES, None).role == "unknown"
    assert person_record("kid@students.district.example", {"student_domains": ["students.district.example"]}).role == "student"


def test_profiles_and_requests():
    grants = profile_grants("a" * 32, [{"email": "Ann@d.example"}, {"email": "ann@d.example"}, {"profileId": "x"}], ["tabs"])
    assert [(g.user_id, g.scopes) for g in grants] == [("ann@d.example", ["tabs"])]
    request = request_record({"appId": "b" * 32, "displayName": "Tool", "latestRequestTime": "2026-11-20T15:04:05Z"},
                             {"email": "Ann@d.example", "justification": "class"})
    assert (request.id, request.status, request.reason, request.user_id) == ("b" * 32 + ":ann@d.example", "InProgress", "class", "ann@d.example")
