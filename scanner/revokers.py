"""What a provider plugin implements so that `app-inventory revoke` can remove access.

The revoke plugin (plugins/revoke) owns plans, approval, the state of each action, pacing and
the audit trail; a provider plugin only knows its API. It registers a Revoker class through
the `register_revokers` hook; the core makes one per command, calls it from a few threads at
once (so it must be thread-safe), and closes it.

Every method that reads may use the scan's read-only credentials. Only `write` and `restore`
change the tenant, and they must use the provider's separate, opt-in write credentials:
`check_write_access` says, before anything is written, how to set those up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# What an action does to the grant it names.
ACTIONS = ("revoke", "narrow", "block", "restore")


class WriteNotConfigured(Exception):
    """The provider's write credentials are not set up; the message gives the setup steps."""


class WriteFailed(Exception):
    """The API refused or failed a read or a write for good (after retries): its own message."""


class WriteUncertain(Exception):
    """A write whose outcome is unknown (the connection failed after it was sent). The action
    stays in_flight, and the next `revoke apply` reads the grant again to learn what happened."""


class GrantGone(Exception):
    """The API says the grant (or app) is not there (404)."""


@dataclass
class PlannedGrant:
    """An active grant of the inventory that a plan selected, as the core hands it to `resolve`."""

    grant_id: str
    app_id: str  # "google:<client id>", "microsoft:<app id>"
    client_id: str
    user_id: str | None  # the inventory's account id, None for tenant-wide grants
    user_key: str | None  # the provider's own id of the account (the inventory id without its prefix)
    email: str | None
    scopes: list[str]
    grant_type: str  # "delegated" | "application"
    resource: str
    tenant_wide: bool


@dataclass
class Target:
    """One object of the provider's API to act on: how to address it (`target`, JSON) and the
    object as the API returned it (`snapshot`, JSON), which restore and the audit keep."""

    target: dict[str, Any]
    snapshot: dict[str, Any]
    scopes: list[str] = field(default_factory=list)  # the scopes this object holds (for narrowing)


class Revoker:
    """Removes access at one provider. Subclasses set `provider` and implement the methods.

    An `action` handed to the methods is a dict: "action" (revoke | narrow | block), "target"
    and "snapshot" (dicts, as `resolve`/`resolve_app` made them), "scopes_kept" (a list, for
    narrow).
    """

    provider = ""
    can_narrow = False  # can remove some scopes of a grant and keep the others
    can_block = False  # can stop an app for everyone (no new tokens)
    can_restore = False  # can recreate a grant it removed, from its snapshot
    workers = 4  # requests kept in flight at once

    def __init__(self, config):
        self.config = config

    def units_per_second(self) -> float:
        """The provider's quota, in its own units a second; the core paces every read and write to it."""
        raise NotImplementedError

    def cost(self, kind: str) -> float:
        """What one call of this kind ("read" or "write") costs in those units."""
        return 1.0

    def check_write_access(self) -> None:
        """Raise WriteNotConfigured with the setup steps unless the write credentials are configured."""
        raise NotImplementedError

    def resolve(self, grant: PlannedGrant) -> list[Target]:
        """The live API objects behind an inventory grant (read only); [] when they are gone."""
        raise NotImplementedError

    def resolve_app(self, client_id: str) -> Target:
        """The app itself, for a tenant-wide block (read only). GrantGone when it is not there."""
        raise WriteFailed(f"{self.provider} cannot block an app through its API")

    def read(self, action: dict) -> dict | None:
        """The object now (None when it is gone): the re-check before each write."""
        raise NotImplementedError

    def changed(self, action: dict, current: dict) -> str | None:
        """What changed since the plan (a short sentence), or None when it is as planned."""
        raise NotImplementedError

    def finished(self, action: dict, current: dict | None) -> bool:
        """True when the object already is as the action would leave it (gone, narrowed, blocked)."""
        raise NotImplementedError

    def write(self, action: dict) -> None:
        """Make the change. GrantGone (404), WriteFailed (refused), WriteUncertain (unknown outcome)."""
        raise NotImplementedError

    def restore(self, action: dict) -> dict:
        """Recreate what a done action removed, from its snapshot; return the new object."""
        raise WriteFailed(f"{self.provider} cannot restore what was revoked")

    def close(self) -> None:
        """Release connections."""


def registered_revokers() -> dict[str, type[Revoker]]:
    """Revoker classes registered by plugins (register_revokers), by provider name."""
    from .plugin_manager import load_plugins

    revokers: dict[str, type[Revoker]] = {}

    def register(revoker_class: type[Revoker]) -> None:
        if not (isinstance(revoker_class, type) and issubclass(revoker_class, Revoker) and revoker_class.provider):
            raise TypeError(f"register_revokers: {revoker_class!r} is not a scanner.Revoker subclass with its provider set")
        if revoker_class.provider in revokers:
            raise TypeError(f"register_revokers: two revokers for {revoker_class.provider}")
        revokers[revoker_class.provider] = revoker_class

    load_plugins().hook.register_revokers(register=register)
    return revokers
