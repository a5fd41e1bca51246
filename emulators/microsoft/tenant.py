"""An Entra ID tenant described by data, as the Microsoft Graph emulator serves it.

A `MicrosoftTenant` holds Graph-shaped objects (users, groups, subscribed SKUs,
service principals, the consent settings: authorization policy, admin consent request
policy, people's requests for admin consent, the permission classifications on Microsoft
Graph) plus the consent data in a compact form (delegated grants and
app role assignments as tuples, since a benchmark tenant holds close to a million
of them). It round-trips through JSON (`to_json` / `from_json`) so a child process
can serve the same tenant; `microsoft_tenant()` turns a synthetic district
(emulators.district) into one, and `build_tenant()` makes one of any size,
deterministic for a seed (`on_demand=True`: emulators.microsoft.on_demand, which makes
accounts and grants when asked for). Each account's id and licence come from a stream of
its own, so any account can be made again alone.

Ids follow what Graph really returns (see /work/shared/reference/microsoft-graph.md):
a delegated grant's id is base64url(clientId, resourceId[, principalId] as
little-endian GUID bytes); an app role assignment's id starts with the principal's
GUID bytes; a sign-in activity's id is base64 of the appId.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from ..apps import App
from ..district import District, Person, build_district

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"
SHAREPOINT_APP_ID = "00000003-0000-0ff1-ce00-000000000000"
OFFICE_MANAGEMENT_APP_ID = "c5393580-f805-4401-95e8-94b7a6ef2fc2"
POWER_BI_APP_ID = "00000009-0000-0000-c000-000000000000"
# The tenants Microsoft registers its own applications in ("Microsoft Services", "Microsoft Corp").
MICROSOFT_SERVICES_TENANT = "f8cdef31-a31e-4b4a-93e4-5f571e91255a"
MICROSOFT_CORP_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"

# Permission ids quoted in the reference; other permissions get stable synthetic GUIDs.
_GRAPH_ROLE_IDS = {
    "Application.Read.All": "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30",
    "Application.ReadWrite.All": "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9",
    "AppRoleAssignment.ReadWrite.All": "06b708a9-e830-4db3-a914-8e69da51d44f",
    "AuditLog.Read.All": "b0afded3-3588-46d8-8b3d-9842eff778da",
    "Calendars.Read": "798ee544-9d2d-430c-a058-570e29e34338",
    "Mail.Read": "810c84a8-4a9e-49e6-bf7d-12d183f40d01",
    "EduAssignments.ReadBasic.All": "6e0a958b-b7fc-4348-b7c4-a6ab9fd3dd0e",
}
_GRAPH_SCOPE_IDS = {
    "User.Read": "e1fe6dd8-ba31-4d61-89e7-88639da4683d",
    "profile": "14dad69e-099b-42c9-810b-d002981feec1",
    "Mail.Read": "570282fd-fa5c-430d-a7fd-fc8dc98a9dca",
}
GRAPH_APP_ROLES = (
    "Application.Read.All", "Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All", "AuditLog.Read.All",
    "Calendars.Read", "DelegatedPermissionGrant.Read.All", "Directory.Read.All", "Directory.ReadWrite.All",
    "EduAssignments.ReadBasic.All", "EduRoster.Read.All", "Files.Read.All", "Group.Read.All", "GroupMember.Read.All",
    "Mail.Read", "Mail.Send", "Organization.Read.All", "Sites.Read.All", "User.Read.All",
    "Policy.Read.All", "ConsentRequest.Read.All",
)
GRAPH_SCOPES = (
    "openid", "profile", "email", "offline_access", "User.Read", "User.ReadBasic.All", "User.Read.All",
    "Mail.Read", "Mail.ReadWrite", "Mail.Send", "Contacts.Read", "Calendars.Read", "Calendars.ReadWrite",
    "Files.Read", "Files.Read.All", "Files.ReadWrite", "Files.ReadWrite.All", "Sites.Read.All",
    "EduRoster.ReadBasic", "EduAssignments.ReadWrite", "Notes.ReadWrite", "OnlineMeetings.ReadWrite",
    "Directory.Read.All", "Directory.AccessAsUser.All", "Group.Read.All", "Tasks.ReadWrite", "Chat.Read",
)
# Scopes only an admin can consent to (permissionScope.type "Admin").
_ADMIN_SCOPES = {"User.Read.All", "Files.Read.All", "Files.ReadWrite.All", "Sites.Read.All", "Directory.Read.All",
                 "Directory.AccessAsUser.All", "Group.Read.All"}

# Education SKUs (part number, skuId) from Microsoft's EDU storage entitlements list.
SKUS = {
    "STANDARDWOFFPACK_STUDENT": "314c4481-f395-4525-be8b-2ec4bb1e9d91",
    "STANDARDWOFFPACK_FACULTY": "94763226-9b3c-4e75-a931-5c89701abe66",
    "M365EDU_A3_STUDENT": "7cfd9a2b-e110-4c39-bf20-c6a3f36a3121",
    "M365EDU_A3_FACULTY": "4b590615-0888-425a-a965-b3bf7789848d",
}


# -- ids -----------------------------------------------------------------------------------

def _le(guid: str) -> bytes:
    return uuid.UUID(guid).bytes_le


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def delegated_grant_id(client_id: str, resource_id: str, principal_id: str | None) -> str:
    """The id Graph gives an oAuth2PermissionGrant (observed format, opaque to clients)."""
    return _b64url(_le(client_id) + _le(resource_id) + (_le(principal_id) if principal_id else b""))


def assignment_id(principal_id: str, resource_id: str, app_role_id: str) -> str:
    """An appRoleAssignment id: the principal's GUID bytes, then 16 opaque bytes."""
    tail = hashlib.sha256(f"{resource_id}:{app_role_id}".encode()).digest()[:16]
    return _b64url(_le(principal_id) + tail)


def sign_in_activity_id(app_id: str) -> str:
    return base64.b64encode(app_id.encode()).decode()


def stable_guid(*parts: str) -> str:
    """A GUID that is always the same for the same parts (synthetic permission and app ids)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "https://emulator.app-inventory.test/" + "/".join(parts)))


def graph_role_id(value: str) -> str:
    return _GRAPH_ROLE_IDS.get(value) or stable_guid("graph-role", value)


def graph_scope_id(value: str) -> str:
    return _GRAPH_SCOPE_IDS.get(value) or stable_guid("graph-scope", value)


# -- the data ------------------------------------------------------------------------------

class DelegatedGrant(NamedTuple):
    """One oAuth2PermissionGrant: clientId and resourceId are service principal object ids."""

    client_id: str
    consent_type: str  # "Principal" | "AllPrincipals"
    principal_id: str | None
    resource_id: str
    scope: str  # space-separated, as Graph stores it (stray spaces and all)

    @property
    def id(self) -> str:
        return delegated_grant_id(self.client_id, self.resource_id, self.principal_id)


class AppRoleAssignment(NamedTuple):
    """An application permission: the client service principal holds an app role of a resource."""

    principal_id: str
    resource_id: str
    app_role_id: str
    created: str

    @property
    def id(self) -> str:
        return assignment_id(self.principal_id, self.resource_id, self.app_role_id)


@dataclass
class AppRegistration:
    """The scanner's own app registration: how it signs in and what it was granted.

    Its granted application permissions are the app role assignments of its service
    principal (appId == client_id) on Microsoft Graph, as in a real tenant.
    """

    client_id: str
    client_secret: str | None = None
    certificate_pem: str | None = None  # the public certificate uploaded to the registration
    secret_expired: bool = False
    # Another registration of the district (revocation's write registration, docs/revoke.md): the
    # application permissions an administrator consented to for it. None: the scanner's own,
    # whose permissions are its service principal's app role assignments.
    roles: list[str] | None = None


# The changes a child-process emulator accepts by name (MicrosoftEmulatorProcess.mutate_tenant).
MUTATIONS = frozenset({"add_grant", "revoke_grants", "add_app_permission", "remove_app_permission",
                       "add_service_principal", "set_premium", "churn", "set_consent_settings", "add_consent_request",
                       "add_registration"})

# The user consent choices of Microsoft Entra (permission grant policies assigned to the default user role).
USER_CONSENT_OFF: tuple[str, ...] = ()
USER_CONSENT_LOW = ("ManagePermissionGrantsForSelf.microsoft-user-default-low",)
USER_CONSENT_LEGACY = ("ManagePermissionGrantsForSelf.microsoft-user-default-legacy",)
USER_CONSENT_RECOMMENDED = ("ManagePermissionGrantsForSelf.microsoft-user-default-recommended",)
DEVELOPER_CONSENT = "ManagePermissionGrantsForOwnedResource.DeveloperConsent"


def authorization_policy(consent: Iterable[str] = USER_CONSENT_LOW, *, allowed_to_create_apps: bool = True,
                         risky_apps: bool | None = False) -> dict:
    """GET /policies/authorizationPolicy as Graph v1.0 returns it (authorizationpolicy-get.md)."""
    policy = {
        "id": "authorizationPolicy", "allowInvitesFrom": "everyone", "allowedToSignUpEmailBasedSubscriptions": True,
        "allowedToUseSSPR": True, "allowEmailVerifiedUsersToJoinOrganization": False, "blockMsolPowerShell": False,
        "displayName": "Authorization Policy",
        "description": "Used to manage authorization related settings across the company.",
        "guestUserRoleId": "10dae51f-b6af-4016-8d66-8c2a99b929b3",
        "defaultUserRolePermissions": {
            "allowedToCreateApps": allowed_to_create_apps, "allowedToCreateSecurityGroups": True,
            "allowedToCreateTenants": True, "allowedToReadBitlockerKeysForOwnedDevice": True,
            "allowedToReadOtherUsers": True,
            "permissionGrantPoliciesAssigned": [*consent, DEVELOPER_CONSENT],
        },
    }
    if risky_apps is not None:
        policy["allowUserConsentForRiskyApps"] = risky_apps
    return policy


def admin_consent_request_policy(enabled: bool = True, reviewers: Iterable[str] = ()) -> dict:
    """GET /policies/adminConsentRequestPolicy: reviewers are user ids (adminconsentrequestpolicy-get.md)."""
    return {"isEnabled": enabled, "notifyReviewers": enabled, "remindersEnabled": enabled,
            "requestDurationInDays": 30 if enabled else 0, "version": 1 if enabled else 0,
            "reviewers": [{"query": f"/users/{user}", "queryType": "MicrosoftGraph", "queryRoot": None} for user in reviewers]}


def permission_classification(permission: str, classification: str = "low") -> dict:
    """A delegatedPermissionClassification on Microsoft Graph's service principal."""
    return {"id": _b64url(uuid.UUID(stable_guid("classification", permission)).bytes)[:22],
            "permissionId": graph_scope_id(permission), "permissionName": permission, "classification": classification}


@dataclass
class MicrosoftTenant:
    """A tenant as data. Call reindex() after changing the lists directly."""

    tenant_id: str
    display_name: str
    domains: list[str]
    registration: AppRegistration
    premium: bool = True  # Entra ID P1/P2: sign-in reports are available
    users: list[dict] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)  # {"id", "displayName", "members": [user ids]}
    subscribed_skus: list[dict] = field(default_factory=list)
    service_principals: list[dict] = field(default_factory=list)
    grants: list[DelegatedGrant] = field(default_factory=list)
    assignments: list[AppRoleAssignment] = field(default_factory=list)
    sign_in_activities: dict[str, dict] = field(default_factory=dict)  # appId -> activity
    authorization_policy: dict = field(default_factory=authorization_policy)
    admin_consent_request_policy: dict = field(default_factory=admin_consent_request_policy)
    app_consent_requests: list[dict] = field(default_factory=list)  # with their userConsentRequests
    permission_classifications: list[dict] = field(default_factory=list)  # on Microsoft Graph's service principal
    other_registrations: list[AppRegistration] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._ids_lock = threading.RLock()  # the by-id lookups: built, read and written by one thread at a time
        self.reindex()

    def reindex(self) -> None:
        """Rebuild the lookups the emulator serves from (each swapped in whole)."""
        with self._ids_lock:
            self._reindex()

    def _reindex(self) -> None:
        self._apply_writes()
        self.sp_by_id = {sp["id"]: sp for sp in self.service_principals}
        self.sp_by_app_id = {sp["appId"]: sp for sp in self.service_principals}
        self.user_by_id = {user["id"]: user for user in self.users}
        self.group_by_id = {group["id"]: group for group in self.groups}
        by_client: dict[str, list[DelegatedGrant]] = defaultdict(list)
        for grant in self.grants:
            by_client[grant.client_id].append(grant)
        self.grants_by_client = dict(by_client)
        by_principal: dict[str, list[AppRoleAssignment]] = defaultdict(list)
        by_resource: dict[str, list[AppRoleAssignment]] = defaultdict(list)
        for assignment in self.assignments:
            by_principal[assignment.principal_id].append(assignment)
            by_resource[assignment.resource_id].append(assignment)
        self.assignments_by_principal = dict(by_principal)
        self.assignments_by_resource = dict(by_resource)
        # Grants and assignments by id, made when a write first needs them (a million grant ids
        # cost seconds a scan benchmark need not spend).
        self._grant_ids: dict[str, DelegatedGrant] | None = None
        self._assignment_ids: dict[str, AppRoleAssignment] | None = None
        self._written = False
        self.stale = False

    def registration_for(self, client_id: str) -> AppRegistration | None:
        """The district's app registration with this client id (the scanner's or another)."""
        return next((r for r in (self.registration, *self.other_registrations) if r.client_id == client_id), None)

    def add_registration(self, client_id: str, client_secret: str, roles: list[str]) -> None:
        """Another app registration with these application permissions (revocation's write registration)."""
        self.other_registrations = [r for r in self.other_registrations if r.client_id != client_id]
        self.other_registrations.append(AppRegistration(client_id, client_secret, roles=list(roles)))

    # -- writes through Graph (revocation) ---------------------------------------------------
    # A write changes the by-id lookups at once (O(1), so revoking ten thousand grants stays
    # cheap) and marks the tenant stale: the lists and other lookups are rebuilt by refresh()
    # before the next listing.

    def grant_ids(self) -> dict[str, DelegatedGrant]:
        with self._ids_lock:
            if self._grant_ids is None:
                self._grant_ids = {grant.id: grant for grant in self.grants}
            return self._grant_ids

    def assignment_ids(self) -> dict[str, AppRoleAssignment]:
        with self._ids_lock:
            if self._assignment_ids is None:
                self._assignment_ids = {assignment.id: assignment for assignment in self.assignments}
            return self._assignment_ids

    def refresh(self) -> None:
        """Bring the lists and lookups up to date after writes (before a listing)."""
        with self._ids_lock:
            if self.stale:
                self._reindex()

    def _apply_writes(self) -> None:
        if getattr(self, "_written", False):
            self.grants = list(self.grant_ids().values())
            self.assignments = list(self.assignment_ids().values())
            self._written = False

    def _wrote(self) -> None:
        self._written = self.stale = True

    def delete_grant(self, grant_id: str) -> bool:
        """DELETE /oauth2PermissionGrants/{id}: False when there is no such grant."""
        with self._ids_lock:
            if self.grant_ids().pop(grant_id, None) is None:
                return False
            self._wrote()
            return True

    def set_grant_scope(self, grant_id: str, scope: str) -> DelegatedGrant | None:
        """PATCH /oauth2PermissionGrants/{id} {"scope"}: the whole list is replaced."""
        with self._ids_lock:
            grant = self.grant_ids().get(grant_id)
            if grant is None:
                return None
            self._grant_ids[grant_id] = grant._replace(scope=scope)
            self._wrote()
            return self._grant_ids[grant_id]

    def create_grant(self, client_id: str, consent_type: str, principal_id: str | None, resource_id: str, scope: str) -> DelegatedGrant | None:
        """POST /oauth2PermissionGrants: None when that client, resource and principal already have one."""
        with self._ids_lock:
            grant = DelegatedGrant(client_id, consent_type, principal_id, resource_id, scope)
            if grant.id in self.grant_ids():
                return None
            self._grant_ids[grant.id] = grant
            self._wrote()
            return grant

    def delete_assignment(self, resource_id: str, assignment_id: str) -> bool:
        """DELETE /servicePrincipals/{resource}/appRoleAssignedTo/{id}."""
        with self._ids_lock:
            assignment = self.assignment_ids().get(assignment_id)
            if assignment is None or assignment.resource_id != resource_id:
                return False
            del self._assignment_ids[assignment_id]
            self._wrote()
            return True

    def create_assignment(self, principal_id: str, resource_id: str, app_role_id: str, created: str) -> AppRoleAssignment | None:
        """POST /servicePrincipals/{resource}/appRoleAssignedTo: None when it exists already."""
        with self._ids_lock:
            assignment = AppRoleAssignment(principal_id, resource_id, app_role_id, created)
            if assignment.id in self.assignment_ids():
                return None
            self._assignment_ids[assignment.id] = assignment
            self._wrote()
            return assignment

    def grant_by_id(self, grant_id: str) -> DelegatedGrant | None:
        """GET /oauth2PermissionGrants/{id}: the current grant, or None."""
        return self.grant_ids().get(grant_id)

    # -- accounts (emulators.lifecycle and the Graph emulator use these, not the lists) ------

    def member_ids(self, *, enabled: bool = False) -> list[str]:
        """The member (not guest) accounts' ids, sorted; `enabled`: only those that can sign in."""
        return sorted(user["id"] for user in self.users
                      if user.get("userType") != "Guest" and (user.get("accountEnabled") or not enabled))

    def disable_users(self, ids: Iterable[str]) -> None:
        """accountEnabled false: the accounts keep their consents."""
        disabled = set(ids)
        for user in self.users:
            if user["id"] in disabled:
                user["accountEnabled"] = False

    def remove_users(self, ids: Iterable[str]) -> None:
        """Delete accounts: their delegated grants and group memberships go with them."""
        self.refresh()  # writes made through Graph first
        removed = set(ids)
        self.users = [user for user in self.users if user["id"] not in removed]
        for group in self.groups:
            group["members"] = [member for member in group["members"] if member not in removed]
        self.grants = [grant for grant in self.grants if grant.principal_id not in removed]
        self.reindex()

    def add_users(self, users: Iterable[dict]) -> None:
        """New accounts (Graph user objects), listed after the others."""
        added = list(users)
        for user in added:
            if user["id"] in self.user_by_id:
                raise ValueError(f"user {user['id']} already exists")
        self.users = self.users + added
        self.reindex()

    def group_members(self, group_id: str) -> Sequence[dict]:
        """The group's current members as user objects (GET /groups/{id}/members)."""
        group = self.group_by_id.get(group_id)
        if group is None:
            return []
        return [self.user_by_id[m] for m in group["members"] if m in self.user_by_id]

    def find_user(self, key: str) -> dict | None:
        """GET /users/{id | userPrincipalName}."""
        return self.user_by_id.get(key) or next((u for u in self.users if u["userPrincipalName"].lower() == key.lower()), None)

    # -- questions the emulator asks -------------------------------------------------------

    def granted_permissions(self, client_id: str) -> set[str]:
        """Application permissions (Graph app role values) the given app holds in this tenant."""
        sp = self.sp_by_app_id.get(client_id)
        graph = self.sp_by_app_id.get(GRAPH_APP_ID)
        if not sp or not graph:
            return set()
        names = {role["id"]: role["value"] for role in graph.get("appRoles", [])}
        return {names[a.app_role_id] for a in self.assignments_by_principal.get(sp["id"], [])
                if a.resource_id == graph["id"] and a.app_role_id in names}

    # -- changes between scans -------------------------------------------------------------

    def add_grant(self, client_app_id: str, scope: str, *, user_id: str | None = None,
                  resource_app_id: str = GRAPH_APP_ID) -> DelegatedGrant:
        """Consent: one user's (Principal) or an admin's for everyone (AllPrincipals, user_id None).
        Replaces an existing grant of the same client, resource and user."""
        self.refresh()
        grant = DelegatedGrant(
            self.sp_by_app_id[client_app_id]["id"], "Principal" if user_id else "AllPrincipals",
            user_id, self.sp_by_app_id[resource_app_id]["id"], scope,
        )
        self.grants = [g for g in self.grants if g.id != grant.id] + [grant]
        self.reindex()
        return grant

    def revoke_grants(self, client_app_id: str, *, user_id: str | None = None) -> int:
        """Remove the app's delegated grants (only this user's, when given). Returns how many."""
        self.refresh()
        client = self.sp_by_app_id[client_app_id]["id"]
        kept = [g for g in self.grants if not (g.client_id == client and (user_id is None or g.principal_id == user_id))]
        removed = len(self.grants) - len(kept)
        self.grants = kept
        self.reindex()
        return removed

    def add_app_permission(self, client_app_id: str, role_value: str, *, resource_app_id: str = GRAPH_APP_ID) -> AppRoleAssignment:
        """Grant an application permission (an app role of the resource) to an app."""
        self.refresh()
        resource = self.sp_by_app_id[resource_app_id]
        role = next((r["id"] for r in resource.get("appRoles", []) if r["value"] == role_value), None)
        if role is None:
            raise KeyError(f"{resource['displayName']} has no app role {role_value!r}")
        assignment = AppRoleAssignment(self.sp_by_app_id[client_app_id]["id"], resource["id"], role, _iso(dt.datetime.now(dt.timezone.utc)))
        self.assignments = [a for a in self.assignments if a.id != assignment.id] + [assignment]
        self.reindex()
        return assignment

    def remove_app_permission(self, client_app_id: str, role_value: str, *, resource_app_id: str = GRAPH_APP_ID) -> None:
        self.refresh()
        resource = self.sp_by_app_id[resource_app_id]
        role_ids = {r["id"] for r in resource.get("appRoles", []) if r["value"] == role_value}
        client = self.sp_by_app_id[client_app_id]["id"]
        self.assignments = [a for a in self.assignments
                            if not (a.principal_id == client and a.resource_id == resource["id"] and a.app_role_id in role_ids)]
        self.reindex()

    def add_service_principal(self, sp: dict) -> dict:
        self.service_principals.append(sp)
        self.reindex()
        return sp

    def churn(self, fraction: float, *, seed: int = 0) -> dict[str, int]:
        """Change the consents of `fraction` of the member accounts: each consents to one more
        app, or one of its consents is removed (one reindex for all, as a benchmark needs)."""
        self.refresh()
        rng = random.Random(seed)
        members = sorted(user["id"] for user in self.users if user.get("userType") != "Guest")
        chosen = set(rng.sample(members, max(1, round(len(members) * fraction)))) if members else set()
        held: dict[str, list[int]] = defaultdict(list)
        scopes_of: dict[str, str] = {}  # client -> what a user consents to for it
        graph = self.sp_by_app_id[GRAPH_APP_ID]["id"]
        for index, grant in enumerate(self.grants):
            if grant.consent_type == "Principal" and grant.resource_id == graph:
                scopes_of.setdefault(grant.client_id, grant.scope)
                if grant.principal_id in chosen:
                    held[grant.principal_id].append(index)
        clients = sorted(scopes_of)
        dropped, added = set(), []
        for user in sorted(chosen):
            if held[user] and rng.random() < 0.5:
                dropped.add(rng.choice(held[user]))
                continue
            holding = {self.grants[index].client_id for index in held[user]}
            candidates = [client for client in clients if client not in holding]
            if candidates:
                client = rng.choice(candidates)
                added.append(DelegatedGrant(client, "Principal", user, graph, scopes_of[client]))
        self.grants = [grant for index, grant in enumerate(self.grants) if index not in dropped] + added
        self.reindex()
        return {"users": len(chosen), "authorized": len(added), "revoked": len(dropped)}

    def set_consent_settings(self, *, authorization: dict | None = None, admin_consent: dict | None = None,
                             classifications: list[dict] | None = None) -> None:
        """Replace the consent settings (what the Entra admin center changes): Graph-shaped objects."""
        if authorization is not None:
            self.authorization_policy = authorization
        if admin_consent is not None:
            self.admin_consent_request_policy = admin_consent
        if classifications is not None:
            self.permission_classifications = classifications

    def add_consent_request(self, app_id: str, app_name: str, scopes: Iterable[str], user_id: str, *, reason: str = "",
                            status: str = "InProgress", created: str | None = None) -> dict:
        """A person asks an administrator to consent to an app: a userConsentRequest under the
        app's appConsentRequest (made if it is the app's first). Returns the person's request."""
        user = self.user_by_id[user_id]
        request = next((r for r in self.app_consent_requests if r["appId"] == app_id), None)
        if request is None:
            request = {"id": stable_guid("app-consent-request", self.tenant_id, app_id), "appId": app_id,
                       "appDisplayName": app_name, "consentType": "Dynamic",
                       "pendingScopes": [{"displayName": scope} for scope in scopes], "userConsentRequests": []}
            self.app_consent_requests.append(request)
        asked = {
            "id": stable_guid("user-consent-request", request["id"], user_id, str(len(request["userConsentRequests"]))),
            "reason": reason, "status": status, "createdDateTime": created or _iso(dt.datetime.now(dt.timezone.utc)),
            "createdBy": {"user": {"id": user["id"], "displayName": user.get("displayName"),
                                   "userPrincipalName": user.get("userPrincipalName"), "mail": user.get("mail")}},
            "approvalId": None, "completedDateTime": None, "customData": None,
        }
        request["userConsentRequests"].append(asked)
        return asked

    def set_premium(self, premium: bool) -> None:
        """Entra ID P1/P2 or not: without it, sign-in reports answer 403."""
        self.premium = bool(premium)

    # -- JSON ------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data; `MicrosoftTenant.from_json(tenant.to_json())` is the same tenant."""
        self.refresh()
        return {
            "tenant_id": self.tenant_id, "display_name": self.display_name, "domains": self.domains,
            "premium": self.premium, "registration": asdict(self.registration),
            "users": self.users, "groups": self.groups, "subscribed_skus": self.subscribed_skus,
            "service_principals": self.service_principals,
            "oauth2_permission_grants": [g._asdict() for g in self.grants],
            "app_role_assignments": [a._asdict() for a in self.assignments],
            "sign_in_activities": self.sign_in_activities,
            "authorization_policy": self.authorization_policy,
            "admin_consent_request_policy": self.admin_consent_request_policy,
            "app_consent_requests": self.app_consent_requests,
            "permission_classifications": self.permission_classifications,
            "other_registrations": [asdict(r) for r in self.other_registrations],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MicrosoftTenant:
        return cls(
            tenant_id=data["tenant_id"], display_name=data["display_name"], domains=list(data["domains"]),
            registration=AppRegistration(**data["registration"]), premium=bool(data.get("premium", True)),
            users=data.get("users", []), groups=data.get("groups", []),
            subscribed_skus=data.get("subscribed_skus", []), service_principals=data.get("service_principals", []),
            grants=[DelegatedGrant(**g) for g in data.get("oauth2_permission_grants", [])],
            assignments=[AppRoleAssignment(**a) for a in data.get("app_role_assignments", [])],
            sign_in_activities=data.get("sign_in_activities", {}),
            authorization_policy=data.get("authorization_policy") or authorization_policy(),
            admin_consent_request_policy=data.get("admin_consent_request_policy") or admin_consent_request_policy(),
            app_consent_requests=data.get("app_consent_requests", []),
            permission_classifications=data.get("permission_classifications", []),
            other_registrations=[AppRegistration(**r) for r in data.get("other_registrations", [])],
        )


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- service principals ----------------------------------------------------------------------

def service_principal(
    *, app_id: str, name: str, owner: str | None, publisher: str | None = None, verified: bool = False,
    sp_type: str = "Application", audience: str = "AzureADMultipleOrgs", homepage: str | None = None,
    app_roles: Iterable[dict] = (), scopes: Iterable[dict] = (), object_id: str | None = None,
    tags: Iterable[str] = ("WindowsAzureActiveDirectoryIntegratedApp",),
) -> dict:
    """A servicePrincipal object with the v1.0 properties the scanner and the portal use."""
    verified_publisher = (
        {"displayName": publisher, "verifiedPublisherId": str(int(hashlib.sha256(name.encode()).hexdigest()[:7], 16)),
         "addedDateTime": "2022-08-01T17:00:00Z"}
        if verified else {"displayName": None, "verifiedPublisherId": None, "addedDateTime": None}
    )
    return {
        "id": object_id or stable_guid("sp", app_id),
        "accountEnabled": True,
        "appDisplayName": name,
        "appId": app_id,
        "appOwnerOrganizationId": owner,
        "appRoleAssignmentRequired": False,
        "appRoles": list(app_roles),
        "disabledByMicrosoftStatus": None,
        "displayName": name,
        "homepage": homepage,
        "info": {"logoUrl": None, "marketingUrl": None, "privacyStatementUrl": homepage and homepage.rstrip("/") + "/privacy",
                 "supportUrl": None, "termsOfServiceUrl": None},
        "oauth2PermissionScopes": list(scopes),
        "publisherName": publisher,
        "replyUrls": [homepage.rstrip("/") + "/auth/microsoft/callback"] if homepage else [],
        "servicePrincipalNames": [app_id],
        "servicePrincipalType": sp_type,
        "signInAudience": audience,
        "tags": list(tags),
        "verifiedPublisher": verified_publisher,
        "createdDateTime": "2023-01-15T12:00:00Z",
    }


def _app_role(value: str, role_id: str) -> dict:
    return {"allowedMemberTypes": ["Application"], "description": f"Allows the app to {value} without a signed-in user.",
            "displayName": value, "id": role_id, "isEnabled": True, "origin": "Application", "value": value}


def _scope(value: str, scope_id: str) -> dict:
    kind = "Admin" if value in _ADMIN_SCOPES else "User"
    return {"adminConsentDescription": f"Allows the app to {value}.", "adminConsentDisplayName": value,
            "id": scope_id, "isEnabled": True, "type": kind, "userConsentDescription": f"Allows the app to {value} for you.",
            "userConsentDisplayName": value, "value": value}


def graph_service_principal() -> dict:
    """The Microsoft Graph resource, with the app roles and scopes the emulated apps use."""
    return service_principal(
        app_id=GRAPH_APP_ID, name="Microsoft Graph", owner=MICROSOFT_SERVICES_TENANT, publisher="Microsoft Services",
        verified=False, audience="AzureADMultipleOrgs", tags=(),
        app_roles=[_app_role(v, graph_role_id(v)) for v in GRAPH_APP_ROLES],
        scopes=[_scope(v, graph_scope_id(v)) for v in GRAPH_SCOPES],
    )


# -- a synthetic district --------------------------------------------------------------------

# Microsoft resources and apps every tenant has (no consents of their own here).
_MICROSOFT_SERVICES = (
    ("Office 365 Exchange Online", EXCHANGE_APP_ID), ("Office 365 Management APIs", OFFICE_MANAGEMENT_APP_ID),
    ("Power BI Service", POWER_BI_APP_ID), ("Microsoft Teams", stable_guid("ms", "teams")),
    ("Microsoft Forms", stable_guid("ms", "forms")), ("OneNote", stable_guid("ms", "onenote")),
    ("Microsoft Intune", stable_guid("ms", "intune")), ("Microsoft Stream Service", stable_guid("ms", "stream")),
    ("Office 365 Search Service", stable_guid("ms", "search")),
)
# Microsoft's own apps live in its "Microsoft Services" tenant, a few in "Microsoft Corp".
_FIRST_PARTY_OWNERS = {"Graph Explorer": MICROSOFT_CORP_TENANT}
SCANNER_APP_NAME = "District App Inventory"
SCANNER_PERMISSIONS = ("Directory.Read.All", "DelegatedPermissionGrant.Read.All", "Application.Read.All", "AuditLog.Read.All",
                       "Policy.Read.All", "ConsentRequest.Read.All")
# What low-impact user consent covers in a typical tenant: signing in and the basic profile.
LOW_IMPACT_PERMISSIONS = ("openid", "profile", "email", "offline_access", "User.Read")
DEFAULT_CLIENT_SECRET = "emulator-secret-do-not-use"
STUDENT_SKU, STAFF_SKU = "STANDARDWOFFPACK_STUDENT", "STANDARDWOFFPACK_FACULTY"
_A3_SKU = {STUDENT_SKU: "M365EDU_A3_STUDENT", STAFF_SKU: "M365EDU_A3_FACULTY"}


def microsoft_tenant(district: District, *, tenant_id: str | None = None, client_id: str | None = None,
                     client_secret: str | None = DEFAULT_CLIENT_SECRET, certificate_pem: str | None = None,
                     permissions: Iterable[str] = SCANNER_PERMISSIONS, premium: bool = True, guests: int = 0) -> MicrosoftTenant:
    """A synthetic district (emulators.district) as Entra ID holds it, the same for the same district.

    Every person, licensed as a student or staff (15% and 30% on A3, 1% unlicensed), disabled
    when suspended, and `guests` guests; the groups "All Students" and "All Staff"; Microsoft
    Graph, SharePoint and Microsoft's other services; the scanner's registration (`client_id`,
    with `permissions` on Graph); a service principal per app on Microsoft, with its admin
    consent for everyone, application permissions and each Microsoft grant (plus SharePoint
    for apps that ask for it); last sign-ins from the grants' last use (`premium`: Entra ID P1).
    Consent settings as many districts have them: users may consent to verified publishers'
    apps for low-impact permissions (sign-in and profile, classified low), anyone may register
    apps (Entra's default), and the admin consent workflow is on, reviewed by the IT
    technician, with the district's requests for admin consent in it.
    """
    rng = random.Random(f"microsoft:{district.seed}")

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    tenant_id = tenant_id or new_id()
    client_id = client_id or new_id()
    users = [member_user(person, district.seed) for person in district.people] + [guest_user(n, district.seed) for n in range(guests)]
    groups = [{"id": group_id(tenant_id, name), "displayName": name,
               "members": [user["id"] for user, person in zip(users, district.people) if (person.role == role)]}
              for name, role in GROUPS]
    parts = _TenantParts(district, tenant_id, client_id, permissions, rng)
    grants = list(parts.admin_grants)
    last_use: dict[str, dt.datetime] = {}
    for grant in district.grants:
        if grant.provider == "microsoft":
            grants += parts.delegated(grant, users[grant.person]["id"], last_use)
    tenant = MicrosoftTenant(
        tenant_id=tenant_id, display_name=district.name, domains=[district.domain, district.student_domain],
        registration=AppRegistration(client_id=client_id, client_secret=client_secret, certificate_pem=certificate_pem),
        premium=premium, users=users, groups=groups, subscribed_skus=parts.skus, service_principals=parts.sps,
        grants=grants, assignments=parts.assignments,
        sign_in_activities=parts.sign_in_activities(last_use),
        admin_consent_request_policy=admin_consent_request_policy(True, [users[0]["id"]] if district.people else []),
        permission_classifications=[permission_classification(p) for p in LOW_IMPACT_PERMISSIONS],
    )
    add_consent_requests(tenant, district.consent_requests, lambda key: users[key]["id"], district.now)
    return tenant


# The district's two groups: (name, the role of their members).
GROUPS = (("All Students", "student"), ("All Staff", "staff"))


def group_id(tenant_id: str, name: str) -> str:
    return stable_guid("group", tenant_id, name)


def _new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _user_rng(seed: int, kind: str, n: int) -> random.Random:
    """Each account's own stream, so any account can be made again alone (emulators.microsoft.on_demand)."""
    return random.Random(f"microsoft:{seed}:{kind}:{n}")


def member_id(seed: int, key: int) -> str:
    """The object id of the district's person `key` (the first draw of their stream)."""
    return _new_id(_user_rng(seed, "user", key))


def member_user(person: Person, seed: int) -> dict:
    """The district's person as an Entra ID member account, the same every time."""
    rng = _user_rng(seed, "user", person.key)
    return _member(person, _new_id(rng), rng)


def guest_id(seed: int, n: int) -> str:
    return _new_id(_user_rng(seed, "guest", n))


def guest_user(n: int, seed: int) -> dict:
    return _guest(n, guest_id(seed, n))


class _TenantParts:
    """What a district's tenant holds besides its people, made in the order microsoft_tenant() draws
    it (shared with emulators.microsoft.on_demand, so both give the same tenant)."""

    def __init__(self, district: Any, tenant_id: str, client_id: str, permissions: Iterable[str], rng: random.Random):
        self.district, self.rng = district, rng
        self.skus = [subscribed_sku(tenant_id, part, sku_id, rng) for part, sku_id in SKUS.items()]
        self.graph = graph = graph_service_principal()
        self.sharepoint = service_principal(
            app_id=SHAREPOINT_APP_ID, name="Office 365 SharePoint Online", owner=MICROSOFT_SERVICES_TENANT,
            publisher="Microsoft Services", tags=(),
            scopes=[_scope(v, stable_guid("spo-scope", v)) for v in ("MyFiles.Read", "AllSites.Read")])
        scanner = service_principal(app_id=client_id, name=SCANNER_APP_NAME, owner=tenant_id, audience="AzureADMyOrg")
        self.sps = sps = [graph, self.sharepoint, scanner]
        sps += [service_principal(app_id=app_id, name=name, owner=MICROSOFT_SERVICES_TENANT, publisher="Microsoft Services", tags=())
                for name, app_id in _MICROSOFT_SERVICES]
        created = _iso(district.now - dt.timedelta(days=200))
        self.assignments = [AppRoleAssignment(scanner["id"], graph["id"], graph_role_id(p), created) for p in permissions]
        self.admin_grants: list[DelegatedGrant] = []
        self.app_sps: dict[int, dict] = {}  # by id() of the App
        for app in district.apps:
            if not app.on_microsoft:
                continue
            sp = self.app_sps[id(app)] = _app_service_principal(app, tenant_id)
            sps.append(sp)
            if app.admin_consent_scopes:
                self.admin_grants.append(DelegatedGrant(sp["id"], "AllPrincipals", None, graph["id"], " ".join(app.admin_consent_scopes)))
            self.assignments += [AppRoleAssignment(sp["id"], graph["id"], graph_role_id(p), created) for p in app.app_permissions]

    def delegated(self, grant: Any, user_id: str, last_use: dict[str, dt.datetime] | None = None) -> list[DelegatedGrant]:
        """One Microsoft grant of the district as delegated grants (Graph, and SharePoint for apps
        that ask for it); its last use goes into `last_use` (appId -> when)."""
        app, sp = grant.app, self.app_sps[id(grant.app)]
        scope = app.microsoft_scope_text if app.microsoft_scope_text and grant.scopes == app.microsoft_scopes else " ".join(grant.scopes)
        made = [DelegatedGrant(sp["id"], "Principal", user_id, self.graph["id"], scope)]
        if app.sharepoint_scopes:
            made.append(DelegatedGrant(sp["id"], "Principal", user_id, self.sharepoint["id"], " ".join(app.sharepoint_scopes)))
        if last_use is not None and grant.last_used_at:
            last_use[sp["appId"]] = max(last_use.get(sp["appId"], grant.last_used_at), grant.last_used_at)
        return made

    def sign_in_activities(self, last_use: dict[str, dt.datetime]) -> dict[str, dict]:
        """Last sign-ins from the grants' last use; apps with admin consent or application
        permissions sign in on their own too."""
        district, rng = self.district, self.rng
        for app in district.apps:
            if app.on_microsoft and (app.admin_consent_scopes or app.app_permissions):
                own = district.now - dt.timedelta(hours=rng.randint(1, 72))
                app_id = self.app_sps[id(app)]["appId"]
                last_use[app_id] = max(last_use.get(app_id, own), own)
        return {app_id: sign_in_activity(app_id, moment, rng) for app_id, moment in last_use.items()}


def add_consent_requests(tenant: MicrosoftTenant, asks: Iterable[Any], user_id: Any, now: dt.datetime) -> None:
    """The district's requests for admin consent, oldest first (`user_id`: a person's key -> object id)."""
    for ask in sorted(asks, key=lambda ask: ask.asked_at):
        expired = ask.asked_at < now - dt.timedelta(days=30)  # requestDurationInDays
        tenant.add_consent_request(ask.app.microsoft_id, ask.app.name, ask.app.microsoft_scopes, user_id(ask.person),
                                   reason=ask.reason, status="Expired" if expired else "InProgress", created=_iso(ask.asked_at))


def build_tenant(users: int = 2000, *, seed: int = 2026, grants_per_user: float | None = None, extra_apps: int = 0,
                 premium: bool = True, client_id: str | None = None, client_secret: str | None = DEFAULT_CLIENT_SECRET,
                 certificate_pem: str | None = None, permissions: Iterable[str] = SCANNER_PERMISSIONS,
                 now: dt.datetime | None = None, on_demand: bool = False) -> MicrosoftTenant:
    """A synthetic district of `users` accounts (and one guest per 500, at least one) as Entra ID
    holds it, the same for the same arguments: emulators.district's generator with the emulators'
    apps and Microsoft's consents only. `grants_per_user` scales the consent rates so the tenant
    holds about that many delegated grants per account (the benchmark uses 8); `extra_apps` adds
    that many small third-party apps. The scanner's own registration gets `permissions` on Graph.
    `on_demand`: the same people, grants drawn per person, made when asked for instead of held
    (emulators.microsoft.on_demand: a million accounts in a few hundred megabytes)."""
    now = now or dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
    if on_demand:
        from ..district_on_demand import OnDemandDistrict
        from .on_demand import OnDemandMicrosoftTenant

        district = OnDemandDistrict(users, seed=seed, grants_per_user=grants_per_user, extra_apps=extra_apps,
                                    providers=("microsoft",), suspended_share=0.02, now=now)
        return OnDemandMicrosoftTenant(district, client_id=client_id, client_secret=client_secret, certificate_pem=certificate_pem,
                                       permissions=permissions, premium=premium, guests=max(1, users // 500))
    district = build_district(users, seed=seed, grants_per_user=grants_per_user, extra_apps=extra_apps,
                              providers=("microsoft",), suspended_share=0.02, now=now)
    return microsoft_tenant(district, client_id=client_id, client_secret=client_secret, certificate_pem=certificate_pem,
                            permissions=permissions, premium=premium, guests=max(1, users // 500))


def _app_service_principal(app: App, tenant_id: str) -> dict:
    owner = {"third_party": stable_guid("vendor-tenant", app.publisher or app.name), "internal": tenant_id,
             "first_party": _FIRST_PARTY_OWNERS.get(app.name, MICROSOFT_SERVICES_TENANT), "managed_identity": None}[app.ownership]
    own = app.ownership in ("internal", "managed_identity")
    return service_principal(
        app_id=app.microsoft_id, name=app.name, owner=owner, publisher=app.publisher or None,
        verified=app.verified and app.ownership == "third_party",
        sp_type="ManagedIdentity" if app.ownership == "managed_identity" else "Application",
        audience="AzureADMyOrg" if own else "AzureADandPersonalMicrosoftAccount", homepage=app.homepage or None,
        tags=() if app.ownership == "managed_identity" else ("WindowsAzureActiveDirectoryIntegratedApp",),
    )


def _member(person: Person, user_id: str, rng: random.Random) -> dict:
    sku = STUDENT_SKU if person.role == "student" else STAFF_SKU
    if rng.random() < (0.15 if person.role == "student" else 0.3):
        sku = _A3_SKU[sku]
    address = person.microsoft_address
    return {
        "id": user_id, "userPrincipalName": address, "mail": address, "displayName": person.name,
        "givenName": person.given, "surname": person.family, "department": person.school, "jobTitle": person.title,
        "officeLocation": person.school, "accountEnabled": not person.suspended, "userType": "Member",
        "assignedLicenses": [{"disabledPlans": [], "skuId": SKUS[sku]}] if rng.random() > 0.01 else [],
        "businessPhones": [], "mobilePhone": None, "preferredLanguage": "en-US",
        # "SMTP:" marks the primary address, "smtp:" the others (Exchange's own X500 and SIP ones too).
        "proxyAddresses": [f"SMTP:{address}", *(f"smtp:{alias}" for alias in person.microsoft_aliases),
                           f"SIP:{address}"],
    }


def _guest(n: int, user_id: str) -> dict:
    """A guest account (a parent, a contractor)."""
    return {
        "id": user_id, "userPrincipalName": f"guest{n}_gmail.com#EXT#@springfieldps.onmicrosoft.com", "mail": f"guest{n}@gmail.com",
        "displayName": f"Guest {n}", "givenName": None, "surname": None, "department": None, "jobTitle": None,
        "officeLocation": None, "accountEnabled": True, "userType": "Guest", "assignedLicenses": [],
        "businessPhones": [], "mobilePhone": None, "preferredLanguage": None, "proxyAddresses": [f"SMTP:guest{n}@gmail.com"],
    }


def subscribed_sku(tenant_id: str, part: str, sku_id: str, rng: random.Random) -> dict:
    return {
        "accountId": tenant_id, "accountName": "Springfield Public Schools", "appliesTo": "User",
        "capabilityStatus": "Enabled", "consumedUnits": rng.randint(100, 5000), "id": f"{tenant_id}_{sku_id}",
        "prepaidUnits": {"enabled": 1000000, "suspended": 0, "warning": 0, "lockedOut": 0},
        "servicePlans": [], "skuId": sku_id, "skuPartNumber": part, "subscriptionIds": [stable_guid("sub", part)],
    }


def sign_in_activity(app_id: str, last: dt.datetime, rng: random.Random) -> dict:
    def activity(moment: dt.datetime | None) -> dict:
        return {"lastSignInDateTime": _iso(moment) if moment else None,
                "lastSignInRequestId": str(uuid.UUID(int=rng.getrandbits(128), version=4)) if moment else None}

    delegated = last
    application = last - dt.timedelta(days=rng.randint(1, 30)) if rng.random() < 0.3 else None
    return {
        "id": sign_in_activity_id(app_id), "appId": app_id,
        "applicationAuthenticationClientSignInActivity": activity(application),
        "applicationAuthenticationResourceSignInActivity": activity(None),
        "delegatedClientSignInActivity": activity(delegated),
        "delegatedResourceSignInActivity": activity(None),
        "lastSignInActivity": activity(last),
    }
