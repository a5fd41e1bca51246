"""Signing in to Google Workspace: a service account key with domain-wide delegation,
impersonating the configured admin, and what to tell the district admin when it fails.

Messages name the file, the admin, the service account's client ID and the exact scopes
to authorize; they never include key material or tokens.

The token endpoint can fail like any other: google-auth retries its 5xx and 429 answers,
a reset or a timeout reaches the caller as a transport error, and `sign_in()` tries again
a few times before giving up.
"""

from __future__ import annotations

import copy
import http.client
import json
import random
import socket
import time
from pathlib import Path
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth import exceptions as auth_exceptions
from google.oauth2 import service_account

from scanner import ProviderError

SCOPES = (
    "https://www.googleapis.com/auth/admin.directory.user.readonly",
    "https://www.googleapis.com/auth/admin.directory.user.security",
    "https://www.googleapis.com/auth/admin.reports.audit.readonly",
)
# Optional, each asked for in a token of its own: Google's token endpoint refuses a whole
# request when one scope is not delegated, and a district that has not delegated these
# still gets its app inventory (the posture checks are then `unknown`).
POLICY_SCOPE = "https://www.googleapis.com/auth/cloud-identity.policies.readonly"  # the admin console's settings
ORGUNIT_SCOPE = "https://www.googleapis.com/auth/admin.directory.orgunit.readonly"  # org unit names for them
HTTP_TIMEOUT = 120  # seconds; a 1000-part batch can take a while at Google
# What a dropped, reset, stalled or cut-off connection raises (httplib2 wraps some of them,
# google_auth_httplib2 others; socket.timeout and resets come through bare).
TRANSPORT_ERRORS = (httplib2.HttpLib2Error, http.client.HTTPException, socket.timeout, ConnectionError, TimeoutError,
                    auth_exceptions.TransportError)
SIGN_IN_ATTEMPTS = 4
_REQUIRED_FIELDS = ("client_email", "private_key", "token_uri", "client_id")
DELEGATION_PAGE = "Admin console > Security > Access and data control > API controls > Manage Domain Wide Delegation"


class NotDelegated(Exception):
    """The token endpoint refused an optional scope: it is not delegated to the service account."""


class Delegation:
    """The service account key, its credentials, and the admin it acts as."""

    def __init__(self, key_file: Path, admin_email: str):
        self.key_file, self.admin_email = key_file, admin_email
        self.scopes: tuple[str, ...] = SCOPES
        info = _read_key_file(key_file)
        self.client_email: str = info["client_email"]
        self.client_id: str = str(info["client_id"])
        self.token_uri: str = info["token_uri"]
        try:
            credentials = _DelegatedCredentials.from_service_account_info(info, scopes=list(SCOPES))
        except (ValueError, TypeError):
            # google-auth could not load the private key; never repeat its text (it may quote the key).
            raise ProviderError(
                f"[google] service_account_file {key_file}: private_key is not a valid private key; "
                "download a new JSON key for the service account from Google Cloud (IAM & Admin > Service accounts > Keys)"
            ) from None
        self.credentials = credentials.with_subject(admin_email)

    def for_scope(self, scope: str) -> Delegation:
        """The same service account and admin, with a token for this one scope only (signed in
        now); NotDelegated when the district has not delegated the scope."""
        scoped = copy.copy(self)
        scoped.scopes = (scope,)
        scoped.credentials = self.credentials.with_scopes([scope])
        try:
            scoped.sign_in()
        except _Refused as refused:
            if refused.code == "unauthorized_client":
                raise NotDelegated(scope) from None
            raise self.refresh_error(refused.error) from None
        return scoped

    def add_scope_steps(self, scope: str) -> str:
        """What to do in the Admin console to delegate one more scope."""
        return (f"in the {DELEGATION_PAGE}, add {scope} to the scopes of client ID {self.client_id} "
                f"({self.client_email}), keeping the {len(SCOPES)} it has")

    def sign_in(self) -> None:
        """Exchange a signed assertion for an access token now, so set-up problems show before any API call.

        A refusal is reported at once; a failure on the way (reset, timeout, 5xx) is tried again.
        """
        for attempt in range(SIGN_IN_ATTEMPTS):
            connection = httplib2.Http(timeout=HTTP_TIMEOUT)
            try:
                self.credentials.refresh(google_auth_httplib2.Request(connection))
                return
            except auth_exceptions.RefreshError as error:
                if not error.retryable:
                    if self.scopes != SCOPES:  # an optional scope: the caller decides what a refusal means
                        raise _Refused(error) from None
                    raise self.refresh_error(error) from None
                last = _first_line(error)
            except TRANSPORT_ERRORS as error:
                last = f"{type(error).__name__}: {_first_line(error)}"
            finally:
                connection.close()
            if attempt + 1 < SIGN_IN_ATTEMPTS:
                time.sleep(min(8.0, 0.5 * 2**attempt) * random.uniform(1.0, 1.5))
        raise ProviderError(f"cannot reach Google's token endpoint {self.token_uri} (from service_account_file "
                            f"token_uri) after {SIGN_IN_ATTEMPTS} attempts: {last}; check this computer can reach "
                            "it (proxy, firewall) and scan again")

    def authorized_http(self) -> google_auth_httplib2.AuthorizedHttp:
        """An HTTP client that adds the access token and refreshes it on 401 (one per thread: httplib2 is not thread-safe)."""
        return google_auth_httplib2.AuthorizedHttp(self.credentials, http=httplib2.Http(timeout=HTTP_TIMEOUT))

    # -- what to tell the admin ---------------------------------------------------------------

    def delegation_steps(self) -> str:
        return (f"in the {DELEGATION_PAGE}, authorize client ID {self.client_id} ({self.client_email}) "
                f"for exactly these scopes: {','.join(SCOPES)}")

    def refresh_error(self, error: auth_exceptions.RefreshError) -> ProviderError:
        """Turn the token endpoint's refusal into what to fix."""
        data = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], dict) else {}
        code, description = str(data.get("error", "")), str(data.get("error_description", ""))
        if code == "unauthorized_client":
            return ProviderError(
                f"domain-wide delegation does not cover the scopes this tool needs "
                f"(unauthorized_client): {self.delegation_steps()}")
        if code == "invalid_grant" and "email or user id" in description.lower():
            return ProviderError(
                f"Google does not accept admin_email {self.admin_email} (invalid_grant: {description}): check "
                f"admin_email is a super admin of your Google Workspace (not an alias, not suspended) and that "
                f"domain-wide delegation is set up: {self.delegation_steps()}")
        if code == "invalid_grant" and "signature" in description.lower():
            return ProviderError(
                f"[google] service_account_file {self.key_file}: Google refused the key ({description}); it was "
                "probably deleted or disabled: create a new JSON key for the service account and point "
                "service_account_file at it")
        if code == "invalid_grant" and "account not found" in description.lower():
            return ProviderError(
                f"[google] service_account_file {self.key_file}: the service account {self.client_email} does not "
                "exist (any more); create one and a JSON key for it (docs/google.md)")
        if code == "invalid_grant" and "iat and exp" in description:
            return ProviderError(f"Google refused the sign-in because this computer's clock is wrong ({description}); "
                                 "fix the clock (NTP) and scan again")
        if code:
            return ProviderError(f"Google's token endpoint refused the service account ({code}: {description}); "
                                 f"check the key in service_account_file and domain-wide delegation: {self.delegation_steps()}")
        return ProviderError(f"Google's token endpoint refused the service account: {_first_line(error)}")

    def forbidden(self, what: str, message: str) -> ProviderError:
        """An API call answered 403 forbidden: the admin lacks privileges (or is not an admin at all)."""
        return ProviderError(
            f"Google refused {what} (403 {message}): check admin_email {self.admin_email} is a super admin, or an "
            "admin whose role includes Users > Read and Security > User Security Management (and Reports for "
            f"last-used dates), and that domain-wide delegation is set up: {self.delegation_steps()}")

    def missing_scopes(self, what: str) -> ProviderError:
        return ProviderError(f"Google refused {what} for lack of a scope (insufficientPermissions): {self.delegation_steps()}")


class _Refused(Exception):
    """The token endpoint refused a token for optional scopes (for_scope() decides what it means)."""

    def __init__(self, error: auth_exceptions.RefreshError):
        super().__init__(str(error))
        self.error = error
        data = error.args[1] if len(error.args) > 1 and isinstance(error.args[1], dict) else {}
        self.code = str(data.get("error", ""))


class _DelegatedCredentials(service_account.Credentials):
    """Service account credentials whose refresh survives a token answer cut short.

    google-auth reads a token answer that is not JSON as a string and then indexes it like
    a dict (TypeError): here that becomes a RefreshError marked retryable, as a transport
    problem is, so the caller tries again. (with_subject() keeps this class.)
    """

    def refresh(self, request) -> None:
        try:
            super().refresh(request)
        except (TypeError, ValueError):
            raise auth_exceptions.RefreshError("Google's token endpoint sent an incomplete answer",
                                               retryable=True) from None


def _read_key_file(path: Path) -> dict[str, Any]:
    where = f"[google] service_account_file {path}"
    if not path.exists():
        raise ProviderError(f"{where}: file not found; create a JSON key for the service account in Google Cloud "
                            "(IAM & Admin > Service accounts > Keys) and point service_account_file at it")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ProviderError(f"{where}: cannot read it ({error.strerror}); the account running scans must be able to read it") from None
    except (ValueError, UnicodeDecodeError):
        raise ProviderError(f"{where}: not a JSON key file; download the service account's key as JSON (not P12)") from None
    if not isinstance(info, dict):
        raise ProviderError(f"{where}: not a service account key (expected a JSON object)")
    kind = info.get("type")
    if kind != "service_account":
        found = f"a {kind!r} credentials file" if kind else ("an OAuth client file" if {"installed", "web"} & set(info) else "not a service account key")
        raise ProviderError(f"{where}: {found}, not a service account key; create a JSON key for a service account "
                            "(IAM & Admin > Service accounts > Keys)")
    missing = [name for name in _REQUIRED_FIELDS if not info.get(name)]
    if missing:
        raise ProviderError(f"{where}: the key lacks {', '.join(missing)}; download a new JSON key for the service account")
    return info


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
