"""Listing every user's OAuth tokens: tokens.list in concurrent, paced batches.

The scan's thread `add()`s user ids and `pump()`s; worker threads (each with its own
httplib2 connection: it is not thread-safe) send batches of up to `batch_size` calls to
`<api_root>/batch/admin/directory_v1`, after taking one rate-limiter token per part, and
post a `BatchOutcome` to the outbox. The scan's thread hands each outcome to `settle()`,
which returns the finished listings and puts failed parts back in the queue after an
exponential backoff with jitter (or the Retry-After asked for): the client library's own
retries do not cover batch parts. A batch that fails as a whole (an error answer, a reset
or timed-out connection, a multipart body cut short) puts all its parts back. A 404 for a
user deleted during the scan is a listing with `tokens=None`.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from google.auth import exceptions as auth_exceptions
from googleapiclient.errors import BatchError, HttpError

from .batch import PlainBatchHttpRequest
from .calls import (
    MAX_ATTEMPTS, TRANSPORT_ERRORS, ApiFailure, CallCounter, Cancelled, GoogleClients, RateLimiter, describe_failure,
    retry_wait,
)

TOKEN_FIELDS = "items(clientId,displayText,anonymous,nativeApp,userKey,scopes)"
# Google allows 1000 calls a batch, but a 1000-call answer is ~3 MB and the client library
# holds several copies of it while parsing: 250 keeps a scan's memory low at no cost in time.
MAX_BATCH = 250
# What a multipart answer that was cut short or garbled raises: PlainBatchHttpRequest's reading
# (BatchError: no closing boundary, a part without Content-ID or HTTP head; ValueError: a bad
# status line, bytes cut inside a character), the library's execute() when a part is missing
# (KeyError), and what the library's own parser raises should a part go to it (TypeError, IndexError).
DAMAGED_BATCH_ERRORS = (BatchError, KeyError, TypeError, ValueError, IndexError)


def batch_size_for(requests_per_minute: int) -> int:
    """About one second of quota per batch (10 to 250 calls): pacing stays smooth and a failed batch costs little."""
    return max(10, min(MAX_BATCH, requests_per_minute // 60))


@dataclass
class TokenListing:
    user_id: str
    tokens: list[dict[str, Any]] | None  # None: the user was deleted during the scan (404)


@dataclass
class BatchOutcome:
    """What one batch brought back, posted to the outbox by a worker."""

    listings: list[TokenListing] = field(default_factory=list)
    failed: list[tuple[str, int, ApiFailure]] = field(default_factory=list)  # (user, attempts made, failure)
    fatal: BaseException | None = None


class TokenLister:
    def __init__(self, clients: GoogleClients, limiter: RateLimiter, counter: CallCounter, outbox: queue.Queue, *,
                 batch_size: int, workers: int):
        self.clients, self.limiter, self.counter, self.outbox = clients, limiter, counter, outbox
        self.batch_size, self.workers = batch_size, workers
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="google-tokens")
        self._ready: deque[tuple[str, int]] = deque()  # (user id, attempts made)
        self._waiting: list[tuple[float, int, str, int]] = []  # heap of (ready at, tie, user id, attempts made)
        self._tie = itertools.count()
        self.in_flight = 0
        self.input_done = False

    # -- the scan's thread ----------------------------------------------------------------------

    def add(self, user_id: str) -> None:
        self._ready.append((user_id, 0))

    def finish_input(self) -> None:
        self.input_done = True

    @property
    def backlog(self) -> int:
        """Users waiting to be sent (retries included)."""
        return len(self._ready) + len(self._waiting)

    @property
    def idle(self) -> bool:
        return not (self._ready or self._waiting or self.in_flight)

    def seconds_to_next_retry(self) -> float | None:
        return max(0.0, self._waiting[0][0] - time.monotonic()) if self._waiting else None

    def pump(self) -> None:
        """Send what is ready: full batches, or the remainder once no more users are coming.

        Twice as many batches as workers are kept submitted, so a worker never waits for
        the scan's thread to hand it the next one.
        """
        now = time.monotonic()
        while self._waiting and self._waiting[0][0] <= now:
            _, _, user_id, attempts = heapq.heappop(self._waiting)
            self._ready.appendleft((user_id, attempts))  # retries first: their users are half done
        while self.in_flight < 2 * self.workers and self._ready:
            if len(self._ready) < self.batch_size and not self.input_done:
                break  # wait for a full batch while users are still being listed
            items = [self._ready.popleft() for _ in range(min(self.batch_size, len(self._ready)))]
            self.in_flight += 1
            self._pool.submit(self._run_batch, items)

    def settle(self, outcome: BatchOutcome) -> list[TokenListing]:
        """Take a worker's outcome: re-queue retryable failures, return finished listings."""
        self.in_flight -= 1
        if outcome.fatal is not None:
            raise outcome.fatal
        for user_id, attempts, failure in outcome.failed:
            if not failure.retryable or attempts >= MAX_ATTEMPTS:
                raise describe_failure(self.clients.delegation, f"tokens.list for user {user_id}", failure)
            self.counter.retry()
            ready_at = time.monotonic() + retry_wait(attempts - 1, failure)
            heapq.heappush(self._waiting, (ready_at, next(self._tie), user_id, attempts))
        return outcome.listings

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- worker threads ---------------------------------------------------------------------------

    def _run_batch(self, items: list[tuple[str, int]]) -> None:
        try:
            outcome = self._send(items)
        except Cancelled:
            outcome = BatchOutcome(fatal=Cancelled())
        except BaseException as error:  # hand anything unexpected to the scan's thread
            outcome = BatchOutcome(fatal=error)
        self.outbox.put(outcome)

    def _send(self, items: list[tuple[str, int]]) -> BatchOutcome:
        tokens, http = self.clients.resource("tokens")
        answers: dict[str, tuple[Any, HttpError | None]] = {}

        def collect(request_id: str, response: Any, exception: HttpError | None) -> None:
            answers[request_id] = (response, exception)

        batch = PlainBatchHttpRequest(callback=collect, batch_uri=self.clients.batch_uri)
        for user_id, _ in items:
            batch.add(tokens.list(userKey=user_id, fields=TOKEN_FIELDS), request_id=user_id)
        self.limiter.acquire(len(items))
        self.counter.call(len(items))
        # The batch request itself failed: every part is retried.
        try:
            batch.execute(http=http)
        except DAMAGED_BATCH_ERRORS:  # first: a BatchError is an HttpError too
            return self._all_failed(items, ApiFailure.damaged("the batch answer"))
        except HttpError as error:
            return self._all_failed(items, ApiFailure.from_http_error(error))
        except auth_exceptions.RefreshError as error:
            if not error.retryable:
                return BatchOutcome(fatal=self.clients.delegation.refresh_error(error))
            return self._all_failed(items, ApiFailure.from_refresh_error(error))
        except TRANSPORT_ERRORS as error:
            http.close()  # a timed-out connection could still deliver its late answer to the next batch
            return self._all_failed(items, ApiFailure.from_transport_error(error))
        outcome = BatchOutcome()
        for user_id, attempts in items:
            response, exception = answers.get(user_id, (None, None))
            if exception is None and response is None:
                failure = ApiFailure(0, "missing", "the batch answer had no part for this call")
                outcome.failed.append((user_id, attempts + 1, failure))
            elif exception is None and not isinstance(response, dict):  # a part whose JSON was cut short
                outcome.failed.append((user_id, attempts + 1, ApiFailure.damaged("the answer")))
            elif exception is None:
                outcome.listings.append(TokenListing(user_id, response.get("items", [])))
            else:
                failure = ApiFailure.from_http_error(exception)
                if failure.status == 404:
                    outcome.listings.append(TokenListing(user_id, None))
                else:
                    outcome.failed.append((user_id, attempts + 1, failure))
        return outcome

    @staticmethod
    def _all_failed(items: list[tuple[str, int]], failure: ApiFailure) -> BatchOutcome:
        return BatchOutcome(failed=[(user_id, attempts + 1, failure) for user_id, attempts in items])

