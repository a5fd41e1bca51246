"""Who is IT staff: decided in one place, from the configuration as it is now.

Every way of signing in produces an Identity; `is_it_staff()` decides from it and the current
[signin] settings, at sign-in and again at every request, so removing someone from the
configuration takes effect at their next request.

    Identity(auth="password", subject="jsmith")                 an account in password_accounts
    Identity(auth="google", subject=<sub>, email=..., groups=(...), tenant=<hd>)
    Identity(auth="microsoft", subject=<oid>, email=<UPN>, groups=(<object ids>), tenant=<tid>)
                                                                 Sign in with Google / Microsoft:
                                                                 it_emails and/or it_groups

An identity from Google or Microsoft counts only while that sign-in stays configured for the
same domain or tenant: changing google_domain or microsoft_tenant_id ends such sessions too.
Group memberships are what the identity provider said at sign-in (Microsoft's groups claim,
Google's Directory API): leaving a group takes effect at the next sign-in; removing the group
from it_groups, at the next request.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

AUTH_METHODS = ("password", "google", "microsoft")
IT_ROLE = "it"
STAFF_ROLE = "staff"


@dataclass(frozen=True)
class Identity:
    """Who signed in, and how."""

    auth: str  # one of AUTH_METHODS
    subject: str  # the username (password) or the identity provider's stable user id
    email: str | None = None
    groups: tuple[str, ...] = field(default_factory=tuple)
    tenant: str | None = None  # Google: the Workspace domain (hd); Microsoft: the tenant id (tid)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "groups": list(self.groups)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Identity:
        return cls(auth=data["auth"], subject=data["subject"], email=data.get("email"), groups=tuple(data.get("groups") or ()),
                   tenant=data.get("tenant"))

    @property
    def actor_id(self) -> str:
        """The name Datasette shows and the access log records."""
        return self.email or self.subject


def is_it_staff(identity: Identity, settings: dict[str, Any]) -> bool:
    """Whether this person is IT staff under the [signin] settings as they are now.

    Password accounts: the username is in password_accounts. Google and Microsoft: that sign-in
    is still configured, for the identity's domain or tenant, and the email is in it_emails or
    one of the groups in it_groups (compared without regard to case).
    """
    if identity.auth == "password":
        return identity.subject in settings.get("password_accounts", {})
    if not is_district_member(identity, settings):
        return False
    emails = {email.lower() for email in settings.get("it_emails") or ()}
    groups = {group.lower() for group in settings.get("it_groups") or ()}
    return (identity.email or "").lower() in emails or bool(groups & {group.lower() for group in identity.groups})


def is_district_member(identity: Identity, settings: dict[str, Any]) -> bool:
    """Signed in with Google or Microsoft, a sign-in still configured for the identity's domain or tenant."""
    configured_for = {"google": ("google_client_id", "google_domain"),
                      "microsoft": ("microsoft_client_id", "microsoft_tenant_id")}.get(identity.auth)
    if configured_for is None:
        return False
    client_key, tenant_key = configured_for
    return bool(settings.get(client_key)) and (identity.tenant or "").lower() == (settings.get(tenant_key) or "").lower()


def actor_for(identity: Identity, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The Datasette actor for an identity: with role "it" (which opens the inventory); with
    [signin] staff_sign_in, role "staff" for any other member of the district (who sees only
    their own apps and requests, plugins/review); else None."""
    if is_it_staff(identity, settings):
        return {"id": identity.actor_id, "auth": identity.auth, "role": IT_ROLE}
    if settings.get("staff_sign_in") and identity.email and is_district_member(identity, settings):
        return {"id": identity.actor_id, "auth": identity.auth, "role": STAFF_ROLE, "email": identity.email.lower()}
    return None
