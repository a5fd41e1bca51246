"""Listing the directory: users.list, 500 users a page, on background threads.

The scan's thread writes every record, so it should never wait on the network: the
pager posts ("users", [user, ...]) messages to the outbox, then ("users_done", None),
or ("fatal", ProviderError). At most PAGES_AHEAD pages wait to be taken.

A full scan pages through the whole directory in one listing (no `query`): exact, and
paced by the token calls anyway. An incremental scan makes few other calls, so one
listing after another page would be most of its time (201 pages at 100,000 accounts):
it lists by address prefix instead, `email:a*` ... `email:9*` (SHARDS), SHARD_WORKERS
listings at once. Those are searches, and Google's search data can lag by up to 36
hours, so a sharded listing may miss an account created or renamed just now, and no
prefix covers an address starting with another character. The caller makes up for it
(plugins.google.provider): the accounts the token activity names that no shard returned
are fetched here with users.get (`also_fetch`), and known accounts no shard returned
have their tokens listed, which tells a deleted account (404) from a missed one. A
user two shards return (an alias under another prefix) is posted once.

Google stops honouring a listing's page token after a while (a users.list paged for
over an hour answers 503): the pager then lists that listing again from its first page,
passing on only users it has not posted yet, so nothing is posted twice and nothing is
lost. After MAX_RESTARTS restarts in a row that found no new user, the scan fails.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable

from scanner import ProviderError

from .calls import ApiCaller, ApiFailure, Cancelled, PageTokenRefused, describe_failure

log = logging.getLogger(__name__)

# aliases and emails: the account's other addresses, so one person's Google and Microsoft
# accounts are found to be one person (plugins.google.records.account_addresses).
USER_ITEM_FIELDS = "id,primaryEmail,name/fullName,orgUnitPath,suspended,isAdmin,aliases,emails"
USER_FIELDS = f"nextPageToken,users({USER_ITEM_FIELDS})"
PAGE_SIZE = 500  # the most users.list allows
PAGES_AHEAD = 4
MAX_RESTARTS = 3  # in a row, without a new user in between
# Addresses start with a letter or a digit (Google allows dots, dashes, underscores and
# apostrophes only inside a username): one search per first character.
SHARDS = tuple(f"email:{c}*" for c in "abcdefghijklmnopqrstuvwxyz0123456789")
SHARD_WORKERS = 8  # sharded listings paged at once (each thread has its own connection)


class UserPager:
    def __init__(self, caller: ApiCaller, customer: str, outbox: queue.Queue, stop: threading.Event, *,
                 sharded: bool = False, also_fetch: Iterable[str] = ()):
        self.caller, self.customer, self.outbox, self.stop = caller, customer, outbox, stop
        self.sharded = sharded
        self.also_fetch = set(also_fetch)
        self._room = threading.Semaphore(PAGES_AHEAD)
        self._queries: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        for query in SHARDS if sharded else (None,):
            self._queries.put(query)
        workers = SHARD_WORKERS if sharded else 1
        self._threads = [threading.Thread(target=self._work, name=f"google-users-{n}", daemon=True) for n in range(workers)]
        self._running = workers
        self._lock = threading.Lock()  # guards _posted, _running and _failed
        self._failed = False
        # Ids of the users posted, to skip them if a listing has to start again or two shards
        # return the same user (about 8 MB for 100,000 users: Google's numeric ids are kept as ints).
        self._posted: set[int | str] = set()

    def start(self) -> UserPager:
        for thread in self._threads:
            thread.start()
        return self

    def taken(self) -> None:
        """The scan's thread took a page: make room for another."""
        self._room.release()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)

    def _work(self) -> None:
        """One thread: take listings until none is left; the last thread out finishes up."""
        try:
            while not self._failed:
                try:
                    query = self._queries.get_nowait()
                except queue.Empty:
                    break
                if not self._list(query):
                    return
            with self._lock:
                self._running -= 1
                last = self._running == 0 and not self._failed
            if last:
                if self.also_fetch and not self._fetch_missing():
                    return
                self.outbox.put(("users_done", None))
        except Cancelled:
            return
        except BaseException as error:  # the scan's thread decides what it means
            self._fail(error)

    def _list(self, query: str | None) -> bool:
        """Page through one listing (the whole directory, or one search); False if the scan stops."""
        page_token = None
        restarts = 0
        while True:
            try:
                response = self.caller.execute(
                    lambda users: users.list(customer=self.customer, maxResults=PAGE_SIZE, pageToken=page_token,
                                             fields=USER_FIELDS, **({"query": query} if query else {})),
                    resource="users", paged=page_token is not None)
            except PageTokenRefused as refused:
                restarts += 1
                if restarts > MAX_RESTARTS:
                    self._fail(self._gave_up(refused.failure))
                    return False
                log.warning("google: Google stopped honouring the users.list page token (%s); listing users%s "
                            "again from the start, skipping the %d already read (restart %d of at most %d)",
                            refused.failure, f" ({query})" if query else "", len(self._posted), restarts, MAX_RESTARTS)
                page_token = None
                continue
            except ApiFailure as failure:
                what = f"users.list for [google] customer {self.customer!r}" if failure.status == 400 else "users.list"
                self._fail(describe_failure(self.caller.clients.delegation, what, failure))
                return False
            users = self._new_users(response.get("users", []))
            if users:
                restarts = 0
                if not self._post(users):
                    return False
            page_token = response.get("nextPageToken")
            if not page_token:
                return True

    def _fetch_missing(self) -> bool:
        """users.get for the accounts the token activity named that no listing returned (search
        lag: created or renamed just now); one gone meanwhile (404) is skipped."""
        found = []
        for user_id in sorted(self.also_fetch):
            if _compact(user_id) in self._posted:
                continue
            try:
                user = self.caller.execute(lambda users, key=user_id: users.get(userKey=key, fields=USER_ITEM_FIELDS),
                                           resource="users")
            except ApiFailure as failure:
                if failure.status == 404:
                    continue
                self._fail(describe_failure(self.caller.clients.delegation, f"users.get for user {user_id}", failure))
                return False
            found += self._new_users([user])
        if found:
            log.info("google: %d accounts named in the token activity were not in the directory search yet; "
                     "read them one by one", len(found))
            return self._post(found)
        return True

    def _new_users(self, page: list[dict]) -> list[dict]:
        """The users of a page not posted yet, remembered as posted."""
        fresh = []
        with self._lock:
            for user in page:
                key = _compact(user["id"])
                if key not in self._posted:
                    self._posted.add(key)
                    fresh.append(user)
        return fresh

    def _post(self, users: list[dict]) -> bool:
        """Hand a page to the scan's thread once it has room; False if the scan stopped meanwhile."""
        while not self._room.acquire(timeout=0.2):
            if self.stop.is_set() or self._failed:
                return False
        self.outbox.put(("users", users))
        return True

    def _fail(self, error: BaseException) -> None:
        """Post the first failure only: the scan stops on it."""
        with self._lock:
            first, self._failed = not self._failed, True
        if first:
            self.outbox.put(("fatal", error))

    def _gave_up(self, failure: ApiFailure) -> ProviderError:
        return ProviderError(
            f"users.list kept losing its place: Google refused its page token {MAX_RESTARTS + 1} times in a row "
            f"without a new user in between (last: {failure}). Scan again later; if it keeps happening, check the "
            "Google Workspace Status Dashboard (https://www.google.com/appsstatus) for Admin SDK problems")


def _compact(user_id: str) -> int | str:
    return int(user_id) if user_id.isdigit() else user_id
