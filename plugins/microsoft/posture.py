"""Microsoft Graph's consent settings and requests -> posture findings and consent requests.
Pure functions, no I/O (tested on recorded shapes).

    microsoft_findings(authorization, admin_consent, classifications)   -> PostureFinding records
    consent_request_records(app_request, user_requests)                 -> ConsentRequest records

Each input is the Graph object, or an `Unread` holding why it could not be read (a missing
permission names the exact one to add): the checks that need it are then `unknown`, and
only those. The checks are CISA ScubaGear's MS.AAD.5.1-5.3, plus one of ours for
`allowUserConsentForRiskyApps`. Policy ids are compared case-insensitively (Microsoft's
docs mix `ManagePermissionGrantsForSelf` and `managePermissionGrantsForSelf`); an id this
module does not know is `unknown`, never a pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from scanner import ConsentRequest, PostureFinding, normalize_timestamp, scope_risk

log = logging.getLogger(__name__)

CONSENT_PAGE = "Microsoft Entra admin center > Identity > Applications > Enterprise applications > Consent and permissions"
SELF_CONSENT = "managepermissiongrantsforself."
# The built-in user consent choices, by policy id (after "ManagePermissionGrantsForSelf.").
USER_CONSENT = {
    "microsoft-user-default-legacy": ("Allow user consent for apps: users can consent to any app, for any permission "
                                      "that does not need an administrator", "fail"),
    "microsoft-user-default-recommended": ("Let Microsoft manage your consent settings: Microsoft, not the district, "
                                           "decides what users may consent to", "fail"),
    "microsoft-user-default-low": ("users can consent to apps from verified publishers, for permissions classified "
                                   "low impact", "pass"),
}


@dataclass(frozen=True)
class Unread:
    """A Graph object the scan could not read, and what to do about it."""

    reason: str


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    expected: str
    fix: str


CHECKS = {
    "5.1": Check("MS.AAD.5.1", "Only administrators can register applications", "Users can register applications: No",
                 "Microsoft Entra admin center > Identity > Users > User settings: Users can register applications: No"),
    "5.2": Check("MS.AAD.5.2", "User consent to apps is restricted",
                 "Do not allow user consent, or allow it only for verified publishers' apps asking for permissions "
                 "classified low impact, none of them risky",
                 f"{CONSENT_PAGE} > User consent settings; the low-impact permissions are under Permission classifications"),
    "risky": Check("APPINV.MS.RISKY_APPS", "Users cannot consent to apps Microsoft flags as risky",
                   "allowUserConsentForRiskyApps: false (Microsoft's default)",
                   "set allowUserConsentForRiskyApps to false on the authorization policy with Microsoft Graph "
                   "(PATCH /policies/authorizationPolicy, permission Policy.ReadWrite.Authorization)"),
    "5.3": Check("MS.AAD.5.3", "An admin consent workflow is configured",
                 "Users can request admin consent to apps they are unable to consent to: Yes, with at least one reviewer",
                 f"{CONSENT_PAGE} > Admin consent settings: Users can request admin consent: Yes; add reviewers"),
}

Judged = tuple[str, str, str]  # (actual, result, reason)


def microsoft_findings(authorization: dict | Unread, admin_consent: dict | Unread,
                       classifications: list[dict] | Unread | None) -> list[PostureFinding]:
    """The tenant's consent posture. `classifications` (the delegatedPermissionClassifications
    on Microsoft Graph) is only needed when users may consent to low-impact permissions."""
    return [
        _finding("5.1", *_judge(authorization, _app_registration)),
        _finding("5.2", *_judge(authorization, lambda policy: _user_consent(policy, classifications))),
        _finding("risky", *_judge(authorization, _risky_apps)),
        _finding("5.3", *_judge(admin_consent, _admin_consent_workflow)),
    ]


def needs_classifications(authorization: dict | Unread) -> bool:
    """Whether the user consent check must read the permission classifications (low-impact consent)."""
    if isinstance(authorization, Unread):
        return False
    return any(policy.lower() == SELF_CONSENT + "microsoft-user-default-low" for policy in _grant_policies(authorization) or ())


def _finding(key: str, actual: str, result: str, reason: str) -> PostureFinding:
    check = CHECKS[key]
    return PostureFinding(check_id=check.id, title=check.title, expected=check.expected, actual=actual, result=result,
                          fix=check.fix, reason=reason)


def _judge(source: dict | Unread, judge) -> Judged:
    if isinstance(source, Unread):
        return "not read", "unknown", source.reason
    return judge(source)


def _unknown(name: str, value: Any) -> Judged:
    shown = "missing" if value is None else repr(value)
    return (f"{name} = {shown}", "unknown",
            f"Graph sent {name} = {shown}, which this version does not know: check the setting in the Entra admin center")


def _app_registration(policy: dict) -> Judged:
    allowed = (policy.get("defaultUserRolePermissions") or {}).get("allowedToCreateApps")
    if not isinstance(allowed, bool):
        return _unknown("defaultUserRolePermissions.allowedToCreateApps", allowed)
    return ("users can register applications" if allowed else "only administrators can register applications",
            "fail" if allowed else "pass", "")


def _grant_policies(policy: dict) -> list[str] | None:
    """The permission grant policies of the default user role: v1.0's field, or beta's name for it."""
    assigned = (policy.get("defaultUserRolePermissions") or {}).get("permissionGrantPoliciesAssigned")
    if assigned is None:
        assigned = policy.get("permissionGrantPolicyIdsAssignedToDefaultUserRole")
    if not isinstance(assigned, list) or not all(isinstance(item, str) for item in assigned):
        return None
    return assigned


def _user_consent(policy: dict, classifications: list[dict] | Unread | None) -> Judged:
    assigned = _grant_policies(policy)
    if assigned is None:
        return _unknown("defaultUserRolePermissions.permissionGrantPoliciesAssigned",
                        (policy.get("defaultUserRolePermissions") or {}).get("permissionGrantPoliciesAssigned"))
    # ManagePermissionGrantsForOwnedResource.* is about developers' consent to their own apps: not this check.
    chosen = [item for item in assigned if item.lower().startswith(SELF_CONSENT)]
    if not chosen:
        return "Do not allow user consent: an administrator consents to every app", "pass", ""
    judged = [_one_consent_policy(item, classifications) for item in chosen]
    for result in ("fail", "unknown", "pass"):  # the worst decides
        if any(j[1] == result for j in judged):
            return "; ".join(j[0] for j in judged), result, "; ".join(j[2] for j in judged if j[2])
    raise AssertionError("unreachable")


def _one_consent_policy(item: str, classifications: list[dict] | Unread | None) -> Judged:
    name = item[len(SELF_CONSENT):].lower()
    if name not in USER_CONSENT:
        return (f"custom consent policy {item}", "unknown",
                f"{item} is not one of Microsoft's built-in choices: review what it lets users consent to in {CONSENT_PAGE}")
    words, result = USER_CONSENT[name]
    if name != "microsoft-user-default-low":
        return f"{words} ({item})", result, ""
    # Low impact is what the district classified low: ScubaGear fails it when a risky permission is among them.
    if classifications is None or isinstance(classifications, Unread):
        reason = classifications.reason if isinstance(classifications, Unread) else "the permission classifications were not read"
        return f"{words} ({item}); which permissions count as low impact was not read", "unknown", reason
    low = sorted({str(c.get("permissionName") or c.get("permissionId")) for c in classifications
                  if str(c.get("classification", "")).lower() == "low"})
    risky = [f"{permission} ({scope_risk('microsoft', permission)} risk)" for permission in low
             if scope_risk("microsoft", permission) != "low"]
    if risky:
        return f"{words}, and these risky permissions are classified low: {', '.join(risky)}", "fail", ""
    return f"{words}: {', '.join(low) or 'none classified'}", "pass", ""


def _risky_apps(policy: dict) -> Judged:
    allowed = policy.get("allowUserConsentForRiskyApps")
    if allowed is None:  # not set: Microsoft documents false as the default
        return "not set (Microsoft's default: users cannot consent to risky apps)", "pass", ""
    if not isinstance(allowed, bool):
        return _unknown("allowUserConsentForRiskyApps", allowed)
    return (("users can consent to apps Microsoft flags as risky", "fail", "") if allowed else
            ("users cannot consent to apps Microsoft flags as risky", "pass", ""))


def _admin_consent_workflow(policy: dict) -> Judged:
    enabled, reviewers = policy.get("isEnabled"), policy.get("reviewers")
    if not isinstance(enabled, bool):
        return _unknown("isEnabled", enabled)
    if not enabled:
        return "users cannot request admin consent: they meet a dead end, or find a way around it", "fail", ""
    if not isinstance(reviewers, list):
        return _unknown("reviewers", reviewers)
    if not reviewers:
        return "requests are on, but nobody is set to review them", "fail", ""
    days = policy.get("requestDurationInDays")
    expiry = f", requests expire after {days} days" if isinstance(days, int) and days > 0 else ""
    return f"users can request admin consent; {len(reviewers)} reviewer(s){expiry}", "pass", ""


def consent_request_records(app_request: dict, user_requests: Iterable[dict]) -> list[ConsentRequest]:
    """One ConsentRequest per person's request (userConsentRequest) for the app of an appConsentRequest."""
    scopes = [str(s.get("displayName")) for s in app_request.get("pendingScopes") or [] if s.get("displayName")]
    records = []
    for asked in user_requests:
        user = (asked.get("createdBy") or {}).get("user") or {}
        records.append(ConsentRequest(
            id=asked["id"], app_id=app_request["appId"], app_name=app_request.get("appDisplayName") or app_request["appId"],
            scopes=scopes, status=str(asked.get("status") or "unknown"), user_id=user.get("id"),
            email=user.get("mail") or user.get("userPrincipalName") or "", user_name=user.get("displayName") or "",
            reason=asked.get("reason") or "", requested_at=_moment(asked, "createdDateTime"),
            completed_at=_moment(asked, "completedDateTime"),
        ))
    return records


def _moment(obj: dict, name: str) -> str | None:
    try:
        return normalize_timestamp(obj.get(name))
    except ValueError:
        log.debug("ignoring an unreadable %s %r", name, obj.get(name))
        return None
