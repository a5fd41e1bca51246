"""The on-demand Chrome fleet (emulators.google.chrome_on_demand): the same pages as the fleet
district_fleet() holds for the same district, changes served alike, a scan through the real
client recording the same inventory, pages started near where they are, and far less memory."""

from __future__ import annotations

import base64
import json
import tracemalloc
from dataclasses import replace

import pytest

from emulators.google.chrome import ChromeExtension, ChromeFleet, ChromeManagementAPI, district_fleet
from emulators.google.chrome_on_demand import BLOCK, OnDemandFleet
from emulators.google.tenant import build_tenant
from tests.test_chrome_scan import ALL_SCOPES, chrome_section, expected, recorded, scan

PREFIX = "/v1/customers/my_customer/"
GRAMMARLY = "kbfnbcaeplbcioakkpcpgfkobkghlhen"
DOCS_OFFLINE = "ghbmnnjooekpmoecnnnilnnbdlolhkhi"


def fleets(users: int, seed: int = 5, **options) -> tuple[ChromeFleet, OnDemandFleet]:
    """The fleet held for a district and the on-demand one, for the same people and seed."""
    held = district_fleet(build_tenant(users=users, seed=seed), seed=6, **options)
    lazy = district_fleet(build_tenant(users=users, seed=seed, on_demand=True), seed=6, **options)
    assert isinstance(held, ChromeFleet) and isinstance(lazy, OnDemandFleet)
    return held, lazy


def pages(fleet, path: str, query: dict[str, str]) -> list[dict]:
    """Every page of a call, following nextPageToken."""
    api, found, ask = ChromeManagementAPI(lambda: fleet), [], dict(query)
    while True:
        found.append(api.dispatch(PREFIX + path, ask))
        if "nextPageToken" not in found[-1]:
            return found
        ask = dict(query, pageToken=found[-1]["nextPageToken"])


def everything(fleet, org_units: list[str]) -> dict:
    """What the emulator serves from a fleet: every call, paged small and large, with and without filters."""
    served = {"apps": pages(fleet, "reports:countInstalledApps", {"pageSize": "3"}),
              "admin": pages(fleet, "reports:countInstalledApps", {"filter": "install_type=ADMIN AND total_install_count>10"}),
              "requested": pages(fleet, "apps:countChromeAppRequests", {"pageSize": "1"})}
    for app_id in sorted(fleet.extensions):
        for size in ("100", "7"):
            served["profiles", app_id, size] = pages(fleet, "reports:findInstalledAppProfiles", {"appId": app_id, "pageSize": size})
            served["devices", app_id, size] = pages(fleet, "reports:findInstalledAppDevices", {"appId": app_id, "pageSize": size})
        for unit in org_units:
            served["unit", app_id, unit] = pages(fleet, "reports:findInstalledAppProfiles", {"appId": app_id, "orgUnitId": unit, "pageSize": "5"})
            served["unit devices", app_id, unit] = pages(fleet, "reports:findInstalledAppDevices", {"appId": app_id, "orgUnitId": unit})
        served["details", app_id] = ChromeManagementAPI(lambda: fleet).dispatch(PREFIX + "apps/chrome/" + app_id + "@1", {})
        served["asked", app_id] = pages(fleet, "apps:fetchUsersRequestingExtension", {"extensionId": app_id})
    return served


def org_units_of(fleet) -> list[str]:
    return sorted({p.org_unit_id for p in fleet.installs[GRAMMARLY]})[:3]


@pytest.mark.parametrize("student_domain", [None, "students.district.example"])
def test_serves_the_same_pages_as_the_fleet_held(student_domain):
    held, lazy = fleets(700, student_domain=student_domain)
    assert len(held.installs[DOCS_OFFLINE]) > 500  # several pages of 100
    assert all(held.installs.values()) and held.requests
    units = org_units_of(held)
    assert everything(lazy, units) == everything(held, units)


def test_changes_are_served_alike():
    held, lazy = fleets(400)
    gone = held.profiles(GRAMMARLY)[1]
    for fleet in (held, lazy):
        fleet.uninstall(GRAMMARLY, gone.email)
        fleet.uninstall(DOCS_OFFLINE, "nobody@district.example")
        fleet.install(GRAMMARLY, "new.teacher@district.example", org_unit_id="03abc")
        fleet.install(GRAMMARLY, "Aaron.Zed@district.example", device="device-42")
        fleet.add_extension(ChromeExtension("a" * 32, "Theme", app_type="THEME"))
        fleet.install("a" * 32, "ann@district.example")
        fleet.request("b" * 32, "Tool", "ann@district.example", "for class")
    counts = lazy.installed_counts(GRAMMARLY)
    assert counts == held.installed_counts(GRAMMARLY) and counts[0] == len(held.installs[GRAMMARLY])
    assert everything(lazy, ["03abc", *org_units_of(held)]) == everything(held, ["03abc", *org_units_of(held)])


def test_users_changed_before_the_fleet_is_built_count_as_changed():
    served = []
    for on_demand in (False, True):
        tenant = build_tenant(users=300, seed=5, on_demand=on_demand)
        staff = sorted((u for u in tenant.users.values() if u.org_unit_path.startswith("/Staff")), key=lambda u: u.id)
        tenant.users[staff[0].id].suspended = True  # the first to ask for an extension: no longer
        tenant.users[staff[3].id].org_unit_path = "/Students/Moved"  # a student now
        tenant.delete_user(staff[5].id)
        fleet = district_fleet(tenant, seed=6)
        assert isinstance(fleet, OnDemandFleet) == on_demand
        served.append(everything(fleet, []))
    assert served[0] == served[1]
    with pytest.raises(ValueError, match="added to the tenant"):
        tenant.add_user(replace(staff[1], id="1" * 21, primary_email="new@district.example", aliases=()))
        district_fleet(tenant, seed=6)


def test_a_scan_records_what_the_fleet_held_records(district, tmp_path):
    inventories = []
    for on_demand in (False, True):
        tenant = build_tenant(users=300, seed=5, on_demand=on_demand)
        tenant.chrome = district_fleet(tenant, seed=6)
        assert isinstance(tenant.chrome, OnDemandFleet) == on_demand
        place = district(tenant, scopes=ALL_SCOPES)
        place.write_config(extra=chrome_section(place))
        result = scan(place)["chrome"]
        assert result["status"] == "succeeded", result["error"]
        inventories.append(recorded(place.db_path))
        assert inventories[-1] == expected(tenant.chrome)
    assert inventories[0] == inventories[1] and len(inventories[0]) > 500


def test_a_page_starts_at_the_nearest_mark(monkeypatch):
    held, lazy = fleets(5 * BLOCK)
    lazy.installed_counts(DOCS_OFFLINE)  # the one walk over everyone
    asked = []
    person = OnDemandFleet._person
    monkeypatch.setattr(OnDemandFleet, "_person", lambda self, key: asked.append(key) or person(self, key))
    start = len(held.installs[DOCS_OFFLINE]) - 150
    token = base64.urlsafe_b64encode(json.dumps({"o": start}).encode()).decode()
    body = ChromeManagementAPI(lambda: lazy).dispatch(PREFIX + "reports:findInstalledAppProfiles",
                                                      {"appId": DOCS_OFFLINE, "pageToken": token})
    assert [p["email"] for p in body["profiles"]] == [p.email for p in held.profiles(DOCS_OFFLINE)[start:start + 100]]
    assert len(asked) <= BLOCK + 200  # not everyone before the page
    assert body["totalSize"] == len(held.installs[DOCS_OFFLINE])


def test_holds_far_less_than_the_fleet_held():
    def held(make_tenant, on_demand):
        tenant = make_tenant()
        tracemalloc.start()
        try:
            fleet = district_fleet(tenant, seed=1, on_demand=on_demand)
            fleet.installed_counts(DOCS_OFFLINE)
            return tracemalloc.get_traced_memory()[0], fleet
        finally:
            tracemalloc.stop()

    lazy, fleet = held(lambda: build_tenant(users=20_000, seed=1, on_demand=True), None)
    eager, _ = held(lambda: build_tenant(users=20_000, seed=1, on_demand=True), False)
    assert isinstance(fleet, OnDemandFleet)
    assert eager > 10_000_000 and lazy < 200_000, (lazy, eager)


def test_the_benchmarks_emulator_makes_its_fleet_on_demand():
    from emulators.google.server import _emulator_for
    for on_demand, kind in ((True, OnDemandFleet), (False, ChromeFleet)):
        emulator = _emulator_for({"build": {"users": 200, "seed": 1, "on_demand": on_demand}, "chrome": {"seed": 1}, "knobs": {}})
        emulator.stop()  # never started: closes its socket
        assert isinstance(emulator.tenant.chrome, kind)
