"""The emulated Admin SDK: Directory users and tokens, Reports token activity, and batches.

Shapes follow the discovery documents google-api-python-client ships
(admin.directory_v1.json, admin.reports_v1.json); error bodies follow Google's v1 error
format. Everything here is plain request -> answer logic; emulators.google.server
puts it behind an HTTP server.

    GET    /admin/directory/v1/users                          users.list (customer|domain, maxResults<=500, pageToken, query)
    GET    /admin/directory/v1/users/{userKey}                users.get (an id, a primary address or an alias)
    GET    /admin/directory/v1/users/{userKey}/tokens         tokens.list (no paging; `items` omitted when empty)
    GET    /admin/directory/v1/users/{userKey}/tokens/{id}    tokens.get
    DELETE /admin/directory/v1/users/{userKey}/tokens/{id}    tokens.delete (records a `revoke` event)
    GET    /admin/reports/v1/activity/users/{all|key}/applications/token   activities.list (newest first, 180 days)
    GET    /admin/directory/v1/customer/{customer}/orgunits   orgunits.list (type all | children | allIncludingParent)
    GET    /v1/policies                                       Cloud Identity policies.list (filter, pageSize<=100, pageToken)
    POST   /batch/admin/directory_v1                          multipart/mixed, up to 1000 Directory calls

The Cloud Identity Policy API (cloudidentity.v1.json) answers errors in the newer format
(`status` and `details`, no `errors` list), is for super admins only, has a quota of its own
(429 RESOURCE_EXHAUSTED) and can be off in the service account's project (`policy_api_disabled`:
403 SERVICE_DISABLED). Its `filter` takes what the scanner and Google's examples use:
`setting.type.matches('<RE2>')`, `setting.type == '<type>'` and `customer == "customers/<id>"`
joined by `||` and `&&`. ScubaGoggles saw it answer empty pages before the real ones
(`policy_blank_pages`).

Every call checks the bearer token (401), the impersonated admin (403 forbidden), the
method's scope (403 insufficientPermissions), a per-admin, per-API quota (a token bucket
of `quota_per_minute`: Directory answers 403 userRateLimitExceeded, Reports 503), and then
seeded fault injection. Each batch part is one call for all of these, as at Google.

Fault kinds (`fault_kinds`, drawn by `fault_rate` per call, by `batch_fault_rate` per batch
request and by `token_fault_rate` per token request):

    "429"        429 RESOURCE_EXHAUSTED with a `Retry-After: <retry_after>` header
    "500"        500 backendError
    "503"        503 backendError
    "403"        403 rateLimitExceeded (usageLimits)
    "reset"      the connection is reset (RST) without an answer
    "timeout"    no answer for `stall_seconds` (longer than the client's read timeout), then the
                 connection closes
    "truncated"  status and headers go out but the body is cut short: half the time
                 Content-Length announces the whole body and the connection closes early,
                 half the time it announces the cut body (broken JSON, or for a batch a cut
                 multipart body)

A batch part can only fail with the HTTP kinds: a connection fault hits a whole request.

users.list `query` takes space-separated clauses, all of which must hold (as Google's
search): `email:<prefix>*` (the primary address starts with it; `email:<address>` is the
address itself), `isSuspended=`, `isAdmin=` and `orgUnitPath=` (the unit and every unit
under it, as Google documents). Google's search data can lag behind the directory by up to
36 hours: with `search_lag` set, a user created less than that many seconds ago (by
`creationTime`) is in users.list without a query and in users.get, but no search finds it yet.

Page tokens carry where the listing started. `page_token_lifetime` refuses tokens of a
listing older than that; `expire_page_tokens` ({"users.list": 2}) marks the next tokens a
method hands out as refused. users.list refuses with 503 backendError "Service unavailable.
Please try again", which Google documents for a users.list paged for over 60 minutes
(https://developers.google.com/workspace/admin/directory/v1/guides/troubleshoot-error-codes).
For activities.list the reference (../shared/reference/google-apis.md) and Google's pages
are silent; the emulator answers as for an unknown token, 400 invalid "Invalid page token"
(Google answers bad parameters with 400 invalid, e.g. "Invalid Input" for an empty pageToken).
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import hashlib
import json
import re
import secrets
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import orjson

from ..clock import Clock
from .chrome import ChromeFailure, ChromeManagementAPI
from .oauth import AccessToken, TokenService
from .tenant import RETENTION, DirectoryUser, Event, GoogleTenant, parse_time, rfc3339, to_micros

AUTH = "https://www.googleapis.com/auth/"
USER_SCOPES = {AUTH + "admin.directory.user.readonly", AUTH + "admin.directory.user"}
SECURITY_SCOPES = {AUTH + "admin.directory.user.security"}
REPORTS_SCOPES = {AUTH + "admin.reports.audit.readonly"}
POLICY_SCOPES = {AUTH + "cloud-identity.policies.readonly", AUTH + "cloud-identity.policies"}
ORGUNIT_SCOPES = {AUTH + "admin.directory.orgunit.readonly", AUTH + "admin.directory.orgunit"}
MAX_BATCH = 1000
HTTP_FAULT_KINDS = ("429", "500", "503", "403")  # an error answer
CONNECTION_FAULT_KINDS = ("reset", "timeout", "truncated")  # no (whole) answer
FAULT_KINDS = HTTP_FAULT_KINDS + CONNECTION_FAULT_KINDS
PAGED_METHODS = ("users.list", "activities.list", "policies.list")
# Google documents this answer for a users.list paged through for over 60 minutes.
USERS_PAGE_TOKEN_EXPIRED = ("Service unavailable. Please try again", "backendError")
JSON_TYPE = "application/json; charset=UTF-8"

_USERS = re.compile(r"^/admin/directory/v1/users$")
_USER = re.compile(r"^/admin/directory/v1/users/([^/]+)$")
_TOKENS = re.compile(r"^/admin/directory/v1/users/([^/]+)/tokens$")
_TOKEN = re.compile(r"^/admin/directory/v1/users/([^/]+)/tokens/([^/]+)$")
_ACTIVITIES = re.compile(r"^/admin/reports/v1/activity/users/([^/]+)/applications/([^/]+)$")
_ORGUNITS = re.compile(r"^/admin/directory/v1/customer/([^/]+)/orgunits$")
_POLICIES = re.compile(r"^/v1/policies$")
_RFC3339 = re.compile(r"^(\d\d\d\d)-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:(Z)|([-+])(\d\d):(\d\d))$")
_APPLICATIONS = {
    "access_transparency", "admin", "calendar", "chat", "chrome", "classroom", "context_aware_access", "data_studio",
    "drive", "gcp", "gmail", "groups", "groups_enterprise", "jamboard", "keep", "login", "meet", "mobile", "rules",
    "saml", "token", "user_accounts", "vault",
}


@dataclass
class Knobs:
    """What a test or benchmark can turn. Change at any time (emulator.knobs.fault_rate = 0.1)."""

    latency: float = 0.0  # seconds added to every HTTP response (a batch is one response)
    quota_per_minute: int = 2400  # per impersonated admin and API, refilled continuously
    quota_burst: int | None = None  # bucket size; default a minute's worth
    fault_rate: float = 0.0  # share of API calls (batch parts included) that fail
    fault_seed: int = 0  # the same seed fails the same calls (by path and attempt number)
    # Which faults: HTTP_FAULT_KINDS by default; any of FAULT_KINDS (see the module docstring).
    fault_kinds: tuple[str, ...] = HTTP_FAULT_KINDS
    batch_fault_rate: float = 0.0  # share of batch HTTP requests that fail as a whole (any kind)
    token_fault_rate: float = 0.0  # share of token endpoint requests that fail (any kind but "403")
    retry_after: int = 1  # seconds the Retry-After header of a "429" fault asks for
    stall_seconds: float = 130.0  # a "timeout" fault's silence (the scanner's read timeout is 120 s)
    page_token_lifetime: float | None = None  # seconds a listing's page tokens last (None: forever)
    expire_page_tokens: dict[str, int] = field(default_factory=dict)  # {"users.list": n}: next n tokens refused
    token_lifetime: float = 3600.0  # seconds an access token is accepted
    token_expires_in: int | None = None  # what the token endpoint announces (default: lifetime - 1)
    activity_events: bool = True  # False: an edition that logs no `activity` token events
    reports_error: int | None = None  # 403 or 503: the Reports API refuses every call
    report_lag: float = 0.0  # seconds before an event shows in the Reports API
    delete_after_listed: tuple[str, ...] = ()  # user ids deleted right after users.list returned them
    search_lag: float = 0.0  # seconds before a new user shows in users.list searches (a `query`)
    policy_api_disabled: bool = False  # the Cloud Identity API is off in the service account's project
    policy_blank_pages: int = 0  # policies.list answers this many empty pages (with a nextPageToken) first

    def update(self, **changes: Any) -> None:
        """Change knobs, checking each value first (ValueError names the knob and what it takes)."""
        checked = {name: _checked_knob(self, name, value) for name, value in changes.items()}
        for name, value in checked.items():
            setattr(self, name, value)


def _checked_knob(knobs: Knobs, name: str, value: Any) -> Any:
    if not hasattr(knobs, name):
        raise ValueError(f"unknown emulator knob {name!r}; knobs: {', '.join(asdict(knobs))}")

    def number(low: float, high: float | None = None, *, integer: bool = False) -> Any:
        ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        if not ok or value < low or (high is not None and value > high):
            kind = "an integer" if integer else "a number"
            limits = f"from {low} to {high}" if high is not None else f">= {low}"
            raise ValueError(f"emulator knob {name} must be {kind} {limits}, not {value!r}")
        return value

    if name in ("fault_rate", "batch_fault_rate", "token_fault_rate"):
        return number(0, 1)
    if name in ("latency", "report_lag", "stall_seconds", "token_lifetime", "search_lag"):
        return number(0)
    if name in ("retry_after", "fault_seed"):
        return number(0, integer=True)
    if name == "page_token_lifetime":
        return None if value is None else number(0)
    if name == "fault_kinds":
        kinds = (value,) if isinstance(value, str) else tuple(value)
        unknown = [kind for kind in kinds if kind not in FAULT_KINDS]
        if unknown or not kinds:
            raise ValueError(f"emulator knob fault_kinds: {', '.join(map(repr, unknown)) or 'empty'}; "
                             f"use some of {', '.join(FAULT_KINDS)}")
        return kinds
    if name == "expire_page_tokens":
        if not isinstance(value, dict) or any(method not in PAGED_METHODS for method in value) or any(
                not isinstance(n, int) or isinstance(n, bool) or n < 0 for n in value.values()):
            raise ValueError(f"emulator knob expire_page_tokens must map {', '.join(PAGED_METHODS[:-1])} or {PAGED_METHODS[-1]} to a "
                             f"count >= 0, not {value!r}")
        return dict(value)
    if name == "delete_after_listed":
        return tuple(value)
    if name == "policy_blank_pages":
        return number(0, integer=True)
    if name == "policy_api_disabled":
        if not isinstance(value, bool):
            raise ValueError(f"emulator knob policy_api_disabled must be true or false, not {value!r}")
    return value


@dataclass
class Answer:
    """An HTTP answer, or a connection fault for the HTTP server to act out instead."""

    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    fault: Fault | None = None  # "reset" / "timeout": no answer; "truncated": the body cut short


@dataclass(frozen=True)
class Fault:
    """An injected fault: its kind, and (for "truncated") where the body is cut."""

    kind: str
    share: float = 0.5  # a uniform draw in [0, 1), fixed by the seed

    @property
    def cut_at(self) -> float:
        """The share of the body a truncated answer keeps (0.2 to 0.8)."""
        return 0.2 + 0.6 * self.share

    @property
    def announces_whole_body(self) -> bool:
        """True: Content-Length says the whole body and the connection closes early; False: it says the cut body."""
        return self.share < 0.5

    def cut(self, body: bytes) -> tuple[bytes, int]:
        """(the bytes sent, the Content-Length announced) for a truncated answer."""
        kept = body[:max(1, min(len(body) - 1, int(len(body) * self.cut_at)))]
        return kept, len(body) if self.announces_whole_body else len(kept)


@dataclass
class Reply:
    """One API call's outcome: status, JSON body (None for 204), extra headers, a connection fault."""

    status: int
    payload: dict | None
    headers: dict[str, str] = field(default_factory=dict)
    fault: Fault | None = None


class Stats:
    """Counters: HTTP requests, API calls (batch parts included) by method, quota, faults, auth."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)

        def group(prefix: str) -> dict[str, int]:
            return {k[len(prefix):]: v for k, v in sorted(counts.items()) if k.startswith(prefix)}

        return {
            "http_requests": sum(group("http.").values()),
            "http": group("http."),
            "api_calls": sum(group("call.").values()),
            "calls": group("call."),
            "batch_parts": counts.get("batch.parts", 0),
            "quota_rejected": sum(group("quota.").values()),
            "quota": group("quota."),
            "faults": group("fault."),
            # Calls that came back before the Retry-After of their 429 had passed.
            "retry_after_ignored": counts.get("retry_after.ignored", 0),
            "expired_page_tokens": group("expired."),
            "unauthenticated": counts.get("auth.401", 0),
            "forbidden": counts.get("auth.403", 0),
            "tokens_issued": counts.get("token.issued", 0),
            "token_errors": group("token.error."),
        }


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, burst: float, now: float):
        self.tokens, self.updated = burst, now


def error_body(code: int, message: str, reason: str, *, domain: str = "global", status: str | None = None,
               extra: dict[str, str] | None = None) -> dict[str, Any]:
    """Google's v1 error format."""
    detail = {"message": message, "domain": domain, "reason": reason, **(extra or {})}
    error: dict[str, Any] = {"code": code, "message": message, "errors": [detail]}
    if status:
        error["status"] = status
    return {"error": error}


def rpc_error_body(code: int, message: str, status: str, reason: str | None = None) -> dict[str, Any]:
    """The error format of Google's newer APIs (Cloud Identity): `status`, and the reason in `details`."""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "domain": "googleapis.com", "metadata": {"service": "cloudidentity.googleapis.com"}}]
    return {"error": error}


class Failure(Exception):
    """An API call answered with an error."""

    def __init__(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(code)
        self.code, self.body, self.headers = code, body, headers or {}


def _bad_request(message: str = "Bad Request", reason: str = "badRequest") -> Failure:
    return Failure(400, error_body(400, message, reason))


def _invalid_value(name: str, value: str, low: int, high: int) -> Failure:
    return Failure(400, error_body(400, f"Invalid value '{value}'. Values must be within the range: [{low}, {high}]",
                                   "invalidParameter", extra={"location": name, "locationType": "parameter"}))


def _not_found(what: str) -> Failure:
    return Failure(404, error_body(404, f"Resource Not Found: {what}", "notFound"))


_UNAUTHENTICATED = Failure(401, error_body(
    401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid "
         "authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
    "authError", status="UNAUTHENTICATED", extra={"location": "Authorization", "locationType": "header"}))
_FORBIDDEN = Failure(403, error_body(403, "Not Authorized to access this resource/api", "forbidden"))
_INSUFFICIENT_SCOPES = Failure(403, error_body(403, "Request had insufficient authentication scopes.",
                                               "insufficientPermissions", status="PERMISSION_DENIED"))


class GoogleAPI:
    """Answers Admin SDK calls for one tenant, by its clock (quota, Retry-After, report lag, page tokens)."""

    def __init__(self, tenant: GoogleTenant, knobs: Knobs, stats: Stats, tokens: TokenService, clock: Clock | None = None):
        self.tenant, self.knobs, self.stats, self.tokens = tenant, knobs, stats, tokens
        self.clock = clock or Clock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._attempts: Counter[str] = Counter()
        self._retry_not_before: dict[str, float] = {}  # call -> when its 429's Retry-After has passed
        self._lock = threading.Lock()
        self._etag_salt = secrets.token_hex(4)
        self.chrome = ChromeManagementAPI(lambda: self.tenant.chrome)

    # -- HTTP entry points ------------------------------------------------------------------

    def handle(self, method: str, target: str, headers, body: bytes) -> Answer:
        """One HTTP request (other than the token endpoint and the emulator's controls)."""
        path = urlsplit(target).path
        if method == "POST" and path == "/batch/admin/directory_v1":
            self.stats.add("http.batch")
            return self._batch(headers.get("content-type", ""), headers.get("authorization"), body)
        reply = self.call(method, target, headers.get("authorization"))
        self.stats.add("http." + self._method_name(method, path))
        return Answer(reply.status, b"" if reply.payload is None else _dump(reply.payload), headers=reply.headers,
                      fault=reply.fault)

    def call(self, method: str, target: str, authorization: str | None, *, api: str | None = None,
             delivered: bool = True) -> Reply:
        """One API call (`api`: the API of the batch it is a part of; `delivered` False: the
        client will not get this answer, so a 429's Retry-After binds nobody)."""
        parts = urlsplit(target)
        path, query = parts.path, {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        name = self._method_name(method, path)
        self.stats.add("call." + name)
        key = f"{method} {target}"
        self._note_early_retry(key)
        try:
            if name == "unknown":
                raise _not_found("path")
            if api is not None and not name.startswith(("users.", "tokens.")):
                raise _bad_request(f"Batch requests must all target the same API ({api})")
            reports = name == "activities.list"
            if name == "policies.list":
                token = self._authenticate_policy_api(authorization)
                self._take_quota("policy", token)
            elif name.startswith("chrome."):
                token = self._authenticate_chrome(authorization, ChromeManagementAPI.method(path)[1])
                self._take_quota("chrome", token)
            else:
                scopes = (REPORTS_SCOPES if reports else SECURITY_SCOPES if name.startswith("tokens.")
                          else ORGUNIT_SCOPES if name == "orgunits.list" else USER_SCOPES)
                token = self._authenticate(authorization, scopes)
                self._take_quota("reports" if reports else "directory", token)
            if reports and self.knobs.reports_error:
                raise self._reports_refusal(self.knobs.reports_error)
            # A batch part can fail only with an error answer: the connection is the whole batch's.
            fault = self._fault(key, self.knobs.fault_rate, HTTP_FAULT_KINDS if api else FAULT_KINDS)
            if fault and fault.kind in HTTP_FAULT_KINDS:
                if fault.kind == "429" and delivered:
                    with self._lock:
                        self._retry_not_before[key] = self.clock.monotonic() + self.knobs.retry_after
                raise fault_failure(fault.kind, retry_after=self.knobs.retry_after)
            if fault and fault.kind != "truncated":
                return Reply(0, None, fault=fault)  # dropped before it reached the API
            status, payload = self._dispatch(name, method, path, query)
            return Reply(status, payload, fault=fault)
        except Failure as failure:
            error = failure.body["error"]
            reason = (error.get("errors") or error.get("details") or [{}])[0].get("reason")
            if failure.code in (401, 403) and reason in ("authError", "forbidden", "insufficientPermissions",
                                                         "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "PERMISSION_DENIED"):
                self.stats.add(f"auth.{failure.code}")
            return Reply(failure.code, failure.body, headers=failure.headers)

    def token_fault(self) -> Fault | None:
        """Whether this token endpoint request fails, and how (never with the API's 403 rateLimitExceeded)."""
        kinds = tuple(kind for kind in FAULT_KINDS if kind != "403")
        return self._fault("token", self.knobs.token_fault_rate, kinds, counted_as="token.")

    @staticmethod
    def _method_name(method: str, path: str) -> str:
        chrome = ChromeManagementAPI.method(path)
        if chrome:
            return "chrome." + chrome[0] if method == "GET" else "unknown"
        if _TOKENS.match(path):
            return "tokens.list" if method == "GET" else "unknown"
        if _TOKEN.match(path):
            return {"GET": "tokens.get", "DELETE": "tokens.delete"}.get(method, "unknown")
        if _USERS.match(path):
            return "users.list" if method == "GET" else "unknown"
        if _USER.match(path):
            return "users.get" if method == "GET" else "unknown"
        if _ACTIVITIES.match(path):
            return "activities.list" if method == "GET" else "unknown"
        if _ORGUNITS.match(path):
            return "orgunits.list" if method == "GET" else "unknown"
        if _POLICIES.match(path):
            return "policies.list" if method == "GET" else "unknown"
        return "unknown"

    # -- checks -----------------------------------------------------------------------------

    def _authenticate(self, authorization: str | None, scopes: set[str]) -> AccessToken:
        token = self.tokens.check(authorization)
        if token is None:
            raise _UNAUTHENTICATED
        user = self.tenant.find_user(token.subject)
        if user is None or not user.is_admin:
            raise _FORBIDDEN
        if not scopes & token.scopes:
            raise _INSUFFICIENT_SCOPES
        return token

    def _authenticate_policy_api(self, authorization: str | None) -> AccessToken:
        """The Cloud Identity Policy API: its own error format; super admins only; off unless enabled."""
        token = self.tokens.check(authorization)
        if token is None:
            raise Failure(401, rpc_error_body(401, "Request had invalid authentication credentials. Expected OAuth 2 access "
                                                   "token, login cookie or other valid authentication credential.",
                                              "UNAUTHENTICATED", "ACCESS_TOKEN_TYPE_UNSUPPORTED"))
        if self.knobs.policy_api_disabled:
            raise Failure(403, rpc_error_body(
                403, "Cloud Identity API has not been used in project 123456789012 before or it is disabled. Enable it by "
                     "visiting https://console.developers.google.com/apis/api/cloudidentity.googleapis.com/overview?"
                     "project=123456789012 then retry.", "PERMISSION_DENIED", "SERVICE_DISABLED"))
        if not POLICY_SCOPES & token.scopes:
            raise Failure(403, rpc_error_body(403, "Request had insufficient authentication scopes.", "PERMISSION_DENIED",
                                              "ACCESS_TOKEN_SCOPE_INSUFFICIENT"))
        user = self.tenant.find_user(token.subject)
        if user is None or not user.is_admin:
            raise Failure(403, rpc_error_body(403, "The caller does not have permission", "PERMISSION_DENIED"))
        return token

    def _authenticate_chrome(self, authorization: str | None, scope: str) -> AccessToken:
        """The Chrome Management API: RPC-style errors, like the Policy API's; admins only."""
        token = self.tokens.check(authorization)
        if token is None:
            raise Failure(401, rpc_error_body(401, "Request had invalid authentication credentials. Expected OAuth 2 access "
                                                   "token, login cookie or other valid authentication credential.",
                                              "UNAUTHENTICATED", "ACCESS_TOKEN_TYPE_UNSUPPORTED"))
        if scope not in token.scopes:
            raise Failure(403, rpc_error_body(403, "Request had insufficient authentication scopes.", "PERMISSION_DENIED",
                                              "ACCESS_TOKEN_SCOPE_INSUFFICIENT"))
        user = self.tenant.find_user(token.subject)
        if user is None or not user.is_admin:
            raise Failure(403, rpc_error_body(403, "The caller does not have permission", "PERMISSION_DENIED"))
        return token

    def _take_quota(self, api: str, token: AccessToken) -> None:
        per_minute = self.knobs.quota_per_minute
        burst = float(self.knobs.quota_burst or per_minute)
        now = self.clock.monotonic()
        with self._lock:
            bucket = self._buckets.get((api, token.subject))
            if bucket is None:
                bucket = self._buckets[(api, token.subject)] = _Bucket(burst, now)
            bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * per_minute / 60.0)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return
        self.stats.add("quota." + api)
        message = ("Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service "
                   "'admin.googleapis.com' for consumer 'project_number:{}'.").format(abs(hash(token.subject)) % 10**12)
        if api == "reports":
            raise Failure(503, error_body(503, "Quota exceeded for the current request", "backendError", status="UNAVAILABLE"))
        if api == "chrome":
            raise Failure(429, rpc_error_body(
                429, "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service "
                     "'chromemanagement.googleapis.com'.", "RESOURCE_EXHAUSTED", "RATE_LIMIT_EXCEEDED"),
                headers={"Retry-After": "1"})
        if api == "policy":
            raise Failure(429, rpc_error_body(
                429, "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute' of service "
                     "'cloudidentity.googleapis.com'.", "RESOURCE_EXHAUSTED", "RATE_LIMIT_EXCEEDED"))
        raise Failure(403, error_body(403, message, "userRateLimitExceeded", domain="usageLimits", status="PERMISSION_DENIED"))

    def _fault(self, key: str, rate: float, allowed: tuple[str, ...], counted_as: str = "") -> Fault | None:
        """Draw whether this attempt at `key` fails (seeded by key and attempt number), and with which
        of the configured kinds that are `allowed` here."""
        kinds = tuple(kind for kind in (self.knobs.fault_kinds or HTTP_FAULT_KINDS) if kind in allowed)
        if rate <= 0 or not kinds:
            return None
        with self._lock:
            self._attempts[key] += 1
            attempt = self._attempts[key]
        draw = _draw(self.knobs.fault_seed, key, attempt)
        if draw >= rate:
            return None
        position = draw / rate * len(kinds)  # uniform in [0, len(kinds))
        index = min(len(kinds) - 1, int(position))
        self.stats.add("fault." + counted_as + kinds[index])
        return Fault(kinds[index], position - index)

    def _note_early_retry(self, key: str) -> None:
        """Count a call that comes back before the Retry-After its 429 asked for."""
        with self._lock:
            not_before = self._retry_not_before.pop(key, None)
        if not_before is not None and self.clock.monotonic() < not_before:
            self.stats.add("retry_after.ignored")

    @staticmethod
    def _reports_refusal(code: int) -> Failure:
        if code == 403:
            return _FORBIDDEN
        return Failure(code, error_body(code, "The service is currently unavailable.", "backendError", status="UNAVAILABLE"))

    # -- methods ----------------------------------------------------------------------------

    def _dispatch(self, name: str, method: str, path: str, query: dict[str, str]) -> tuple[int, dict | None]:
        if name == "users.list":
            return 200, self._users_list(query)
        if name == "activities.list":
            user_key, application = (unquote(g) for g in _ACTIVITIES.match(path).groups())
            return 200, self._activities_list(user_key, application, query)
        if name == "orgunits.list":
            return 200, self._orgunits_list(unquote(_ORGUNITS.match(path).group(1)), query)
        if name == "policies.list":
            return 200, self._policies_list(query)
        if name == "users.get":
            user = self.tenant.find_user(unquote(_USER.match(path).group(1)))
            if user is None:
                raise _not_found("userKey")
            return 200, _mask(self._user_json(user), query.get("fields"))
        if name.startswith("chrome."):
            try:
                return 200, self.chrome.dispatch(path, query)
            except ChromeFailure as failure:
                raise Failure(failure.code, failure.body) from None
        match = _TOKENS.match(path) or _TOKEN.match(path)
        user = self.tenant.find_user(unquote(match.group(1)))
        if user is None:
            raise _not_found("userKey")
        if name == "tokens.list":
            with self.tenant.lock:
                tokens = list(self.tenant.tokens.get(user.id, ()))
            body: dict[str, Any] = {"kind": "admin#directory#tokenList", "etag": self._etag(user.id, len(tokens))}
            if tokens:  # Google omits empty arrays
                body["items"] = [self._token_json(user, token) for token in tokens]
            return 200, _mask(body, query.get("fields"))
        client_id = unquote(match.group(2))
        with self.tenant.lock:
            token = next((t for t in self.tenant.tokens.get(user.id, ()) if t.client.client_id == client_id), None)
        if token is None:
            raise _not_found("clientId")
        if name == "tokens.get":
            return 200, _mask(self._token_json(user, token), query.get("fields"))
        self.tenant.revoke(user.id, client_id, at=self.clock.now())
        return 204, None

    def _token_json(self, user: DirectoryUser, token) -> dict[str, Any]:
        client = token.client
        return {"kind": "admin#directory#token", "etag": self._etag(user.id, client.client_id), "clientId": client.client_id,
                "displayText": client.display_text, "anonymous": client.anonymous, "nativeApp": client.native_app,
                "userKey": user.id, "scopes": list(token.scopes)}

    def _users_list(self, query: dict[str, str]) -> dict[str, Any]:
        customer, domain = query.get("customer"), query.get("domain")
        if not customer and not domain:
            raise _bad_request()
        if customer and customer not in ("my_customer", self.tenant.customer_id):
            raise _bad_request()
        limit = _int_param(query, "maxResults", 100, 1, 500)
        search = query.get("query", "")
        matches, prefix = _user_filter(search, domain)
        if search and self.knobs.search_lag:
            indexed_before = self.clock.now() - dt.timedelta(seconds=self.knobs.search_lag)
            found = matches
            matches = lambda user: found(user) and parse_time(user.creation_time) <= indexed_before  # noqa: E731
        position = self._page_position("users.list", query.get("pageToken"))
        after = position.get("after", "")
        emails = self.tenant.users_by_email()
        # An address prefix is a range of the sorted addresses: start there, stop past it.
        start = bisect.bisect_right(emails, (max(after, prefix), "\uffff") if after >= prefix else (prefix, ""))
        page: list[DirectoryUser] = []
        more = False
        if query.get("showDeleted") != "true":
            for email, user_id in emails[start:]:
                if not email.startswith(prefix):
                    break
                user = self.tenant.users.get(user_id)
                if user is None or not matches(user):
                    continue
                if len(page) == limit:
                    more = True
                    break
                page.append(user)
        body: dict[str, Any] = {"kind": "admin#directory#users", "etag": self._etag("users", after, len(page))}
        if page:
            body["users"] = [self._user_json(user) for user in page]
        if more:
            body["nextPageToken"] = self._next_page_token("users.list", {"after": page[-1].primary_email.lower()}, position)
        doomed = set(self.knobs.delete_after_listed) & {user.id for user in page}
        for user_id in doomed:  # "deleted by another admin" right after this page was served
            self.tenant.delete_user(user_id)
        return _mask(body, query.get("fields"))

    def _user_json(self, user: DirectoryUser) -> dict[str, Any]:
        body = {
            "kind": "admin#directory#user", "id": user.id, "etag": self._etag(user.id), "primaryEmail": user.primary_email,
            "name": {"givenName": user.given_name, "familyName": user.family_name,
                     "fullName": f"{user.given_name} {user.family_name}".strip()},
            "isAdmin": user.is_admin, "isDelegatedAdmin": False, "lastLoginTime": "1970-01-01T00:00:00.000Z",
            "creationTime": user.creation_time, "agreedToTerms": True, "suspended": user.suspended, "archived": False,
            "changePasswordAtNextLogin": False, "ipWhitelisted": False,
            "emails": [{"address": user.primary_email, "primary": True}] + [{"address": a} for a in user.aliases],
            "customerId": self.tenant.customer_id, "orgUnitPath": user.org_unit_path, "isMailboxSetup": True,
            "isEnrolledIn2Sv": False, "isEnforcedIn2Sv": False, "includeInGlobalAddressList": True,
        }
        if user.aliases:
            body["aliases"] = list(user.aliases)
        if user.suspended:
            body["suspensionReason"] = "ADMIN"
        return body

    def _activities_list(self, user_key: str, application: str, query: dict[str, str]) -> dict[str, Any]:
        if application not in _APPLICATIONS:
            raise _bad_request(f"Invalid value '{application}'. Values must match the following regular expression: "
                               "'(admin)|(calendar)|(drive)|(login)|(mobile)|(token)|...'", "invalid")
        limit = _int_param(query, "maxResults", 1000, 1, 1000)
        now = self.clock.time()
        now_micros = int(now * 1_000_000)
        end = _time_param(query, "endTime") or now_micros
        start = _time_param(query, "startTime")
        if start is not None and start > now_micros:
            raise _bad_request("Start time must be earlier than the current time", "invalid")
        if start is not None and start >= end:
            raise _bad_request("Start time must be earlier than end time", "invalid")
        start = max(start or 0, to_micros(dt.datetime.fromtimestamp(now, dt.timezone.utc) - RETENTION))
        before = None
        position = self._page_position("activities.list", query.get("pageToken"))
        if position:
            before, end = (position["t"], position["s"]), position["end"]
        end = min(end, now_micros - int(self.knobs.report_lag * 1_000_000) + 1)
        names = set(query["eventName"].split(",")) if query.get("eventName") else None
        if not self.knobs.activity_events:
            names = (names or {"authorize", "revoke", "activity", "request", "deny"}) - {"activity"}
        client_filter = _client_filter(query.get("filters"))
        body: dict[str, Any] = {"kind": "admin#reports#activities", "etag": self._etag("activities", start, end, before)}
        if application != "token":
            return _mask(body, query.get("fields"))
        tenant = self.tenant
        person = None
        if user_key != "all":
            user = tenant.find_user(user_key)
            if user is None:
                raise _bad_request()
            person = tenant._person_index[user.id]
        items: list[Event] = []
        more = False
        with tenant.lock:
            log = tenant.events
            for index in log.newest_first(start, end, before):
                event = None
                if person is not None and log.users[index] != person:
                    continue
                if names is not None or client_filter is not None:
                    event = tenant.event(index)
                    if names is not None and event.name not in names:
                        continue
                    if client_filter is not None and event.client.client_id != client_filter:
                        continue
                if len(items) == limit:
                    more = True
                    break
                items.append(event or tenant.event(index))
        if items:
            fields = _wanted(parse_fields(query["fields"]), "items") if query.get("fields") else None
            body["items"] = [self._activity_json(event, fields) for event in items]
        if more:
            last = items[-1]
            body["nextPageToken"] = self._next_page_token("activities.list", {"t": last.micros, "s": last.seq, "end": end},
                                                          position)
        return _mask(body, query.get("fields"))

    def _orgunits_list(self, customer: str, query: dict[str, str]) -> dict[str, Any]:
        if customer not in ("my_customer", self.tenant.customer_id):
            raise _bad_request()
        kind = query.get("type") or "children"
        if kind not in ("all", "children", "allIncludingParent"):
            raise _bad_request(f"Invalid value '{kind}'. Values must be one of: all, children, allIncludingParent", "invalid")
        paths = self.tenant.org_unit_paths()
        start = (query.get("orgUnitPath") or "/").strip()
        if start.startswith("id:"):
            start = next((p for p in paths if self.tenant.org_unit_id(p) == start[3:]), "")
        if start not in paths:
            raise Failure(400, error_body(400, "Invalid Input: INVALID_OU_ID", "invalid"))
        prefix = start.rstrip("/") + "/"
        below = [p for p in paths if p != start and p.startswith(prefix)]
        if kind == "children":
            below = [p for p in below if "/" not in p[len(prefix):]]
        chosen = ([start] if kind == "allIncludingParent" else []) + below
        units = [self._orgunit_json(path) for path in chosen]
        body: dict[str, Any] = {"kind": "admin#directory#orgUnits", "etag": self._etag("orgunits", len(units))}
        if units:
            body["organizationUnits"] = units
        return _mask(body, query.get("fields"))

    def _orgunit_json(self, path: str) -> dict[str, Any]:
        tenant = self.tenant
        body = {"kind": "admin#directory#orgUnit", "etag": self._etag("orgunit", path),
                "name": path.rsplit("/", 1)[-1] or tenant.domain, "description": "",
                "orgUnitPath": path, "orgUnitId": "id:" + tenant.org_unit_id(path)}
        if path != "/":
            parent = path.rsplit("/", 1)[0] or "/"
            body.update(parentOrgUnitPath=parent, parentOrgUnitId="id:" + tenant.org_unit_id(parent))
        return body

    def _policies_list(self, query: dict[str, str]) -> dict[str, Any]:
        """policies.list: the policies the filter selects, in a stable order, pageSize at a time."""
        raw_size = query.get("pageSize") or "0"
        try:
            size = int(raw_size)
        except ValueError:
            raise Failure(400, rpc_error_body(400, f"Invalid value at 'page_size' (TYPE_INT32), \"{raw_size}\"",
                                              "INVALID_ARGUMENT")) from None
        if size < 0:
            raise Failure(400, rpc_error_body(400, "page_size must not be negative", "INVALID_ARGUMENT"))
        size = 50 if size == 0 else min(size, 100)  # the discovery document: default 50, above 100 means 100
        wanted = _policy_filter(query.get("filter", ""), self.tenant.customer_id)
        position = self._page_position("policies.list", query.get("pageToken"))
        if position and position.get("f") != query.get("filter", ""):
            raise Failure(400, rpc_error_body(400, "The page token does not match the request's other parameters.",
                                              "INVALID_ARGUMENT"))
        with self.tenant.lock:
            selected = sorted((p for p in self.tenant.policies if wanted(p)), key=lambda p: p["name"])
        body: dict[str, Any] = {}
        blank = position.get("b", self.knobs.policy_blank_pages)
        offset = position.get("o", 0)
        if blank > 0:  # an empty page first, as ScubaGoggles saw the real API answer
            body["nextPageToken"] = self._next_page_token("policies.list", {"o": 0, "b": blank - 1, "f": query.get("filter", "")},
                                                          position)
            return body
        page = selected[offset:offset + size]
        if page:
            body["policies"] = page
        if offset + size < len(selected):
            body["nextPageToken"] = self._next_page_token("policies.list", {"o": offset + size, "b": 0,
                                                                            "f": query.get("filter", "")}, position)
        return body

    # -- page tokens ------------------------------------------------------------------------

    def _page_position(self, method: str, token: str | None) -> dict[str, Any]:
        """Where a page token says to go on ({} without one); refuses expired tokens."""
        if not token:
            return {}
        position = _decode_page_token(token)
        lifetime = self.knobs.page_token_lifetime
        if position.get("refused") or (lifetime is not None and self.clock.time() - position.get("since", 0) > lifetime):
            self.stats.add("expired." + method)
            if method == "users.list":
                message, reason = USERS_PAGE_TOKEN_EXPIRED
                raise Failure(503, error_body(503, message, reason))
            if method == "policies.list":
                raise Failure(400, rpc_error_body(400, "Invalid page token.", "INVALID_ARGUMENT"))
            raise _bad_request("Invalid page token", "invalid")
        return position

    def _next_page_token(self, method: str, position: dict[str, Any], previous: dict[str, Any]) -> str:
        """A page token for `position`, stamped with when the listing began (its first page)."""
        position["since"] = previous.get("since") or round(self.clock.time(), 3)
        with self._lock:
            doomed = self.knobs.expire_page_tokens.get(method, 0)
            if doomed:
                self.knobs.expire_page_tokens[method] = doomed - 1
        if doomed:
            position["refused"] = 1
        return _encode_page_token(position)

    def _activity_json(self, event: Event, fields: dict[str, Any] | None = None) -> dict[str, Any]:
        """One activity; with `fields` (the mask's `items` tree), only the parts the mask keeps:
        the caller still applies the mask, this only skips work whose result it would drop."""
        user = event.user
        body: dict[str, Any] = {"kind": "admin#reports#activity"}
        id_fields = _wanted(fields, "id")
        if id_fields is not None:
            body["id"] = {"time": rfc3339(event.micros)}
            if _wanted(id_fields, "uniqueQualifier") is not None:
                digest = hashlib.blake2b(f"{event.seq}|{event.micros}".encode(), digest_size=8).digest()
                body["id"]["uniqueQualifier"] = str(int.from_bytes(digest, "big", signed=True))
            body["id"].update(applicationName="token", customerId=self.tenant.customer_id)
        if _wanted(fields, "etag") is not None:
            body["etag"] = self._etag("event", event.seq)
        body["actor"] = {"callerType": "USER", "email": user.primary_email, "profileId": user.id}
        if _wanted(fields, "ipAddress") is not None:
            body["ipAddress"] = f"10.{event.seq % 250}.{(event.seq // 250) % 250}.{1 + event.seq % 200}"
        events = _wanted(fields, "events")
        if events is not None:
            body["events"] = [{"type": "auth", "name": event.name, "parameters": self._parameters(event, _wanted(events, "parameters"))}]
        return body

    @staticmethod
    def _parameters(event: Event, fields: dict[str, Any] | None) -> list[dict[str, Any]]:
        client = event.client
        common = [{"name": "client_id", "value": client.client_id}, {"name": "app_name", "value": client.display_text},
                  {"name": "client_type", "value": client.client_type}]
        if event.name == "activity":
            bucket = _product_bucket(event.scopes)
            return [{"name": "api_name", "value": _API_NAMES.get(bucket, "oauth2")},
                    {"name": "method_name", "value": _API_NAMES.get(bucket, "oauth2") + ".list"},
                    *common[:1], {"name": "num_response_bytes", "intValue": str(200 + event.seq % 5000)},
                    {"name": "product_bucket", "value": bucket}, *common[1:]]
        scope_data = [] if _wanted(fields, "multiMessageValue") is None else [
            {"parameter": [{"name": "scope_name", "value": scope},
                           {"name": "product_bucket", "multiValue": [_product_bucket((scope,))]}]}
            for scope in event.scopes]
        return [*common, {"name": "scope", "multiValue": list(event.scopes)},
                {"name": "scope_data", "multiMessageValue": scope_data}]

    def _etag(self, *parts: Any) -> str:
        digest = hashlib.blake2b("|".join(map(str, (self._etag_salt, *parts))).encode(), digest_size=12).digest()
        return '"' + base64.urlsafe_b64encode(digest).decode().rstrip("=") + '"'

    # -- batch ------------------------------------------------------------------------------

    def _batch(self, content_type: str, authorization: str | None, body: bytes) -> Answer:
        boundary = _boundary(content_type)
        if not content_type.lower().startswith("multipart/mixed") or not boundary:
            return Answer(400, _dump(error_body(400, "Invalid multipart request with 0 mime parts.", "badRequest")))
        parts = _parse_batch(body, boundary)
        if not parts:
            return Answer(400, _dump(error_body(400, "Invalid multipart request with 0 mime parts.", "badRequest")))
        if len(parts) > MAX_BATCH:
            return Answer(400, _dump(error_body(400, f"A batch request cannot contain more than {MAX_BATCH} requests", "badRequest")))
        # Batches are drawn for in the order they arrive (the nth batch of a seed fails the same way).
        fault = self._fault("batch", self.knobs.batch_fault_rate, FAULT_KINDS, counted_as="batch.")
        if fault:
            self.stats.add("fault.batch")
            if fault.kind in HTTP_FAULT_KINDS:
                failure = fault_failure(fault.kind, retry_after=self.knobs.retry_after)
                return Answer(failure.code, _dump(failure.body), headers=failure.headers)
            if fault.kind != "truncated":
                return Answer(0, fault=fault)
        self.stats.add("batch.parts", len(parts))
        out_boundary = "batch_" + secrets.token_hex(12)
        chunks = []
        for content_id, method, target, part_headers in parts:
            reply = self.call(method, target, part_headers.get("authorization") or authorization, api="admin/directory_v1",
                              delivered=fault is None)
            chunks.append(_response_part(out_boundary, content_id, reply))
        chunks.append(f"--{out_boundary}--\r\n".encode())
        return Answer(200, b"".join(chunks), f"multipart/mixed; boundary={out_boundary}", fault=fault)


# -- helpers -------------------------------------------------------------------------------

def fault_failure(kind: str, *, retry_after: int = 1) -> Failure:
    """The error an injected HTTP fault answers with."""
    if kind == "429":
        return Failure(429, error_body(429, "Resource has been exhausted (e.g. check quota).", "rateLimitExceeded",
                                       status="RESOURCE_EXHAUSTED"), headers={"Retry-After": str(retry_after)})
    if kind == "500":
        return Failure(500, error_body(500, "Backend Error", "backendError"))
    if kind == "503":
        return Failure(503, error_body(503, "The service is currently unavailable.", "backendError", status="UNAVAILABLE"))
    if kind == "403":
        message = ("Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' of service "
                   "'admin.googleapis.com' for consumer 'project_number:1'.")
        return Failure(403, error_body(403, message, "rateLimitExceeded", domain="usageLimits", status="PERMISSION_DENIED"))
    raise ValueError(f"{kind!r} is not an HTTP fault kind; use one of {', '.join(HTTP_FAULT_KINDS)}")


def _draw(seed: int, key: str, attempt: int) -> float:
    digest = hashlib.blake2b(f"{seed}|{key}|{attempt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _dump(payload: dict[str, Any]) -> bytes:
    return orjson.dumps(payload)  # compact UTF-8, as Google sends


def _int_param(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _invalid_value(name, raw, low, high) from None
    if not low <= value <= high:
        raise _invalid_value(name, raw, low, high)
    return value


def _time_param(query: dict[str, str], name: str) -> int | None:
    raw = query.get(name)
    if not raw:
        return None
    if not _RFC3339.match(raw):
        raise _bad_request(f"Invalid value '{raw}'. Values must match the following regular expression: "
                           "'(\\d\\d\\d\\d)-(\\d\\d)-(\\d\\d)T(\\d\\d):(\\d\\d):(\\d\\d)(?:\\.(\\d+))?(?:(Z)|([-+])(\\d\\d):(\\d\\d))'",
                           "invalid")
    return to_micros(dt.datetime.fromisoformat(raw.replace("Z", "+00:00")))


def _client_filter(filters: str | None) -> str | None:
    if not filters:
        return None
    match = re.fullmatch(r"client_id==(.+)", filters.strip())
    if not match:
        raise _bad_request(f"Invalid filters: {filters} (the emulator supports client_id==<id>)", "invalid")
    return match.group(1)


_QUERY_CLAUSE = re.compile(r"(isSuspended|isAdmin|orgUnitPath)=('[^']*'|\"[^\"]*\"|\S+)|email:('[^']*'|\"[^\"]*\"|\S+)")


def _user_filter(query: str, domain: str | None) -> tuple[Callable[[DirectoryUser], bool], str]:
    """users.list `query`: space-separated clauses (AND) of email:, isSuspended=, isAdmin=,
    orgUnitPath=. Returns the test and the address prefix every match starts with ("" for any)."""
    clauses = []
    prefix = ""
    rest = _QUERY_CLAUSE.sub("", query).strip()
    if rest:
        raise _bad_request("Invalid Input: " + query, "invalid")
    for field_name, raw, email in _QUERY_CLAUSE.findall(query):
        value = (raw or email).strip("'\"")
        if not field_name:
            wanted = value.lower()
            if wanted.endswith("*"):
                wanted = wanted[:-1]
                clauses.append(lambda u, w=wanted: u.primary_email.lower().startswith(w))
            else:
                clauses.append(lambda u, w=wanted: u.primary_email.lower() == w)
            prefix = max(prefix, wanted) if wanted.startswith(prefix) else wanted
        elif field_name == "orgUnitPath":
            # Google: "matches all org unit chains under the target".
            clauses.append(lambda u, v=value.rstrip("/") + "/": (u.org_unit_path.rstrip("/") + "/").startswith(v))
        else:
            wanted = value.lower() == "true"
            attribute = "suspended" if field_name == "isSuspended" else "is_admin"
            clauses.append(lambda u, a=attribute, w=wanted: getattr(u, a) == w)
    if domain:
        suffix = "@" + domain.lower()
        clauses.append(lambda u: u.primary_email.lower().endswith(suffix))
    return (lambda user: all(clause(user) for clause in clauses)), prefix


_CEL_STRING = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
_CEL_MATCHES = re.compile(r"setting\.type\.matches\(\s*" + _CEL_STRING + r"\s*\)")
_CEL_TYPE_IS = re.compile(r"setting\.type\s*==\s*" + _CEL_STRING)
_CEL_CUSTOMER = re.compile(r"customer\s*==\s*" + _CEL_STRING)


def _cel_string(literal: str) -> str:
    """A CEL string literal's value: quotes off, backslash escapes undone."""
    return re.sub(r"\\(.)", r"\1", literal[1:-1])


def _policy_filter(expression: str, customer_id: str) -> Callable[[dict[str, Any]], bool]:
    """policies.list `filter` as a predicate: clauses joined by && (inside) and || (outside),
    parentheses around a clause allowed. Anything else is refused, as Google refuses what it
    cannot parse (400 INVALID_ARGUMENT)."""
    if not expression.strip():
        return lambda policy: True
    alternatives = []
    for alternative in expression.split("||"):
        clauses = []
        for clause in alternative.split("&&"):
            clause = clause.strip()
            while clause.startswith("(") and clause.endswith(")") and not _CEL_MATCHES.fullmatch(clause):
                clause = clause[1:-1].strip()
            if match := _CEL_MATCHES.fullmatch(clause):
                try:
                    pattern = re.compile(_cel_string(match.group(1)))
                except re.error:
                    raise Failure(400, rpc_error_body(400, f"Invalid regular expression in filter: {clause}", "INVALID_ARGUMENT")) from None
                clauses.append(lambda p, pattern=pattern: pattern.search(p["setting"]["type"]) is not None)
            elif match := _CEL_TYPE_IS.fullmatch(clause):
                clauses.append(lambda p, wanted=_cel_string(match.group(1)): p["setting"]["type"] == wanted)
            elif match := _CEL_CUSTOMER.fullmatch(clause):
                wanted = _cel_string(match.group(1))
                if wanted not in ("customers/my_customer", f"customers/{customer_id}"):
                    raise Failure(403, rpc_error_body(403, "The caller does not have permission", "PERMISSION_DENIED"))
            else:
                raise Failure(400, rpc_error_body(400, f"Invalid filter: {expression}", "INVALID_ARGUMENT"))
        alternatives.append(clauses)
    return lambda policy: any(all(clause(policy) for clause in clauses) for clauses in alternatives)


def _encode_page_token(position: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_page_token(token: str) -> dict[str, Any]:
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        raise _bad_request("Invalid page token", "invalid") from None


_BUCKETS = (("mail.google.com", "GMAIL"), ("gmail", "GMAIL"), ("drive", "DRIVE"), ("documents", "DRIVE"),
            ("spreadsheets", "DRIVE"), ("presentations", "DRIVE"), ("forms", "DRIVE"), ("calendar", "CALENDAR"),
            ("classroom", "CLASSROOM"), ("contacts", "CONTACTS"), ("carddav", "CONTACTS"), ("admin.", "GSUITE_ADMIN"),
            ("userinfo", "IDENTITY"), ("openid", "IDENTITY"))
_API_NAMES = {"GMAIL": "gmail", "DRIVE": "drive", "CALENDAR": "calendar", "CLASSROOM": "classroom",
              "CONTACTS": "people", "GSUITE_ADMIN": "admin", "IDENTITY": "oauth2"}


@lru_cache(maxsize=4096)
def _product_bucket(scopes: tuple[str, ...]) -> str:
    found = "OTHER"
    for scope in scopes:
        for needle, bucket in _BUCKETS:
            if needle in scope:
                if bucket != "IDENTITY":
                    return bucket
                found = bucket
                break
    return found


# -- partial responses (the `fields` parameter) --------------------------------------------

@lru_cache(maxsize=256)
def parse_fields(spec: str) -> dict[str, Any]:
    """Parse a `fields` mask ("nextPageToken,users(id,name/fullName)") into a tree; {} = the whole value."""
    tree: dict[str, Any] = {}
    position = _parse_field_list(spec, 0, tree)
    if position != len(spec):
        raise _bad_request(f"Invalid field selection {spec}", "invalidParameter")
    return tree


def _parse_field_list(spec: str, position: int, tree: dict[str, Any]) -> int:
    while position < len(spec):
        match = re.compile(r"\s*([A-Za-z0-9_*]+(?:/[A-Za-z0-9_*]+)*)\s*").match(spec, position)
        if not match:
            raise _bad_request(f"Invalid field selection {spec}", "invalidParameter")
        node = tree
        names = match.group(1).split("/")
        for name in names[:-1]:
            node = node.setdefault(name, {})
        leaf = node.setdefault(names[-1], {})
        position = match.end()
        if position < len(spec) and spec[position] == "(":
            position = _parse_field_list(spec, position + 1, leaf)
            if position >= len(spec) or spec[position] != ")":
                raise _bad_request(f"Invalid field selection {spec}", "invalidParameter")
            position += 1
        if position < len(spec) and spec[position] == ",":
            position += 1
            continue
        if position < len(spec) and spec[position] == ")":
            return position
    return position


def _mask(value: Any, spec: str | None) -> Any:
    if not spec:
        return value
    return _masker(spec)(value)


def _wanted(tree: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """The part of a parsed mask for `key`: {} for all of it, None when the mask leaves it out."""
    if not tree or "*" in tree:
        return {}
    return tree.get(key)


@lru_cache(maxsize=256)
def _masker(spec: str) -> Callable[[Any], Any]:
    """The mask as a function, built once a spec (a page of a thousand activities is masked often)."""
    return _compile(parse_fields(spec)) or (lambda value: value)


def _compile(tree: dict[str, Any]) -> Callable[[Any], Any] | None:
    """None for "all of it"; else a function keeping the tree's keys of a dict (of each item of a list)."""
    if not tree or "*" in tree:
        return None
    keep = [(key, _compile(sub)) for key, sub in tree.items()]

    def apply(value: Any) -> Any:
        if isinstance(value, list):
            return [apply(item) for item in value]
        if isinstance(value, dict):
            return {key: value[key] if sub is None else sub(value[key]) for key, sub in keep if key in value}
        return value

    return apply


# -- multipart batches ---------------------------------------------------------------------

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


def _boundary(content_type: str) -> str | None:
    match = _BOUNDARY.search(content_type)
    return match.group(1) if match else None


class _Headers(dict):
    def get(self, key, default=None):  # case-insensitive, like email.message.Message
        return super().get(key.lower(), default)


def _parse_headers(block: bytes) -> _Headers:
    headers = _Headers()
    for line in block.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _parse_batch(body: bytes, boundary: str) -> list[tuple[str | None, str, str, _Headers]]:
    """(Content-ID, method, request target, inner headers) of each part of a multipart/mixed batch."""
    parts = []
    for segment in body.split(b"--" + boundary.encode())[1:]:
        if segment.startswith(b"--"):
            break
        split = _BLANK_LINE.split(segment.lstrip(b"\r\n"), 1)
        if len(split) != 2:
            continue
        mime_headers, inner = split
        content_id = _parse_headers(mime_headers).get("content-id")
        inner_split = _BLANK_LINE.split(inner, 1)
        head = inner_split[0].decode("utf-8", "replace")
        request_line, _, header_block = head.partition("\n")
        fields = request_line.strip().split(" ")
        if len(fields) < 2:
            continue
        parts.append((content_id, fields[0].upper(), fields[1], _parse_headers(header_block.encode())))
    return parts


_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def _response_part(boundary: str, content_id: str | None, reply: Reply) -> bytes:
    head = f"--{boundary}\r\nContent-Type: application/http\r\n"
    if content_id:
        head += f"Content-ID: <response-{content_id.strip().lstrip('<').rstrip('>')}>\r\n"
    body = b"" if reply.payload is None else _dump(reply.payload)
    extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers.items())
    head += (f"\r\nHTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Error')}\r\n"
             f"Content-Type: {JSON_TYPE}\r\nVary: Origin\r\nVary: X-Origin\r\nVary: Referer\r\n{extra}"
             f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body + b"\r\n"


__all__ = ["FAULT_KINDS", "HTTP_FAULT_KINDS", "Answer", "Fault", "GoogleAPI", "Knobs", "Reply", "Stats", "error_body",
           "fault_failure", "parse_fields", "rpc_error_body"]
