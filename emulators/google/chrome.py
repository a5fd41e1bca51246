"""The Chrome Management API (chromemanagement.googleapis.com v1), as the Google emulator serves it.

What a district's enrolled browsers and ChromeOS devices report: installed extensions
(reports:countInstalledApps), who has one (reports:findInstalledAppProfiles) and on what
devices (reports:findInstalledAppDevices), Chrome Web Store details (apps/chrome/{id}) and
people's extension requests (apps:countChromeAppRequests, apps:fetchUsersRequestingExtension).

Faithful where a client can tell: the discovery document's paths and field names, counts as
int64 strings, empty arrays left out, `pageSize` limits (100; 50 for requests) and page tokens,
AND-only `filter`s on the fields the API lists, Google's RPC-style errors (a token without
the method's scope: 403 PERMISSION_DENIED / ACCESS_TOKEN_SCOPE_INSUFFICIENT), the shared
per-minute quota (429 RESOURCE_EXHAUSTED) and the seeded faults of the other APIs (429 with
Retry-After, 500, 503, resets, stalls, bodies cut short).

    fleet = ChromeFleet()
    fleet.add_extension(ChromeExtension("aapbdbdomjkkjkaonfhkkikfgjllcleb", "Google Translate", google_owned=True))
    fleet.install("aapbdbdomjkkjkaonfhkkikfgjllcleb", "ann@district.example", org_unit_id="03ph8a2z1")
    fleet.request("mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm", "Grammar Pal", "ann@district.example", "for essays")
    tenant.chrome = fleet   # GoogleTenant has an empty one

district_fleet() gives a district's browsers their extensions: held (ChromeFleet) for a
GoogleTenant, made when asked for (emulators.google.chrome_on_demand.OnDemandFleet) for an
OnDemandGoogleTenant; the handlers read either through the same methods.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

AUTH = "https://www.googleapis.com/auth/"
REPORTS_SCOPE = AUTH + "chrome.management.reports.readonly"
APPDETAILS_SCOPE = AUTH + "chrome.management.appdetails.readonly"
CHROME_SCOPES = (REPORTS_SCOPE, APPDETAILS_SCOPE)

_PREFIX = re.compile(r"^/v1/customers/([^/]+)/")
_PATHS = {
    "reports:countInstalledApps": ("countInstalledApps", REPORTS_SCOPE, 100),
    "reports:findInstalledAppProfiles": ("findInstalledAppProfiles", REPORTS_SCOPE, 100),
    "reports:findInstalledAppDevices": ("findInstalledAppDevices", REPORTS_SCOPE, 100),
    "apps:countChromeAppRequests": ("countChromeAppRequests", APPDETAILS_SCOPE, 50),
    "apps:fetchUsersRequestingExtension": ("fetchUsersRequestingExtension", APPDETAILS_SCOPE, 50),
}
_APP_DETAILS = re.compile(r"^apps/chrome/([^/@]+)(?:@([^/]+))?$")
# countInstalledApps' filter fields (the discovery document's list); the emulator evaluates these.
_FILTER_FIELDS = {"app_name", "app_type", "install_type", "number_of_permissions", "total_install_count", "permission_name",
                  "app_id", "manifest_versions", "risk_score", "latest_profile_active_date"}
_FILTER_TERM = re.compile(r'^\s*([a-z_]+)\s*(=|!=|<=|>=|<|>)\s*"?([^"]*?)"?\s*$')


@dataclass
class ChromeExtension:
    """One extension (or app) as the Chrome Web Store and the browsers describe it."""

    app_id: str
    display_name: str
    publisher: str = ""
    description: str = ""
    homepage_uri: str = ""
    permissions: tuple[str, ...] = ()  # manifest API permissions: "tabs", "cookies", ...
    host_matches: tuple[str, ...] = ()  # site access: "<all_urls>", "https://*.example.com/*"
    install_type: str = "NORMAL"  # NORMAL | ADMIN | SIDELOAD | DEVELOPMENT | OTHER
    app_type: str = "EXTENSION"
    google_owned: bool = False
    cws_hosted: bool = True
    manifest_version: int = 3
    privacy_policy_uri: str = ""
    disabled: bool = False
    risk: dict[str, Any] | None = None  # riskAssessment, as the API returns it

    def permission_names(self) -> list[str]:
        """countInstalledApps' `permissions[]`: API permissions, then host permissions."""
        return [*self.permissions, *self.host_matches]


@dataclass
class ChromeProfile:
    """One browser profile with the extension installed."""

    email: str
    profile_id: str
    org_unit_id: str = ""
    device_id: str = ""
    machine: str = ""


@dataclass
class ChromeFleet:
    """The extensions reported by a customer's managed browsers, and people's requests."""

    extensions: dict[str, ChromeExtension] = field(default_factory=dict)
    installs: dict[str, list[ChromeProfile]] = field(default_factory=dict)
    requests: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # app id -> [{email, justification, at}]
    request_names: dict[str, str] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def add_extension(self, extension: ChromeExtension) -> ChromeExtension:
        with self.lock:
            self.extensions[extension.app_id] = extension
            self.installs.setdefault(extension.app_id, [])
            return extension

    def install(self, app_id: str, email: str, *, org_unit_id: str = "", device: str = "") -> ChromeProfile:
        """The extension shows up in one more profile (one profile per person and extension here)."""
        with self.lock:
            profile = new_profile(app_id, email, org_unit_id, device)
            self.installs.setdefault(app_id, []).append(profile)
            return profile

    def uninstall(self, app_id: str, email: str) -> None:
        with self.lock:
            self.installs[app_id] = [p for p in self.installs.get(app_id, []) if p.email.lower() != email.lower()]

    def request(self, app_id: str, display_name: str, email: str, justification: str = "",
                at: str = "2026-11-20T15:04:05.123Z") -> None:
        """Someone asked for an extension (Chrome's CloudExtensionRequestEnabled policy)."""
        with self.lock:
            self.request_names[app_id] = display_name
            self.requests.setdefault(app_id, []).append({"email": email, "justification": justification, "at": at})

    # -- what the handlers read (emulators.google.chrome_on_demand.OnDemandFleet answers the same) --

    def installed_counts(self, app_id: str) -> tuple[int, int, int]:
        """(profiles, people, browser devices) with the extension."""
        with self.lock:
            profiles = self.installs.get(app_id, [])
            return len(profiles), len({p.email for p in profiles}), len({p.device_id for p in profiles})

    def profiles(self, app_id: str, org_unit_id: str = "") -> list[ChromeProfile]:
        """The profiles with the extension (directly in `org_unit_id` if given), by address."""
        with self.lock:
            profiles = [p for p in self.installs.get(app_id, []) if not org_unit_id or p.org_unit_id == org_unit_id]
            return sorted(profiles, key=_profile_order)

    def profile_page(self, app_id: str, org_unit_id: str, start: int, size: int) -> tuple[int, list[ChromeProfile]]:
        """(how many profiles, the `size` from `start` on), in the order of `profiles()`."""
        profiles = self.profiles(app_id, org_unit_id)
        return len(profiles), profiles[start:start + size]

    def device_page(self, app_id: str, org_unit_id: str, start: int, size: int) -> tuple[int, list[tuple[str, str]]]:
        """(how many devices, the `size` (device id, machine) from `start` on), by device id."""
        devices = sorted({p.device_id: p.machine for p in self.profiles(app_id, org_unit_id)}.items())
        return len(devices), devices[start:start + size]


def _profile_order(profile: ChromeProfile) -> tuple[str, str]:
    return profile.email.lower(), profile.profile_id


def new_profile(app_id: str, email: str, org_unit_id: str = "", device: str = "") -> ChromeProfile:
    """The profile a person has an extension in (one profile per person and extension here): ids
    from digests of the address, so the same person gets the same ids in any process."""
    person = _digest(email.lower())  # stable across processes (hash() of a str is not)
    return ChromeProfile(email, f"profile-{_digest(app_id + email.lower()) % 10**9}", org_unit_id,
                         device or f"device-{person % 10**6}", f"CB-{person % 10**5:05d}")


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class ChromeFailure(Exception):
    def __init__(self, code: int, status: str, message: str, reason: str | None = None):
        super().__init__(message)
        error: dict[str, Any] = {"code": code, "message": message, "status": status}
        if reason:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                                 "domain": "googleapis.com",
                                 "metadata": {"service": "chromemanagement.googleapis.com"}}]
        self.code, self.body = code, {"error": error}


class ChromeManagementAPI:
    """Answers one call's path and query for a fleet (authentication, quota and faults are the caller's)."""

    def __init__(self, fleet_of):
        self._fleet_of = fleet_of  # () -> ChromeFleet (the tenant's, which a test may replace)

    @staticmethod
    def method(path: str) -> tuple[str, str, int] | None:
        """(method name, scope, page size limit) for a Chrome Management path, None if it is not one."""
        match = _PREFIX.match(path)
        if not match:
            return None
        rest = path[match.end():]
        if rest in _PATHS:
            return _PATHS[rest]
        if _APP_DETAILS.match(rest):
            return ("apps.chrome.get", APPDETAILS_SCOPE, 0)
        return None

    def dispatch(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        name, _, limit = self.method(path) or ("", "", 0)
        fleet = self._fleet_of()
        with fleet.lock:
            if name == "countInstalledApps":
                extensions = self._filtered(fleet, query)
                start, size = self._window(query, limit)
                return self._body(key="installedApps", total=len(extensions), start=start, size=size,
                                  items=[self._installed(e, fleet) for e in extensions[start:start + size]])
            if name == "findInstalledAppProfiles":
                app_id, org_unit_id = self._app_of(query)
                start, size = self._window(query, limit)
                total, profiles = fleet.profile_page(app_id, org_unit_id, start, size)
                return self._body(key="profiles", total=total, start=start, size=size, items=[
                    {"email": p.email, "profileId": p.profile_id, "profileOrgUnitId": p.org_unit_id,
                     "profilePermanentId": "perm-" + p.profile_id} for p in profiles])
            if name == "findInstalledAppDevices":
                app_id, org_unit_id = self._app_of(query)
                start, size = self._window(query, limit)
                total, devices = fleet.device_page(app_id, org_unit_id, start, size)
                return self._body(key="devices", total=total, start=start, size=size,
                                  items=[{"deviceId": d, "machine": m} for d, m in devices])
            if name == "countChromeAppRequests":
                apps = [{"appId": app_id, "displayName": fleet.request_names.get(app_id, ""),
                         "requestCount": str(len(requests)), "latestRequestTime": max(r["at"] for r in requests),
                         "detailUri": f"https://chromewebstore.google.com/detail/{app_id}"}
                        for app_id, requests in sorted(fleet.requests.items()) if requests]
                return self._page(query, limit, "requestedApps", apps)
            if name == "fetchUsersRequestingExtension":
                app_id = query.get("extensionId", "")
                if not app_id:
                    raise ChromeFailure(400, "INVALID_ARGUMENT", "extensionId is required")
                users = [{"email": r["email"], **({"justification": r["justification"]} if r["justification"] else {})}
                         for r in fleet.requests.get(app_id, [])]
                return self._page(query, limit, "userDetails", users)
            match = _APP_DETAILS.match(path[_PREFIX.match(path).end():])
            extension = fleet.extensions.get(match.group(1))
            if extension is None:
                raise ChromeFailure(404, "NOT_FOUND", f"App {match.group(1)} not found.")
            return self._details(extension, customer=_PREFIX.match(path).group(1), version=match.group(2))

    # -- answers ------------------------------------------------------------------------------

    @staticmethod
    def _installed(extension: ChromeExtension, fleet: ChromeFleet) -> dict[str, Any]:
        profiles, people, devices = fleet.installed_counts(extension.app_id)
        body: dict[str, Any] = {
            "appId": extension.app_id, "appType": extension.app_type,
            "appSource": "CHROME_WEBSTORE" if extension.cws_hosted else "APP_SOURCE_UNSPECIFIED",
            "appInstallType": extension.install_type, "displayName": extension.display_name,
            # int64 counts travel as strings
            "browserDeviceCount": str(devices), "osUserCount": str(people), "profileCount": str(profiles),
        }
        if extension.description:
            body["description"] = extension.description
        if extension.homepage_uri:
            body["homepageUri"] = extension.homepage_uri
        if extension.disabled:
            body["disabled"] = True
        if extension.permission_names():
            body["permissions"] = extension.permission_names()
        if extension.risk:
            body["riskAssessment"] = extension.risk
        return body

    @staticmethod
    def _details(extension: ChromeExtension, *, customer: str, version: str | None) -> dict[str, Any]:
        info: dict[str, Any] = {"googleOwned": extension.google_owned, "isCwsHosted": extension.cws_hosted,
                                "manifestVersion": str(extension.manifest_version), "type": extension.app_type,
                                "minUserCount": 0, "isTheme": False}
        if extension.permissions:
            info["permissions"] = [{"type": p, "accessUserData": p in _USER_DATA_PERMISSIONS,
                                    "documentationUri": "https://developer.chrome.com/docs/extensions/reference/api/" + p}
                                   for p in extension.permissions]
        if extension.host_matches:
            info["siteAccess"] = [{"hostMatch": h} for h in extension.host_matches]
        if extension.risk:
            info["riskAssessment"] = extension.risk
        body: dict[str, Any] = {
            "name": f"customers/{customer}/apps/chrome/{extension.app_id}", "displayName": extension.display_name,
            "appId": extension.app_id, "type": "CHROME", "chromeAppInfo": info, "isPaidApp": False,
            "detailUri": f"https://chromewebstore.google.com/detail/{extension.app_id}", "reviewNumber": "0",
        }
        if extension.publisher:
            body["publisher"] = extension.publisher
        if extension.description:
            body["description"] = extension.description
        if extension.homepage_uri:
            body["homepageUri"] = extension.homepage_uri
        if version and extension.privacy_policy_uri:  # only with a version, as the API documents
            body["privacyPolicyUri"] = extension.privacy_policy_uri
        return body

    # -- filters and pages --------------------------------------------------------------------

    @staticmethod
    def _filtered(fleet: ChromeFleet, query: dict[str, str]) -> list[ChromeExtension]:
        extensions = sorted(fleet.extensions.values(), key=lambda e: e.app_id)
        text = query.get("filter", "").strip()
        if not text:
            return extensions
        if re.search(r"\bOR\b", text):
            raise ChromeFailure(400, "INVALID_ARGUMENT", "Invalid filter: OR is not supported")
        terms = []
        for part in re.split(r"\bAND\b", text):
            match = _FILTER_TERM.match(part)
            if not match or match.group(1) not in _FILTER_FIELDS:
                raise ChromeFailure(400, "INVALID_ARGUMENT", f"Invalid filter: {part.strip()!r}")
            terms.append(match.groups())

        def value(extension: ChromeExtension, name: str) -> Any:
            return {"app_name": extension.display_name, "app_type": extension.app_type, "app_id": extension.app_id,
                    "install_type": extension.install_type, "number_of_permissions": len(extension.permission_names()),
                    "total_install_count": fleet.installed_counts(extension.app_id)[0],
                    "manifest_versions": extension.manifest_version}.get(name)

        def keep(extension: ChromeExtension) -> bool:
            for name, op, wanted in terms:
                if name == "permission_name":
                    if (wanted in extension.permission_names()) != (op == "="):
                        return False
                    continue
                have = value(extension, name)
                if have is None:
                    continue  # risk_score, latest_profile_active_date: accepted, not modelled
                if isinstance(have, int):
                    wanted_value: Any = int(wanted)
                else:
                    have, wanted_value = str(have).lower(), wanted.lower()
                if not {"=": have == wanted_value, "!=": have != wanted_value, "<": have < wanted_value,
                        ">": have > wanted_value, "<=": have <= wanted_value, ">=": have >= wanted_value}[op]:
                    return False
            return True

        return [e for e in extensions if keep(e)]

    @staticmethod
    def _app_of(query: dict[str, str]) -> tuple[str, str]:
        """(appId, orgUnitId) of a findInstalledApp* call (the org unit: profiles directly in it only)."""
        app_id = query.get("appId", "")
        if not app_id:
            raise ChromeFailure(400, "INVALID_ARGUMENT", "appId is required")
        return app_id, query.get("orgUnitId", "")

    @staticmethod
    def _window(query: dict[str, str], limit: int) -> tuple[int, int]:
        """(first item, how many) the call's pageSize and pageToken ask for."""
        raw = query.get("pageSize") or str(limit)
        try:
            size = int(raw)
        except ValueError:
            raise ChromeFailure(400, "INVALID_ARGUMENT", f"Invalid value at 'page_size' (TYPE_INT32), \"{raw}\"") from None
        if size < 0:
            raise ChromeFailure(400, "INVALID_ARGUMENT", "page_size must not be negative")
        size = min(size or limit, limit)
        start = 0
        if query.get("pageToken"):
            try:
                start = json.loads(base64.urlsafe_b64decode(query["pageToken"].encode()))["o"]
            except (ValueError, KeyError, TypeError):
                raise ChromeFailure(400, "INVALID_ARGUMENT", "Invalid page token") from None
            if not isinstance(start, int) or start < 0:
                raise ChromeFailure(400, "INVALID_ARGUMENT", "Invalid page token")
        return start, size

    @staticmethod
    def _body(*, key: str, total: int, start: int, size: int, items: list[dict[str, Any]]) -> dict[str, Any]:
        """A page: `items` (the window from `start`) of `total`, and a token for the next if there is one."""
        body: dict[str, Any] = {"totalSize": total}
        if items:
            body[key] = items
        if start + size < total:
            body["nextPageToken"] = base64.urlsafe_b64encode(json.dumps({"o": start + size}).encode()).decode()
        return body

    @staticmethod
    def _page(query: dict[str, str], limit: int, key: str, items: list[dict[str, Any]]) -> dict[str, Any]:
        start, size = ChromeManagementAPI._window(query, limit)
        return ChromeManagementAPI._body(key=key, total=len(items), start=start, size=size, items=items[start:start + size])


# Permissions the Web Store marks as reaching the user's data.
_USER_DATA_PERMISSIONS = {"tabs", "history", "cookies", "webRequest", "clipboardRead", "debugger", "nativeMessaging",
                          "bookmarks", "downloads", "topSites", "identity.email", "webNavigation", "declarativeNetRequest"}


# -- a district's extensions -------------------------------------------------------------------

# Real Web Store ids; permissions as their manifests declare them (abridged).
DISTRICT_EXTENSIONS = (
    # (extension, share of staff, share of students)
    (ChromeExtension("inoeonmfapjbbkmdafoankkfajkcphgd", "Read&Write for Google Chrome", "Texthelp",
                     homepage_uri="https://www.texthelp.com", permissions=("tabs", "storage", "identity", "contextMenus"),
                     host_matches=("https://docs.google.com/*",), privacy_policy_uri="https://www.texthelp.com/privacy"),
     0.3, 0.5),
    (ChromeExtension("haldlgldplgnggkjaafhelgiaglafanh", "GoGuardian", "GoGuardian", install_type="ADMIN",
                     permissions=("tabs", "history", "webRequest", "identity.email", "enterprise.deviceAttributes"),
                     host_matches=("<all_urls>",)), 0.0, 1.0),
    (ChromeExtension("ghbmnnjooekpmoecnnnilnnbdlolhkhi", "Google Docs Offline", "Google", google_owned=True,
                     permissions=("storage", "unlimitedStorage"), host_matches=("https://docs.google.com/*",)), 0.9, 0.9),
    (ChromeExtension("kbfnbcaeplbcioakkpcpgfkobkghlhen", "Grammarly: AI Writing and Grammar Checker", "Grammarly",
                     homepage_uri="https://www.grammarly.com", permissions=("tabs", "cookies", "storage", "scripting"),
                     host_matches=("<all_urls>",),
                     risk={"overallRiskLevel": "RISK_LEVEL_MEDIUM", "entries": [
                         {"provider": "RISK_ASSESSMENT_PROVIDER_SPIN_AI", "riskLevel": "RISK_LEVEL_MEDIUM",
                          "riskAssessment": {"assessment": "medium", "version": "14.1180.0",
                                             "detailsUrl": "https://apps.spin.ai/app-assessment/kbfnbcaeplbcioakkpcpgfkobkghlhen"}}]}),
     0.25, 0.1),
    (ChromeExtension("bmnlcjabgnpnenekpadlanbbkooimhnj", "Honey: Automatic Coupons & Rewards", "PayPal",
                     permissions=("tabs", "cookies", "webRequest", "storage"), host_matches=("<all_urls>",)), 0.08, 0.02),
    (ChromeExtension("oaimhkfgjocnmdmbpmfgalcbcpanedoj", "Quick Screen Recorder (unpacked)", install_type="SIDELOAD",
                     cws_hosted=False, permissions=("desktopCapture", "tabCapture", "storage")), 0.02, 0.0),
    (ChromeExtension("cjpalhdlnbpafiamejdnhcphjbkeiagm", "uBlock Origin", "Raymond Hill",
                     permissions=("webRequest", "webRequestBlocking", "storage", "tabs"), host_matches=("<all_urls>",),
                     manifest_version=2), 0.1, 0.0),
)
REQUESTED_EXTENSIONS = (
    ("dhdgffkkebhmkfjojejmpbldmpobfkfo", "Tampermonkey", "I teach a scripting club"),
    ("kbfnbcaeplbcioakkpcpgfkobkghlhen", "Grammarly: AI Writing and Grammar Checker", "for feedback on essays"),
)


def install_shares(extensions=DISTRICT_EXTENSIONS) -> list[tuple[int, int]]:
    """(staff, student) thresholds of each extension for install_draws(): a draw below one installs it."""
    return [(int(staff * 2**64), int(student * 2**64)) for _, staff, student in extensions]


def install_draws(seed: int, email: str, count: int = len(DISTRICT_EXTENSIONS)) -> tuple[int, ...]:
    """A person's draws for the district's extensions (64-bit numbers, one an extension): a digest of the
    seed and their address, so one person's extensions can be drawn again alone, in any order, in any
    process, without a random stream shared by everyone (emulators.google.chrome_on_demand relies on it)."""
    draws: tuple[int, ...] = ()
    block = 0
    while len(draws) < count:
        draws += _EIGHT(hashlib.blake2b(f"{seed}:chrome:{block}:{email.lower()}".encode(), digest_size=64).digest())
        block += 1
    return draws[:count]


_EIGHT = struct.Struct(">8Q").unpack


def district_fleet(tenant, *, seed: int = 1, student_domain: str | None = None, on_demand: bool | None = None):
    """Extensions in a tenant's managed browsers, deterministic for a seed: each current user has each of
    DISTRICT_EXTENSIONS with its share (students: addresses at `student_domain`, or in /Students),
    drawn from a digest of the seed and their address (install_draws); a few people asked for extensions.

    `on_demand` (default: when the tenant is an OnDemandGoogleTenant): an OnDemandFleet, which makes
    each page of profiles when asked for instead of holding them, and serves the same pages."""
    from .on_demand import OnDemandGoogleTenant

    if on_demand is None:
        on_demand = isinstance(tenant, OnDemandGoogleTenant)
    if on_demand:
        from .chrome_on_demand import OnDemandFleet

        return OnDemandFleet(tenant, seed=seed, student_domain=student_domain)
    fleet = ChromeFleet()
    for extension, _, _ in DISTRICT_EXTENSIONS:
        fleet.add_extension(extension)
    shares = install_shares()
    users = sorted(tenant.users.values(), key=lambda u: u.id)
    for user in users:
        if user.suspended or user.is_admin:
            continue
        student = (user.primary_email.lower().endswith("@" + student_domain) if student_domain
                   else user.org_unit_path.startswith("/Students"))
        draws = install_draws(seed, user.primary_email)
        org_unit_id = None
        for (extension, _, _), draw, share in zip(DISTRICT_EXTENSIONS, draws, shares):
            if draw < share[student]:
                org_unit_id = org_unit_id or tenant.org_unit_id(user.org_unit_path)
                fleet.install(extension.app_id, user.primary_email, org_unit_id=org_unit_id)
    staff = requesting_staff(users)
    for index, (app_id, name, why) in enumerate(REQUESTED_EXTENSIONS):
        for user in staff[index:index + 2]:
            fleet.request(app_id, name, user.primary_email, why)
    return fleet


def requesting_staff(users: list) -> list:
    """Who asks for REQUESTED_EXTENSIONS: the staff (users sorted by id), or anyone if there are none."""
    return [u for u in users if not u.is_admin and not u.org_unit_path.startswith("/Students")] or users
