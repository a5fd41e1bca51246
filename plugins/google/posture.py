"""The Policy API's policies -> posture findings. Pure functions, no I/O (tested on recorded shapes).

    google_findings(policies, org_units)   policies.list items -> PostureFinding records
    unknown_findings(reason)               every check `unknown`, for the same reason

The checks are CISA ScubaGoggles' (GWS.COMMONCONTROLS.10.1-10.4, 11.1 and GWS.CLASSROOM.2.1),
plus one of ours for users designated under 18 (APPINV.GWS.UNDER18). The Policy API returns
the policies an admin (ADMIN) or Google (SYSTEM) set explicitly, per org unit or group: where
several set one setting for the same org unit and group, the one with the highest sortOrder
applies (Google's "reduction"). A sub-unit without a policy of its own inherits its parent's,
so each check has a row for every org unit or group with a policy of its own.

Google's documentation and real tenants disagree on spellings, so both are read: field names
as the docs write them (`access_level`) and as the API returns them (`accessLevel`); enum
values as documented (`BLOCK_ALL`, `ALLOW_SIGN_IN_ONLY`) and as tenants send them
(`BLOCK_ALL_SCOPES`, `ALLOW_SIGN_IN_SCOPES_ONLY`, `UNSPECIFIED_UBER_BLOCK`). A value this
module does not know is reported as `unknown`, never as a pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from scanner import PostureFinding

UNCONFIGURED_APPS = "api_controls.unconfigured_third_party_apps"
INTERNAL_APPS = "api_controls.internal_apps"
GOOGLE_SERVICES = "api_controls.google_services"
MARKETPLACE = "workspace_marketplace.apps_access_options"
CLASSROOM = "classroom.api_data_access"
SETTINGS = (UNCONFIGURED_APPS, INTERNAL_APPS, GOOGLE_SERVICES, MARKETPLACE, CLASSROOM)
# policies.list `filter` (CEL): only the settings above (`matches` is an RE2 search; the CEL
# string needs its backslashes doubled).
POLICY_FILTER = " || ".join(
    "setting.type.matches('^settings/" + setting.replace(".", "\\\\.") + "$')" for setting in SETTINGS
)

API_CONTROLS = "Admin console > Security > Access and data control > API controls"
NO_API_NOTE = ("No Google API lists the configured (trusted, limited, blocked) apps or the requests of users "
               "designated under 18: review them in API controls > Manage Third-Party App Access and Apps pending review")

# The Google services third-party apps can be kept from, with their scope groups
# (ScubaGoggles' list): a service is restricted when any of its groups is listed.
SERVICES = {
    "Drive": ("DRIVE_ALL", "DRIVE_HIGH_RISK"),
    "Gmail": ("GMAIL_ALL", "GMAIL_HIGH_RISK"),
    "Calendar": ("CALENDAR_ALL",),
    "Contacts": ("CONTACTS_ALL",),
    "Google Workspace Admin": ("GSUITE_ADMIN_ALL",),
    "Vault": ("VAULT_ALL",),
    "Cloud Platform": ("CLOUD_PLATFORM",),
    "Cloud Billing": ("CLOUD_BILLING",),
    "Cloud Machine Learning": ("CLOUD_ML",),
    "Apps Script API": ("APPS_SCRIPT_API",),
    "Apps Script Runtime": ("APPS_SCRIPT_RUNTIME",),
    "Classroom": ("CLASSROOM_ALL", "CLASSROOM_HIGH_RISK"),
    "Tasks": ("TASKS",),
    "Groups": ("GROUPS",),
    "Chat": ("CHAT", "CHAT_ALL", "CHAT_HIGH_RISK"),
    "Google Sign-in": ("SIGN_IN",),
    "Meet": ("MEET",),
    "Cloud Search": ("CLOUD_SEARCH",),
}

# Unconfigured third-party apps (access_level): what each value lets users do, and the result.
ACCESS_LEVELS = {
    "BLOCK_ALL": ("no unconfigured third-party app", "pass"),
    "BLOCK_ALL_SCOPES": ("no unconfigured third-party app", "pass"),
    "ALLOW_SIGN_IN_ONLY": ("unconfigured apps that ask only for basic sign-in info (name, email, photo)", "fail"),
    "ALLOW_SIGN_IN_SCOPES_ONLY": ("unconfigured apps that ask only for basic sign-in info (name, email, photo)", "fail"),
    "UNSPECIFIED_UBER_BLOCK": ("any third-party app (no restriction set)", "fail"),
    "ACCESS_LEVEL_UNSPECIFIED": ("any third-party app (no restriction set)", "fail"),
}
# The same for users designated under 18 (access_level_under18). "Unspecified" is no answer:
# Education editions block unconfigured apps for them by default, other editions have no such users.
UNDER18_LEVELS = {key: value for key, value in ACCESS_LEVELS.items() if "UNSPECIFIED" not in key}
UNDER18_UNSPECIFIED = ("ACCESS_LEVEL_UNDER18_UNSPECIFIED", "UNDERAGE_UBER_BLOCK_UNSPECIFIED")
MARKETPLACE_LEVELS = {
    "ALLOW_ALL": ("any Marketplace app", "fail"),
    "ALLOW_LISTED_APPS": ("allowlisted Marketplace apps only", "pass"),
    "ALLOW_NONE": ("no Marketplace app", "pass"),
}
MISSING = object()


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    expected: str
    fix: str
    requirement: str = "SHALL"


CHECKS = {
    "10.1": Check(
        "GWS.COMMONCONTROLS.10.1", "Third-party apps cannot reach Google services unless trusted",
        "Every Google service restricted: only trusted apps can access it",
        f"{API_CONTROLS} > Manage Google Services: select all services > Change access > "
        "Restricted: Only trusted apps can access a service"),
    "10.2": Check(
        "GWS.COMMONCONTROLS.10.2", "Users cannot give untrusted apps even low-risk access to Google services",
        "Every service restricted for all scopes: users cannot give untrusted apps scopes that aren't high-risk",
        f"{API_CONTROLS} > Manage Google Services > Change access: uncheck \"For apps that are not trusted, allow "
        "users to give access to OAuth scopes that aren't classified as high-risk\""),
    "10.3": Check(
        "GWS.COMMONCONTROLS.10.3", "Internal apps are not trusted automatically", "Trust internal apps: off",
        f"{API_CONTROLS} > Settings > Internal apps: uncheck Trust internal apps"),
    "10.4": Check(
        "GWS.COMMONCONTROLS.10.4", "Users cannot sign in to unconfigured third-party apps",
        "Don't allow users to access any third-party apps (only apps IT configured)",
        f"{API_CONTROLS} > Settings > Unconfigured third-party apps: Don't allow users to access any third-party apps"),
    "under18": Check(
        "APPINV.GWS.UNDER18", "Students under 18 cannot sign in to unconfigured third-party apps",
        "For users designated as under 18: don't allow access to any unconfigured third-party app",
        f"{API_CONTROLS} > Settings > Unconfigured third-party apps, the setting for users designated as under 18 "
        f"(their requests wait in API controls > Apps pending review). {NO_API_NOTE}"),
    "11.1": Check(
        "GWS.COMMONCONTROLS.11.1", "Only allowlisted Marketplace apps can be installed",
        "Allow users to install and run allowlisted apps from the Marketplace, with no exception for internal apps",
        "Admin console > Apps > Google Workspace Marketplace apps > Settings: allowlisted apps only; uncheck "
        "\"Allow exception for internal apps\""),
    "classroom": Check(
        "GWS.CLASSROOM.2.1", "Users cannot let apps read their Classroom data",
        "Users can authorize apps to access their Google Classroom data: off",
        "Admin console > Apps > Google Workspace > Classroom > Data access: uncheck \"Users can authorize apps to "
        "access their Google Classroom data\"", requirement="SHOULD"),
}


def field(value: dict[str, Any], name: str) -> Any:
    """A setting's field by its documented name (access_level) or as the API spells it (accessLevel)."""
    camel = re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), name)
    for key in (name, camel):
        if key in value:
            return value[key]
    return MISSING


@dataclass(frozen=True, order=True)
class Scope:
    """Where a policy applies: an org unit (by path when the names were read, else its id) or a group."""

    kind: str  # "org_unit" | "group"
    name: str


def policy_scope(policy: dict[str, Any], org_units: dict[str, str] | None) -> Scope:
    query = policy.get("policyQuery") or {}
    if query.get("group"):
        return Scope("group", str(query["group"]))
    unit = str(query.get("orgUnit") or "")
    unit_id = unit.removeprefix("orgUnits/")
    if org_units is not None and unit_id in org_units:
        return Scope("org_unit", org_units[unit_id])
    return Scope("org_unit", unit or "/")


def reduce_policies(policies: Iterable[dict[str, Any]], org_units: dict[str, str] | None) -> dict[str, dict[Scope, dict]]:
    """{setting (without "settings/"): {scope: value}}: per setting and scope, the policy with the highest sortOrder."""
    best: dict[tuple[str, Scope], tuple[float, dict]] = {}
    for policy in policies:
        setting = policy.get("setting") or {}
        kind = str(setting.get("type") or "").removeprefix("settings/")
        if kind not in SETTINGS:
            continue
        scope = policy_scope(policy, org_units)
        try:
            order = float((policy.get("policyQuery") or {}).get("sortOrder") or 0)
        except (TypeError, ValueError):
            order = 0.0
        value = setting.get("value") if isinstance(setting.get("value"), dict) else {}
        if (kind, scope) not in best or order > best[(kind, scope)][0]:
            best[(kind, scope)] = (order, value)
    reduced: dict[str, dict[Scope, dict]] = {kind: {} for kind in SETTINGS}
    for (kind, scope), (_, value) in sorted(best.items(), key=lambda item: (item[0][0], item[0][1])):
        reduced[kind][scope] = value
    return reduced


def google_findings(policies: Iterable[dict[str, Any]], org_units: dict[str, str] | None) -> list[PostureFinding]:
    """Every check's findings for the tenant's policies. `org_units` maps org unit ids (without
    "id:") to paths; None when the names could not be read (scopes then show the ids)."""
    settings = reduce_policies(policies, org_units)
    findings = _services(settings[GOOGLE_SERVICES])
    findings += _per_scope(CHECKS["10.3"], INTERNAL_APPS, settings, _internal_apps)
    findings += _per_scope(CHECKS["10.4"], UNCONFIGURED_APPS, settings,
                           _unconfigured("access_level", ACCESS_LEVELS, (), "users"))
    findings += _per_scope(CHECKS["under18"], UNCONFIGURED_APPS, settings,
                           _unconfigured("access_level_under18", UNDER18_LEVELS, UNDER18_UNSPECIFIED, "users designated under 18"))
    findings += _per_scope(CHECKS["11.1"], MARKETPLACE, settings, _marketplace)
    findings += _per_scope(CHECKS["classroom"], CLASSROOM, settings, _classroom)
    return findings


def unknown_findings(reason: str) -> list[PostureFinding]:
    """Every check, `unknown` for the tenant: the settings could not be read (`reason` says what to do)."""
    return [_finding(check, Scope("tenant", ""), "not read", "unknown", reason) for check in CHECKS.values()]


# -- the checks ---------------------------------------------------------------------------------

Judged = tuple[str, str, str]  # (actual, result, reason)


def _finding(check: Check, scope: Scope, actual: str, result: str, reason: str = "") -> PostureFinding:
    return PostureFinding(check_id=check.id, title=check.title, expected=check.expected, actual=actual, result=result,
                          fix=check.fix, scope_kind=scope.kind, scope=scope.name, reason=reason, requirement=check.requirement)


def _per_scope(check: Check, setting: str, settings: dict[str, dict[Scope, dict]],
               judge: Callable[[dict[str, Any]], Judged]) -> list[PostureFinding]:
    """One finding per org unit or group with a policy of its own; `unknown` if there is none at all."""
    scoped = settings[setting]
    if not scoped:
        return [_finding(check, Scope("tenant", ""), "no policy returned", "unknown",
                         f"Google returned no policy for settings/{setting}; check it in the admin console (see fix)")]
    return [_finding(check, scope, *judge(value)) for scope, value in scoped.items()]


def _unknown_value(name: str, value: Any) -> Judged:
    shown = "missing" if value is MISSING else repr(value)
    return (f"{name} = {shown}", "unknown",
            f"Google sent {name} = {shown}, which this version does not know: check the setting in the admin console")


def _enum(value: Any) -> str | None:
    return value.strip().upper() if isinstance(value, str) else None


def _unconfigured(name: str, levels: dict[str, tuple[str, str]], unspecified: tuple[str, ...],
                  who: str) -> Callable[[dict], Judged]:
    def judge(value: dict[str, Any]) -> Judged:
        raw = field(value, name)
        level = _enum(raw)
        if level in levels:
            words, result = levels[level]
            return f"{who} can sign in to {words} ({raw})", result, ""
        if level in unspecified:
            return (f"not set ({raw})", "unknown",
                    "Google reports no explicit setting for users designated under 18: Education editions block "
                    "unconfigured apps for them by default, other editions have no such users; confirm in the admin console")
        return _unknown_value(name, raw)
    return judge


def _boolean(value: dict[str, Any], name: str, words: tuple[str, str], failing: bool) -> Judged:
    raw = field(value, name)
    if isinstance(raw, bool):
        return f"{words[raw]} ({name} = {str(raw).lower()})", "fail" if raw is failing else "pass", ""
    return _unknown_value(name, raw)


def _internal_apps(value: dict[str, Any]) -> Judged:
    return _boolean(value, "trust_internal_apps", ("internal apps not trusted", "internal apps trusted"), True)


def _classroom(value: dict[str, Any]) -> Judged:
    return _boolean(value, "enable_api_access", ("users cannot authorize apps", "users can authorize apps"), True)


def _marketplace(value: dict[str, Any]) -> Judged:
    raw = field(value, "access_level")
    level = _enum(raw)
    if level not in MARKETPLACE_LEVELS:
        return _unknown_value("access_level", raw)
    words, result = MARKETPLACE_LEVELS[level]
    internal = field(value, "allow_all_internal_apps")
    if internal is not MISSING and not isinstance(internal, bool):
        return _unknown_value("allow_all_internal_apps", internal)
    if internal is True and result == "pass":
        return f"{words}, and any internal app ({raw}, allow_all_internal_apps = true)", "fail", ""
    return f"users can install {words} ({raw})", result, ""


def _services(scoped: dict[Scope, dict]) -> list[PostureFinding]:
    """10.1 and 10.2, for the tenant: the API lists only restricted services (ScubaGoggles), and a
    service's access is set for the whole customer, whatever org unit the policy names."""
    restricted: set[str] = set()
    unreadable: list[str] = []
    for value in scoped.values():
        services = field(value, "services")
        for service in services if isinstance(services, list) else []:
            group = _enum(field(service, "scopes_group")) if isinstance(service, dict) else None
            enabled = field(service, "is_enabled") if isinstance(service, dict) else MISSING
            if group is None or (enabled is not MISSING and not isinstance(enabled, bool)):
                unreadable.append(repr(service))
            elif enabled is not True:  # listed (and not switched on): restricted
                restricted.add(group)
        if services is not MISSING and not isinstance(services, list):
            unreadable.append(repr(services))
    tenant = Scope("tenant", "")
    if unreadable:
        reason = f"Google sent service entries this version cannot read ({', '.join(unreadable)[:300]}): check Manage Google Services"
        return [_finding(CHECKS["10.1"], tenant, "not read", "unknown", reason),
                _finding(CHECKS["10.2"], tenant, "not read", "unknown", reason)]
    unrestricted = [name for name, groups in SERVICES.items() if not restricted & set(groups)]
    low_risk_open = [name for name, groups in SERVICES.items()
                     if any(g.endswith("_HIGH_RISK") for g in restricted & set(groups))
                     and not any(not g.endswith("_HIGH_RISK") for g in restricted & set(groups))]
    first = (_finding(CHECKS["10.1"], tenant, "every service restricted", "pass") if not unrestricted else
             _finding(CHECKS["10.1"], tenant, f"open to any app: {', '.join(unrestricted)}", "fail"))
    # Stricter than ScubaGoggles, which passes 10.2 when no service is restricted at all: then
    # every app can get low-risk scopes everywhere, which is what 10.2 forbids.
    open_parts = ([f"restricted for high-risk scopes only: {', '.join(low_risk_open)}"] if low_risk_open else []) + (
        [f"not restricted at all: {len(unrestricted)} services (see GWS.COMMONCONTROLS.10.1)"] if unrestricted else [])
    second = (_finding(CHECKS["10.2"], tenant, "every service restricted for all scopes", "pass") if not open_parts else
              _finding(CHECKS["10.2"], tenant, "; ".join(open_parts), "fail"))
    return [first, second]
