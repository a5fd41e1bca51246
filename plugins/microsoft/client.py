"""Talking to Microsoft Graph: one requests Session, one retry policy, paging and $batch.

Retries are urllib3's `Retry` (429, 500, 502, 503, 504, dropped connections and
read timeouts, for GETs and for `$batch` POSTs, which only read), honouring Graph's
`Retry-After` even when it is fractional ("2.128", which urllib3 itself rejects) and
backing off exponentially when it is absent. What urllib3 cannot see is retried here:
a body cut short (broken JSON, or a connection that stalls or drops mid-body) and an
expired access token (401: a new token, at most twice). Items of a `$batch` carry
their own status: throttled or failed items are sent again in a new batch after the
longest Retry-After among them. Closing the client ends every wait to retry at once.

A page token (`$skiptoken` in a nextLink) that Graph says has expired (400
`Directory_ExpiredPageToken`) cannot be sent again: the listing starts over from its
first page, a few times at most, skipping the items already handed out (by id) unless
the caller would rather have them again (`on_restart`).

A Graph error that remains becomes a `GraphCallError` holding Graph's own code,
message and request-id; it never holds the token.

Every request carries the bearer token, so a nextLink is followed only when it points
at the configured graph_url's own scheme, host and port: an answer that names another
host (a tampered or misrouted response) stops the listing instead of leaking the token.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
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
BODY_ATTEMPTS = 6  # tries for a response whose body arrives broken
TOKEN_RENEWALS = 2  # new access tokens per request after a 401 (twice: a new token revoked at once)
BATCH_ROUNDS = 8  # rounds in a row with no $batch item getting through before giving up
TIMEOUT = (10, 120)  # connect, read (seconds)
MAX_RETRY_AFTER = 120.0  # seconds; a longer Retry-After is waited this long, then tried again
EXPIRED_PAGE_TOKEN = "Directory_ExpiredPageToken"  # Graph's 400 for a $skiptoken it no longer honours
PAGE_TOKEN_RESTARTS = 3  # fresh starts of one listing after expired page tokens, before giving up


class GraphClosed(Exception):
    """The client was closed (the scan ended or failed): a request still waiting to retry gives up."""


def wait_unless_closed(closed: threading.Event | None, seconds: float) -> None:
    """Sleep, but raise GraphClosed at once if the client is (or gets) closed meanwhile."""
    if closed is None:
        time.sleep(max(0.0, seconds))
    elif closed.wait(max(0.0, seconds)):
        raise GraphClosed("the Graph client was closed")


class GraphRetry(Retry):
    """urllib3's Retry, with Graph's fractional Retry-After, backoff from the first retry, and
    waits that end when the client is closed (so a failed scan's other requests stop at once)."""

    def __init__(self, *args: Any, closed: threading.Event | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.closed = closed

    def new(self, **kw: Any) -> GraphRetry:
        retry = super().new(**kw)
        retry.closed = self.closed
        return retry

    def sleep(self, response=None) -> None:
        # urllib3's order: the server's Retry-After if it sent one, else the backoff.
        wait = self.get_retry_after(response) if self.respect_retry_after_header and response else None
        wait_unless_closed(self.closed, wait or self.get_backoff_time())

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


_QUIET_RETRIES = _QuietGraphRetries()


def retry_policy(total: int, backoff: float, closed: threading.Event | None = None, *,
                 methods: frozenset[str] = frozenset({"GET", "POST"})) -> GraphRetry:  # the scan's POSTs are $batch reads
    return GraphRetry(
        total=total, connect=total, read=total, status=total, other=0, redirect=0,
        status_forcelist=RETRY_STATUSES, allowed_methods=methods,
        backoff_factor=backoff, backoff_max=30, backoff_jitter=backoff / 2,
        respect_retry_after_header=True, raise_on_status=False, closed=closed,
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

    @property
    def expired_page_token(self) -> bool:
        return self.status == 400 and self.code == EXPIRED_PAGE_TOKEN

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
    """What the scan cost: calls (a $batch item counts as one), HTTP requests, retries (listings
    started over after an expired page token included), time by endpoint."""

    calls: int = 0
    http_requests: int = 0
    retries: int = 0
    batch_envelopes: int = 0
    page_restarts: int = 0
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

    def add_page_restart(self) -> None:
        with self._lock:
            self.page_restarts += 1
            self.retries += 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": self.calls, "http_requests": self.http_requests, "retries": self.retries,
                "batch_envelopes": self.batch_envelopes, "page_restarts": self.page_restarts,
                "endpoints": {name: {"requests": t.requests, "seconds": round(t.seconds, 3)} for name, t in sorted(self.endpoints.items())},
            }


class HandedOut:
    """The ids a listing has handed out, for a fresh start after an expired page token to skip.

    Kept as 16-byte digests in one bytearray (16 MB for a million ids, where a set of the id
    strings took about 130 MB for a million users); looked up through a set only once a
    fresh start needs it, which is rare.
    """

    SIZE = 16

    def __init__(self) -> None:
        self._digests = bytearray()
        self._lookup: set[bytes] | None = None  # from the first look-up on, instead of _digests

    def _digest(self, item_id: str) -> bytes:
        return hashlib.blake2b(item_id.encode(), digest_size=self.SIZE).digest()

    def add(self, item_ids: Iterable[str]) -> None:
        for item_id in item_ids:
            if self._lookup is None:
                self._digests += self._digest(item_id)
            else:
                self._lookup.add(self._digest(item_id))

    def __contains__(self, item_id: str) -> bool:
        if self._lookup is None:
            view = memoryview(self._digests)
            self._lookup = {bytes(view[start:start + self.SIZE]) for start in range(0, len(view), self.SIZE)}
            view.release()
            self._digests = bytearray()
        return self._digest(item_id) in self._lookup


class GraphClient:
    """Graph requests for one scan; safe to share between threads."""

    def __init__(self, graph_url: str, token, *, pool_size: int = 8, retries: int = 8, backoff: float = 0.25):
        self.base = graph_url.rstrip("/")
        self.token = token
        logging.getLogger("urllib3.connectionpool").addFilter(_QUIET_RETRIES)  # once: filters are a set
        self.backoff = backoff
        self.stats = GraphStats()
        self._closed = threading.Event()
        self.session = requests.Session()  # trust_env: honours REQUESTS_CA_BUNDLE and proxies
        adapter = HTTPAdapter(max_retries=retry_policy(retries, backoff, self._closed), pool_connections=2, pool_maxsize=pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        # The tenant-wide grants list has a fallback (per-app lists), so give up on it sooner.
        quick = HTTPAdapter(max_retries=retry_policy(2, backoff, self._closed), pool_connections=1, pool_maxsize=2)
        for version in ("v1.0", "beta"):
            self.session.mount(f"{self.base}/{version}/oauth2PermissionGrants", quick)

    def close(self) -> None:
        """Stop: requests of other threads that wait to retry raise GraphClosed instead."""
        self._closed.set()
        self.session.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("https://", "http://")) else self.base + path

    def next_link(self, link: str | None) -> str | None:
        """Graph's @odata.nextLink, if it points at the configured Graph host; GraphCallError otherwise."""
        if link is None or _origin(link) == _origin(self.base):
            return link
        parts = urlsplit(link)
        raise GraphCallError("GET", f"{parts.scheme}://{parts.netloc}{parts.path}", None, "ForeignNextLink",
                             f"Graph's next-page link points at {parts.scheme}://{parts.netloc}, not at graph_url {self.base}; "
                             "it was not followed (every request carries the access token)")

    # -- single requests and paging --------------------------------------------------------

    def get(self, path: str, *, headers: dict[str, str] | None = None) -> Any:
        """GET a Graph URL (or a path like "/v1.0/users?..."): the JSON body, or text for $count."""
        return self._request("GET", self.url(path), headers=headers)

    def pages(self, path: str, *, headers: dict[str, str] | None = None, interval: float = 0.0,
              on_restart: Callable[[], None] | None = None) -> Iterator[list[dict]]:
        """Each page's `value` of a collection (empty pages left out), following @odata.nextLink
        verbatim, at most one request per `interval` seconds.

        When Graph says a nextLink's page token has expired, the listing starts again from its
        first page (at most PAGE_TOKEN_RESTARTS times, then the error is raised). Items already
        yielded are skipped, by id: nothing is yielded twice and nothing is lost. A caller that
        tallies, or whose items may safely come twice, can pass `on_restart` instead: it is
        called (to forget the tally) and every item is yielded again, which spares keeping the ids.
        """
        first = self.url(path)
        url: str | None = first
        yielded = HandedOut() if on_restart is None else None  # for a fresh start to skip
        restarts = items_read = 0
        last_request: float | None = None
        while url:
            if interval and last_request is not None:
                wait_unless_closed(self._closed, interval - (time.monotonic() - last_request))
            last_request = time.monotonic()
            try:
                body = self._request("GET", url, headers=headers)  # headers (ConsistencyLevel) are resent on every page
            except GraphCallError as error:
                if not error.expired_page_token or url == first:
                    raise
                restarts += 1
                self._page_token_expired(first, restarts, items_read, skipping=yielded is not None)
                if on_restart is not None:
                    on_restart()
                    items_read = 0
                url = first
                continue
            items = body.get("value") or []
            if yielded is not None:
                if restarts:
                    items = [item for item in items if item.get("id") is None or item["id"] not in yielded]
                yielded.add(item["id"] for item in items if item.get("id") is not None)
            items_read += len(items)
            if items:
                yield items
            url = self.next_link(body.get("@odata.nextLink"))

    def _page_token_expired(self, first_url: str, restarts: int, items_read: int, *, skipping: bool) -> None:
        """Count and report a fresh start of a listing; raise once there have been too many."""
        listing = urlsplit(first_url).path
        if restarts > PAGE_TOKEN_RESTARTS:
            raise GraphCallError("GET", first_url, 400, EXPIRED_PAGE_TOKEN,
                                 f"the list was read again from its first page {PAGE_TOKEN_RESTARTS} times, and each "
                                 "time a page token expired before the next page was read")
        self.stats.add_page_restart()
        log.warning("microsoft: Graph's page token for %s expired after %s items were read; reading the list again "
                    "from its first page%s (fresh start %d of at most %d)",
                    listing, f"{items_read:,}", " and skipping those" if skipping else "", restarts, PAGE_TOKEN_RESTARTS)

    def _request(self, method: str, url: str, *, headers: dict[str, str] | None = None, json_body: Any = None,
                 calls: int = 1, endpoint: str | None = None) -> Any:
        endpoint = endpoint or endpoint_name(method, url)
        renewals = 0
        for attempt in range(1, BODY_ATTEMPTS + 1):
            if self._closed.is_set():
                raise GraphClosed("the Graph client was closed")
            last = attempt == BODY_ATTEMPTS
            sent = {"Authorization": f"Bearer {self.token.get()}", "client-request-id": str(uuid.uuid4()),
                    "Accept": "application/json", **(headers or {})}
            started = time.monotonic()
            try:
                # urllib3 retries until the headers arrive. The body is read below (stream=True), so that
                # a body that breaks off is retried here without losing urllib3's count of its retries.
                response = self.session.request(method, url, headers=sent, json=json_body, timeout=TIMEOUT, stream=True)
            except requests.RequestException as error:
                self.stats.add(endpoint, http_requests=1, calls=calls, retries=0, seconds=time.monotonic() - started, batch=method == "POST")
                raise GraphCallError(method, url, None, type(error).__name__, _connection_problem(error)) from None
            retried = len(response.raw.retries.history) if getattr(response.raw, "retries", None) else 0
            try:
                response.content  # noqa: B018 (reads the whole body)
                body_complete = True
            except requests.RequestException:  # the connection dropped, or stalled past the read timeout, mid-body
                body_complete = False
            finally:
                response.close()
            self.stats.add(endpoint, http_requests=1 + retried, calls=calls * (1 + retried), retries=retried,
                           seconds=time.monotonic() - started, batch=method == "POST")
            if not body_complete:
                if last:
                    break
                self._retry_after_broken_body(attempt)
                continue
            if response.status_code == 401 and renewals < TOKEN_RENEWALS:
                renewals += 1  # the token expired or was revoked early: get a new one
                self.stats.add_retries(1)
                self.token.renew()
                continue
            if response.status_code >= 400:
                body = _json_or_none(response)
                if body is None and _says_json(response) and not last:  # an error we cannot read: ask again
                    self._retry_after_broken_body(attempt)
                    continue
                raise graph_error(method, url, response.status_code, body, response.headers)
            if response.headers.get("Content-Type", "").startswith("text/plain"):
                return response.text
            try:
                return response.json()
            except ValueError:
                if last:
                    break
                self._retry_after_broken_body(attempt)
        raise GraphCallError(method, url, None, "BrokenResponse",
                             f"the answer was cut short (broken JSON, or the connection dropped mid-answer) {BODY_ATTEMPTS} times")

    def _retry_after_broken_body(self, attempt: int) -> None:
        self.stats.add_retries(1)
        wait_unless_closed(self._closed, self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        return min(30.0, self.backoff * 2 ** (attempt - 1) + random.random() * self.backoff / 2)

    # -- $batch ----------------------------------------------------------------------------

    def batch_collect(self, urls: dict[str, str]) -> Iterator[tuple[str, list[dict] | None]]:
        """GET many collections through $batch: yields (key, every item across pages), or
        (key, None) when the object is gone (404). `urls` are relative to /v1.0. A collection
        whose page token expires is collected again from its first page."""
        collected: dict[str, list[dict]] = defaultdict(list)
        restarts: Counter[str] = Counter()
        pending = dict(urls)
        while pending:
            follow: dict[str, str] = {}
            for key, status, body in self._batch_round(pending):
                if status == 404:
                    yield key, None
                    continue
                if status == 400:  # the page token of a nextLink expired (_batch_round raises any other 400)
                    restarts[key] += 1
                    self._page_token_expired(f"{self.base}/v1.0{urls[key]}", restarts[key], len(collected.pop(key, [])),
                                             skipping=False)
                    follow[key] = urls[key]
                    continue
                collected[key].extend(body.get("value") or [])
                next_link = self.next_link(body.get("@odata.nextLink"))
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
                    expired = "$skiptoken=" in urls[key] and status == 400 and _error_code(body) == EXPIRED_PAGE_TOKEN
                    if status >= 400 and status != 404 and not expired:
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
                wait_unless_closed(self._closed, max(known) if known else self._backoff(stalled + 1))
                pending = again


def endpoint_name(method: str, url: str) -> str:
    """"GET /v1.0/servicePrincipals/{id}/oauth2PermissionGrants": a URL without ids or query."""
    segments = urlsplit(url).path.split("/")
    named = ["{id}" if len(s) >= 32 and s.count("-") == 4 else s for s in segments]
    return f"{method} {'/'.join(named)}"


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in, for comparing hosts."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"https": 443, "http": 80}.get(scheme)


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


def _error_code(body: Any) -> str | None:
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _says_json(response: requests.Response) -> bool:
    return "json" in response.headers.get("Content-Type", "") and bool(response.content)


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

