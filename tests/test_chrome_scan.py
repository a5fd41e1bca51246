"""The chrome provider against the emulated Chrome Management API over HTTP: the inventory it records,
the same under faults, catalog matching, requests, and a missing scope named exactly."""

from __future__ import annotations

import json

import pytest

from emulators.google.chrome import CHROME_SCOPES, ChromeExtension, district_fleet
from emulators.google.tenant import POSTURE_SCOPES, SCANNER_SCOPES, build_tenant
from scanner.config import load_config
from scanner.scan import run_scans
from scanner.store import open_db, replace_catalog
from scanner.catalog import read_catalog

ALL_SCOPES = SCANNER_SCOPES + POSTURE_SCOPES + CHROME_SCOPES


def chrome_section(place, requests_per_minute: int = 6000) -> str:
    """policy_api_root (still in [google]) and a [chrome] section, both at the emulator."""
    return f"""policy_api_root = "{place.emulator.api_root}"

[chrome]
api_root = "{place.emulator.api_root}"
requests_per_minute = {requests_per_minute}
"""


def scan(place, only=("chrome",)):
    outcome = run_scans(place.db_path, load_config(place.config_path), only=list(only), show_progress=False)
    return {s["provider"]: s for s in outcome.scans}


def expected(fleet) -> set[tuple[str, str, tuple[str, ...]]]:
    """(email, extension id, sorted permissions) straight from the emulator's data."""
    found = set()
    for app_id, profiles in fleet.installs.items():
        extension = fleet.extensions[app_id]
        for profile in profiles:
            found.add((profile.email.lower(), app_id, tuple(sorted(extension.permission_names()))))
    return found


def recorded(db_path) -> set[tuple[str, str, tuple[str, ...]]]:
    rows = open_db(db_path).query("select user_id, app_id, scopes from grants where provider = 'chrome' and revoked_at is null")
    return {(r["user_id"].removeprefix("chrome:"), r["app_id"].removeprefix("chrome:"), tuple(sorted(json.loads(r["scopes"]))))
            for r in rows}


@pytest.fixture
def chrome_district(district):
    def make(users: int = 250, knobs=None, scopes=ALL_SCOPES):
        tenant = build_tenant(users=users, seed=5)
        tenant.chrome = district_fleet(tenant, seed=6)  # a seed whose 250 accounts have every extension somewhere
        place = district(tenant, knobs=knobs, scopes=scopes)
        place.write_config(extra=chrome_section(place))
        return place
    return make


def test_a_scan_records_exactly_the_extensions_people_have(chrome_district):
    place = chrome_district(users=250)
    fleet = place.tenant.chrome
    # more than one page of profiles for the most common extension
    assert max(len(p) for p in fleet.installs.values()) > 100
    result = scan(place)["chrome"]
    assert result["status"] == "succeeded", result["error"]
    assert result["mode"] == "full" and result["tenant"] == "district.example"
    assert recorded(place.db_path) == expected(fleet)
    db = open_db(place.db_path)
    apps = {r["client_id"]: r for r in db.query("select * from apps where provider = 'chrome'")}
    assert set(apps) == {a for a, p in fleet.installs.items() if p}
    # ownership: Google's own, the district's own (admin-installed), third party; risk from the permission table
    assert apps["ghbmnnjooekpmoecnnnilnnbdlolhkhi"]["ownership"] == "first_party"
    assert apps["haldlgldplgnggkjaafhelgiaglafanh"]["ownership"] == "internal"
    assert json.loads(apps["haldlgldplgnggkjaafhelgiaglafanh"]["details"])["adminInstalled"] is True
    honey = apps["bmnlcjabgnpnenekpadlanbbkooimhnj"]
    assert honey["ownership"] == "third_party" and honey["risk"] == "high" and honey["publisher"] == "PayPal"
    sideloaded = json.loads(apps["oaimhkfgjocnmdmbpmfgalcbcpanedoj"]["details"])
    assert sideloaded["installType"] == "SIDELOAD" and sideloaded["webStore"] is False
    grammarly = json.loads(apps["kbfnbcaeplbcioakkpcpgfkobkghlhen"]["details"])
    assert grammarly["riskAssessment"]["overallRiskLevel"] == "RISK_LEVEL_MEDIUM"
    assert grammarly["profileCount"] == len(fleet.installs["kbfnbcaeplbcioakkpcpgfkobkghlhen"])
    # people: roles from the org unit paths (the profiles carry org unit ids)
    roles = dict(db.execute("select email, role from users where provider = 'chrome'").fetchall())
    for user in place.tenant.users.values():
        if user.primary_email.lower() in roles:
            assert roles[user.primary_email.lower()] == ("student" if user.org_unit_path.startswith("/Students") else "staff")
    assert db.execute("select count(*) from scopes where provider = 'chrome' and scope = '<all_urls>' and risk = 'high'").fetchone()[0] == 1
    # extension requests sit in consent_requests next to Microsoft's
    requests = list(db.query("select * from consent_requests where provider = 'chrome' order by id"))
    assert len(requests) == 4 and {r["client_id"] for r in requests} == {"dhdgffkkebhmkfjojejmpbldmpobfkfo", "kbfnbcaeplbcioakkpcpgfkobkghlhen"}
    assert all(r["reason"] and r["user_id"].startswith("chrome:") for r in requests)
    # every call counted
    assert result["api_calls"] == place.emulator.stats()["api_calls"]


def test_faults_give_the_same_inventory(chrome_district):
    place = chrome_district(users=250, knobs={"fault_rate": 0.1, "fault_kinds": ["429", "503", "500", "reset"], "retry_after": 0})
    result = scan(place)["chrome"]
    assert result["status"] == "succeeded", result["error"]
    assert result["retries"] > 0
    assert recorded(place.db_path) == expected(place.tenant.chrome)


def test_an_uninstalled_extension_is_revoked_by_the_next_scan(chrome_district):
    place = chrome_district(users=120)
    scan(place)
    fleet = place.tenant.chrome
    profile = fleet.installs["kbfnbcaeplbcioakkpcpgfkobkghlhen"][0]
    fleet.uninstall("kbfnbcaeplbcioakkpcpgfkobkghlhen", profile.email)
    assert scan(place)["chrome"]["status"] == "succeeded"
    assert recorded(place.db_path) == expected(fleet)


@pytest.mark.parametrize("missing", CHROME_SCOPES)
def test_a_missing_scope_fails_only_the_chrome_scan_naming_the_scope(chrome_district, missing):
    place = chrome_district(users=60, scopes=tuple(s for s in ALL_SCOPES if s != missing))
    results = scan(place, only=("chrome", "google"))
    assert results["google"]["status"] == "succeeded", results["google"]["error"]
    assert results["chrome"]["status"] == "failed"
    assert missing in results["chrome"]["error"] and "Domain Wide Delegation" in results["chrome"]["error"]
    db = open_db(place.db_path)
    assert db.execute("select count(*) from grants where provider = 'google'").fetchone()[0] > 0
    assert db.execute("select count(*) from grants where provider = 'chrome'").fetchone()[0] == 0


def test_the_catalog_matches_extensions_by_id(chrome_district, tmp_path):
    place = chrome_district(users=120)
    scan(place)
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "name,status,chrome_extension_ids,approved_scopes,audience\n"
        "Read&Write,approved,INOEONMFAPJBBKMDAFOANKKFAJKCPHGD,tabs;storage;identity;contextMenus,all\n"
        "Honey,denied,bmnlcjabgnpnenekpadlanbbkooimhnj,,all\n", encoding="utf-8")
    db = open_db(place.db_path)
    replace_catalog(db, read_catalog(catalog))
    status = dict(db.execute("select client_id, status from apps where provider = 'chrome'").fetchall())
    assert status["inoeonmfapjbbkmdafoankkfajkcphgd"] == "approved"
    assert status["bmnlcjabgnpnenekpadlanbbkooimhnj"] == "denied"
    assert status["kbfnbcaeplbcioakkpcpgfkobkghlhen"] == "unreviewed"
    # permissions beyond the approved list: its site access
    creep = {r["extra_scopes"] for r in db.query("select * from scope_creep where app_id = 'chrome:inoeonmfapjbbkmdafoankkfajkcphgd'")}
    assert creep == {'["https://docs.google.com/*"]'}
    unapproved = {r["app_id"] for r in db.query("select distinct app_id from unapproved_usage where provider = 'chrome'")}
    assert "chrome:bmnlcjabgnpnenekpadlanbbkooimhnj" in unapproved and "chrome:kbfnbcaeplbcioakkpcpgfkobkghlhen" in unapproved
    # Google's own and the district's own extensions are never "unapproved"
    assert not unapproved & {"chrome:ghbmnnjooekpmoecnnnilnnbdlolhkhi", "chrome:haldlgldplgnggkjaafhelgiaglafanh"}
    names = {r["name"] for r in db.query("select name from product_summary")}
    assert {"Read&Write", "Honey"} <= names


def test_a_bad_extension_id_in_the_catalog_is_named(tmp_path):
    from scanner.catalog import CatalogError
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("name,status,chrome_extension_ids\nX,approved,not-an-id\n", encoding="utf-8")
    with pytest.raises(CatalogError) as error:
        read_catalog(catalog)
    assert "catalog.csv:2: chrome_extension_ids: 'not-an-id' is not a Chrome extension id" in str(error.value)


def test_the_emulator_filters_and_pages_like_the_api(chrome_district):
    place = chrome_district(users=30)
    place.tenant.chrome.add_extension(ChromeExtension("a" * 32, "Theme", app_type="THEME"))
    from plugins.google.auth import Delegation
    from plugins.chrome.client import REPORTS_SCOPE, ChromeClient
    delegation = Delegation(place.directory / "sa.json", "it-admin@district.example").for_scope(REPORTS_SCOPE)
    client = ChromeClient(delegation, place.emulator.api_root)
    reports, http = client.resource("reports")
    page = reports.countInstalledApps(customer="customers/my_customer", filter="app_type=EXTENSION AND install_type=ADMIN").execute(http=http)
    assert [a["appId"] for a in page["installedApps"]] == ["haldlgldplgnggkjaafhelgiaglafanh"]
    assert isinstance(page["installedApps"][0]["browserDeviceCount"], str)
    page = reports.countInstalledApps(customer="customers/my_customer", pageSize=2).execute(http=http)
    assert len(page["installedApps"]) == 2 and page["nextPageToken"] and page["totalSize"] == 8
    from googleapiclient.errors import HttpError
    with pytest.raises(HttpError) as refused:
        reports.countInstalledApps(customer="customers/my_customer", filter="app_type=THEME OR app_type=APP").execute(http=http)
    assert refused.value.resp.status == 400
    client.close()
