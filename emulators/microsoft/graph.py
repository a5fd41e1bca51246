"""Microsoft Graph as the emulator serves it: routes, real response shapes, paging, $batch,
throttling, permissions and the known misbehaviour of the tenant-wide grants list.

`GraphService.handle()` takes a parsed request and returns status, headers and a
body; the HTTPS server in emulators.microsoft.server does the wire work (latency,
connection resets, truncated bodies). Collections answer with `@odata.context`,
`value` and an `@odata.nextLink` carrying an opaque `$skiptoken`; `$top` (1..999,
default 100), `$select`, simple `$filter` (`eq`, joined by `and`) and `$count` are
honoured; errors have Graph's JSON shape
`{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}`.

Page tokens carry when they were issued. Graph lets a `$skiptoken` expire ("within
minutes", says a Microsoft Q&A answer; our reference notes are silent on it) and then
answers HTTP 400 `Directory_ExpiredPageToken`; the emulator does so for tokens older
than the `skiptoken_lifetime` knob, or for the next tokens `expire_next_skiptokens()`
names, on every paged collection (users, service principals, grants tenant-wide and
per app, group members, the sign-in activity report; inside `$batch` too).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import threading
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from ..clock import Clock
from .signin import IssuedToken, SignInService
from .tenant import GRAPH_APP_ID, AppRoleAssignment, DelegatedGrant, MicrosoftTenant
from .throttle import SlidingWindow, resource_units

MAX_PAGE = 999
DEFAULT_PAGE = 100
MAX_BATCH = 20
JSON_TYPE = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
FAULT_STATUSES = ("429", "500", "503", "504")
FAULT_KINDS = (*FAULT_STATUSES, "reset", "timeout", "truncated")
# Graph's answer to an expired $skiptoken. Status and code: Microsoft Q&A "How to handle
# Directory_ExpiredPageToken error in /v1.0/users" (2025) and public Graph clients that map the
# code (cartography; the Azure AD Graph client library's PageNotAvailableException). The message
# is the one public code quotes (cartography's tests); shared/reference/microsoft-graph.md is silent.
EXPIRED_PAGE_TOKEN = "Directory_ExpiredPageToken"
EXPIRED_PAGE_TOKEN_MESSAGE = "The specified page token value has expired and can no longer be included in your request."


@dataclass
class Knobs:
    """What a test or the benchmark can turn. All JSON-serializable; change with `update()`."""

    latency: float = 0.0  # seconds added to every request (the benchmark uses 0.08)
    ru_budget: float = 8000.0  # resource units per application and tenant per window (a large tenant)
    ru_window: float = 10.0
    reports_limit: int = 5  # identity reports: requests per window per app per tenant
    reports_window: float = 10.0
    retry_after: str = "fractional"  # on 429: "fractional" ("2.128"), "integer" or "absent"
    fault_rate: float = 0.0  # share of Graph requests (and $batch items) that fail
    fault_seed: int = 0
    # "timeout" is not a default kind: each one costs the client its whole read timeout.
    fault_kinds: tuple[str, ...] = ("429", "500", "503", "504", "reset", "truncated")
    fault_retry_after: float = 0.2  # the Retry-After of an injected 429
    fault_stall: float = 1.0  # seconds a "timeout" fault stalls before dropping the connection (> the client's read timeout)
    timeout_mid_body: float = 0.5  # share of "timeout" faults that stall after the headers and half the body, not before answering
    skiptoken_lifetime: float = 0.0  # seconds a $skiptoken stays valid; 0: for ever
    grants_list_unavailable: bool = False  # GET /oauth2PermissionGrants answers 503, as in large tenants
    grants_list_short_pages: bool = False  # ... returns pages shorter than $top (nothing lost)
    grants_list_drop_rate: float = 0.0  # ... silently leaves out this share of grants (incomplete pages)
    token_lifetime: int = 3599  # seconds; under 300 makes MSAL fetch a new token every time
    max_page_size: int = MAX_PAGE  # pages never hold more than this, whatever $top asks (tests page small tenants)
    token_failures: int = 0  # the next this many token requests answer HTTP 500
    # TCP_NODELAY on connections accepted from now on. Off by default, as the scan benchmark's
    # figures were measured; on, an answer no longer waits up to 40 ms for the client's delayed ACK.
    tcp_nodelay: bool = False

    def update(self, **changes: Any) -> None:
        names = {f.name for f in fields(self)}
        for name, value in changes.items():
            if name not in names:
                raise ValueError(f"unknown emulator knob {name!r}; knobs: {', '.join(sorted(names))}")
            if name == "retry_after" and value not in ("fractional", "integer", "absent"):
                raise ValueError("retry_after must be fractional, integer or absent")
            if name == "fault_kinds":
                unknown = set(value) - set(FAULT_KINDS)
                if unknown:
                    raise ValueError(f"unknown fault kinds {sorted(unknown)}; kinds: {', '.join(FAULT_KINDS)}")
                value = tuple(value)
            setattr(self, name, value)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["fault_kinds"] = list(self.fault_kinds)
        return data


class Stats:
    """What the emulator saw: requests by endpoint, batch items, throttling, faults; thread-safe.
    Each event carries the clock's (monotonic) time."""

    def __init__(self, keep_events: int = 200_000, clock: Clock | None = None):
        self.clock = clock or Clock()
        self._lock = threading.Lock()
        self._keep = keep_events
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.counts: Counter[str] = Counter()
            self.endpoints: Counter[str] = Counter()
            self.statuses: Counter[str] = Counter()
            self.faults: Counter[str] = Counter()
            self.events: deque[tuple[float, str, int, bool, str]] = deque(maxlen=self._keep)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def record(self, endpoint: str, status: int, *, in_batch: bool, path: str = "") -> None:
        with self._lock:
            self.endpoints[endpoint] += 1
            self.statuses[str(status)] += 1
            self.events.append((self.clock.monotonic(), endpoint, status, in_batch, path))
            if status == 429:
                self.counts["throttled"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "http_requests": self.counts["http_requests"], "token_requests": self.counts["token_requests"],
                "graph_requests": self.counts["graph_requests"], "batch_envelopes": self.counts["batch_envelopes"],
                "batch_items": self.counts["batch_items"], "throttled": self.counts["throttled"],
                "resource_units": self.counts["resource_units"], "expired_page_tokens": self.counts["expired_page_tokens"],
                "faults": dict(self.faults), "endpoints": dict(self.endpoints), "statuses": dict(self.statuses),
            }

    def events_for(self, text: str) -> list[tuple[float, str, int, bool, str]]:
        """(clock time, endpoint, status, in_batch, path) of recent requests whose endpoint
        ("GET /v1.0/users") or path ("/v1.0/servicePrincipals/<id>/...") contains the text."""
        with self._lock:
            return [event for event in self.events if text in event[1] or text in event[4]]


@dataclass
class GraphRequest:
    method: str
    path: str  # "/v1.0/users"
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""

    @classmethod
    def from_url(cls, method: str, url: str, headers: dict[str, str], body: bytes = b"") -> GraphRequest:
        parts = urlsplit(url)
        return cls(method, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)), headers, body)


@dataclass
class GraphAnswer:
    status: int
    body: Any  # dict (JSON) or str (text/plain)
    headers: dict[str, str] = field(default_factory=dict)


# Application permissions (any one suffices) for each kind of request.
_READ_DIRECTORY = {"Directory.Read.All", "Directory.ReadWrite.All"}
PERMISSIONS = {
    "users": {"User.Read.All", "User.ReadWrite.All", *_READ_DIRECTORY},
    "organization": {"Organization.Read.All", "Organization.ReadWrite.All", *_READ_DIRECTORY},
    "subscribedSkus": {"Organization.Read.All", "Organization.ReadWrite.All", *_READ_DIRECTORY},
    "groups": {"GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", *_READ_DIRECTORY},
    "servicePrincipals": {"Application.Read.All", "Application.ReadWrite.All", *_READ_DIRECTORY},
    "oauth2PermissionGrants": {"DelegatedPermissionGrant.Read.All", "DelegatedPermissionGrant.ReadWrite.All", *_READ_DIRECTORY},
    "reports": {"AuditLog.Read.All", *_READ_DIRECTORY},
    # The consent settings and requests: Directory.Read.All does not reach these (their permission tables).
    "authorizationPolicy": {"Policy.Read.All", "Policy.ReadWrite.Authorization"},
    "adminConsentRequestPolicy": {"Policy.Read.All", "Policy.ReadWrite.ConsentRequest"},
    "consentRequests": {"ConsentRequest.Read.All", "ConsentRequest.ReadWrite.All"},
    "classifications": {"Application.Read.All", "Application.ReadWrite.OwnedBy", *_READ_DIRECTORY},
    # Writes (revocation): the least privileged permission of each API's permission table, and Directory.ReadWrite.All.
    "grantsWrite": {"DelegatedPermissionGrant.ReadWrite.All", "Directory.ReadWrite.All"},
    "assignmentsWrite": {"AppRoleAssignment.ReadWrite.All", "Application.ReadWrite.All", "Directory.ReadWrite.All"},
    "servicePrincipalsWrite": {"Application.ReadWrite.All", "Directory.ReadWrite.All"},
}
MAX_SCOPE_LENGTH = 3850  # oauth2permissiongrant-update.md: the scope property's maximum

USER_PROPERTIES = {
    "id", "accountEnabled", "assignedLicenses", "businessPhones", "city", "companyName", "country", "createdDateTime",
    "department", "displayName", "employeeId", "employeeType", "givenName", "jobTitle", "mail", "mailNickname",
    "mobilePhone", "officeLocation", "onPremisesExtensionAttributes", "onPremisesSyncEnabled", "preferredLanguage",
    "proxyAddresses", "signInActivity", "surname", "usageLocation", "userPrincipalName", "userType",
}
USER_DEFAULT = ("businessPhones", "displayName", "givenName", "id", "jobTitle", "mail", "mobilePhone", "officeLocation",
                "preferredLanguage", "surname", "userPrincipalName")
SP_PROPERTIES = {
    "id", "deletedDateTime", "accountEnabled", "addIns", "alternativeNames", "appDescription", "appDisplayName", "appId",
    "applicationTemplateId", "appOwnerOrganizationId", "appRoleAssignmentRequired", "appRoles", "createdByAppId",
    "customSecurityAttributes", "description", "disabledByMicrosoftStatus", "displayName", "homepage", "info", "isDisabled",
    "keyCredentials", "loginUrl", "logoutUrl", "notes", "notificationEmailAddresses", "oauth2PermissionScopes",
    "passwordCredentials", "preferredSingleSignOnMode", "preferredTokenSigningKeyThumbprint", "replyUrls",
    "resourceSpecificApplicationPermissions", "samlSingleSignOnSettings", "servicePrincipalNames", "servicePrincipalType",
    "signInAudience", "tags", "tokenEncryptionKeyId", "verifiedPublisher", "publisherName", "createdDateTime",
}
GRANT_PROPERTIES = {"id", "clientId", "consentType", "principalId", "resourceId", "scope"}
ASSIGNMENT_PROPERTIES = {"id", "deletedDateTime", "appRoleId", "createdDateTime", "principalDisplayName", "principalId",
                         "principalType", "resourceDisplayName", "resourceId"}
GROUP_PROPERTIES = {"id", "displayName", "description", "mail", "mailEnabled", "securityEnabled", "groupTypes"}
ORGANIZATION_PROPERTIES = {"id", "displayName", "verifiedDomains", "tenantType", "countryLetterCode", "createdDateTime"}
SKU_PROPERTIES = {"id", "accountId", "accountName", "appliesTo", "capabilityStatus", "consumedUnits", "prepaidUnits",
                  "servicePlans", "skuId", "skuPartNumber", "subscriptionIds"}
APP_CONSENT_REQUEST_PROPERTIES = {"id", "appId", "appDisplayName", "consentType", "pendingScopes", "userConsentRequests"}
USER_CONSENT_REQUEST_PROPERTIES = {"id", "reason", "status", "createdDateTime", "createdBy", "approvalId",
                                   "completedDateTime", "customData"}
CLASSIFICATION_PROPERTIES = {"id", "permissionId", "permissionName", "classification"}
SIGN_IN_PROPERTIES = {"id", "appId", "applicationAuthenticationClientSignInActivity",
                      "applicationAuthenticationResourceSignInActivity", "delegatedClientSignInActivity",
                      "delegatedResourceSignInActivity", "lastSignInActivity"}
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
ADVANCED_QUERY = re.compile(r"\s(ne|not)\s|\bnot\(|endsWith\(", re.IGNORECASE)
_EQ = re.compile(r"^\s*(\w+)\s+eq\s+('(?:[^']|'')*'|true|false|null)\s*$", re.IGNORECASE)


@dataclass
class _Route:
    pattern: re.Pattern
    endpoint: str  # how stats name it: "servicePrincipals/{id}/oauth2PermissionGrants"
    handler: str
    kind: str  # throttling cost kind
    permission: str  # key of PERMISSIONS
    beta_only: bool = False


def _route(regex: str, endpoint: str, handler: str, kind: str, permission: str, beta_only: bool = False) -> _Route:
    return _Route(re.compile(regex), endpoint, handler, kind, permission, beta_only)


ROUTES = (
    _route(r"/oauth2PermissionGrants/(?P<id>[^/]+)", "oauth2PermissionGrants/{id}", "_grant", "servicePrincipal",
           "oauth2PermissionGrants"),
    _route(r"/users", "users", "_users", "users", "users"),
    _route(r"/users/\$count", "users/$count", "_users_count", "users", "users"),
    _route(r"/users/(?P<id>[^/]+)", "users/{id}", "_user", "user", "users"),
    _route(r"/organization", "organization", "_organization", "organization", "organization"),
    _route(r"/subscribedSkus", "subscribedSkus", "_subscribed_skus", "subscribedSkus", "subscribedSkus"),
    _route(r"/groups", "groups", "_groups", "groups", "groups"),
    _route(r"/groups/(?P<id>[^/]+)/(?P<nav>members|transitiveMembers)", "groups/{id}/members", "_group_members", "members", "groups"),
    _route(r"/servicePrincipals", "servicePrincipals", "_service_principals", "servicePrincipals", "servicePrincipals"),
    _route(r"/servicePrincipals\(appId='(?P<app_id>[^']+)'\)", "servicePrincipals(appId)", "_service_principal", "servicePrincipal", "servicePrincipals"),
    _route(r"/servicePrincipals/(?P<id>[^/()]+)", "servicePrincipals/{id}", "_service_principal", "servicePrincipal", "servicePrincipals"),
    _route(r"/servicePrincipals/(?P<id>[^/]+)/oauth2PermissionGrants", "servicePrincipals/{id}/oauth2PermissionGrants",
           "_sp_grants", "oauth2PermissionGrants", "oauth2PermissionGrants"),
    _route(r"/servicePrincipals/(?P<id>[^/]+)/appRoleAssignments", "servicePrincipals/{id}/appRoleAssignments",
           "_sp_assignments", "appRoleAssignments", "servicePrincipals"),
    _route(r"/servicePrincipals/(?P<id>[^/]+)/appRoleAssignedTo", "servicePrincipals/{id}/appRoleAssignedTo",
           "_sp_assigned_to", "appRoleAssignments", "servicePrincipals"),
    _route(r"/servicePrincipals/(?P<id>[^/]+)/delegatedPermissionClassifications",
           "servicePrincipals/{id}/delegatedPermissionClassifications", "_classifications", "servicePrincipal", "classifications"),
    _route(r"/servicePrincipals\(appId='(?P<app_id>[^']+)'\)/delegatedPermissionClassifications",
           "servicePrincipals(appId)/delegatedPermissionClassifications", "_classifications", "servicePrincipal",
           "classifications"),
    _route(r"/oauth2PermissionGrants", "oauth2PermissionGrants", "_grants", "oauth2PermissionGrants", "oauth2PermissionGrants"),
    _route(r"/policies/authorizationPolicy", "policies/authorizationPolicy", "_authorization_policy", "policy",
           "authorizationPolicy"),
    _route(r"/policies/adminConsentRequestPolicy", "policies/adminConsentRequestPolicy", "_admin_consent_request_policy",
           "policy", "adminConsentRequestPolicy"),
    _route(r"/identityGovernance/appConsent/appConsentRequests", "identityGovernance/appConsent/appConsentRequests",
           "_app_consent_requests", "consentRequests", "consentRequests"),
    _route(r"/identityGovernance/appConsent/appConsentRequests/(?P<id>[^/]+)/userConsentRequests",
           "identityGovernance/appConsent/appConsentRequests/{id}/userConsentRequests", "_user_consent_requests",
           "consentRequests", "consentRequests"),
    _route(r"/reports/servicePrincipalSignInActivities", "reports/servicePrincipalSignInActivities", "_sign_in_activities",
           "reports", "reports", beta_only=True),
)


# The writes revocation makes (and restore): (method, pattern) -> handler, permission. Graph
# answers 204 with no body to DELETE and PATCH, 201 with the object to POST.
WRITE_ROUTES = (
    ("DELETE", _route(r"/oauth2PermissionGrants/(?P<id>[^/]+)", "oauth2PermissionGrants/{id}", "_delete_grant", "write", "grantsWrite")),
    ("PATCH", _route(r"/oauth2PermissionGrants/(?P<id>[^/]+)", "oauth2PermissionGrants/{id}", "_patch_grant", "write", "grantsWrite")),
    ("POST", _route(r"/oauth2PermissionGrants", "oauth2PermissionGrants", "_create_grant", "write", "grantsWrite")),
    ("DELETE", _route(r"/servicePrincipals/(?P<id>[^/]+)/appRoleAssignedTo/(?P<assignment>[^/]+)",
                      "servicePrincipals/{id}/appRoleAssignedTo/{id}", "_delete_assignment", "write", "assignmentsWrite")),
    ("POST", _route(r"/servicePrincipals/(?P<id>[^/]+)/appRoleAssignedTo", "servicePrincipals/{id}/appRoleAssignedTo",
                    "_create_assignment", "write", "assignmentsWrite")),
    ("PATCH", _route(r"/servicePrincipals/(?P<id>[^/()]+)", "servicePrincipals/{id}", "_patch_service_principal", "write",
                     "servicePrincipalsWrite")),
)


# Handlers that answer from the by-id lookups, which writes keep current: no rebuild before them.
_SINGLE_OBJECTS = {"_grant", "_service_principal", "_user"}


class GraphError(Exception):
    """Raised inside a handler to answer with Graph's error JSON."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


class FaultPicker:
    """Seeded choice of which requests fail and how."""

    def __init__(self, knobs: Knobs):
        self.knobs = knobs
        self._lock = threading.Lock()
        self.reseed()

    def reseed(self) -> None:
        with self._lock:
            self._rng = random.Random(self.knobs.fault_seed)

    def pick(self, kinds: Sequence[str]) -> str | None:
        if self.knobs.fault_rate <= 0 or not kinds:
            return None
        with self._lock:
            if self._rng.random() >= self.knobs.fault_rate:
                return None
            return self._rng.choice(list(kinds))

    def chance(self, share: float) -> bool:
        """True for about this share of calls (seeded)."""
        if share <= 0:
            return False
        with self._lock:
            return self._rng.random() < share

    def shuffle(self, items: list) -> None:
        with self._lock:
            self._rng.shuffle(items)


@dataclass
class _PathRule:
    path_contains: str
    times: int  # requests it still applies to
    payload: Any
    skip: int  # matching requests to let through first


class PathRules:
    """Countdowns for test controls, "the next N requests whose path contains X (after the first K)"; thread-safe."""

    def __init__(self):
        self._rules: list[_PathRule] = []
        self._lock = threading.Lock()

    def add(self, path_contains: str, times: int, payload: Any = True, *, skip: int = 0) -> None:
        with self._lock:
            self._rules.append(_PathRule(path_contains, times, payload, skip))

    def take(self, path: str) -> Any:
        """The payload of the first rule that applies to this request (one fewer left), else None."""
        with self._lock:
            for rule in self._rules:
                if rule.path_contains not in path:
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    continue
                rule.times -= 1
                self._rules = [r for r in self._rules if r.times > 0]
                return rule.payload
        return None


class GraphService:
    """Answers Graph requests for the tenant returned by `tenant()`, by the clock (throttling
    windows, $skiptoken age)."""

    def __init__(self, base_url: str, signin: SignInService, knobs: Knobs, stats: Stats, tenant: Callable[[], MicrosoftTenant],
                 clock: Clock | None = None):
        self.base_url = base_url.rstrip("/")
        self.signin, self.knobs, self.stats, self.tenant = signin, knobs, stats, tenant
        self.clock = clock or Clock()
        self.faults = FaultPicker(knobs)
        self._skiptoken_key = secrets.token_bytes(16)
        self._forced_429 = PathRules()  # payload: the Retry-After, or "absent"
        self._forced_faults = PathRules()  # payload: the fault kind
        self._expiring_skiptokens = PathRules()
        self._token_expiries = PathRules()
        self._writes = threading.Lock()  # one write (and one refresh of the lists after writes) at a time
        self.apply_knobs()

    def apply_knobs(self) -> None:
        """Start throttling windows afresh from the current knobs."""
        self.units = SlidingWindow(self.knobs.ru_budget, self.knobs.ru_window, self.clock)
        self.reports = SlidingWindow(self.knobs.reports_limit, self.knobs.reports_window, self.clock)
        self.faults.reseed()

    def throttle_next(self, path_contains: str, *, retry_after: float | None = 1.0, times: int = 1) -> None:
        """Answer the next `times` requests (or $batch items) whose path contains the text with 429."""
        self._forced_429.add(path_contains, times, "absent" if retry_after is None else retry_after)

    def fault_next(self, path_contains: str, kind: str, *, times: int = 1) -> None:
        """Break the next `times` HTTP requests whose path contains the text with a fault kind
        (see FAULT_KINDS; where a "timeout" stalls follows the timeout_mid_body knob)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; kinds: {', '.join(FAULT_KINDS)}")
        self._forced_faults.add(path_contains, times, kind)

    def forced_fault(self, path: str) -> str | None:
        """The fault that fault_next() asked for on this request, if any (used up by asking)."""
        return self._forced_faults.take(path)

    def expire_next_skiptokens(self, path_contains: str = "", *, times: int = 1) -> None:
        """Refuse the next `times` $skiptokens presented on a path containing the text as expired."""
        self._expiring_skiptokens.add(path_contains, times)

    def expire_tokens_at(self, path_contains: str, *, nth: int = 1) -> None:
        """When the nth request from now whose path contains the text arrives, every access token
        issued so far expires (that request is the first to get 401): a token expiring mid-listing."""
        if nth < 1:
            raise ValueError("nth counts from 1")
        self._token_expiries.add(path_contains, 1, skip=nth - 1)

    # -- entry points ----------------------------------------------------------------------

    def handle(self, request: GraphRequest, *, item_faults: bool = True) -> GraphAnswer:
        """A request that arrived over HTTP (a $batch envelope or a single request).
        `item_faults=False`: no $batch item fails on its own (the envelope itself is about to
        break, so nobody would see those faults)."""
        client_request_id = request.headers.get("client-request-id") or str(uuid.uuid4())
        if self._token_expiries.take(request.path):
            self.signin.expire_all_tokens()
        token, problem = self.signin.check(request.headers.get("authorization"))
        if token is None:
            answer = self._error(401, "InvalidAuthenticationToken", problem, client_request_id)
            answer.headers["WWW-Authenticate"] = 'Bearer realm="", error="invalid_token"'
            self.stats.record("(unauthenticated)", 401, in_batch=False, path=request.path)
            return answer
        version, _, rest = request.path.lstrip("/").partition("/")
        if rest == "$batch" and version in ("v1.0", "beta"):
            if request.method != "POST":
                return self._error(405, "Request_BadRequest", "The $batch endpoint accepts POST only.", client_request_id)
            self.stats.count("batch_envelopes")
            answer = self._batch(request, version, token, client_request_id, item_faults=item_faults)
            self.stats.record(f"POST /{version}/$batch", answer.status, in_batch=False, path=request.path)
            return answer
        return self._dispatch(request, token, client_request_id, in_batch=False)

    def _dispatch(self, request: GraphRequest, token: IssuedToken, client_request_id: str, *, in_batch: bool) -> GraphAnswer:
        version, _, rest = request.path.lstrip("/").partition("/")
        rest = "/" + rest.rstrip("/")
        endpoint = f"{request.method} /{version}{rest}"
        try:
            if version not in ("v1.0", "beta"):
                raise GraphError(400, "BadRequest", f"Invalid version: {version}")
            if request.method != "GET" and any(m == request.method and r.pattern.fullmatch(rest) for m, r in WRITE_ROUTES):
                route, params = next((r, r.pattern.fullmatch(rest).groupdict()) for m, r in WRITE_ROUTES
                                     if m == request.method and r.pattern.fullmatch(rest))
            else:
                route, params = self._match(rest, version)
            endpoint = f"{request.method} /{version}/{route.endpoint}"
            if request.method != "GET" and route.kind != "write":
                raise GraphError(405, "Request_BadRequest", f"The emulator serves {route.endpoint} for GET only.")
            if not token.roles & PERMISSIONS[route.permission]:
                raise GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
            self._throttle(request, route)
            if route.kind == "write":
                with self._writes:
                    answer = getattr(self, route.handler)(request, version, **params)
            else:
                if route.handler not in _SINGLE_OBJECTS and self.tenant().stale:
                    with self._writes:  # a listing after writes: the lists are rebuilt once
                        self.tenant().refresh()
                answer = getattr(self, route.handler)(request, version, **params)
            answer.headers.setdefault("x-ms-resource-unit", str(resource_units(route.kind, request.query)))
        except GraphError as error:
            answer = self._error(error.status, error.code, error.message, client_request_id)
            answer.headers.update(error.headers)
        self.stats.record(endpoint, answer.status, in_batch=in_batch, path=request.path)
        answer.headers.setdefault("client-request-id", client_request_id)
        return answer

    def _match(self, rest: str, version: str) -> tuple[_Route, dict[str, str]]:
        for route in ROUTES:
            match = route.pattern.fullmatch(rest)
            if match and (version == "beta" or not route.beta_only):
                return route, match.groupdict()
        segment = rest.rstrip("/").rsplit("/", 1)[-1] or rest
        raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")

    def _throttle(self, request: GraphRequest, route: _Route) -> None:
        forced = self._forced_429.take(request.path)
        if forced is not None:
            raise self._too_many(None if forced == "absent" else forced, "Tenant_Application/Read")
        if route.kind == "reports":
            wait = self.reports.take(1)
        else:
            units = resource_units(route.kind, request.query)
            wait = self.units.take(units)
            if wait is None:
                self.stats.count("resource_units", units)
        if wait is not None:
            raise self._too_many(wait, "Tenant_Application/Read")

    def _too_many(self, wait: float | None, scope: str) -> GraphError:
        tenant = self.tenant()
        headers = {
            "x-ms-throttle-scope": f"{scope}/{tenant.registration.client_id}/{tenant.tenant_id}",
            "x-ms-throttle-information": "ResourceUnitLimitExceeded",
        }
        value = retry_after_header(wait, self.knobs.retry_after)
        if value is not None:
            headers["Retry-After"] = value
        return GraphError(429, "TooManyRequests", "Please retry again later.", headers)

    def _error(self, status: int, code: str, message: str, client_request_id: str) -> GraphAnswer:
        request_id = str(uuid.uuid4())
        body = {"error": {"code": code, "message": message, "innerError": {
            "date": self.clock.now().strftime("%Y-%m-%dT%H:%M:%S"),
            "request-id": request_id, "client-request-id": client_request_id}}}
        return GraphAnswer(status, body, {"request-id": request_id, "client-request-id": client_request_id})

    def injected_failure(self, kind: str, client_request_id: str) -> GraphAnswer:
        """The answer for an injected 429/500/503/504."""
        if kind == "429":
            error = self._too_many(self.knobs.fault_retry_after, "Tenant_Application/Read")
            answer = self._error(429, error.code, error.message, client_request_id)
            answer.headers.update(error.headers)
            return answer
        code, message = {
            "500": ("InternalServerError", "An internal server error occurred."),
            "503": ("serviceNotAvailable", "Service is temporarily unavailable. Please try again later."),
            "504": ("GatewayTimeout", "The gateway did not receive a response within the specified time period."),
        }[kind]
        return self._error(int(kind), code, message, client_request_id)

    # -- $batch ----------------------------------------------------------------------------

    def _batch(self, request: GraphRequest, version: str, token: IssuedToken, client_request_id: str, *,
               item_faults: bool) -> GraphAnswer:
        try:
            payload = json.loads(request.body or b"{}")
            items = payload["requests"]
            if not isinstance(items, list) or not all(isinstance(i, dict) and "id" in i and "url" in i for i in items):
                raise ValueError
        except (ValueError, KeyError, TypeError):
            return self._error(400, "BadRequest", "Invalid batch payload format.", client_request_id)
        if not items:
            return self._error(400, "BadRequest", "Batch request must contain at least one request.", client_request_id)
        if len(items) > MAX_BATCH:
            return self._error(400, "BadRequest", f"Number of batch requests {len(items)} exceeds the maximum of {MAX_BATCH}.", client_request_id)
        ids = [str(item["id"]).lower() for item in items]
        if len(set(ids)) != len(ids):
            return self._error(400, "BadRequest", "Batch request ids must be unique.", client_request_id)
        known = set(ids)
        for item in items:
            for dependency in item.get("dependsOn") or []:
                if str(dependency).lower() not in known:
                    return self._error(400, "BadRequest", f"Request {item['id']} depends on unknown request {dependency}.", client_request_id)
        self.stats.count("batch_items", len(items))
        statuses: dict[str, int] = {}
        responses = []
        pending = list(items)
        while pending:
            ready = [i for i in pending if all(str(d).lower() in statuses for d in i.get("dependsOn") or [])]
            if not ready:
                return self._error(400, "BadRequest", "Batch requests have circular dependencies.", client_request_id)
            for item in ready:
                pending.remove(item)
                answer = self._batch_item(item, version, token, statuses, item_faults=item_faults)
                statuses[str(item["id"]).lower()] = answer.status
                headers = {"Content-Type": JSON_TYPE if not isinstance(answer.body, str) else "text/plain"}
                headers.update({k: v for k, v in answer.headers.items() if k in ("Retry-After", "x-ms-resource-unit", "x-ms-throttle-scope", "x-ms-throttle-information")})
                responses.append({"id": str(item["id"]), "status": answer.status, "headers": headers, "body": answer.body})
        self.faults.shuffle(responses)  # Graph answers in any order
        return GraphAnswer(200, {"responses": responses})

    def _batch_item(self, item: dict, version: str, token: IssuedToken, statuses: dict[str, int], *,
                    item_faults: bool) -> GraphAnswer:
        item_id = str(item["id"])
        failed = [d for d in item.get("dependsOn") or [] if statuses.get(str(d).lower(), 200) >= 400]
        if failed:
            return self._error(424, "FailedDependency", f"Request {item_id} depends on request {failed[0]}, which failed.", item_id)
        url = str(item["url"])
        if url.startswith("http"):
            return self._error(400, "BadRequest", "Batch request urls must be relative.", item_id)
        headers = {k.lower(): str(v) for k, v in (item.get("headers") or {}).items()}
        inner = GraphRequest.from_url(str(item.get("method", "GET")).upper(), f"/{version}/{url.lstrip('/')}", headers)
        fault = self.faults.pick([k for k in self.knobs.fault_kinds if k in FAULT_STATUSES]) if item_faults else None
        if fault:
            self.stats.fault(f"batch item {fault}")
            answer = self.injected_failure(fault, item_id)
            self.stats.record(f"{inner.method} {GUID.sub('{id}', inner.path)} (injected)", answer.status, in_batch=True, path=inner.path)
            return answer
        return self._dispatch(inner, token, item_id, in_batch=True)

    # -- collections -----------------------------------------------------------------------

    def _collection(self, request: GraphRequest, version: str, items: Sequence, *, context: str, properties: set[str],
                    entity: str, render: Callable[[Any], dict], default_select: Sequence[str] | None = None,
                    short_pages: bool = False, drop_rate: float = 0.0) -> GraphAnswer:
        query = request.query
        top = _page_size(query.get("$top"))
        offset = self._read_skiptoken(query.get("$skiptoken"), request.path)
        selected = _selection(query.get("$select"), properties, entity)
        if "$filter" in query:
            items = _apply_filter(items, query["$filter"], render, properties, request.headers, query)
        top = min(top, max(1, self.knobs.max_page_size))
        take = max(1, top // 2) if short_pages else top
        chunk = items[offset: offset + take]
        next_offset = offset + len(chunk)
        if drop_rate > 0:
            seed = self.knobs.fault_seed
            chunk = [i for i in chunk if zlib.crc32(f"{seed}:{render(i)['id']}".encode()) % 10_000 >= drop_rate * 10_000]
        keys = selected or default_select
        value = [_project(render(i), keys) for i in chunk]
        shown = f"{context}({','.join(selected)})" if selected else context
        body: dict[str, Any] = {"@odata.context": f"{self.base_url}/{version}/$metadata#{shown}"}
        if offset == 0 and query.get("$count", "").lower() == "true":
            if request.headers.get("consistencylevel", "").lower() != "eventual":
                raise GraphError(400, "Request_BadRequest", "$count is not currently supported without the ConsistencyLevel:eventual header.")
            body["@odata.count"] = len(items)
        if next_offset < len(items):
            body["@odata.nextLink"] = self._next_link(request, next_offset)
        body["value"] = value
        return GraphAnswer(200, body)

    def _next_link(self, request: GraphRequest, offset: int) -> str:
        params = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        params["$skiptoken"] = self._skiptoken(offset)
        query = "&".join(f"{k}={quote(v, safe=',()$=:@/')}" for k, v in params.items())
        return f"{self.base_url}{request.path}?{query}"

    def _skiptoken(self, offset: int) -> str:
        # Opaque to clients: version, offset, when issued (ms on the clock), and a MAC so it cannot be forged.
        raw = b"\x03" + offset.to_bytes(8, "big") + self._clock_ms().to_bytes(8, "big")
        mac = hmac.new(self._skiptoken_key, raw, hashlib.sha256).digest()[:10]
        return "RFNwd" + base64.urlsafe_b64encode(raw + mac).decode().rstrip("=")

    def _clock_ms(self) -> int:
        return round(self.clock.monotonic() * 1000)

    def _read_skiptoken(self, token: str | None, path: str) -> int:
        """The offset a $skiptoken stands for; 400 if it is not ours, or has expired."""
        if token is None:
            return 0
        try:
            data = base64.urlsafe_b64decode(token[5:] + "=" * (-len(token[5:]) % 4))
        except ValueError:
            data = b""
        raw, mac = data[:17], data[17:]
        if token[:5] != "RFNwd" or len(raw) != 17 or not hmac.compare_digest(
                mac, hmac.new(self._skiptoken_key, raw, hashlib.sha256).digest()[:10]):
            # The emulator's wording: what Graph says about a token it never issued is not documented.
            raise GraphError(400, "Request_BadRequest", "The $skiptoken value is not valid.")
        offset, issued_ms = int.from_bytes(raw[1:9], "big"), int.from_bytes(raw[9:], "big")
        lifetime = self.knobs.skiptoken_lifetime
        too_old = lifetime > 0 and self._clock_ms() - issued_ms > lifetime * 1000
        if too_old or self._expiring_skiptokens.take(path):
            self.stats.count("expired_page_tokens")
            raise GraphError(400, EXPIRED_PAGE_TOKEN, EXPIRED_PAGE_TOKEN_MESSAGE)
        return offset

    # -- handlers --------------------------------------------------------------------------

    def _users(self, request: GraphRequest, version: str) -> GraphAnswer:
        tenant = self.tenant()
        if "signInActivity" in (request.query.get("$select") or "") and not tenant.premium:
            raise _not_premium()
        return self._collection(request, version, tenant.users, context="users", properties=USER_PROPERTIES,
                                entity="user", render=_user, default_select=USER_DEFAULT)

    def _users_count(self, request: GraphRequest, version: str) -> GraphAnswer:
        if request.headers.get("consistencylevel", "").lower() != "eventual":
            raise GraphError(400, "Request_BadRequest", "Count is not currently supported without the ConsistencyLevel:eventual header.")
        return GraphAnswer(200, str(len(self.tenant().users)))

    def _user(self, request: GraphRequest, version: str, id: str) -> GraphAnswer:
        tenant = self.tenant()
        user = tenant.find_user(id)
        if user is None:
            raise _not_found(id)
        keys = _selection(request.query.get("$select"), USER_PROPERTIES, "user") or USER_DEFAULT
        return GraphAnswer(200, {"@odata.context": f"{self.base_url}/{version}/$metadata#users/$entity", **_project(_user(user), keys)})

    def _organization(self, request: GraphRequest, version: str) -> GraphAnswer:
        tenant = self.tenant()
        organization = {
            "id": tenant.tenant_id, "displayName": tenant.display_name, "tenantType": "AAD", "countryLetterCode": "US",
            "createdDateTime": "2015-08-01T00:00:00Z",
            "verifiedDomains": [{"capabilities": "Email, OfficeCommunicationsOnline", "isDefault": n == 0, "isInitial": False,
                                 "name": name, "type": "Managed"} for n, name in enumerate(tenant.domains)],
        }
        return self._collection(request, version, [organization], context="organization", properties=ORGANIZATION_PROPERTIES,
                                entity="organization", render=lambda o: o)

    def _subscribed_skus(self, request: GraphRequest, version: str) -> GraphAnswer:
        return self._collection(request, version, self.tenant().subscribed_skus, context="subscribedSkus",
                                properties=SKU_PROPERTIES, entity="subscribedSku", render=lambda s: s)

    def _groups(self, request: GraphRequest, version: str) -> GraphAnswer:
        return self._collection(request, version, self.tenant().groups, context="groups", properties=GROUP_PROPERTIES,
                                entity="group", render=_group)

    def _group_members(self, request: GraphRequest, version: str, id: str, nav: str) -> GraphAnswer:
        tenant = self.tenant()
        if id not in tenant.group_by_id:
            raise _not_found(id)
        members = tenant.group_members(id)
        return self._collection(request, version, members, context="directoryObjects", properties=USER_PROPERTIES,
                                entity="directoryObject", render=_member, default_select=("@odata.type", *USER_DEFAULT))

    def _service_principals(self, request: GraphRequest, version: str) -> GraphAnswer:
        return self._collection(request, version, self.tenant().service_principals, context="servicePrincipals",
                                properties=SP_PROPERTIES, entity="servicePrincipal", render=lambda sp: sp)

    def _service_principal(self, request: GraphRequest, version: str, id: str | None = None, app_id: str | None = None) -> GraphAnswer:
        tenant = self.tenant()
        sp = tenant.sp_by_id.get(id) if id else tenant.sp_by_app_id.get(app_id)
        if sp is None:
            raise _not_found(id or app_id)
        keys = _selection(request.query.get("$select"), SP_PROPERTIES, "servicePrincipal")
        return GraphAnswer(200, {"@odata.context": f"{self.base_url}/{version}/$metadata#servicePrincipals/$entity", **_project(sp, keys)})

    def _sp_grants(self, request: GraphRequest, version: str, id: str) -> GraphAnswer:
        tenant = self.tenant()
        if id not in tenant.sp_by_id:
            raise _not_found(id)
        return self._collection(request, version, tenant.grants_by_client.get(id, []),
                                context=f"servicePrincipals('{id}')/oauth2PermissionGrants", properties=GRANT_PROPERTIES,
                                entity="oAuth2PermissionGrant", render=_grant)

    def _grants(self, request: GraphRequest, version: str) -> GraphAnswer:
        if self.knobs.grants_list_unavailable:
            raise GraphError(503, "serviceNotAvailable", "Service is temporarily unavailable. Please try again later.",
                             {"Retry-After": "1"} if self.knobs.retry_after != "absent" else {})
        return self._collection(request, version, self.tenant().grants, context="oauth2PermissionGrants",
                                properties=GRANT_PROPERTIES, entity="oAuth2PermissionGrant", render=_grant,
                                short_pages=self.knobs.grants_list_short_pages, drop_rate=self.knobs.grants_list_drop_rate)

    def _sp_assignments(self, request: GraphRequest, version: str, id: str) -> GraphAnswer:
        tenant = self.tenant()
        if id not in tenant.sp_by_id:
            raise _not_found(id)
        return self._collection(request, version, tenant.assignments_by_principal.get(id, []), context="appRoleAssignments",
                                properties=ASSIGNMENT_PROPERTIES, entity="appRoleAssignment",
                                render=lambda a: _assignment(a, tenant))

    def _sp_assigned_to(self, request: GraphRequest, version: str, id: str) -> GraphAnswer:
        tenant = self.tenant()
        if id not in tenant.sp_by_id:
            raise _not_found(id)
        return self._collection(request, version, tenant.assignments_by_resource.get(id, []),
                                context=f"servicePrincipals('{id}')/appRoleAssignedTo", properties=ASSIGNMENT_PROPERTIES,
                                entity="appRoleAssignment", render=lambda a: _assignment(a, tenant))

    def _sign_in_activities(self, request: GraphRequest, version: str) -> GraphAnswer:
        tenant = self.tenant()
        if not tenant.premium:
            raise _not_premium()
        return self._collection(request, version, list(tenant.sign_in_activities.values()),
                                context="reports/servicePrincipalSignInActivities", properties=SIGN_IN_PROPERTIES,
                                entity="servicePrincipalSignInActivity", render=lambda a: a)


    # -- single grants and the writes of revocation -----------------------------------------

    def _grant(self, request: GraphRequest, version: str, id: str) -> GraphAnswer:
        grant = self.tenant().grant_by_id(id)
        if grant is None:
            raise _not_found(id)
        return GraphAnswer(200, {"@odata.context": f"{self.base_url}/{version}/$metadata#oauth2PermissionGrants/$entity", **_grant(grant)})

    def _delete_grant(self, request: GraphRequest, version: str, id: str) -> GraphAnswer:
        if not self.tenant().delete_grant(id):
            raise _not_found(id)
        return GraphAnswer(204, "")

    def _patch_grant(self, request: GraphRequest, version: str, id: str) -> GraphAnswer:
        body = _json_body(request)
        scope = body.get("scope")
        if set(body) - {"scope", "expiryTime", "startTime"} or not isinstance(scope, str):
            raise GraphError(400, "Request_BadRequest", "Invalid value specified for property 'scope' of resource 'OAuth2PermissionGrant'.")
        if len(scope) > MAX_SCOPE_LENGTH:
            raise GraphError(400, "Request_BadRequest", f"The scope property is limited to {MAX_SCOPE_LENGTH} characters.")
        if self.tenant().set_grant_scope(id, scope) is None:
            raise _not_found(id)
        return GraphAnswer(204, "")

    def _create_grant(self, request: GraphRequest, version: str) -> GraphAnswer:
        body = _json_body(request)
        tenant = self.tenant()
        consent_type = body.get("consentType")
        principal = body.get("principalId")
        if (consent_type not in ("Principal", "AllPrincipals") or (consent_type == "Principal") != bool(principal)
                or body.get("clientId") not in tenant.sp_by_id or body.get("resourceId") not in tenant.sp_by_id
                or (principal and principal not in tenant.user_by_id)):
            raise GraphError(400, "Request_BadRequest", "One or more properties contains invalid values.")
        grant = tenant.create_grant(body["clientId"], consent_type, principal, body["resourceId"], str(body.get("scope") or ""))
        if grant is None:
            raise GraphError(409, "Request_MultipleObjectsWithSameKeyValue", "Permission entry already exists.")
        return GraphAnswer(201, {"@odata.context": f"{self.base_url}/{version}/$metadata#oauth2PermissionGrants/$entity", **_grant(grant)})

    def _delete_assignment(self, request: GraphRequest, version: str, id: str, assignment: str) -> GraphAnswer:
        tenant = self.tenant()
        if id not in tenant.sp_by_id:
            raise _not_found(id)
        if not tenant.delete_assignment(id, assignment):
            raise _not_found(assignment)
        return GraphAnswer(204, "")

    def _create_assignment(self, request: GraphRequest, version: str, id: str) -> GraphAnswer:
        body = _json_body(request)
        tenant = self.tenant()
        resource = tenant.sp_by_id.get(id)
        if resource is None:
            raise _not_found(id)
        roles = {role["id"] for role in resource.get("appRoles", [])}
        if body.get("resourceId") != id or body.get("principalId") not in tenant.sp_by_id or body.get("appRoleId") not in roles:
            raise GraphError(400, "Request_BadRequest", "One or more properties contains invalid values.")
        created = self.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        made = tenant.create_assignment(body["principalId"], id, body["appRoleId"], created)
        if made is None:
            raise GraphError(409, "Request_BadRequest", "Permission being assigned already exists on the object")
        return GraphAnswer(201, {"@odata.context": f"{self.base_url}/{version}/$metadata#servicePrincipals('{id}')/appRoleAssignedTo/$entity",
                                 **_assignment(made, tenant)})

    def _patch_service_principal(self, request: GraphRequest, version: str, id: str) -> GraphAnswer:
        body = _json_body(request)
        sp = self.tenant().sp_by_id.get(id)
        if sp is None:
            raise _not_found(id)
        if set(body) != {"accountEnabled"} or not isinstance(body["accountEnabled"], bool):
            raise GraphError(400, "Request_BadRequest", "The emulator changes accountEnabled only.")
        sp["accountEnabled"] = body["accountEnabled"]
        return GraphAnswer(204, "")

    # -- the consent settings and requests --------------------------------------------------

    def _authorization_policy(self, request: GraphRequest, version: str) -> GraphAnswer:
        return GraphAnswer(200, {"@odata.context": f"{self.base_url}/{version}/$metadata#policies/authorizationPolicy/$entity",
                                 **self.tenant().authorization_policy})

    def _admin_consent_request_policy(self, request: GraphRequest, version: str) -> GraphAnswer:
        return GraphAnswer(200, {"@odata.context": f"{self.base_url}/{version}/$metadata#policies/adminConsentRequestPolicy/$entity",
                                 **self.tenant().admin_consent_request_policy})

    def _app_consent_requests(self, request: GraphRequest, version: str) -> GraphAnswer:
        # As the docs show it: the list does not expand userConsentRequests (an empty list);
        # who asked and why come from each request's userConsentRequests.
        return self._collection(request, version, self.tenant().app_consent_requests,
                                context="identityGovernance/appConsent/appConsentRequests",
                                properties=APP_CONSENT_REQUEST_PROPERTIES, entity="appConsentRequest",
                                render=lambda r: {**r, "userConsentRequests": []})

    def _user_consent_requests(self, request: GraphRequest, version: str, id: str) -> GraphAnswer:
        found = next((r for r in self.tenant().app_consent_requests if r["id"] == id), None)
        if found is None:
            raise _not_found(id)
        return self._collection(request, version, found["userConsentRequests"],
                                context=f"identityGovernance/appConsent/appConsentRequests('{id}')/userConsentRequests",
                                properties=USER_CONSENT_REQUEST_PROPERTIES, entity="userConsentRequest", render=lambda r: r)

    def _classifications(self, request: GraphRequest, version: str, id: str | None = None, app_id: str | None = None) -> GraphAnswer:
        tenant = self.tenant()
        sp = tenant.sp_by_id.get(id) if id else tenant.sp_by_app_id.get(app_id)
        if sp is None:
            raise _not_found(id or app_id)
        items = tenant.permission_classifications if sp["appId"] == GRAPH_APP_ID else []
        return self._collection(request, version, items,
                                context=f"servicePrincipals('{sp['id']}')/delegatedPermissionClassifications",
                                properties=CLASSIFICATION_PROPERTIES, entity="delegatedPermissionClassification",
                                render=lambda c: c)


# -- rendering and query options --------------------------------------------------------------

def retry_after_header(wait: float | None, style: str) -> str | None:
    """Retry-After as Graph sends it: fractional ("2.128"), whole seconds, or not at all."""
    if wait is None or style == "absent":
        return None
    if style == "integer":
        return str(max(1, math.ceil(wait)))
    return f"{max(wait, 0.001):.3f}"


def _user(user: dict) -> dict:
    return user


def _member(user: dict) -> dict:
    return {"@odata.type": "#microsoft.graph.user", **user}


def _group(group: dict) -> dict:
    return {"id": group["id"], "displayName": group["displayName"], "description": None, "mail": None,
            "mailEnabled": False, "securityEnabled": True, "groupTypes": []}


def _grant(grant: DelegatedGrant) -> dict:
    return {"clientId": grant.client_id, "consentType": grant.consent_type, "id": grant.id,
            "principalId": grant.principal_id, "resourceId": grant.resource_id, "scope": grant.scope}


def _assignment(assignment: AppRoleAssignment, tenant: MicrosoftTenant) -> dict:
    principal = tenant.sp_by_id.get(assignment.principal_id, {})
    resource = tenant.sp_by_id.get(assignment.resource_id, {})
    return {"id": assignment.id, "deletedDateTime": None, "appRoleId": assignment.app_role_id,
            "createdDateTime": assignment.created, "principalDisplayName": principal.get("displayName"),
            "principalId": assignment.principal_id, "principalType": "ServicePrincipal",
            "resourceDisplayName": resource.get("displayName"), "resourceId": assignment.resource_id}


def _project(obj: dict, keys: Sequence[str] | None) -> dict:
    if not keys:
        return dict(obj)
    projected = {"id": obj.get("id")} if "id" not in keys else {}
    if "@odata.type" in obj and "@odata.type" not in keys:
        projected["@odata.type"] = obj["@odata.type"]
    projected.update({key: obj.get(key) for key in keys})
    return projected


def _page_size(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise GraphError(400, "Request_UnsupportedQuery", f"Invalid page size specified: '{value}'. Must be between 1 and {MAX_PAGE} inclusive.")
    return int(value)


def _selection(value: str | None, properties: set[str], entity: str) -> list[str]:
    if not value:
        return []
    selected = [name.strip() for name in value.split(",") if name.strip()]
    for name in selected:
        if name not in properties:
            raise GraphError(400, "Request_BadRequest", f"Could not find a property named '{name}' on type 'microsoft.graph.{entity}'.")
    return selected


def _apply_filter(items: Sequence, expression: str, render: Callable[[Any], dict], properties: set[str],
                  headers: dict[str, str], query: dict[str, str]) -> list:
    if ADVANCED_QUERY.search(expression):
        if headers.get("consistencylevel", "").lower() != "eventual" or query.get("$count", "").lower() != "true":
            raise GraphError(400, "Request_UnsupportedQuery",
                             "Operator 'not' is not supported because the required parameters might be missing. Try adding "
                             "$count=true query parameter and ConsistencyLevel:eventual header. Refer to "
                             "https://aka.ms/graph-docs/advanced-queries for more information")
        raise GraphError(400, "Request_UnsupportedQuery", "Unsupported Query.")
    conditions = []
    for part in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE):
        match = _EQ.match(part)
        if not match or match.group(1) not in properties:
            raise GraphError(400, "Request_UnsupportedQuery", "Unsupported Query.")
        literal = match.group(2)
        value: Any = {"true": True, "false": False, "null": None}.get(literal.lower(), None)
        if literal.startswith("'"):
            value = literal[1:-1].replace("''", "'")
        conditions.append((match.group(1), value))

    def matches(item: Any) -> bool:
        obj = render(item)
        return all((obj.get(name).lower() if isinstance(obj.get(name), str) else obj.get(name))
                   == (value.lower() if isinstance(value, str) else value) for name, value in conditions)

    return [item for item in items if matches(item)]


def _json_body(request: GraphRequest) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.")
    return body


def _not_found(key: str | None) -> GraphError:
    return GraphError(404, "Request_ResourceNotFound",
                      f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.")


def _not_premium() -> GraphError:
    return GraphError(403, "Authentication_RequestFromNonPremiumTenantOrB2CTenant",
                      "Neither tenant is B2C or tenant doesn't have premium license")
