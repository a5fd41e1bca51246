"""Talking to Microsoft Graph: one requests Session, one retry policy, paging and $batch.

Retries are urllib3's `Retry` (429, 500, 502, 503, 504 and dropped connections),
honouring Graph's `Retry-After` even when it is fractional ("2.128", which urllib3
itself rejects) and backing off exponentially when it is absent. Two things urllib3
cannot see are retried here: a body cut short (broken JSON) and an expired access
token (401, renewed once). Items of a `$batch` carry their own status: throttled or
failed items are sent again in a new batch after the longest Retry-After among them.

A Graph error that remains becomes a `GraphCallError` holding Graph's own code,
message and request-id; it never holds the token.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import takewhile
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

log = logging.getLogger(__name__)

RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_BATCH = 20
BODY_ATTEMPTS = 6  # tries for a response whose JSON arrives broken
BATCH_ROUNDS = 8  # rounds in a row with no $batch item getting through before giving up
TIMEOUT = (10, 120)  # connect, read (seconds)
MAX_RETRY_AFTER = 120.0  # seconds; a longer Retry-After is waited this long, then tried again


class GraphRetry(Retry):
    """urllib3's Retry, with Graph's fractional Retry-After and backoff from the first retry."""

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            seconds = float(retry_after)
        except ValueError:
            return super().parse_retry_after(retry_after)
        return min(max(seconds, 0.0), MAX_RETRY_AFTER)

    def get_backoff_time(self) -> float:
        # urllib3 retries the first failure at once; a throttled service deserves a pause.
        errors = len(list(takewhile(lambda h: h.redirect_location is None, reversed(self.history))))
        if errors == 0:
            return 0.0
        return min(self.backoff_max, self.backoff_factor * 2 ** (errors - 1) + random.random() * self.backoff_jitter)


class _QuietGraphRetries(logging.Filter):
    """urllib3 logs each retry of a dropped connection as a warning; ours are counted and summed up instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.args, tuple) and record.args and isinstance(record.args[0], GraphRetry))


logging.getLogger("urllib3.connectionpool").addFilter(_QuietGraphRetries())


def retry_policy(total: int, backoff: float) -> GraphRetry:
    return GraphRetry(
        total=total, connect=total, read=total, status=total, other=0, redirect=0,
        status_forcelist=RETRY_STATUSES, allowed_methods=frozenset({"GET", "POST"}),  # our POSTs are $batch reads
        backoff_factor=backoff, backoff_max=30, backoff_jitter=backoff / 2,
        respect_retry_after_header=True, raise_on_status=False,
    )


class GraphCallError(Exception):
    """Graph refused or failed a request for good (after retries)."""

    def __init__(self, method: str, url: str, status: int | None, code: str, message: str, request_id: str = ""):
        self.method, self.url, self.status, self.code, self.message, self.request_id = method, url, status, code, message, request_id
        super().__init__(self.describe())

    @property
    def path(self) -> str:
        parts = urlsplit(self.url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    def describe(self) -> str:
        status = f"HTTP {self.status} " if self.status else ""
        request_id = f" (request-id {self.request_id})" if self.request_id else ""
        return f"{self.method} {self.path}: {status}{self.code}: {self.message}{request_id}"


@dataclass
class EndpointTiming:
    requests: int = 0
    seconds: float = 0.0


@dataclass
class GraphStats:
    """What the scan cost: calls (a $batch item counts as one), HTTP requests, retries, time by endpoint."""

    calls: int = 0
    http_requests: int = 0
    retries: int = 0
    batch_envelopes: int = 0
    endpoints: dict[str, EndpointTiming] = field(default_factory=lambda: defaultdict(EndpointTiming))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, endpoint: str, *, http_requests: int, calls: int, retries: int, seconds: float, batch: bool = False) -> None:
        with self._lock:
            self.http_requests += http_requests
            self.calls += calls
            self.retries += retries
            self.batch_envelopes += http_requests if batch else 0
            timing = self.endpoints[endpoint]
            timing.requests += http_requests
            timing.seconds += seconds

    def add_retries(self, n: int) -> None:
        with self._lock:
            self.retries += n

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self.calls, "http_requests": self.http_requests, "retries": self.retries,
                "batch_envelopes": self.batch_envelopes,
                "endpoints": {name: {"requests": t.requests, "seconds": round(t.seconds, 3)} for name, t in sorted(self.endpoints.items())},
            }


class GraphClient:
    """Graph requests for one scan; safe to share between threads."""

    def __init__(self, graph_url: str, token, *, pool_size: int = 8, retries: int = 8, backoff: float = 0.25):
        self.base = graph_url.rstrip("/")
        self.token = token
        self.backoff = backoff
        self.stats = GraphStats()
        self.session = requests.Session()  # trust_env: honours REQUESTS_CA_BUNDLE and proxies
        adapter = HTTPAdapter(max_retries=retry_policy(retries, backoff), pool_connections=2, pool_maxsize=pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        # The tenant-wide grants list has a fallback (per-app lists), so give up on it sooner.
        quick = HTTPAdapter(max_retries=retry_policy(2, backoff), pool_connections=1, pool_maxsize=2)
        for version in ("v1.0", "beta"):
            self.session.mount(f"{self.base}/{version}/oauth2PermissionGrants", quick)

    def close(self) -> None:
        self.session.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("https://", "http://")) else self.base + path

    # -- single requests and paging --------------------------------------------------------

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> Any:
        """GET a Graph URL (or a path like "/v1.0/users?..."): the JSON body, or text for $count."""
        return self._request("GET", self.url(path), headers=headers)

    def pages(self, path: str, *, headers: dict[str, str] | None = None) -> Iterator[list[dict]]:
        """Each page's `value` of a collection, following @odata.nextLink verbatim."""
        url: str | None = self.url(path)
        while url:
            body = self._request("GET", url, headers=headers)  # headers (ConsistencyLevel) are resent on every page
            yield body.get("value") or []
            url = body.get("@odata.nextLink")

    def _request(self, method: str, url: str, *, headers: dict[str, str] | None = None, json_body: Any = None,
                 calls: int = 1, endpoint: str | None = None) -> Any:
        endpoint = endpoint or endpoint_name(method, url)
        renewed = False
        for attempt in range(1, BODY_ATTEMPTS + 1):
            sent = {"Authorization": f"Bearer {self.token.get()}", "client-request-id": str(uuid.uuid4()),
                    "Accept": "application/json", **(headers or {})}
            started = time.monotonic()
            try:
                response = self.session.request(method, url, headers=sent, json=json_body, timeout=TIMEOUT)
            except requests.RequestException as error:
                self.stats.add(endpoint, http_requests=1, calls=calls, retries=0, seconds=time.monotonic() - started, batch=method == "POST")
                raise GraphCallError(method, url, None, type(error).__name__, _connection_problem(error)) from None
            retried = len(response.raw.retries.history) if getattr(response.raw, "retries", None) else 0
            self.stats.add(endpoint, http_requests=1 + retried, calls=calls * (1 + retried), retries=retried,
                           seconds=time.monotonic() - started, batch=method == "POST")
            if response.status_code == 401 and not renewed:
                renewed = True  # the token expired or was revoked early: get a new one, once
                self.stats.add_retries(1)
                self.token.renew()
                continue
            if response.status_code >= 400:
                raise graph_error(method, url, response.status_code, _json_or_none(response), response.headers)
            if response.headers.get("Content-Type", "").startswith("text/plain"):
                return response.text
            try:
                return response.json()
            except ValueError:
                if attempt == BODY_ATTEMPTS:
                    break
                self.stats.add_retries(1)
                time.sleep(self._backoff(attempt))
        raise GraphCallError(method, url, None, "BrokenResponse", f"the response was not complete JSON after {BODY_ATTEMPTS} tries")

    def _backoff(self, attempt: int) -> float:
        return min(30.0, self.backoff * 2 ** (attempt - 1) + random.random() * self.backoff / 2)

    # -- $batch ----------------------------------------------------------------------------

    def batch_collect(self, urls: dict[str, str]) -> Iterator[tuple[str, list[dict] | None]]:
        """GET many collections through $batch: yields (key, every item across pages), or
        (key, None) when the object is gone (404). `urls` are relative to /v1.0."""
        collected: dict[str, list[dict]] = defaultdict(list)
        pending = dict(urls)
        while pending:
            follow: dict[str, str] = {}
            for key, status, body in self._batch_round(pending):
                if status == 404:
                    yield key, None
                    continue
                collected[key].extend(body.get("value") or [])
                next_link = body.get("@odata.nextLink")
                if next_link:
                    follow[key] = relative_to_version(next_link)
                else:
                    yield key, collected.pop(key)
            pending = follow

    def batch_objects(self, urls: dict[str, str]) -> Iterator[tuple[str, dict | None]]:
        """GET many single objects through $batch: yields (key, object), or (key, None) for 404."""
        for key, status, body in self._batch_round(urls):
            yield key, None if status == 404 else body

    def _batch_round(self, urls: dict[str, str]) -> Iterator[tuple[str, int, dict]]:
        """Send the requests in batches of 20; retry throttled and failed items; yield final answers."""
        keys = list(urls)
        for start in range(0, len(keys), MAX_BATCH):
            chunk = {str(n): keys[start + n] for n in range(min(MAX_BATCH, len(keys) - start))}
            pending = dict(chunk)
            stalled = 0  # rounds in a row in which no item got through
            while True:
                items = [{"id": item_id, "method": "GET", "url": urls[key]} for item_id, key in pending.items()]
                envelope = self._request("POST", f"{self.base}/v1.0/$batch", json_body={"requests": items},
                                         calls=len(items), endpoint="POST /v1.0/$batch")
                answers = {str(r.get("id")): r for r in envelope.get("responses") or []}
                again, waits = {}, []
                for item_id, key in pending.items():
                    answer = answers.get(item_id)
                    status = int(answer.get("status", 0)) if answer else 0
                    if answer is None or status in RETRY_STATUSES:  # a missing item is retried too
                        again[item_id] = key
                        waits.append(_item_retry_after(answer))
                        continue
                    body = answer.get("body")
                    if status >= 400 and status != 404:
                        raise graph_error("GET", f"{self.base}/v1.0{urls[key]}", status, body if isinstance(body, dict) else None,
                                          answer.get("headers") or {})
                    yield key, status, body if isinstance(body, dict) else {}
                if not again:
                    break
                # A throttled batch drains a few items a round: keep going while it moves.
                stalled = stalled + 1 if len(again) == len(pending) else 0
                if stalled == BATCH_ROUNDS:
                    raise GraphCallError("GET", f"{self.base}/v1.0{urls[next(iter(again.values()))]}", 429, "TooManyRequests",
                                         f"{len(again)} $batch item(s) were still throttled or failing after {BATCH_ROUNDS} tries")
                self.stats.add_retries(len(again))
                known = [w for w in waits if w is not None]
                time.sleep(max(known) if known else self._backoff(stalled + 1))
                pending = again


def endpoint_name(method: str, url: str) -> str:
    """"GET /v1.0/servicePrincipals/{id}/oauth2PermissionGrants": a URL without ids or query."""
    segments = urlsplit(url).path.split("/")
    named = ["{id}" if len(s) >= 32 and s.count("-") == 4 else s for s in segments]
    return f"{method} {'/'.join(named)}"


def relative_to_version(link: str) -> str:
    """A nextLink made relative to /v1.0, as $batch items need."""
    parts = urlsplit(link)
    path = parts.path.split("/v1.0", 1)[-1]
    return path + (f"?{parts.query}" if parts.query else "")


def graph_error(method: str, url: str, status: int, body: dict | None, headers) -> GraphCallError:
    error = (body or {}).get("error") or {}
    if isinstance(error, str):  # not Graph's shape (a proxy, or the identity platform)
        error = {"code": error, "message": (body or {}).get("error_description", "")}
    inner = error.get("innerError") or error.get("innererror") or {}
    request_id = inner.get("request-id") or (headers.get("request-id") if headers else "") or ""
    return GraphCallError(method, url, status, error.get("code") or f"HTTP{status}",
                          error.get("message") or "no error details in the response", request_id)


def _json_or_none(response: requests.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _item_retry_after(answer: dict | None) -> float | None:
    headers = {k.lower(): v for k, v in ((answer or {}).get("headers") or {}).items()}
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(headers["retry-after"])))
    except (KeyError, TypeError, ValueError):
        return None


def _connection_problem(error: requests.RequestException) -> str:
    if isinstance(error, requests.exceptions.SSLError):
        return ("the server's certificate is not trusted; if a proxy inspects TLS, point REQUESTS_CA_BUNDLE at a bundle "
                f"holding its CA ({_first_line(error)})")
    if isinstance(error, requests.exceptions.Timeout):
        return f"no answer in time, even after retries ({_first_line(error)})"
    return f"cannot reach the server, even after retries ({_first_line(error)})"


def _first_line(error: Exception) -> str:
    text = str(error)
    return text.splitlines()[0][:300] if text else type(error).__name__

