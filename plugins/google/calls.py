"""How the Google provider makes API calls: one pacing rule, one retry rule, one count.

- `RateLimiter`: a token bucket refilled at `requests_per_minute`, holding up to about a
  minute's worth, so a scan bursts at the start and then runs at the quota without
  hitting it. Every call takes one token; a batch takes one per part (Google counts
  each part as a request).
- `ApiFailure` / `retry_wait()`: 403 userRateLimitExceeded / rateLimitExceeded /
  quotaExceeded, 429, 5xx, 401, transport errors (resets, timeouts, answers cut short)
  and token endpoint hiccups are retried with exponential backoff and jitter, never
  sooner than a Retry-After header asks; anything else is not.
- `GoogleClients`: the Directory and Reports clients (google-api-python-client with its
  shipped discovery documents), one set per thread, pointed at `api_root`.
- `ApiCaller.execute()`: one paced, counted, retried call (users.list, activities.list).
  A paged call whose page token Google stopped honouring raises `PageTokenRefused`, so
  the listing can start again.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from google.auth import exceptions as auth_exceptions
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.model import JsonModel

from scanner import ProviderError, ScanRun

from .auth import TRANSPORT_ERRORS, Delegation

MAX_ATTEMPTS = 8  # per call; the waits add up to about a minute and a half before giving up
RETRY_BASE_SECONDS = 0.5
RETRY_CAP_SECONDS = 32.0
RETRY_AFTER_CAP_SECONDS = 120.0  # a longer Retry-After is honoured only this far
RETRYABLE_403_REASONS = {"userRateLimitExceeded", "rateLimitExceeded", "quotaExceeded"}
# A paged call failing this often with 5xx (or once with 400) has lost its page token. Google
# answers a users.list paged for over an hour with 503 backendError, which only a retry tells
# apart from a passing outage.
PAGE_TOKEN_TRIES = 2


class Cancelled(Exception):
    """The scan stopped while this thread waited."""


class RateLimiter:
    """Paces calls to `per_minute`: a token bucket that allows bursts of about a minute's worth.

    Google counts a call when it arrives; two seconds' worth is kept back so calls paced
    here cannot pile up over the quota on the way (or while a batch is serialized).
    """

    MARGIN_SECONDS = 2.0

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute - self.MARGIN_SECONDS * self.rate)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._condition = threading.Condition()
        self._closed = False

    def acquire(self, n: int = 1) -> None:
        """Wait until `n` calls may be sent (a batch larger than the bucket waits for a full bucket)."""
        with self._condition:
            while True:
                if self._closed:
                    raise Cancelled()
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                needed = min(n, self.capacity)
                if self._tokens >= needed:
                    self._tokens -= n
                    return
                self._condition.wait((needed - self._tokens) / self.rate)

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class CallCounter:
    """API calls and retries counted from any thread; `sync()` (on the scan's thread) reports them to the run."""

    def __init__(self, run: ScanRun):
        self.run = run
        self._lock = threading.Lock()
        self.calls = self.retries = 0
        self._reported = (0, 0)

    def call(self, n: int = 1) -> None:
        with self._lock:
            self.calls += n

    def retry(self, n: int = 1) -> None:
        with self._lock:
            self.retries += n

    def sync(self) -> None:
        with self._lock:
            calls, retries = self.calls, self.retries
        reported_calls, reported_retries = self._reported
        if retries > reported_retries:
            self.run.count_retry(retries - reported_retries)
        if calls > reported_calls:
            self.run.count_call(calls - reported_calls)
        self._reported = (calls, retries)


class ApiFailure(Exception):
    """A call that failed: HTTP status (0 for a transport error), Google's reason and message,
    and the seconds a Retry-After header asked to wait (None without one)."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None):
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status, self.reason, self.message, self.retry_after = status, reason, message, retry_after

    @property
    def retryable(self) -> bool:
        if self.status == 0 or self.status == 429 or self.status >= 500 or self.status == 401:
            return True
        return self.status == 403 and self.reason in RETRYABLE_403_REASONS

    @classmethod
    def from_http_error(cls, error: HttpError) -> ApiFailure:
        status = int(error.resp.status)
        reason, message = "", getattr(error.resp, "reason", "") or ""
        try:
            body = json.loads(error.content.decode("utf-8") if isinstance(error.content, bytes) else error.content)
            detail = body["error"]
            message = detail.get("message", message)
            # The Admin SDK names the reason in `errors`; newer APIs (Cloud Identity) in `details`.
            reason = ((detail.get("errors") or [{}])[0].get("reason", "")
                      or next((d.get("reason") for d in detail.get("details") or [] if d.get("reason")), "")
                      or detail.get("status", ""))
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            pass
        return cls(status, reason, str(message)[:300], parse_retry_after(error.resp.get("retry-after")))

    @classmethod
    def from_transport_error(cls, error: BaseException) -> ApiFailure:
        return cls(0, "transport", f"{type(error).__name__}: {str(error)[:200]}")

    @classmethod
    def from_refresh_error(cls, error: auth_exceptions.RefreshError) -> ApiFailure:
        """A token renewal that failed on the way (google-auth marked it retryable)."""
        return cls(0, "token endpoint", f"renewing the access token failed: {str(error)[:200]}")

    @classmethod
    def damaged(cls, what: str) -> ApiFailure:
        """An answer cut short: not the whole JSON (or multipart) body Google sent."""
        return cls(0, "damaged", f"{what} was cut short")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks to wait: delay-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number `attempt` (0-based): exponential, with jitter."""
    base = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**attempt)
    return base + random.uniform(0, base)


def retry_wait(attempt: int, failure: ApiFailure) -> float:
    """The backoff for retry number `attempt`, but never sooner than the answer's Retry-After asked."""
    return max(backoff(attempt), min(failure.retry_after or 0.0, RETRY_AFTER_CAP_SECONDS))


class PageTokenRefused(Exception):
    """Google no longer honours a listing's page token (it expired): the listing must start again."""

    def __init__(self, failure: ApiFailure):
        super().__init__(str(failure))
        self.failure = failure


class OrjsonModel(JsonModel):
    """The client library's JSON model, decoding answers with orjson.

    A full scan of a 100,000-account district decodes about half a gigabyte of token log.
    With the standard library's decoder that took a quarter of the time Python's lock was
    held while the API calls ran; orjson does it in a fraction. An answer orjson refuses (not
    JSON, cut short, NaN) goes to JsonModel, which decides as it always did. One difference:
    orjson reads an integer beyond 64 bits as a float, and Google's APIs never send one (their
    JSON carries int64 values as strings).
    """

    def deserialize(self, content):
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            return super().deserialize(content)
        if self._data_wrapper and isinstance(body, dict) and "data" in body:
            body = body["data"]
        return body


class ThreadConnections:
    """One authorized HTTP connection per thread (httplib2 is not thread-safe), all closed together;
    `template` is the first, which clients are built with."""

    def __init__(self, delegation: Delegation):
        self.delegation = delegation
        self.template = delegation.authorized_http()
        self._local = threading.local()
        self._opened: list[Any] = [self.template]
        self._lock = threading.Lock()

    def this_thread(self) -> Any:
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = self.delegation.authorized_http()
            with self._lock:
                self._opened.append(http)
        return http

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()


class GoogleClients:
    """The Directory and Reports clients, built once from the shipped discovery documents, and one
    authorized HTTP connection per thread (httplib2 is not thread-safe: requests built from the
    shared clients are sent with `execute(http=<this thread's>)`, as the library documents)."""

    def __init__(self, delegation: Delegation, api_root: str):
        self.delegation = delegation
        self.api_root = api_root if api_root.endswith("/") else api_root + "/"
        # new_batch_http_request() would post to Google's own host whatever api_endpoint says.
        self.batch_uri = self.api_root + "batch/admin/directory_v1"
        options = {"api_endpoint": self.api_root}
        # Requests built from these carry this connection's credentials (for batch parts and 401 refreshes).
        self.connections = ThreadConnections(delegation)
        template = self.connections.template
        directory = build("admin", "directory_v1", http=template, client_options=options, static_discovery=True,
                          cache_discovery=False, model=OrjsonModel())
        reports = build("admin", "reports_v1", http=template, client_options=options, static_discovery=True,
                        cache_discovery=False, model=OrjsonModel())
        # service.tokens() builds a new Resource from the discovery document on every call (0.4 ms): keep them.
        self._resources = {"users": directory.users(), "tokens": directory.tokens(), "activities": reports.activities()}

    def resource(self, name: str) -> tuple[Any, Any]:
        """("users" | "tokens" | "activities") resource and this thread's HTTP connection."""
        return self._resources[name], self.connections.this_thread()

    def close(self) -> None:
        """Close the connections every thread opened."""
        self.connections.close()


class ApiCaller:
    """Single calls, paced, counted and retried (batches have their own loop in google_tokens)."""

    def __init__(self, clients: GoogleClients, limiter: RateLimiter, counter: CallCounter, stop: threading.Event):
        self.clients, self.limiter, self.counter, self.stop = clients, limiter, counter, stop

    def execute(self, make_request: Callable[[Any], Any], *, resource: str, paged: bool = False) -> dict[str, Any]:
        """Run make_request(resource).execute() until it succeeds ("users" or "activities"); raise
        ApiFailure when it cannot, or PageTokenRefused when a `paged` call (one with a
        pageToken) lost its place."""
        service, http = self.clients.resource(resource)
        refused = 0
        for attempt in range(MAX_ATTEMPTS):
            self.limiter.acquire(1)
            self.counter.call()
            try:
                response = make_request(service).execute(http=http)
                if isinstance(response, dict):
                    return response
                failure = ApiFailure.damaged("the answer")  # the client hands back text it could not parse
            except HttpError as error:
                failure = ApiFailure.from_http_error(error)
            except auth_exceptions.RefreshError as error:
                if not error.retryable:
                    raise self.clients.delegation.refresh_error(error) from None
                failure = ApiFailure.from_refresh_error(error)
            except TRANSPORT_ERRORS as error:
                failure = ApiFailure.from_transport_error(error)
                http.close()  # a timed-out connection could still deliver its late answer to the next call
            except UnicodeDecodeError:  # a body cut inside a multi-byte character
                failure = ApiFailure.damaged("the answer")
            if paged and (failure.status == 400 or failure.status >= 500):
                refused += 1
                if failure.status == 400 or refused >= PAGE_TOKEN_TRIES:
                    raise PageTokenRefused(failure)
            if not failure.retryable or attempt == MAX_ATTEMPTS - 1:
                raise failure
            self.counter.retry()
            if self.stop.wait(retry_wait(attempt, failure)):
                raise Cancelled()
        raise AssertionError("unreachable")


def describe_failure(delegation: Delegation, what: str, failure: ApiFailure) -> ProviderError:
    """What to tell the admin about a call that failed for good."""
    if failure.status == 403 and failure.reason == "forbidden":
        return delegation.forbidden(what, failure.message)
    if failure.status == 403 and failure.reason == "insufficientPermissions":
        return delegation.missing_scopes(what)
    if failure.retryable:
        return ProviderError(f"{what} kept failing after {MAX_ATTEMPTS} attempts (last: {failure}); "
                             "Google may be having trouble, or another tool is using this admin's quota: scan again later")
    return ProviderError(f"Google refused {what}: {failure}")
