"""Chrome Management answers -> records (pure: no network, tested on answers as the API sends them).

An extension is an App `chrome:<extension id>`; each profile that has it installed is a Grant
from that person whose "scopes" are the extension's permissions and site access (its host
matches, such as `<all_urls>`), rated by the permission rows of scanner/data/scopes.csv.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scanner import App, ConsentRequest, Grant, User, classify_role

# An extension the district installs itself (ExtensionInstallForcelist): its own decision.
DISTRICT_INSTALL_TYPES = {"ADMIN"}
# Chrome extension requests have no status in the API: a listed request is waiting for IT.
REQUEST_STATUS = "InProgress"


def extension_permissions(installed: dict[str, Any], details: dict[str, Any] | None) -> list[str]:
    """What the extension may do: its API permissions and site access, as a grant's scopes.

    The Web Store details are the extension's manifest (`chromeAppInfo.permissions[].type`,
    `siteAccess[].hostMatch`); countInstalledApps' `permissions[]` is used when there are none
    (a sideloaded extension has no Web Store page)."""
    info = (details or {}).get("chromeAppInfo") or {}
    found = [p.get("type", "") for p in info.get("permissions") or [] if isinstance(p, dict)]
    found += [s.get("hostMatch", "") for s in info.get("siteAccess") or [] if isinstance(s, dict)]
    if not found:
        found = [p for p in installed.get("permissions") or [] if isinstance(p, str)]
    return [p for p in dict.fromkeys(p.strip() for p in found) if p]


def ownership(installed: dict[str, Any], details: dict[str, Any] | None) -> str:
    """first_party for Google's own extensions; internal for those the district installs (force-installed),
    which are its own decision and never "unapproved"; third_party otherwise."""
    if ((details or {}).get("chromeAppInfo") or {}).get("googleOwned"):
        return "first_party"
    if installed.get("appInstallType") in DISTRICT_INSTALL_TYPES:
        return "internal"
    return "third_party"


def extension_record(installed: dict[str, Any], details: dict[str, Any] | None) -> App:
    """The App for a countInstalledApps item, with its Web Store details when it has a page."""
    app_id = installed["appId"]
    info = (details or {}).get("chromeAppInfo") or {}
    extras: dict[str, Any] = {
        "installType": installed.get("appInstallType", ""),
        "adminInstalled": installed.get("appInstallType") in DISTRICT_INSTALL_TYPES,
        "appType": installed.get("appType", ""),
        "webStore": bool(details) and bool(info.get("isCwsHosted", True)),
        # int64 counts arrive as strings
        "browserDeviceCount": _count(installed.get("browserDeviceCount")),
        "profileCount": _count(installed.get("profileCount")),
    }
    for key, value in (("manifestVersion", info.get("manifestVersion")), ("googleOwned", info.get("googleOwned")),
                       ("privacyPolicyUri", (details or {}).get("privacyPolicyUri")),
                       ("detailUri", (details or {}).get("detailUri")),
                       ("riskAssessment", installed.get("riskAssessment") or info.get("riskAssessment")),
                       ("disabled", installed.get("disabled"))):
        if value not in (None, ""):
            extras[key] = value
    return App(id=app_id, name=installed.get("displayName") or (details or {}).get("displayName") or app_id,
               publisher=(details or {}).get("publisher", ""), ownership=ownership(installed, details),
               homepage=installed.get("homepageUri") or (details or {}).get("homepageUri", ""), details=extras)


def person_record(email: str, roles: dict[str, Any], org_unit: str | None = None) -> User:
    """The person a browser profile belongs to, by the address it is signed in with.

    `org_unit` is the profile's org unit path, None when it is not known (no org unit
    scope, or a requester with no profile): then, if [roles] tells students by org unit,
    someone not found a student by address is `unknown` rather than staff, so a student
    is never taken for staff (and emailed)."""
    address = email.strip().lower()
    role = classify_role(roles, email=address, org_unit=org_unit or "")
    if org_unit is None and role == "staff" and roles.get("student_org_units"):
        role = "unknown"
    return User(id=address, email=address, role=role, org_unit=org_unit or "")


def profile_grants(app_id: str, profiles: Iterable[dict[str, Any]], permissions: list[str]) -> list[Grant]:
    """One grant a person who has the extension in a profile (several profiles of one person are one grant)."""
    emails = dict.fromkeys(p["email"].strip().lower() for p in profiles if isinstance(p.get("email"), str) and p["email"].strip())
    return [Grant(user_id=email, app_id=app_id, scopes=list(permissions)) for email in emails]


def request_record(app: dict[str, Any], user: dict[str, Any]) -> ConsentRequest:
    """One person's request for an extension (countChromeAppRequests x fetchUsersRequestingExtension)."""
    email = user["email"].strip().lower()
    return ConsentRequest(id=f"{app['appId']}:{email}", app_id=app["appId"], app_name=app.get("displayName") or app["appId"],
                          scopes=[], status=REQUEST_STATUS, user_id=email, email=email,
                          reason=user.get("justification", ""), requested_at=app.get("latestRequestTime"))


def _count(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
