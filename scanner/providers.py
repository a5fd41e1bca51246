"""What a provider is: a class that yields users, apps and grants from one service, and the
tenant's app-consent posture (PostureFinding) and people's consent requests (ConsentRequest).

A provider plugin registers its class through the `register_providers` hook. The
core constructs it with the validated Config and calls `scan(run)`, writing each
yielded record as it arrives (all inside one transaction), so a provider can
stream a tenant of any size. Ids in records are the service's own ids: the store
prefixes them with the provider's name ("google:<id>").

A provider raises ProviderError with a message that says what to do next; any
exception fails the scan and leaves the previous inventory untouched.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from .config import Config
from .progress import Progress

# A full scan is required when the last succeeded full scan is older than this.
FULL_SCAN_MAX_AGE = dt.timedelta(days=7)


class ProviderError(Exception):
    """A scan cannot go on; the message tells the district admin what to fix."""


@dataclass
class User:
    """An account in the tenant.

    `email` is the account's primary address; `aliases` are its other addresses that
    reach the same mailbox (Google aliases, Microsoft proxy addresses and sign-in
    name). Accounts that share any address, compared case-insensitively, are one
    person (the `people` table), whatever provider reports them. A provider that
    knows no aliases leaves the default: the account is matched by `email` alone.
    """

    id: str
    email: str
    name: str = ""
    role: str = "unknown"  # "student" | "staff" | "unknown" (see scanner.roles)
    org_unit: str = ""
    suspended: bool = False
    is_admin: bool | None = None  # an administrator of the tenant (None: the service does not say)
    aliases: list[str] = field(default_factory=list)  # other addresses of this account (never contact addresses)
    # What the service said of the account, digested (any 64-bit integer the provider computes
    # the same way each time): a later scan that finds the same digest may yield UsersSeen instead.
    digest: int | None = None


@dataclass
class App:
    """A third-party (or first-party / internal) application seen in the tenant."""

    id: str  # the service's client id / app id
    name: str
    publisher: str = ""
    verified_publisher: str | None = None  # verified publisher name, None if unverified
    ownership: str = "third_party"  # "third_party" | "internal" | "first_party"
    homepage: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # provider-specific extras, stored as JSON


@dataclass
class Grant:
    """Access granted to an app: by one user, or tenant-wide (user_id None)."""

    user_id: str | None
    app_id: str
    scopes: list[str]
    grant_type: str = "delegated"  # "delegated" | "application"
    resource: str = ""  # the API the scopes are for, when a service has several
    last_used: str | None = None  # ISO 8601 UTC


@dataclass
class LastUsed:
    """Evidence that an app was used: by one user's grant, or by the app as a whole."""

    app_id: str
    at: str  # ISO 8601 UTC
    user_id: str | None = None


@dataclass
class GrantsListed:
    """In an incremental scan: every grant of this user has now been yielded,
    so the user's grants not seen in this scan were revoked."""

    user_id: str


@dataclass
class UsersSeen:
    """Accounts the service still has exactly as the provider last yielded them (the same
    User.digest): only when they were last seen changes. Cheaper than yielding each User
    again in an incremental scan that lists the whole directory."""

    user_ids: list[str]


POSTURE_RESULTS = ("pass", "fail", "unknown")
POSTURE_SCOPES = ("tenant", "org_unit", "group")


@dataclass
class PostureFinding:
    """One tenant setting that decides whether users can connect apps, checked for one scope.

    `check_id` is the CISA SCuBA id where one exists ("MS.AAD.5.2", "GWS.COMMONCONTROLS.10.4");
    `expected`, `actual` and `fix` are plain words for the district (`fix`: where in the admin
    console to change it). A check the scan could not decide is `unknown`, never `pass`, and
    `reason` says why: the permission or scope to add, or the value the service sent that
    this version does not know.
    """

    check_id: str
    title: str
    expected: str
    actual: str
    result: str  # "pass" | "fail" | "unknown"
    fix: str
    scope_kind: str = "tenant"  # "tenant" | "org_unit" | "group"
    scope: str = ""  # the org unit's path or the group, as the service names it ("" for the tenant)
    reason: str = ""  # why the result is unknown (or a note on a pass or fail)
    requirement: str = "SHALL"  # the baseline's word: "SHALL" or "SHOULD"


@dataclass
class ConsentRequest:
    """One person's request that an administrator consent to an app for them (Microsoft's
    admin consent workflow). Ids are the service's own; `status` is as the service says it."""

    id: str  # the person's request
    app_id: str  # the app's client id / app id
    app_name: str
    scopes: list[str]
    status: str  # Microsoft: "InProgress", "Initializing", "Expired", "Completed"
    user_id: str | None = None  # who asked (the service's user id)
    email: str = ""
    user_name: str = ""
    reason: str = ""  # why they asked, in their words
    requested_at: str | None = None  # ISO 8601 UTC
    completed_at: str | None = None


Record = Union[User, App, Grant, LastUsed, GrantsListed, PostureFinding, ConsentRequest, UsersSeen]


@dataclass
class ScanRun:
    """What a provider gets for one scan, and what it reports back."""

    provider: str
    force_full: bool
    previous: dict | None  # the last succeeded scan of this provider (a `scans` row)
    previous_full: dict | None  # the last succeeded full scan
    state: dict  # what the provider saved in new_state at its last succeeded scan
    progress: Progress
    now: dt.datetime
    mode: str = "full"  # the provider sets "incremental" when it chose to scan only changes
    tenant: str = ""  # the provider sets its tenant's name or id
    new_state: dict = field(default_factory=dict)
    api_calls: int = 0
    retries: int = 0
    # Of these service ids, those of users already in the inventory -> their User.digest (None:
    # never given one). Ask a page at a time: a million accounts' digests would not fit in a
    # scan's memory budget.
    user_digests: Callable[[Iterable[str]], dict[str, int | None]] = lambda ids: {}
    # An incremental scan's: service ids of the users in the inventory it has not yielded so far,
    # as a User or in UsersSeen (once the listing is done: those it did not list).
    users_not_seen: Callable[[], list[str]] = list

    def incremental_allowed(self) -> bool:
        """An incremental scan needs a succeeded full scan in the last 7 days and no --full."""
        if self.force_full or not self.previous_full:
            return False
        finished = dt.datetime.fromisoformat(self.previous_full["finished_at"])
        return self.now - finished < FULL_SCAN_MAX_AGE

    def count_call(self, n: int = 1) -> None:
        """Count API calls (each part of a batch counts as one call)."""
        self.api_calls += n
        self.progress.set_counters(calls=self.api_calls, retries=self.retries)

    def count_retry(self, n: int = 1) -> None:
        self.retries += n
        self.progress.set_counters(calls=self.api_calls, retries=self.retries)


class Provider:
    """Base class for providers. Subclasses set `name` and `label` and implement scan()."""

    name: ClassVar[str]  # "google": the --provider value, the config section, the id prefix
    label: ClassVar[str]  # "Google Workspace"

    def __init__(self, config: Config):
        self.config = config

    @classmethod
    def is_configured(cls, config: Config) -> bool:
        """Scanned by `app-inventory scan` when the config file has this provider's section."""
        return config.has(cls.name)

    def scan(self, run: ScanRun) -> Iterator[Record]:
        raise NotImplementedError
