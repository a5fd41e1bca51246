"""Google Workspace: every app users granted access to their accounts ("Sign in with Google").

A full scan lists users (users.list, 500 a page) and every user's tokens (tokens.list,
in concurrent batches paced to `requests_per_minute`), while other threads read the
Reports API token log for last-used dates. An incremental scan (no --full, a full scan
succeeded in the last 7 days, the Reports API answers) reads the token log since the
last scan first, lists users by address prefix, several listings at once (users.py), and
re-lists tokens only for users who authorized or revoked an app since then, plus users
new to the inventory and known users the listing did not return (a 404 there: the user
was deleted, and loses their grants).

Threads do the network calls and post what they got to one outbox; the scan's thread
(the only one that touches the inventory) turns messages into records as they come,
so memory stays flat whatever the tenant's size.

Every scan first reads the app-access settings (policies.py) and reports them as posture
findings; settings it cannot read are `unknown` findings, never a failed scan.

Settings: [google] admin_email, service_account_file, customer, api_root, policy_api_root,
requests_per_minute, internal_project_numbers (see app-inventory.example.toml).
"""

from __future__ import annotations

import ctypes
import datetime as dt
import functools
import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from scanner import Config, GrantsListed, LastUsed, Provider, Record, ScanRun, UsersSeen, iso, utc_now

from .auth import Delegation
from .calls import ApiCaller, CallCounter, GoogleClients, RateLimiter
from .policies import PostureReader
from .records import token_records, user_record
from .reports import RETENTION, ActivityPage, BackgroundReader
from .tokens import BatchOutcome, TokenListing, TokenLister, batch_size_for
from .users import UserPager

log = logging.getLogger(__name__)

WORKERS = 4  # batches in flight at once (each worker has its own connection)
BACKLOG_USERS = 5000  # users waiting for tokens.list before the users pager pauses
TRIM_SECONDS = 2.0  # how often freed memory goes back to the OS
# The token log can lag by hours: each scan re-reads this much before the previous cursor.
REPORT_LAG = dt.timedelta(hours=6)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


def release_freed_memory() -> None:
    """Hand memory the worker threads freed back to the OS.

    glibc keeps what threads free in per-thread arenas, so a scan's RSS would creep up
    with every parsed batch (about 270 MB at 100,000 users, against 150 MB with this).
    Elsewhere (musl, macOS) there is no malloc_trim and nothing to do.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class GoogleWorkspace(Provider):
    name = "google"
    label = "Google Workspace"

    def scan(self, run: ScanRun) -> Iterator[Record]:
        settings = self.config.section("google")
        delegation = Delegation(settings["service_account_file"], settings["admin_email"])
        delegation.sign_in()
        run.tenant = settings["admin_email"].rpartition("@")[2].lower()
        yield from _GoogleScan(self.config, settings, delegation, run).records()


class _GoogleScan:
    """One scan's state: the clients, pacing, the token lister and what has been seen."""

    def __init__(self, config: Config, settings: dict[str, Any], delegation: Delegation, run: ScanRun):
        self.run, self.settings, self.delegation = run, settings, delegation
        self.roles = config.section("roles")
        # A user's digest covers the [roles] rules too: new rules rewrite every account's role.
        self.digest_key = hashlib.blake2b(orjson.dumps(self.roles, option=orjson.OPT_SORT_KEYS), digest_size=32).digest()
        self.internal_projects = {str(n).strip() for n in settings["internal_project_numbers"]}
        self.stop = threading.Event()
        self.limiter = RateLimiter(settings["requests_per_minute"])
        self.counter = CallCounter(run)
        self.clients = GoogleClients(delegation, settings["api_root"])
        self.caller = ApiCaller(self.clients, self.limiter, self.counter, self.stop)
        self.outbox: queue.Queue = queue.Queue()
        self.lister = TokenLister(self.clients, self.limiter, self.counter, self.outbox,
                                  batch_size=batch_size_for(settings["requests_per_minute"]), workers=WORKERS)
        self.reader: BackgroundReader | None = None
        self.pager: UserPager | None = None
        self.reports_ok = True
        self.apps_seen: set[str] = set()
        self.deleted_during_scan = 0
        self.changed: _ChangedUsers | None = None  # set when users are listed: who changed (incremental)
        self.listed = 0
        self.estimate: int | None = None
        self.pages_owed = 0  # users pages taken whose slot the pager has not been given back

    def records(self) -> Iterator[Record]:
        try:
            yield from self._scan()
        finally:
            self.stop.set()
            self.limiter.close()
            self.lister.close()
            for background in (self.reader, self.pager):
                if background:
                    background.join()
            self.clients.close()
            self.counter.sync()

    def _scan(self) -> Iterator[Record]:
        run = self.run
        yield from PostureReader(self.delegation, self.settings, self.limiter, self.counter, self.stop).findings()
        self.counter.sync()
        started = utc_now()  # the scanner's clock, as every time the inventory keeps
        cursor = _parse_cursor(run.state.get("reports_cursor"))
        since = cursor - REPORT_LAG if cursor else started - RETENTION
        self.reader = BackgroundReader(self.caller, since, self.outbox, self.stop).start()
        changed: _ChangedUsers | None = None
        if run.incremental_allowed() and cursor:
            # Who authorized or revoked apps since the last scan decides whose tokens to re-list.
            changed = _ChangedUsers()
            while self.reader is not None:
                yield from self._take_messages(block_for=1.0, changed=changed)
            if self.reports_ok:
                run.mode = "incremental"
            else:
                changed = None
        yield from self._users_and_tokens(changed)
        previous = run.state.get("reports_cursor")
        cursor_now = iso(started) if self.reports_ok else previous
        run.new_state = {"reports_cursor": cursor_now} if cursor_now else {}
        if self.deleted_during_scan:
            log.info("google: %d users were deleted during the scan and skipped", self.deleted_during_scan)

    # -- users and their tokens -------------------------------------------------------------------

    def _users_and_tokens(self, changed: _ChangedUsers | None) -> Iterator[Record]:
        """List every user (pages come from a background thread) and the tokens of those that need it."""
        run, lister = self.run, self.lister
        self.changed = changed
        self.estimate = (run.previous or {}).get("users_seen") or None
        run.progress.start(self.estimate, unit="users")
        next_trim = time.monotonic() + TRIM_SECONDS
        # An incremental scan lists the directory by address prefix, several listings at once
        # (users.py); a full scan in one exact listing.
        self.pager = UserPager(self.caller, self.settings["customer"], self.outbox, self.stop, sharded=changed is not None,
                               also_fetch=changed.ids if changed is not None else ()).start()
        while self.pager is not None or not lister.idle or self.reader is not None:
            retry_in = lister.seconds_to_next_retry()
            yield from self._take_messages(block_for=1.0 if retry_in is None else min(1.0, retry_in + 0.01))
            lister.pump()
            self.counter.sync()
            # Let the pager fetch more users only while the token workers have little queued:
            # a long backlog holds memory (and users.list would only run further ahead).
            while self.pages_owed and lister.backlog < BACKLOG_USERS:
                self.pages_owed -= 1
                self.pager.taken()
            if time.monotonic() >= next_trim:
                release_freed_memory()
                next_trim = time.monotonic() + TRIM_SECONDS

    def _users(self, page: list[dict[str, Any]]) -> Iterator[Record]:
        """A users.list page: the users, and whose tokens to list."""
        run, changed = self.run, self.changed
        # An incremental scan: the page's users the inventory knows, as it last saw them.
        known = run.user_digests([user["id"] for user in page]) if changed is not None else {}
        unchanged = []
        for user in page:
            user_id = user["id"]
            digest = self._digest(user)
            if changed is not None and known.get(user_id) == digest:
                unchanged.append(user_id)  # as the inventory has it: only its last_seen moves
            else:
                record = user_record(user, self.roles)
                record.digest = digest
                yield record
            if changed is None or user_id not in known or changed.includes(user_id, user.get("primaryEmail", "")):
                self.lister.add(user_id)
            else:
                run.progress.advance()
        if unchanged:
            yield UsersSeen(unchanged)
        self.listed += len(page)
        run.progress.set_total(max(self.listed, self.estimate or 0))

    def _digest(self, user: dict[str, Any]) -> int:
        """The users.list entry (and the [roles] rules) as a 64-bit integer: the same account
        listed the same way gives the same one."""
        raw = hashlib.blake2b(orjson.dumps(user, option=orjson.OPT_SORT_KEYS), digest_size=8, key=self.digest_key).digest()
        return int.from_bytes(raw, "big", signed=True)

    def _take_messages(self, block_for: float | None, changed: _ChangedUsers | None = None) -> Iterator[Record]:
        """Handle what the token workers, the users pager and the Reports readers posted;
        wait up to `block_for` seconds for the first message."""
        while True:
            try:
                message = self.outbox.get(timeout=block_for) if block_for else self.outbox.get_nowait()
            except queue.Empty:
                return
            block_for = None
            if isinstance(message, BatchOutcome):
                for listing in self.lister.settle(message):
                    yield from self._grants(listing)
                continue
            kind, payload = message
            if kind == "users":
                self.pages_owed += 1
                yield from self._users(payload)
            elif kind == "users_done":
                self.pager, self.pages_owed = None, 0
                self.run.progress.set_total(self.listed)
                if self.changed is not None:
                    # Known accounts the search did not return: deleted, or not in the search data
                    # yet. Listing their tokens tells: a deleted one answers 404 and loses its grants.
                    for user_id in self.run.users_not_seen():
                        self.lister.add(user_id)
                self.lister.finish_input()
            elif kind == "activity":
                if self.reader is not None:  # (a page can trail another reader's failure)
                    self.reader.taken()
                if changed is not None:
                    changed.add(payload)
                yield from self._last_used(payload)
            elif kind == "activity_done":
                self.reader = None
            elif kind == "activity_failed":
                log.warning("google: the Reports API is unavailable (%s); every user's tokens are listed, "
                            "and last-used dates wait for a later scan", payload)
                self.reports_ok, self.reader = False, None
            elif kind == "fatal":
                raise payload

    def _grants(self, listing: TokenListing) -> Iterator[Record]:
        if listing.tokens is None:
            self.deleted_during_scan += 1
            self.run.progress.set_counters(deleted=self.deleted_during_scan)
        else:
            yield from token_records(listing.user_id, listing.tokens, self.apps_seen, self.internal_projects)
        if self.run.mode == "incremental":
            yield GrantsListed(listing.user_id)
        self.run.progress.advance()

    def _last_used(self, page: ActivityPage) -> Iterator[LastUsed]:
        for (user_id, client_id), at in page.last_used.items():
            yield LastUsed(app_id=client_id, at=at, user_id=user_id)


class _ChangedUsers:
    """Users with `authorize` or `revoke` events since the last scan, by id and by email."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.emails: set[str] = set()

    def add(self, page: ActivityPage) -> None:
        self.ids |= page.changed_user_ids
        self.emails |= page.changed_emails

    def includes(self, user_id: str, email: str) -> bool:
        return user_id in self.ids or email.lower() in self.emails


def _parse_cursor(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)

