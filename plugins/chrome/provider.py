"""Chrome extensions: what the district's managed browsers (enrolled Chrome and ChromeOS) have installed.

Every scan is full: the Chrome Management API has no change feed (no audit of installs and no
"changed since"), so it lists every installed extension (reports:countInstalledApps, 100 a
page), reads each one's Web Store details (apps/chrome/{id}) and who has it
(reports:findInstalledAppProfiles, 100 a page), on a few threads paced to
`requests_per_minute`; then people's extension requests (apps:countChromeAppRequests,
apps:fetchUsersRequestingExtension, 50 a page), which land in `consent_requests` next to
Microsoft's admin-consent requests.

It signs in as the [google] section's service account and admin, asking for a token of each
Chrome Management scope: a scope not delegated fails this provider (naming the scope to add),
never the Google or Microsoft scan.

Settings: [chrome] enabled, api_root, requests_per_minute, requests (see app-inventory.example.toml).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from plugins.google.auth import ORGUNIT_SCOPE, Delegation, NotDelegated
from plugins.google.calls import ApiCaller, ApiFailure, CallCounter, RateLimiter, describe_failure
from scanner import Provider, ProviderError, Record, ScanRun

from .client import APPDETAILS_SCOPE, REPORTS_SCOPE, ChromeClient, OrgUnitsClient, delegated
from .records import extension_permissions, extension_record, person_record, profile_grants, request_record

log = logging.getLogger(__name__)

WORKERS = 4  # extensions read at once
APP_TYPE = "EXTENSION"


class ChromeExtensions(Provider):
    name = "chrome"
    label = "Chrome extensions"

    @classmethod
    def is_configured(cls, config) -> bool:
        """Scanned when the file has a [chrome] section that is not switched off."""
        return config.has("chrome") and bool(config.section("chrome")["enabled"])

    def scan(self, run: ScanRun) -> Iterator[Record]:
        if not self.config.has("google"):
            raise ProviderError(f"{self.config.where}: [chrome] signs in with the [google] section's service account and "
                                "admin_email; add a [google] section (docs/chrome.md)")
        google = self.config.section("google")
        delegation = Delegation(google["service_account_file"], google["admin_email"])
        delegation.sign_in()
        run.tenant = google["admin_email"].rpartition("@")[2].lower()
        run.mode = "full"  # no change feed
        scan = _ChromeScan(self.config, google, delegation, run)
        try:
            yield from scan.records()
        finally:
            scan.close()


class _ChromeScan:
    def __init__(self, config, google: dict[str, Any], delegation: Delegation, run: ScanRun):
        self.settings = config.section("chrome")
        self.roles = config.section("roles")
        self.google, self.run = google, run
        self.customer = "customers/" + google["customer"]
        self.stop = threading.Event()
        self.limiter = RateLimiter(self.settings["requests_per_minute"])
        self.counter = CallCounter(run)
        # Both scopes are asked for before any call, so a missing one is reported at once.
        self.reports = ChromeClient(delegated(delegation, REPORTS_SCOPE), self.settings["api_root"])
        self.details = ChromeClient(delegated(delegation, APPDETAILS_SCOPE), self.settings["api_root"])
        self.delegation = delegation
        self.people: set[str] = set()
        self.org_units = self._org_unit_paths()

    def close(self) -> None:
        self.stop.set()
        self.limiter.close()
        self.reports.close()
        self.details.close()
        self.counter.sync()

    def records(self) -> Iterator[Record]:
        installed = self._installed()
        self.run.progress.start(len(installed), unit="extensions")
        with ThreadPoolExecutor(WORKERS, thread_name_prefix="chrome") as pool:
            for item, details, profiles in pool.map(self._extension, installed):
                yield from self._records(item, details, profiles)
                self.counter.sync()
                self.run.progress.advance()
        if self.settings["requests"]:
            yield from self._requests()
        self.counter.sync()

    # -- installed extensions --------------------------------------------------------------------

    def _installed(self) -> list[dict[str, Any]]:
        return self._pages(self.reports, "reports", "installedApps", "list installed extensions (reports:countInstalledApps)",
                           lambda r, token: r.countInstalledApps(customer=self.customer, filter=f"app_type={APP_TYPE}",
                                                                 pageSize=100, pageToken=token))

    def _extension(self, item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]]]:
        """One extension's Web Store details (None without a Web Store page) and its profiles (on a worker thread)."""
        app_id = item["appId"]
        try:
            details = ApiCaller(self.details, self.limiter, self.counter, self.stop).execute(
                lambda r: r.get(name=f"{self.customer}/apps/chrome/{app_id}"), resource="chrome")
        except ApiFailure as failure:
            if failure.status != 404:
                raise describe_failure(self.delegation, f"the Web Store details of extension {app_id}", failure) from None
            details = None  # sideloaded, unlisted or removed from the Web Store
        profiles = self._pages(self.reports, "reports", "profiles", f"list who has extension {app_id} (reports:findInstalledAppProfiles)",
                               lambda r, token: r.findInstalledAppProfiles(customer=self.customer, appId=app_id, appType=APP_TYPE,
                                                                           pageSize=100, pageToken=token))
        return item, details, profiles

    def _records(self, item: dict[str, Any], details: dict[str, Any] | None, profiles: list[dict[str, Any]]) -> Iterator[Record]:
        yield extension_record(item, details)
        for profile in profiles:
            email = (profile.get("email") or "").strip().lower()
            if email and email not in self.people:
                self.people.add(email)
                yield person_record(email, self.roles, self.org_units.get(str(profile.get("profileOrgUnitId", "")).removeprefix("id:")))
        yield from profile_grants(item["appId"], profiles, extension_permissions(item, details))

    # -- requests ----------------------------------------------------------------------------------

    def _requests(self) -> Iterator[Record]:
        apps = self._pages(self.details, "apps", "requestedApps", "list extension requests (apps:countChromeAppRequests)",
                           lambda r, token: r.countChromeAppRequests(customer=self.customer, pageSize=50, pageToken=token))
        for app in apps:
            app_id = app.get("appId")
            if not app_id:
                continue
            users = self._pages(self.details, "apps", "userDetails", f"list who asked for extension {app_id}",
                                lambda r, token: r.fetchUsersRequestingExtension(customer=self.customer, extensionId=app_id,
                                                                                  pageSize=50, pageToken=token))
            for user in users:
                if not isinstance(user.get("email"), str) or not user["email"].strip():
                    continue
                email = user["email"].strip().lower()
                if email not in self.people:
                    self.people.add(email)
                    yield person_record(email, self.roles)
                yield request_record(app, user)

    # -- calls -------------------------------------------------------------------------------------

    def _pages(self, client: ChromeClient, resource: str, key: str, what: str, make) -> list[dict[str, Any]]:
        """Every item of a paged listing (paced and retried; a refused page token starts the listing again once)."""
        caller = ApiCaller(client, self.limiter, self.counter, self.stop)
        items: list[dict[str, Any]] = []
        token = None
        while True:
            try:
                response = caller.execute(lambda r: make(r, token), resource=resource)
            except ApiFailure as failure:
                raise describe_failure(self.delegation, what, failure) from None
            items += [item for item in response.get(key) or [] if isinstance(item, dict)]
            token = response.get("nextPageToken")
            if not token:
                return items

    def _org_unit_paths(self) -> dict[str, str]:
        """Org unit id -> path, so [roles] student_org_units apply to profiles (optional scope: {} without it)."""
        try:
            delegation = self.delegation.for_scope(ORGUNIT_SCOPE)
        except NotDelegated:
            log.warning("chrome: profiles' org units are not named (%s is not delegated); roles come from "
                        "student_domains only", ORGUNIT_SCOPE)
            return {}
        except ProviderError as error:
            log.warning("chrome: profiles' org units are not named (%s); roles come from student_domains only", error)
            return {}
        clients = OrgUnitsClient(delegation, self.google["api_root"])
        try:
            response = ApiCaller(clients, self.limiter, self.counter, self.stop).execute(
                lambda r: r.list(customerId=self.google["customer"], type="allIncludingParent",
                                 fields="organizationUnits(orgUnitId,orgUnitPath)"), resource="orgunits")
        except (ApiFailure, ProviderError) as error:
            log.warning("chrome: orgunits.list failed (%s); roles come from student_domains only", error)
            return {}
        finally:
            clients.close()
        return {str(unit.get("orgUnitId", "")).removeprefix("id:"): unit.get("orgUnitPath", "")
                for unit in response.get("organizationUnits") or [] if unit.get("orgUnitId")}

