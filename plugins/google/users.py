"""Listing the directory: users.list, 500 users a page, on a background thread.

The scan's thread writes every record, so it should never wait on the network: the
pager posts ("users", [user, ...]) messages to the outbox, then ("users_done", None),
or ("fatal", ProviderError). At most PAGES_AHEAD pages wait to be taken.

Google stops honouring a listing's page token after a while (a users.list paged for
over an hour answers 503): the pager then lists again from the first page, passing on
only users it has not posted yet, so nothing is posted twice and nothing is lost. After
MAX_RESTARTS restarts in a row that found no new user, the scan fails.
"""

from __future__ import annotations

import logging
import queue
import threading

from scanner import ProviderError

from .calls import ApiCaller, ApiFailure, Cancelled, PageTokenRefused, describe_failure

log = logging.getLogger(__name__)

# aliases and emails: the account's other addresses, so one person's Google and Microsoft
# accounts are found to be one person (plugins.google.records.account_addresses).
USER_FIELDS = "nextPageToken,users(id,primaryEmail,name/fullName,orgUnitPath,suspended,isAdmin,aliases,emails)"
PAGE_SIZE = 500  # the most users.list allows
PAGES_AHEAD = 4
MAX_RESTARTS = 3  # in a row, without a new user in between


class UserPager:
    def __init__(self, caller: ApiCaller, customer: str, outbox: queue.Queue, stop: threading.Event):
        self.caller, self.customer, self.outbox, self.stop = caller, customer, outbox, stop
        self._room = threading.Semaphore(PAGES_AHEAD)
        self._thread = threading.Thread(target=self._run, name="google-users", daemon=True)
        # Ids of the users posted, to skip them if the listing has to start again (about 8 MB
        # for 100,000 users: Google's numeric ids are kept as ints).
        self._posted: set[int | str] = set()

    def start(self) -> UserPager:
        self._thread.start()
        return self

    def taken(self) -> None:
        """The scan's thread took a page: make room for another."""
        self._room.release()

    def join(self) -> None:
        self._thread.join(timeout=30)

    def _run(self) -> None:
        page_token = None
        restarts = 0
        try:
            while True:
                try:
                    response = self.caller.execute(
                        lambda users: users.list(customer=self.customer, maxResults=PAGE_SIZE, pageToken=page_token,
                                                 fields=USER_FIELDS),
                        resource="users", paged=page_token is not None)
                except PageTokenRefused as refused:
                    restarts += 1
                    if restarts > MAX_RESTARTS:
                        self.outbox.put(("fatal", self._gave_up(refused.failure)))
                        return
                    log.warning("google: Google stopped honouring the users.list page token (%s); listing users "
                                "again from the start, skipping the %d already read (restart %d of at most %d)",
                                refused.failure, len(self._posted), restarts, MAX_RESTARTS)
                    page_token = None
                    continue
                except ApiFailure as failure:
                    what = f"users.list for [google] customer {self.customer!r}" if failure.status == 400 else "users.list"
                    self.outbox.put(("fatal", describe_failure(self.caller.clients.delegation, what, failure)))
                    return
                users = self._new_users(response.get("users", []))
                if users:
                    restarts = 0
                    if not self._post(users):
                        return
                page_token = response.get("nextPageToken")
                if not page_token:
                    self.outbox.put(("users_done", None))
                    return
        except Cancelled:
            return
        except BaseException as error:  # the scan's thread decides what it means
            self.outbox.put(("fatal", error))

    def _new_users(self, page: list[dict]) -> list[dict]:
        """The users of a page not posted yet, remembered as posted."""
        fresh = []
        for user in page:
            key = _compact(user["id"])
            if key not in self._posted:
                self._posted.add(key)
                fresh.append(user)
        return fresh

    def _post(self, users: list[dict]) -> bool:
        """Hand a page to the scan's thread once it has room; False if the scan stopped meanwhile."""
        while not self._room.acquire(timeout=0.2):
            if self.stop.is_set():
                return False
        self.outbox.put(("users", users))
        return True

    def _gave_up(self, failure: ApiFailure) -> ProviderError:
        return ProviderError(
            f"users.list kept losing its place: Google refused its page token {MAX_RESTARTS + 1} times in a row "
            f"without a new user in between (last: {failure}). Scan again later; if it keeps happening, check the "
            "Google Workspace Status Dashboard (https://www.google.com/appsstatus) for Admin SDK problems")


def _compact(user_id: str) -> int | str:
    return int(user_id) if user_id.isdigit() else user_id
