"""The Directory API's group membership check, emulated: what the sign-in plugin asks to find
out whether someone is in an IT group (Google's ID tokens carry no groups).

    GET /admin/directory/v1/groups/{groupKey}/hasMember/{memberKey}   -> {"isMember": bool}

As members.hasMember: membership may be direct or nested (a group inside the group); a group
that does not exist answers 404 notFound. The caller is a delegated service account acting
for an admin, with one of the group scopes (401 without a token, 403 for a non-admin or a
token without the scope), as for the rest of the emulated Admin SDK.

The groups are emulator state (`set_members`): the tenant's data is about apps and grants.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import unquote

from .api import AUTH, Answer, error_body
from .oauth import TokenService
from .tenant import GoogleTenant

GROUP_SCOPES = {AUTH + name for name in ("admin.directory.group.member.readonly", "admin.directory.group.member",
                                         "admin.directory.group.readonly", "admin.directory.group")}
_HAS_MEMBER = re.compile(r"^/admin/directory/v1/groups/([^/]+)/hasMember/([^/]+)$")


class DirectoryGroups:
    """Groups by address, each a set of member addresses (users or groups); thread-safe."""

    def __init__(self, tenant: GoogleTenant, tokens: TokenService):
        self.tenant, self.tokens = tenant, tokens
        self._lock = threading.Lock()
        self._members: dict[str, set[str]] = {}

    def set_members(self, group: str, members: list[str]) -> None:
        """Create or replace a group (an empty list keeps the group with nobody in it)."""
        with self._lock:
            self._members[group.lower()] = {member.lower() for member in members}

    def handles(self, method: str, path: str) -> bool:
        return method == "GET" and _HAS_MEMBER.match(path) is not None

    def answer(self, path: str, authorization: str | None) -> Answer:
        token = self.tokens.check(authorization)
        if token is None:
            return _error(401, "Login Required.", "required")
        admin = self.tenant.find_user(token.subject)
        if admin is None or not admin.is_admin:
            return _error(403, "Not Authorized to access this resource/api", "forbidden")
        if not GROUP_SCOPES & token.scopes:
            return _error(403, "Request had insufficient authentication scopes.", "insufficientPermissions")
        group_key, member_key = (unquote(part).lower() for part in _HAS_MEMBER.match(path).groups())
        with self._lock:
            if group_key not in self._members:
                return _error(404, "Resource Not Found: groupKey", "notFound")
            user = self.tenant.find_user(member_key)
            member = user.primary_email.lower() if user else member_key
            return Answer(200, json.dumps({"isMember": self._contains(group_key, member, set())}).encode())

    def _contains(self, group: str, member: str, seen: set[str]) -> bool:
        if group in seen:
            return False
        seen.add(group)
        members = self._members.get(group, set())
        return member in members or any(self._contains(inner, member, seen) for inner in members if inner in self._members)


def _error(code: int, message: str, reason: str) -> Answer:
    return Answer(code, json.dumps(error_body(code, message, reason)).encode())
