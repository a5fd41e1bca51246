"""Reading the tenant's app-access settings: the Cloud Identity Policy API and org unit names.

Each of the two asks for a token of its own scope (auth.POLICY_SCOPE, auth.ORGUNIT_SCOPE):
Google's token endpoint refuses a whole request when one scope is not delegated, so a
district that delegated neither still gets its app inventory, with the posture checks
`unknown` and the scope to add. Nothing here fails a scan: every refusal or outage becomes
the reason the checks are unknown (or, for the names, a warning and ids instead of paths).

Calls go through the scan's ApiCaller (paced, counted, retried like every other call);
pages of policies.list are at least PAGE_SPACING apart, as ScubaGoggles found the API
needs, and a listing whose page token stops working starts again (a few times).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import google_auth_httplib2
from googleapiclient.discovery import build

from scanner import PostureFinding, ProviderError

from .auth import ORGUNIT_SCOPE, POLICY_SCOPE, Delegation, NotDelegated
from .calls import ApiCaller, ApiFailure, CallCounter, OrjsonModel, PageTokenRefused, RateLimiter
from .posture import POLICY_FILTER, google_findings, unknown_findings

log = logging.getLogger(__name__)

PAGE_SIZE = 100  # the most policies.list gives
PAGE_SPACING = 1.0  # seconds between pages: sooner, the Policy API answers 429
LISTING_TRIES = 3  # fresh starts of the listing after a page token stopped working


class _ScopedClient:
    """One API resource with the credentials of one scope, in the shape ApiCaller uses (one thread)."""

    def __init__(self, delegation: Delegation, api: str, version: str, resource: str, api_root: str):
        self.delegation = delegation
        self._http: google_auth_httplib2.AuthorizedHttp = delegation.authorized_http()
        service = build(api, version, http=self._http, client_options={"api_endpoint": api_root}, static_discovery=True,
                        cache_discovery=False, model=OrjsonModel())
        self._resource = getattr(service, resource)()

    def resource(self, name: str) -> tuple[Any, Any]:
        return self._resource, self._http

    def close(self) -> None:
        self._http.close()


@dataclass
class PostureReader:
    """Reads the settings for one scan and turns them into findings."""

    delegation: Delegation
    settings: dict[str, Any]
    limiter: RateLimiter
    counter: CallCounter
    stop: threading.Event

    def findings(self) -> Iterator[PostureFinding]:
        try:
            policies = self._policies()
        except _Unknown as unknown:
            log.warning("google: the app-access settings are not checked: %s", unknown.reason)
            yield from unknown_findings(unknown.reason)
            return
        yield from google_findings(policies, self._org_unit_paths())

    # -- the Policy API --------------------------------------------------------------------

    def _policies(self) -> list[dict[str, Any]]:
        delegation = self._delegation_for(POLICY_SCOPE, "read the admin console's settings (Cloud Identity Policy API)")
        client = _ScopedClient(delegation, "cloudidentity", "v1", "policies", self.settings["policy_api_root"])
        caller = ApiCaller(client, self.limiter, self.counter, self.stop)
        try:
            for _ in range(LISTING_TRIES):
                try:
                    return self._list(caller)
                except PageTokenRefused as refused:
                    log.warning("google: the Policy API stopped honouring its page token (%s); listing again", refused.failure)
            raise _Unknown(f"the Policy API kept refusing its page tokens ({LISTING_TRIES} listings); the next scan tries again")
        except ApiFailure as failure:
            raise _Unknown(self._explain(failure)) from None
        except ProviderError as error:  # the token could not be renewed
            raise _Unknown(str(error)) from None
        finally:
            client.close()

    def _list(self, caller: ApiCaller) -> list[dict[str, Any]]:
        policies: list[dict[str, Any]] = []
        page_token = None
        last = 0.0
        while True:
            if last and self.stop.wait(max(0.0, PAGE_SPACING - (time.monotonic() - last))):
                raise _Unknown("the scan stopped")
            last = time.monotonic()
            response = caller.execute(
                lambda resource: resource.list(filter=POLICY_FILTER, pageSize=PAGE_SIZE, pageToken=page_token),
                resource="policies", paged=page_token is not None)
            policies += [p for p in response.get("policies") or [] if isinstance(p, dict)]
            page_token = response.get("nextPageToken")  # the API can answer empty pages first: keep going
            if not page_token:
                return policies

    def _explain(self, failure: ApiFailure) -> str:
        if failure.reason == "SERVICE_DISABLED":
            return ("the Cloud Identity API is off in the service account's Google Cloud project: enable it in Google "
                    f"Cloud console > APIs & Services > Library > Cloud Identity API (Google: {failure.message[:160]})")
        if failure.status == 403 and failure.reason in ("PERMISSION_DENIED", "forbidden"):
            return (f"Google refused the Policy API to admin_email {self.delegation.admin_email} ({failure.message}): "
                    "only a super admin can read it; set [google] admin_email to a super admin")
        if failure.status == 403:
            return (f"Google refused the Policy API ({failure}): check that "
                    f"{self.delegation.add_scope_steps(POLICY_SCOPE)}")
        if failure.retryable:
            return f"the Policy API kept failing (last: {failure}); the next scan tries again"
        return f"the Policy API refused the request ({failure})"

    # -- org unit names --------------------------------------------------------------------

    def _org_unit_paths(self) -> dict[str, str] | None:
        """Org unit id -> path, or None (with a warning) when the names cannot be read."""
        try:
            delegation = self._delegation_for(ORGUNIT_SCOPE, "show org unit names")
        except _Unknown as unknown:
            log.warning("google: posture findings name org units by id: %s", unknown.reason)
            return None
        client = _ScopedClient(delegation, "admin", "directory_v1", "orgunits", self.settings["api_root"])
        try:
            response = ApiCaller(client, self.limiter, self.counter, self.stop).execute(
                lambda resource: resource.list(customerId=self.settings["customer"], type="allIncludingParent",
                                               fields="organizationUnits(orgUnitId,orgUnitPath)"),
                resource="orgunits")
        except (ApiFailure, ProviderError) as error:
            log.warning("google: posture findings name org units by id: orgunits.list failed (%s)", error)
            return None
        finally:
            client.close()
        return {str(unit.get("orgUnitId", "")).removeprefix("id:"): unit.get("orgUnitPath", "")
                for unit in response.get("organizationUnits") or [] if unit.get("orgUnitId")}

    def _delegation_for(self, scope: str, purpose: str) -> Delegation:
        try:
            return self.delegation.for_scope(scope)
        except NotDelegated:
            raise _Unknown(f"the scope is not delegated: to {purpose}, {self.delegation.add_scope_steps(scope)}") from None
        except ProviderError as error:
            raise _Unknown(str(error)) from None


class _Unknown(Exception):
    """The settings cannot be read; the message says why and what to do."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
