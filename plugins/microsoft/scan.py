"""One Microsoft 365 scan: what is fetched from Graph, in which order, and how it streams.

First, on the calling thread: the organization (the district's own tenant id), the
licence SKUs (part numbers for [roles]) and every service principal (which app is
third-party, internal or Microsoft's; object id -> appId). Then, concurrently on a
small thread pool, each task sending its results back page by page through a
bounded queue to the one thread that yields records (so memory stays flat):

- users, paged (student group members first, when [roles] student_groups is set);
- delegated grants, listed per app (`/servicePrincipals/{id}/oauth2PermissionGrants`)
  for every non-Microsoft app: complete and parallel, where the tenant-wide list is
  known to answer 503 or come back incomplete in large tenants;
- the tenant-wide list (`/oauth2PermissionGrants?$select=clientId`) as a light
  census: which of Microsoft's own apps hold grants (those are then listed per app
  too) and a cross-check of the per-app counts. If it fails, breaks off, or misses
  grants the per-app lists hold, every Microsoft app is listed (the fallback);
- application permissions of every non-Microsoft app, through `$batch`, with role
  ids resolved to names through each resource's `appRoles`;
- last sign-in per app from the beta sign-in activity report (Entra ID P1), paced
  to its limit of 5 requests per 10 seconds; without P1 it is skipped with a warning.

Before the pool starts, the consent posture (authorization policy, admin consent request
policy, the permission classifications when users may consent to low-impact permissions)
and people's requests for admin consent are read; a permission the app registration lacks
makes only the checks that need it `unknown`, naming the permission to add.

Every listing survives Graph's page tokens expiring mid-way: GraphClient.pages reads
it again from the first page. Users and apps skip what they already handed out; grant
listings hand their grants out again (the store merges a grant met twice in one scan)
and count afresh, as the grant census does, so nothing is recorded twice or missed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from scanner import App, Config, Grant, ProviderError, Record, ScanRun

from .auth import PORTAL
from .client import GraphCallError, GraphClient
from .posture import Unread, consent_request_records, microsoft_findings, needs_classifications
from .records import (
    SERVICE_PRINCIPAL_FIELDS,
    USER_FIELDS,
    ServicePrincipal,
    application_grants,
    delegated_grant,
    last_used,
    service_principal_to_app,
    user_record,
)

log = logging.getLogger("plugins.microsoft.provider")

REPORT_INTERVAL = 2.1  # seconds between sign-in report requests: the limit is 5 per 10 s
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's own appId
# The application permission each posture read needs (least privileged, from each API's permission table).
POSTURE_PERMISSIONS = (
    ("/policies/", "Policy.Read.All"),
    ("/identityGovernance/appConsent/", "ConsentRequest.Read.All"),
    ("/delegatedPermissionClassifications", "Application.Read.All"),
)
NON_PREMIUM = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
# Which application permission a refused request needs: (path part, permission, what was refused).
NEEDED_PERMISSIONS = (
    ("/oauth2PermissionGrants", "DelegatedPermissionGrant.Read.All", "read the delegated permission grants"),
    ("/appRoleAssignments", "Application.Read.All", "read the apps' application permissions"),
    ("/servicePrincipals", "Application.Read.All", "list the enterprise applications"),
    ("/reports/", "AuditLog.Read.All", "read sign-in activity"),
    ("/groups", "Directory.Read.All", "read the members of [roles] student_groups"),
    ("/users", "Directory.Read.All", "list the users"),
    ("/subscribedSkus", "Directory.Read.All", "read the licence SKUs"),
    ("/organization", "Directory.Read.All", "read the organization"),
)


class TenantScan:
    """Yields one tenant's records; `summary()` tells what it cost afterwards."""

    def __init__(self, config: Config, graph: GraphClient, run: ScanRun, *, workers: int):
        self.config, self.graph, self.run, self.workers = config, graph, run, workers
        self.settings = config.section("microsoft")
        self.roles = config.section("roles")
        self.principals: dict[str, ServicePrincipal] = {}  # by object id
        self.apps: dict[str, App] = {}  # by appId
        self.announced: set[str] = set()
        self.listed_counts: dict[str, int] = {}  # non-Microsoft apps' grant listings done: object id -> grants
        self.tenant_counts: Counter[str] | None = None  # grants per client in the tenant-wide list
        self.tenant_list = "running"  # "running" | "complete" | "failed"
        self.listings_left = 0  # non-Microsoft apps' grant listings still running
        self.microsoft_left = 0  # Microsoft apps' grant listings still running
        self.microsoft_done = 0
        self._listed: set[str] = set()  # apps whose grant listing was started
        self.fallback_seconds: float | None = None
        self._fallback_started: float | None = None
        self._cross_checked = False
        self._users_done = False
        self._started = time.monotonic()

    # -- the scan --------------------------------------------------------------------------

    def records(self) -> Iterator[Record]:
        try:
            yield from self._records()
        except GraphCallError as error:
            raise ProviderError(self._explain(error)) from None
        finally:
            self._sync_counters()

    def _records(self) -> Iterator[Record]:
        self.run.progress.start(None, unit="users")
        own_tenant = self._read_organization()
        sku_names = self._read_sku_names()
        self._read_service_principals(own_tenant)
        yield from self._consent_posture()
        for app in self.apps.values():
            if app.ownership != "first_party":
                self.announced.add(app.id)
                yield app
        listed = [sp for sp in self.principals.values() if sp.ownership != "first_party"]
        self.listings_left = len(listed)
        self._listed.update(sp.id for sp in listed)
        pipeline = Pipeline(self.workers)
        try:
            pipeline.submit(self._fetch_users, sku_names)
            pipeline.submit(self._fetch_grant_census)
            pipeline.submit(self._fetch_application_permissions, listed)
            pipeline.submit(self._fetch_last_use)
            for sp in listed:
                pipeline.submit(self._fetch_client_grants, sp)
            progress = self.run.progress
            for kind, payload in pipeline.results():
                self._sync_counters()
                if kind == "users":
                    yield from payload
                    if not self._users_done:
                        progress.advance(len(payload))
                elif kind == "grants":
                    for grant in payload:
                        yield from self._with_app(grant)
                elif kind == "last_used":
                    yield from payload
                elif kind == "user_total":
                    progress.start(payload, unit="users")
                elif kind == "users_done":
                    self._users_done = True
                    progress.start(self._listings_total(), unit="apps")
                    progress.advance(len(self.listed_counts) + self.microsoft_done)
                elif kind == "client_listed":
                    self._client_listed(*payload, pipeline=pipeline)
                elif kind == "tenant_counts":
                    self.tenant_list, self.tenant_counts = "complete", payload
                    holders = [self.principals[c] for c in payload if c in self.principals]
                    self._list_microsoft_apps(pipeline, [sp for sp in holders if sp.ownership == "first_party"])
                    self._cross_check(pipeline)
                elif kind == "tenant_list_failed":
                    self.tenant_list = "failed"
                    self._start_fallback(pipeline, f"failed ({payload.describe()})")
                elif kind == "warning":
                    log.warning("%s", payload)
        finally:
            pipeline.close()
        self._log_summary()

    def _with_app(self, grant: Grant) -> Iterator[Record]:
        if grant.app_id not in self.announced:  # Microsoft's apps are recorded once they hold a grant
            self.announced.add(grant.app_id)
            if grant.app_id in self.apps:
                yield self.apps[grant.app_id]
        yield grant

    # -- what runs first, on this thread ---------------------------------------------------

    def _read_organization(self) -> str:
        organizations = self.graph.get("/v1.0/organization?$select=id,displayName,verifiedDomains").get("value") or []
        if not organizations:
            raise ProviderError("Microsoft Graph returned no organization for this tenant; check [microsoft] tenant_id")
        organization = organizations[0]
        domains = organization.get("verifiedDomains") or []
        default = next((d.get("name") for d in domains if d.get("isDefault")), None)
        self.run.tenant = default or organization.get("displayName") or organization["id"]
        return organization["id"]

    def _read_sku_names(self) -> dict[str, str]:
        skus = self.graph.get("/v1.0/subscribedSkus?$select=skuId,skuPartNumber").get("value") or []
        return {sku["skuId"]: sku.get("skuPartNumber") or sku["skuId"] for sku in skus if sku.get("skuId")}

    def _read_service_principals(self, own_tenant: str) -> None:
        fields = SERVICE_PRINCIPAL_FIELDS
        try:
            pages = list(self.graph.pages(f"/v1.0/servicePrincipals?$select={fields}&$top=999"))
        except GraphCallError as error:
            # publisherName is not in the v1.0 schema (Graph returns it as an extra); do without if refused.
            if error.status != 400 or "publisherName" not in error.message:
                raise
            fields = ",".join(f for f in fields.split(",") if f != "publisherName")
            pages = list(self.graph.pages(f"/v1.0/servicePrincipals?$select={fields}&$top=999"))
        for page in pages:
            for sp in page:
                principal, app = service_principal_to_app(sp, own_tenant)
                self.principals[principal.id] = principal
                self.apps[app.id] = app

    # -- the consent posture and requests for admin consent -----------------------------------

    def _consent_posture(self) -> Iterator[Record]:
        authorization = self._read_object("/v1.0/policies/authorizationPolicy")
        admin_consent = self._read_object("/v1.0/policies/adminConsentRequestPolicy")
        classifications = None
        if needs_classifications(authorization):
            classifications = self._read_list(
                f"/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')/delegatedPermissionClassifications")
        findings = microsoft_findings(authorization, admin_consent, classifications)
        unknown: dict[str, list[str]] = defaultdict(list)
        for finding in findings:
            if finding.result == "unknown":
                unknown[finding.reason].append(finding.check_id)
        for reason, checks in unknown.items():
            log.warning("microsoft: posture checks %s are unknown: %s", ", ".join(checks), reason)
        yield from findings
        yield from self._consent_requests()

    def _consent_requests(self) -> Iterator[Record]:
        requests = self._read_list("/v1.0/identityGovernance/appConsent/appConsentRequests?$top=999")
        if isinstance(requests, Unread):
            log.warning("microsoft: requests for admin consent are not recorded: %s", requests.reason)
            return
        by_id = {request["id"]: request for request in requests if request.get("id") and request.get("appId")}
        # The list does not expand who asked: each request's userConsentRequests, through $batch.
        urls = {request_id: f"/identityGovernance/appConsent/appConsentRequests/{request_id}/userConsentRequests?$top=999"
                for request_id in by_id}
        try:
            records = [record for request_id, asked in self.graph.batch_collect(urls)
                       for record in consent_request_records(by_id[request_id], asked or [])]
        except GraphCallError as error:
            log.warning("microsoft: requests for admin consent are not recorded: %s", self._posture_problem(error).reason)
            return
        yield from records

    def _read_object(self, path: str) -> dict | Unread:
        try:
            body = self.graph.get(path)
        except GraphCallError as error:
            return self._posture_problem(error)
        return body if isinstance(body, dict) else Unread(f"Graph answered {path} with something other than an object")

    def _read_list(self, path: str) -> list[dict] | Unread:
        try:
            return [item for page in self.graph.pages(path) for item in page]
        except GraphCallError as error:
            return self._posture_problem(error)

    def _posture_problem(self, error: GraphCallError) -> Unread:
        """Why a posture read failed, and what to do: the exact permission for a refusal."""
        if error.status == 403 and error.code == "Authorization_RequestDenied":
            permission = next((p for part, p in POSTURE_PERMISSIONS if part in error.path), "Policy.Read.All")
            return Unread(f"the app registration lacks the Microsoft Graph application permission {permission}: in "
                          f"{PORTAL} > {self.settings['client_id']} > API permissions, add {permission}, then click "
                          f"\"Grant admin consent\" ({error.code})")
        return Unread(f"Microsoft Graph failed to answer: {error.describe()}; the next scan tries again")

    # -- tasks on the pool (each sends results through `emit`) -----------------------------

    def _fetch_users(self, emit: Callable, sku_names: dict[str, str]) -> None:
        try:
            total: int | None = int(self.graph.get("/v1.0/users/$count", headers={"ConsistencyLevel": "eventual"}))
        except (GraphCallError, ValueError, TypeError):
            total = None  # only the progress display needs it
        emit("user_total", total)
        groups_of = self._student_groups()
        for page in self.graph.pages(f"/v1.0/users?$select={USER_FIELDS}&$top=999"):
            emit("users", [user_record(user, self.roles, sku_names, groups_of) for user in page])
        emit("users_done", None)

    def _student_groups(self) -> dict[str, list[str]]:
        groups_of: dict[str, list[str]] = defaultdict(list)
        for group_id in self.roles.get("student_groups") or []:
            try:
                for page in self.graph.pages(f"/v1.0/groups/{group_id}/transitiveMembers?$select=id&$top=999"):
                    for member in page:
                        if member.get("@odata.type", "#microsoft.graph.user") == "#microsoft.graph.user":
                            groups_of[member["id"]].append(group_id)
            except GraphCallError as error:
                if error.status != 404:
                    raise
                raise ProviderError(
                    f"{self.config.where}: [roles] student_groups: there is no group {group_id} in the tenant; "
                    "use the group's Object ID from Microsoft Entra admin center > Groups"
                ) from None
        return dict(groups_of)

    def _fetch_grant_census(self, emit: Callable) -> None:
        counts: Counter[str] = Counter()
        try:
            # After an expired page token the list is read again from the start: count afresh.
            for page in self.graph.pages("/v1.0/oauth2PermissionGrants?$select=clientId&$top=999", on_restart=counts.clear):
                counts.update(grant.get("clientId", "") for grant in page)
        except GraphCallError as error:
            if error.status in (400, 401, 403, 404) and not error.expired_page_token:
                raise  # a real problem (permissions), not the list's known unreliability
            emit("tenant_list_failed", error)
            return
        emit("tenant_counts", counts)

    def _fetch_client_grants(self, emit: Callable, sp: ServicePrincipal) -> None:
        page_sizes: list[int] = []
        try:
            # After an expired page token the grants come again from the first page: the store
            # merges a grant met twice in one scan, so the listing keeps no record of what it
            # handed out (at a million accounts that was up to 11 MB for each large app).
            url = f"/v1.0/servicePrincipals/{sp.id}/oauth2PermissionGrants?$top=999"
            for page in self.graph.pages(url, on_restart=page_sizes.clear):
                page_sizes.append(len(page))
                records = [r for r in (delegated_grant(g, self.principals) for g in page) if r]
                if records:
                    emit("grants", records)
        except GraphCallError as error:
            if error.status != 404:  # 404: the app was deleted during the scan
                raise
        emit("client_listed", (sp.id, sum(page_sizes)))

    def _fetch_application_permissions(self, emit: Callable, clients: list[ServicePrincipal]) -> None:
        urls = {sp.id: f"/servicePrincipals/{sp.id}/appRoleAssignments?$top=999" for sp in clients}
        assignments = {sp_id: items for sp_id, items in self.graph.batch_collect(urls) if items}
        resource_ids = {a.get("resourceId") for items in assignments.values() for a in items if a.get("resourceId")}
        resource_urls = {rid: f"/servicePrincipals/{rid}?$select=id,appId,displayName,appRoles" for rid in resource_ids}
        role_names = {rid: {role["id"]: role.get("value") or role["id"] for role in (resource or {}).get("appRoles") or [] if role.get("id")}
                      for rid, resource in self.graph.batch_objects(resource_urls)}
        grants = [grant for sp_id, items in assignments.items()
                  for grant in application_grants(self.principals[sp_id], items, role_names, self.principals)]
        if grants:
            emit("grants", grants)

    def _fetch_last_use(self, emit: Callable) -> None:
        try:
            for page in self.graph.pages("/beta/reports/servicePrincipalSignInActivities", interval=REPORT_INTERVAL):
                records = [r for r in map(last_used, page) if r and r.app_id in self.apps]
                if records:
                    emit("last_used", records)
        except GraphCallError as error:
            if error.expired_page_token:
                raise
            if error.status == 403 and error.code == NON_PREMIUM:
                emit("warning", "microsoft: last use is not recorded: the tenant has no Microsoft Entra ID P1 or P2 licence, "
                                "which Graph requires for sign-in activity (common with A1 licences); everything else is")
            elif error.status == 403:
                emit("warning", "microsoft: last use is not recorded: grant the app registration the Microsoft Graph "
                                "application permission AuditLog.Read.All and admin consent to record it")
            elif error.status in (400, 404):
                emit("warning", f"microsoft: last use is not recorded: the sign-in activity report is not available here ({error.code})")
            else:
                raise

    # -- the cross-check and the fallback --------------------------------------------------

    def _listings_total(self) -> int:
        return len(self.listed_counts) + self.listings_left + self.microsoft_done + self.microsoft_left

    def _list_microsoft_apps(self, pipeline: Pipeline, apps: list[ServicePrincipal]) -> None:
        for sp in apps:
            if sp.id not in self._listed:
                self._listed.add(sp.id)
                self.microsoft_left += 1
                pipeline.submit(self._fetch_client_grants, sp)
        if self._users_done:
            self.run.progress.set_total(self._listings_total())

    def _client_listed(self, sp_id: str, count: int, *, pipeline: Pipeline) -> None:
        if self.principals[sp_id].ownership == "first_party":
            self.microsoft_left -= 1
            self.microsoft_done += 1
            if self.microsoft_left == 0 and self._fallback_started is not None and self.fallback_seconds is None:
                self.fallback_seconds = time.monotonic() - self._fallback_started
        else:
            self.listings_left -= 1
            self.listed_counts[sp_id] = count
        if self._users_done:
            self.run.progress.advance()
        self._cross_check(pipeline)

    def _cross_check(self, pipeline: Pipeline) -> None:
        if self.tenant_list != "complete" or self.listings_left or self._cross_checked:
            return
        self._cross_checked = True
        counts = self.tenant_counts or Counter()
        missed = sum(max(0, n - counts.get(sp_id, 0)) for sp_id, n in self.listed_counts.items())
        extra = sum(max(0, counts.get(sp_id, 0) - n) for sp_id, n in self.listed_counts.items())
        orphans = sum(n for client, n in counts.items() if client not in self.principals)
        if orphans:
            log.info("microsoft: %d grants belong to apps deleted during the scan; skipped", orphans)
        if extra:
            log.warning("microsoft: the tenant-wide grants list holds %d grants the per-app lists did not "
                        "(consents given during the scan, most likely); the next scan will see them", extra)
        if missed:
            self._start_fallback(pipeline, f"left out {missed} grants the per-app lists hold (a known Graph problem in large tenants)")

    def _start_fallback(self, pipeline: Pipeline, reason: str) -> None:
        if self._fallback_started is not None:
            return
        microsoft = [sp for sp in self.principals.values() if sp.ownership == "first_party"]
        log.warning("microsoft: the tenant-wide grants list %s; listing the grants of Microsoft's %d apps one by one instead",
                    reason, len(microsoft))
        self._fallback_started = time.monotonic()
        self._list_microsoft_apps(pipeline, microsoft)
        if self.microsoft_left == 0:
            self.fallback_seconds = 0.0

    # -- reporting -------------------------------------------------------------------------

    def _sync_counters(self) -> None:
        stats = self.graph.stats
        if stats.calls > self.run.api_calls:
            self.run.count_call(stats.calls - self.run.api_calls)
        if stats.retries > self.run.retries:
            self.run.count_retry(stats.retries - self.run.retries)

    def summary(self) -> dict[str, Any]:
        """What the scan cost: Graph calls, HTTP requests, $batch envelopes, retries, seconds, fallback time."""
        return {**self.graph.stats.summary(), "seconds": round(time.monotonic() - self._started, 3),
                "fallback_seconds": None if self.fallback_seconds is None else round(self.fallback_seconds, 3)}

    def _log_summary(self) -> None:
        # At debug level: on a terminal, the progress line is still being drawn.
        summary = self.summary()
        fallback = f"; the per-app fallback took {summary['fallback_seconds']:.1f} s" if summary["fallback_seconds"] is not None else ""
        restarts = f" ({summary['page_restarts']} lists read again after an expired page token)" if summary["page_restarts"] else ""
        log.debug("microsoft: %d Graph calls in %d HTTP requests (%d $batch), %d retries%s, %.1f s%s",
                 summary["calls"], summary["http_requests"], summary["batch_envelopes"], summary["retries"], restarts,
                 summary["seconds"], fallback)
        for endpoint, timing in summary["endpoints"].items():
            log.debug("microsoft: %s: %d requests, %.1f s", endpoint, timing["requests"], timing["seconds"])

    def _explain(self, error: GraphCallError) -> str:
        client_id = self.settings["client_id"]
        if error.status == 403 and error.code == "Authorization_RequestDenied":
            permission, what = next(((p, w) for part, p, w in NEEDED_PERMISSIONS if part in error.path),
                                    ("Directory.Read.All", "read the directory"))
            return (f"Microsoft Graph refused to {what} ({error.describe()}): in {PORTAL} > {client_id} > API permissions, "
                    f"add the Microsoft Graph application permission {permission}, then click \"Grant admin consent\"")
        if error.status == 401:
            return (f"Microsoft Graph rejected the app's access token ({error.describe()}); check that [microsoft] graph_url "
                    f"is https://graph.microsoft.com and that app {client_id} is registered in tenant {self.settings['tenant_id']}")
        if error.status == 429:
            return (f"Microsoft Graph kept throttling the scan ({error.describe()}); try again later, or lower "
                    "[microsoft] concurrent_requests")
        if error.expired_page_token:
            return (f"Microsoft Graph's page token for {urlsplit(error.url).path} kept expiring: {error.message} "
                    f"(HTTP 400 {error.code}); this happens when Graph is slow or throttling hard: run the scan again "
                    "later, or lower [microsoft] concurrent_requests")
        if error.status is None:
            return f"cannot talk to Microsoft Graph at {self.settings['graph_url']}: {error.describe()}"
        return f"Microsoft Graph failed: {error.describe()}"


class _Stopped(Exception):
    """The consumer went away: a task stops at its next result."""


class Pipeline:
    """Tasks on a thread pool whose results come back, as they arrive, to the consuming thread.

    The queue is bounded, so fetching never runs more than a few pages ahead of the
    store. A task's exception is re-raised in the consumer; closing stops every task
    at its next result.
    """

    def __init__(self, workers: int):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="graph")
        self._queue: queue.Queue = queue.Queue(maxsize=workers * 2)
        self._stop = threading.Event()
        self._pending = 0

    def submit(self, task: Callable, *args: Any) -> None:
        self._pending += 1
        self._pool.submit(self._run, task, args)

    def results(self) -> Iterator[tuple[str, Any]]:
        while self._pending:
            kind, payload = self._queue.get()
            if kind == "done":
                self._pending -= 1
            elif kind == "error":
                raise payload
            else:
                yield kind, payload

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock tasks waiting to hand over a result
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, task: Callable, args: tuple) -> None:
        try:
            task(self._emit, *args)
        except _Stopped:
            return
        except BaseException as error:  # handed to the consumer, which raises it
            self._put_quietly(("error", error))
        self._put_quietly(("done", None))

    def _emit(self, kind: str, payload: Any) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put((kind, payload), timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Stopped

    def _put_quietly(self, item: tuple[str, Any]) -> None:
        try:
            self._emit(*item)
        except _Stopped:
            pass
