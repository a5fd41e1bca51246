"""Listing the directory: users.list, 500 users a page, on a background thread.

The scan's thread writes every record, so it should never wait on the network: the
pager posts ("users", [user, ...]) messages to the outbox, then ("users_done", None),
or ("fatal", ProviderError). At most PAGES_AHEAD pages wait to be taken.
"""

from __future__ import annotations

import queue
import threading

from .google_calls import ApiCaller, ApiFailure, Cancelled, describe_failure

USER_FIELDS = "nextPageToken,users(id,primaryEmail,name/fullName,orgUnitPath,suspended,isAdmin)"
PAGE_SIZE = 500  # the most users.list allows
PAGES_AHEAD = 4


class UserPager:
    def __init__(self, caller: ApiCaller, customer: str, outbox: queue.Queue, stop: threading.Event):
        self.caller, self.customer, self.outbox, self.stop = caller, customer, outbox, stop
        self._room = threading.Semaphore(PAGES_AHEAD)
        self._thread = threading.Thread(target=self._run, name="google-users", daemon=True)

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
        try:
            while True:
                try:
                    response = self.caller.execute(
                        lambda users: users.list(customer=self.customer, maxResults=PAGE_SIZE, pageToken=page_token,
                                                 fields=USER_FIELDS),
                        resource="users")
                except ApiFailure as failure:
                    what = f"users.list for [google] customer {self.customer!r}" if failure.status == 400 else "users.list"
                    self.outbox.put(("fatal", describe_failure(self.caller.clients.delegation, what, failure)))
                    return
                while not self._room.acquire(timeout=0.2):
                    if self.stop.is_set():
                        return
                self.outbox.put(("users", response.get("users", [])))
                page_token = response.get("nextPageToken")
                if not page_token:
                    self.outbox.put(("users_done", None))
                    return
        except Cancelled:
            return
        except BaseException as error:  # the scan's thread decides what it means
            self.outbox.put(("fatal", error))
