"""Who is IT staff: decided in one place, from the configuration as it is now.

Every way of signing in produces an Identity; `is_it_staff()` decides from it and the current
[signin] settings, at sign-in and again at every request, so removing someone from the
configuration takes effect at their next request.

    Identity(auth="password", subject="jsmith")               an account in password_accounts
    Identity(auth="google", subject=..., email=..., groups=())  Sign in with Google / Microsoft:
                                                                 it_emails and/or it_groups
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

AUTH_METHODS = ("password", "google", "microsoft")
IT_ROLE = "it"


@dataclass(frozen=True)
class Identity:
    """Who signed in, and how."""

    auth: str  # one of AUTH_METHODS
    subject: str  # the username (password) or the identity provider's stable user id
    email: str | None = None
    groups: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "groups": list(self.groups)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        return cls(auth=data["auth"], subject=data["subject"], email=data.get("email"), groups=tuple(data.get("groups") or ()))

    @property
    def actor_id(self) -> str:
        """The name Datasette shows and the access log records."""
        return self.email or self.subject


def is_it_staff(identity: Identity, settings: dict[str, Any]) -> bool:
    """Whether this person is IT staff under the [signin] settings as they are now.

    Password accounts: the username is in password_accounts. Identity providers (when their
    sign-in is added): the email is in it_emails or one of the groups in it_groups; those keys
    are read only if the section declares them.
    """
    if identity.auth == "password":
        return identity.subject in settings.get("password_accounts", {})
    if identity.auth in ("google", "microsoft"):
        emails = {email.lower() for email in settings.get("it_emails") or ()}
        groups = set(settings.get("it_groups") or ())
        return (identity.email or "").lower() in emails or bool(groups & set(identity.groups))
    return False


def actor_for(identity: Identity, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The Datasette actor for an identity: with role "it" (which opens the inventory), or None."""
    if not is_it_staff(identity, settings):
        return None
    return {"id": identity.actor_id, "auth": identity.auth, "role": IT_ROLE}
