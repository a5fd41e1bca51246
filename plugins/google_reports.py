"""Reading the Reports API `token` audit log: who used which app lately, and who
authorized or revoked apps since the last scan.

    GET admin/reports/v1/activity/users/all/applications/token?startTime=...&maxResults=1000

Pages come newest first. `activity` events (an app called an API for the user) and
`authorize` events (the user granted access) are evidence of use; `authorize` and
`revoke` events name the users whose grants changed. The log keeps 180 days, lags by
minutes to hours, and editions without the `activity` event still have the others.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from .google_calls import ApiCaller, ApiFailure, Cancelled

RETENTION = dt.timedelta(days=180)
ACTIVITY_FIELDS = "nextPageToken,items(id/time,actor(email,profileId),events(name,parameters(name,value)))"
USE_EVENTS = {"activity", "authorize"}
CHANGE_EVENTS = {"authorize", "revoke"}
WINDOWS = 16  # time windows a long stretch of the log is split into
READERS = 4  # threads reading windows side by side
PAGES_AHEAD = 6  # pages the readers may hold before the scan's thread takes them


class ReportsUnavailable(Exception):
    """The Reports API could not be read (no privilege, an outage): last-used dates wait for a later scan."""


@dataclass
class ActivityPage:
    last_used: dict[tuple[str | None, str], str] = field(default_factory=dict)  # (user id, client id) -> newest time
    changed_user_ids: set[str] = field(default_factory=set)
    changed_emails: set[str] = field(default_factory=set)


def rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def read_token_activity(caller: ApiCaller, start: dt.datetime, end: dt.datetime | None = None) -> Iterator[ActivityPage]:
    """Page through the token log from `start` to `end` (or now)."""
    start_time = rfc3339(start)
    end_time = rfc3339(end) if end else None
    page_token = None
    while True:
        try:
            response = caller.execute(
                lambda activities: activities.list(userKey="all", applicationName="token", startTime=start_time,
                                                   endTime=end_time, maxResults=1000, pageToken=page_token,
                                                   fields=ACTIVITY_FIELDS),
                resource="activities")
        except ApiFailure as failure:
            raise ReportsUnavailable(str(failure)) from None
        yield activity_page(response)
        page_token = response.get("nextPageToken")
        if not page_token:
            return


def time_windows(since: dt.datetime, now: dt.datetime) -> list[tuple[dt.datetime, dt.datetime | None]]:
    """Split [since, now] into up to WINDOWS equal windows of at least a day, to read side by side.

    Pages of one query come one after another; a 100,000-user district has hundreds of
    pages, so the windows are read by several threads. The start is capped to the 180
    days Google keeps; the last window is open-ended (up to "now" at Google).
    """
    since = max(since, now - RETENTION + dt.timedelta(minutes=5))
    count = max(1, min(WINDOWS, int((now - since) / dt.timedelta(days=1))))
    step = (now - since) / count
    bounds = [since + step * n for n in range(count)]
    return [(bounds[n], bounds[n + 1] if n + 1 < count else None) for n in range(count)]


def activity_page(response: dict) -> ActivityPage:
    """Shape one activities.list answer into evidence of use and changed users."""
    page = ActivityPage()
    for item in response.get("items", ()):
        at = (item.get("id") or {}).get("time")
        actor = item.get("actor") or {}
        user_id, email = actor.get("profileId"), (actor.get("email") or "").lower()
        for event in item.get("events", ()):
            name = event.get("name")
            if name in CHANGE_EVENTS:
                if user_id:
                    page.changed_user_ids.add(user_id)
                if email:
                    page.changed_emails.add(email)
            if name in USE_EVENTS and at:
                client_id = next((p.get("value") for p in event.get("parameters", ()) if p.get("name") == "client_id"), None)
                if client_id:
                    key = (user_id, client_id)
                    if at > page.last_used.get(key, ""):
                        page.last_used[key] = at
    return page


class BackgroundReader:
    """Reads the token log on READERS threads, one time window at a time, posting pages to the outbox.

    Posts ("activity", ActivityPage) messages, then ("activity_done", None) once every window
    is read, or ("activity_failed", reason), or ("fatal", error). At most PAGES_AHEAD pages wait.
    """

    def __init__(self, caller: ApiCaller, since: dt.datetime, outbox: queue.Queue, stop: threading.Event):
        self.caller, self.outbox, self.stop = caller, outbox, stop
        self._windows: queue.Queue = queue.Queue()
        for window in time_windows(since, dt.datetime.now(dt.timezone.utc)):
            self._windows.put(window)
        self._room = threading.Semaphore(PAGES_AHEAD)
        self._failed = threading.Event()
        self._lock = threading.Lock()
        self._running = min(READERS, self._windows.qsize())
        self._threads = [threading.Thread(target=self._run, name=f"google-reports-{n}", daemon=True) for n in range(self._running)]

    def start(self) -> BackgroundReader:
        for thread in self._threads:
            thread.start()
        return self

    def taken(self) -> None:
        """The scan's thread took a page: make room for another."""
        self._room.release()

    def join(self) -> None:
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self) -> None:
        try:
            while not self._failed.is_set():
                try:
                    start, end = self._windows.get_nowait()
                except queue.Empty:
                    break
                for page in read_token_activity(self.caller, start, end):
                    while not self._room.acquire(timeout=0.2):
                        if self.stop.is_set() or self._failed.is_set():
                            return
                    self.outbox.put(("activity", page))
        except ReportsUnavailable as error:
            if not self._failed.is_set():
                self._failed.set()
                self.outbox.put(("activity_failed", str(error)))
            return
        except Cancelled:
            return
        except BaseException as error:  # the scan's thread decides what it means
            self._failed.set()
            self.outbox.put(("fatal", error))
            return
        with self._lock:
            self._running -= 1
            last = self._running == 0
        if last and not self._failed.is_set():
            self.outbox.put(("activity_done", None))
