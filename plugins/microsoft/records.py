"""Microsoft Graph objects -> inventory records. Pure functions, no I/O (tested on recorded shapes).

Ownership of an app comes from its service principal's `appOwnerOrganizationId`:
Microsoft's own tenants -> "first_party"; the district's tenant, or no owner at all
(managed identities, legacy principals) -> "internal"; anyone else -> "third_party".
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, NamedTuple

from scanner import App, Grant, LastUsed, User, classify_role, normalize_timestamp

log = logging.getLogger(__name__)

# The tenants Microsoft registers its own applications in ("Microsoft Services", "Microsoft Corp").
MICROSOFT_TENANTS = frozenset({"f8cdef31-a31e-4b4a-93e4-5f571e91255a", "72f988bf-86f1-41af-91ab-2d7cd011db47"})
DEFAULT_ACCESS_ROLE = "00000000-0000-0000-0000-000000000000"

USER_FIELDS = (
    "id,userPrincipalName,mail,displayName,department,officeLocation,jobTitle,accountEnabled,assignedLicenses,"
    "proxyAddresses"
)
SERVICE_PRINCIPAL_FIELDS = (
    "id,appId,displayName,appDisplayName,appOwnerOrganizationId,publisherName,verifiedPublisher,servicePrincipalType,"
    "accountEnabled,homepage,info,signInAudience,tags"
)


class ServicePrincipal(NamedTuple):
    """What the scan keeps about a service principal (small: a tenant has a few thousand)."""

    id: str  # object id: what grants and assignments refer to
    app_id: str
    name: str
    ownership: str


def ownership(sp: dict, own_tenant_id: str) -> str:
    owner = (sp.get("appOwnerOrganizationId") or "").lower()
    if owner in MICROSOFT_TENANTS:
        return "first_party"
    if not owner or owner == own_tenant_id.lower():
        return "internal"
    return "third_party"


def service_principal_to_app(sp: dict, own_tenant_id: str) -> tuple[ServicePrincipal, App]:
    """The scan's note about a service principal, and the App record for the inventory."""
    verified = sp.get("verifiedPublisher") or {}
    info = sp.get("info") or {}
    verified_name = verified.get("displayName") if verified.get("verifiedPublisherId") else None
    owned = ownership(sp, own_tenant_id)
    name = sp.get("displayName") or sp.get("appDisplayName") or sp["appId"]
    details = {
        "servicePrincipalId": sp["id"], "servicePrincipalType": sp.get("servicePrincipalType"),
        "signInAudience": sp.get("signInAudience"), "appOwnerOrganizationId": sp.get("appOwnerOrganizationId"),
        "accountEnabled": sp.get("accountEnabled"), "verifiedPublisherId": verified.get("verifiedPublisherId"),
        "privacyStatementUrl": info.get("privacyStatementUrl"), "termsOfServiceUrl": info.get("termsOfServiceUrl"),
    }
    app = App(
        id=sp["appId"], name=name, publisher=sp.get("publisherName") or verified.get("displayName") or "",
        verified_publisher=verified_name, ownership=owned,
        homepage=sp.get("homepage") or info.get("marketingUrl") or "",
        details={key: value for key, value in details.items() if value is not None},
    )
    return ServicePrincipal(sp["id"], sp["appId"], name, owned), app


def delegated_grant(grant: dict, clients: dict[str, ServicePrincipal]) -> Grant | None:
    """An oAuth2PermissionGrant as a Grant: one user's (Principal) or everyone's (AllPrincipals).
    None when its client is not a known service principal (deleted meanwhile)."""
    client = clients.get(grant.get("clientId", ""))
    if client is None:
        return None
    resource = clients.get(grant.get("resourceId", ""))
    user_id = grant.get("principalId") if grant.get("consentType") == "Principal" else None
    if grant.get("consentType") == "Principal" and not user_id:
        return None
    return Grant(
        user_id=user_id, app_id=client.app_id, scopes=(grant.get("scope") or "").split(), grant_type="delegated",
        resource=resource.name if resource else grant.get("resourceId", ""),
    )


def application_grants(client: ServicePrincipal, assignments: Iterable[dict], role_names: dict[str, dict[str, str]],
                       resources: dict[str, ServicePrincipal]) -> list[Grant]:
    """An app's application permissions (app role assignments), one Grant per resource API.
    A role id the resource no longer defines is kept as its GUID."""
    by_resource: dict[str, list[str]] = {}
    for assignment in assignments:
        resource_id = assignment.get("resourceId", "")
        role_id = assignment.get("appRoleId", "")
        names = role_names.get(resource_id, {})
        role = "default access" if role_id == DEFAULT_ACCESS_ROLE else names.get(role_id, role_id)
        by_resource.setdefault(resource_id, []).append(role)
    grants = []
    for resource_id, roles in by_resource.items():
        resource = resources.get(resource_id)
        grants.append(Grant(user_id=None, app_id=client.app_id, scopes=sorted(set(roles)), grant_type="application",
                            resource=resource.name if resource else resource_id))
    return grants


def user_record(user: dict, roles: dict[str, Any], sku_names: dict[str, str], groups_of: dict[str, list[str]]) -> User:
    """A Graph user as a User, with its role from [roles] (domain, licence part numbers, groups)."""
    upn = user.get("userPrincipalName") or ""
    mail = user.get("mail") or ""
    skus = [sku_names.get(license.get("skuId", ""), license.get("skuId", "")) for license in user.get("assignedLicenses") or []]
    school = user.get("department") or user.get("officeLocation") or ""
    groups = groups_of.get(user["id"], ())
    role = classify_role(roles, email=upn, org_unit=school, license_skus=skus, groups=groups)
    if role == "staff" and mail and mail.lower() != upn.lower():
        role = classify_role(roles, email=mail, org_unit=school, license_skus=skus, groups=groups)
    return User(id=user["id"], email=mail or upn, name=user.get("displayName") or "", role=role, org_unit=school,
                suspended=user.get("accountEnabled") is False, aliases=account_addresses(user))


def account_addresses(user: dict) -> list[str]:
    """The account's addresses besides its primary one (`mail`, else `userPrincipalName`):
    the sign-in name, and every proxy address of type SMTP ("SMTP:" marks the primary,
    "smtp:" the others; X500:, SIP: and the like are not mail addresses)."""
    upn, mail = user.get("userPrincipalName") or "", user.get("mail") or ""
    addresses = [upn] if upn else []
    for proxy in user.get("proxyAddresses") or []:
        if isinstance(proxy, str) and proxy[:5].lower() == "smtp:" and proxy[5:].strip():
            addresses.append(proxy[5:].strip())
    primary = (mail or upn).lower()
    return [address for address in dict.fromkeys(addresses) if address.lower() != primary]


def last_used(activity: dict) -> LastUsed | None:
    """When the app last signed in as a client (users through it, or itself); else its last sign-in of any kind."""
    def moment(name: str) -> str | None:
        value = (activity.get(name) or {}).get("lastSignInDateTime")
        try:
            return normalize_timestamp(value)
        except ValueError:
            log.debug("ignoring an unreadable sign-in time %r for app %s", value, activity.get("appId"))
            return None

    client_side = [m for m in (moment("delegatedClientSignInActivity"), moment("applicationAuthenticationClientSignInActivity")) if m]
    at = max(client_side) if client_side else moment("lastSignInActivity")
    if not at or not activity.get("appId"):
        return None
    return LastUsed(app_id=activity["appId"], at=at)
