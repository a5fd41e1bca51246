"""Revoking Google tokens: `DELETE admin/directory/v1/users/{userKey}/tokens/{clientId}`.

It "deletes all access tokens issued by a user for an application" (directory.tokens.delete,
scope admin.directory.user.security: the scope the scan already reads tokens with, since it
has no read-only variant). A token that is not there answers 404, which means already gone.
Google has no call to narrow a token to fewer scopes, to block an app for everyone (App
access control in the Admin console has no API) or to give a token back: those actions are
refused when planned, and restore says so.

Writing is opt-in all the same: without a [google.revoke] section `revoke apply` refuses,
and that section may name a service account and admin of its own, so the delegation that
can delete is not the one every scan uses (docs/revoke.md).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from google.auth import exceptions as auth_exceptions
from googleapiclient.errors import HttpError

from scanner import GrantGone, PlannedGrant, ProviderError, Revoker, Target, WriteFailed, WriteNotConfigured, WriteUncertain

from .auth import DELEGATION_PAGE, TRANSPORT_ERRORS, Delegation
from .calls import MAX_ATTEMPTS, ApiFailure, GoogleClients, retry_wait

SECURITY_SCOPE = "https://www.googleapis.com/auth/admin.directory.user.security"

SETUP_STEPS = (
    "revoking Google tokens is not set up: add a [google.revoke] section to the configuration "
    "(it may stay empty to use the scan's service account, or name a service_account_file and admin_email of its own, "
    f"delegated only {SECURITY_SCOPE} in the {DELEGATION_PAGE}); see docs/revoke.md"
)


class GoogleRevoker(Revoker):
    provider = "google"
    workers = 8

    def __init__(self, config):
        super().__init__(config)
        self.settings = config.section("google")
        self.write_settings = config.section("google.revoke") if config.has("google.revoke") else None
        self._clients: dict[str, GoogleClients] = {}
        self._lock = threading.Lock()

    def units_per_second(self) -> float:
        per_minute = (self.write_settings or {}).get("requests_per_minute") or self.settings["requests_per_minute"]
        return per_minute / 60.0

    def check_write_access(self) -> None:
        if self.write_settings is None:
            raise WriteNotConfigured(SETUP_STEPS)
        self._client("write")  # signs in now: a refused delegation shows before anything is written

    def _client(self, purpose: str) -> GoogleClients:
        """The Directory client for reading (plan) or writing (apply: reads and deletes with the write delegation)."""
        with self._lock:
            if purpose not in self._clients:
                settings = self.settings
                if purpose == "write":
                    if self.write_settings is None:
                        raise WriteNotConfigured(SETUP_STEPS)
                    settings = {**settings, **{k: v for k, v in self.write_settings.items() if v is not None}}
                try:
                    delegation = Delegation(settings["service_account_file"], settings["admin_email"])
                    delegation.credentials = delegation.credentials.with_scopes([SECURITY_SCOPE])
                    delegation.scopes = (SECURITY_SCOPE,)
                    delegation.sign_in()
                except ProviderError as error:
                    raise WriteFailed(str(error)) from None
                self._clients[purpose] = GoogleClients(delegation, settings["api_root"])
            return self._clients[purpose]

    def _purpose(self) -> str:
        return "write" if self.write_settings is not None and "write" in self._clients else "read"

    def _call(self, make_request, *, purpose: str, deleting: bool = False) -> Any:
        """One call, retried as the scan retries (429, 5xx, quota, dropped connections).
        404 raises GrantGone, unless an earlier attempt of this same delete may have gone through."""
        clients = self._client(purpose)
        service, http = clients.resource("tokens")
        tried = False
        for attempt in range(MAX_ATTEMPTS):
            try:
                return make_request(service).execute(http=http)
            except HttpError as error:
                failure = ApiFailure.from_http_error(error)
            except auth_exceptions.RefreshError as error:
                if not error.retryable:
                    raise WriteFailed(str(clients.delegation.refresh_error(error))) from None
                failure = ApiFailure.from_refresh_error(error)
            except TRANSPORT_ERRORS as error:
                failure = ApiFailure.from_transport_error(error)
                http.close()
            except UnicodeDecodeError:
                failure = ApiFailure.damaged("the answer")
            if failure.status == 404:
                if deleting and tried:
                    return None  # the first attempt deleted it; its answer was lost
                raise GrantGone()
            if not failure.retryable or attempt == MAX_ATTEMPTS - 1:
                if deleting and tried and failure.status == 0:
                    raise WriteUncertain(str(failure))
                raise WriteFailed(f"Google answered {failure}")
            tried = True
            time.sleep(retry_wait(attempt, failure))
        raise AssertionError("unreachable")

    # -- the Revoker contract ----------------------------------------------------------------

    def resolve(self, grant: PlannedGrant) -> list[Target]:
        target = {"userKey": grant.user_key, "clientId": grant.client_id}
        try:
            token = self._call(lambda tokens: tokens.get(userKey=grant.user_key, clientId=grant.client_id), purpose="read")
        except GrantGone:
            return []
        return [Target(target, token, list(token.get("scopes") or []))]

    def read(self, action: dict) -> dict | None:
        target = action["target"]
        try:
            return self._call(lambda tokens: tokens.get(userKey=target["userKey"], clientId=target["clientId"]), purpose=self._purpose())
        except GrantGone:
            return None

    def changed(self, action: dict, current: dict) -> str | None:
        before, now = sorted(action["snapshot"].get("scopes") or []), sorted(current.get("scopes") or [])
        if before != now:
            return f"its scopes are now {', '.join(now)}"
        return None

    def finished(self, action: dict, current: dict | None) -> bool:
        return current is None

    def write(self, action: dict) -> None:
        if action["action"] != "revoke":
            raise WriteFailed(f"Google cannot {action['action']} a token; only revoke it")
        target = action["target"]
        self._call(lambda tokens: tokens.delete(userKey=target["userKey"], clientId=target["clientId"]),
                   purpose="write", deleting=True)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
