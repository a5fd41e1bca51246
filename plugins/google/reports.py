"""Reading the Reports API `token` audit log: who used which app lately, and who
authorized or revoked apps since the last scan.

    GET admin/reports/v1/activity/users/all/applications/token?startTime=...&maxResults=1000

Pages come newest first. `activity` events (an app called an API for the user) and
`authorize` events (the user granted access) are evidence of use; `authorize` and
`revoke` events name the users whose grants changed. The log keeps 180 days, lags by
minutes to hours, and editions without the `activity` event still have the others.

If Google stops honouring a page token, the query starts again with its end moved to the
oldest event read so far (pages are newest first), so the events of that millisecond are
read twice (harmless: last-used dates keep the newest) and none is missed.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from scanner import utc_now

from .calls import ApiCaller, ApiFailure, Cancelled, PageTokenRefused

log = logging.getLogger(__name__)

RETENTION = dt.timedelta(days=180)
ACTIVITY_FIELDS = "nextPageToken,items(id/time,actor(email,profileId),events(name,parameters(name,value)))"
PAGE_SIZE = 1000  # the most activities.list allows
MAX_RESTARTS = 3  # in a row, without reaching further back in between
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
    oldest: dt.datetime | None = None  # the time of the page's oldest event


def rfc3339(moment: dt.datetime) -> str:
    """Google's timestamp format, to the millisecond: 2026-11-20T13:02:11.123Z."""
    moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def read_token_activity(caller: ApiCaller, start: dt.datetime, end: dt.datetime | None = None) -> Iterator[ActivityPage]:
    """Page through the token log from `start` to `end` (or now)."""
    start_time = rfc3339(start)
    end_time = rfc3339(end) if end else None
    page_token = None
    oldest: dt.datetime | None = None  # of the events read so far
    resumed_from: dt.datetime | None = None  # `oldest` when the query last started again
    restarts = 0
    while True:
        try:
            response = caller.execute(
                lambda activities: activities.list(userKey="all", applicationName="token", startTime=start_time,
                                                   endTime=end_time, maxResults=PAGE_SIZE, pageToken=page_token,
                                                   fields=ACTIVITY_FIELDS),
                resource="activities", paged=page_token is not None)
        except PageTokenRefused as refused:
            restarts = 1 if oldest != resumed_from else restarts + 1
            if restarts > MAX_RESTARTS:
                raise ReportsUnavailable(f"Google refused the activities.list page token {restarts} times in a row "
                                         f"without getting further back (last: {refused.failure})") from None
            resumed_from = oldest
            if oldest is not None:
                # endTime may be inclusive or not: one millisecond on, no event of that millisecond is lost.
                end_time = rfc3339(oldest + dt.timedelta(milliseconds=1))
            log.warning("google: Google stopped honouring an activities.list page token (%s); reading the token log "
                        "again from %s back (restart %d of at most %d)", refused.failure, end_time or "now",
                        restarts, MAX_RESTARTS)
            page_token = None
            continue
        except ApiFailure as failure:
            raise ReportsUnavailable(str(failure)) from None
        page = activity_page(response)
        if page.oldest is not None and (oldest is None or page.oldest < oldest):
            oldest = page.oldest
        yield page
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
    oldest = ""
    for item in response.get("items", ()):
        at = (item.get("id") or {}).get("time")
        if at and (not oldest or at < oldest):  # Google's times are all "...T13:02:11.123Z": text order is time order
            oldest = at
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
    page.oldest = _parse_time(oldest) if oldest else None
    return page


def _parse_time(value: str) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


class BackgroundReader:
    """Reads the token log on READERS threads, one time window at a time, posting pages to the outbox.

    Posts ("activity", ActivityPage) messages, then ("activity_done", None) once every window
    is read, or ("activity_failed", reason), or ("fatal", error). At most PAGES_AHEAD pages wait.
    """

    def __init__(self, caller: ApiCaller, since: dt.datetime, outbox: queue.Queue, stop: threading.Event):
        self.caller, self.outbox, self.stop = caller, outbox, stop
        self._windows: queue.Queue = queue.Queue()
        for window in time_windows(since, utc_now()):
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
