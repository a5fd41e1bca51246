"""The Chrome Management API client: the discovery document shipped with google-api-python-client,
one delegated token per scope (a missing scope is named exactly), and the Google provider's
pacing, counting and retries (plugins.google.calls.ApiCaller)."""

from __future__ import annotations

from typing import Any

from googleapiclient.discovery import build

from plugins.google.auth import Delegation, NotDelegated
from plugins.google.calls import OrjsonModel, ThreadConnections
from scanner import ProviderError

AUTH = "https://www.googleapis.com/auth/"
REPORTS_SCOPE = AUTH + "chrome.management.reports.readonly"  # installed apps, profiles, devices
APPDETAILS_SCOPE = AUTH + "chrome.management.appdetails.readonly"  # Web Store details, extension requests
CHROME_SCOPES = (REPORTS_SCOPE, APPDETAILS_SCOPE)


def delegated(delegation: Delegation, scope: str) -> Delegation:
    """A token for one Chrome Management scope, or a ProviderError naming the scope to add."""
    try:
        return delegation.for_scope(scope)
    except NotDelegated:
        raise ProviderError(f"the chrome provider needs the scope {scope}, which is not delegated: "
                            f"{delegation.add_scope_steps(scope)}") from None


class ScopedClient:
    """The resources of one scope's token, in the shape ApiCaller uses: resource(name) -> (resource, this
    thread's connection), and `delegation` (for what to say when the token cannot be renewed)."""

    api, version = "chromemanagement", "v1"

    def __init__(self, delegation: Delegation, api_root: str):
        self.delegation = delegation
        root = api_root if api_root.endswith("/") else api_root + "/"
        self.connections = ThreadConnections(delegation)
        service = build(self.api, self.version, http=self.connections.template, client_options={"api_endpoint": root},
                        static_discovery=True, cache_discovery=False, model=OrjsonModel())
        self._resources = self.resources(service)

    def resource(self, name: str) -> tuple[Any, Any]:
        return self._resources[name], self.connections.this_thread()

    def close(self) -> None:
        self.connections.close()

    def resources(self, service: Any) -> dict[str, Any]:
        raise NotImplementedError


class ChromeClient(ScopedClient):
    """Chrome Management: reports (installed apps, profiles) and apps (details, requests)."""

    def resources(self, service: Any) -> dict[str, Any]:
        apps = service.customers().apps()
        return {"reports": service.customers().reports(), "apps": apps, "chrome": apps.chrome()}


class OrgUnitsClient(ScopedClient):
    """The Directory API's org units (their paths, for [roles] student_org_units)."""

    api, version = "admin", "directory_v1"

    def resources(self, service: Any) -> dict[str, Any]:
        return {"orgunits": service.orgunits()}
