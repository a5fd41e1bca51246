"""Removing access in Microsoft 365, through Graph, with a separate app registration.

    revoke a delegated grant     DELETE /oauth2PermissionGrants/{id}                    204
    revoke an app permission     DELETE /servicePrincipals/{resource}/appRoleAssignedTo/{id}  204
    narrow a delegated grant     PATCH  /oauth2PermissionGrants/{id} {"scope": ...}     204 (replaces the whole list)
    block an app                 PATCH  /servicePrincipals/{id} {"accountEnabled": false}  204 (no new tokens)
    restore                      POST   /oauth2PermissionGrants, POST .../appRoleAssignedTo (201), or PATCH back

The permissions these need (DelegatedPermissionGrant.ReadWrite.All, AppRoleAssignment.ReadWrite.All,
Application.ReadWrite.All) are rated Critical by CISA ScubaGear, so they belong to an app
registration of their own, configured in [microsoft.revoke]; the scan's registration stays
read-only. Planning reads with the scan's registration; applying reads and writes with the
write registration.

Retries: 429 and 5xx (honouring Retry-After) and dropped connections, for writes too (urllib3's
Retry with DELETE, PATCH and POST allowed). A write whose earlier attempt may have gone through
is judged by its answer: a 404 to a repeated DELETE, or a 409 to a repeated POST, means the
first one did it.
"""

from __future__ import annotations

import threading
import time
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from scanner import ConfigError, GrantGone, PlannedGrant, ProviderError, Revoker, Target, WriteFailed, WriteNotConfigured, WriteUncertain

from .auth import PORTAL, GraphToken
from .client import TIMEOUT, graph_error, retry_policy

WRITE_PERMISSIONS = ("DelegatedPermissionGrant.ReadWrite.All", "AppRoleAssignment.ReadWrite.All", "Application.ReadWrite.All")
SETUP_STEPS = (
    "revoking in Microsoft 365 is not set up: create a separate app registration for it ("
    f"{PORTAL} > New registration), grant it the application permissions {', '.join(WRITE_PERMISSIONS)} with admin consent "
    "(CISA ScubaGear rates them Critical; the scan's registration stays read-only), then add a [microsoft.revoke] section "
    "with its client_id and client_secret_env (or certificate_file and certificate_thumbprint); see docs/revoke.md"
)
ATTEMPTS = 6  # for answers cut short, and one new token after a 401
SP_FIELDS = "id,appId,displayName,accountEnabled"


class _Graph:
    """Graph requests for revocation: one session, retries for writes too, Graph's errors as WriteFailed."""

    def __init__(self, config, credentials: str, pool_size: int):
        settings = config.section("microsoft")
        self.base = settings["graph_url"].rstrip("/") + "/v1.0"
        self.sign_in = requests.Session()
        try:
            self.token = GraphToken.from_config(config, self.sign_in, credentials=credentials)
            self.token.get()
        except (ProviderError, ConfigError) as error:
            self.sign_in.close()
            raise WriteFailed(f"[{credentials}]: {error}") from None
        self.session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry_policy(8, 0.25, methods=frozenset({"GET", "DELETE", "PATCH", "POST"})),
                              pool_connections=2, pool_maxsize=pool_size)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)

    def close(self) -> None:
        self.session.close()
        self.sign_in.close()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The JSON answer (None for 204). GrantGone for a 404 to the first attempt."""
        url = self.base + path
        repeated = False
        for attempt in range(ATTEMPTS):
            try:
                response = self.session.request(method, url, json=body, timeout=TIMEOUT, headers={
                    "Authorization": f"Bearer {self.token.get()}", "Accept": "application/json"})
            except requests.RequestException as error:
                if method != "GET":
                    raise WriteUncertain(f"{method} {path}: no answer, even after retries ({type(error).__name__})") from None
                raise WriteFailed(f"{method} {path}: no answer, even after retries ({type(error).__name__})") from None
            repeated = repeated or bool(getattr(getattr(response.raw, "retries", None), "history", None))
            if response.status_code == 401 and attempt == 0:
                self.token.renew()
                continue
            if response.status_code == 404:
                if repeated and method == "DELETE":
                    return None  # an earlier attempt deleted it; its answer was lost
                raise GrantGone()
            if response.status_code == 409 and repeated and method == "POST":
                return {"conflict_after_retry": True}
            if response.status_code >= 400:
                try:
                    answer = response.json()
                except ValueError:
                    answer = None
                raise WriteFailed(graph_error(method, url, response.status_code, answer, response.headers).describe())
            if response.status_code == 204 or not response.content:
                return None
            try:
                answer = response.json()
            except ValueError:  # cut short: ask again (a repeated write is judged as above)
                repeated = True
                time.sleep(0.1 * (attempt + 1))
                continue
            return {k: v for k, v in answer.items() if not k.startswith("@odata.")} if isinstance(answer, dict) else answer
        raise WriteFailed(f"{method} {path}: the answer was cut short {ATTEMPTS} times")

    def collection(self, path: str) -> list[dict]:
        """Every item of a collection, following nextLink only on the same Graph host."""
        items: list[dict] = []
        url = self.base + path
        while url:
            if not url.startswith(self.base):
                raise WriteFailed(f"Graph's next-page link points outside {self.base}; not followed")
            response = None
            for attempt in range(ATTEMPTS):
                response = self.session.get(url, timeout=TIMEOUT, headers={"Authorization": f"Bearer {self.token.get()}",
                                                                           "Accept": "application/json"})
                if response.status_code == 401 and attempt == 0:
                    self.token.renew()
                    continue
                if response.status_code == 404:
                    raise GrantGone()
                if response.status_code >= 400:
                    raise WriteFailed(graph_error("GET", url, response.status_code, _json(response), response.headers).describe())
                if _json(response) is not None:
                    break
                time.sleep(0.1 * (attempt + 1))
            answer = _json(response)
            if answer is None:
                raise WriteFailed(f"GET {url}: the answer was cut short {ATTEMPTS} times")
            items += answer.get("value") or []
            url = answer.get("@odata.nextLink")
        return items


def _json(response) -> dict | None:
    try:
        answer = response.json()
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


class MicrosoftRevoker(Revoker):
    provider = "microsoft"
    can_narrow = True
    can_block = True
    can_restore = True
    workers = 8

    def __init__(self, config):
        super().__init__(config)
        self.write_settings = config.section("microsoft.revoke") if config.has("microsoft.revoke") else None
        self._graphs: dict[str, _Graph] = {}
        self._lock = threading.Lock()
        self._cache: dict[tuple, Any] = {}

    def units_per_second(self) -> float:
        settings = self.write_settings or self.config.section("microsoft.revoke")
        return float(settings["resource_units_per_second"])

    def cost(self, kind: str) -> float:
        # Graph's resource units: a single-object GET costs 1, a create, update or delete 3.
        return 3.0 if kind == "write" else 1.0

    def check_write_access(self) -> None:
        if self.write_settings is None:
            raise WriteNotConfigured(SETUP_STEPS)
        try:
            self._graph("write")
        except WriteFailed as error:
            raise WriteNotConfigured(f"the [microsoft.revoke] app registration cannot sign in: {error}") from None

    def _graph(self, purpose: str) -> _Graph:
        with self._lock:
            if purpose not in self._graphs:
                credentials = "microsoft.revoke" if purpose == "write" else "microsoft"
                if purpose == "write" and self.write_settings is None:
                    raise WriteNotConfigured(SETUP_STEPS)
                self._graphs[purpose] = _Graph(self.config, credentials, pool_size=self.workers + 2)
            return self._graphs[purpose]

    def _applying(self) -> _Graph:
        return self._graph("write")

    def _cached(self, key: tuple, make):
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        value = make()
        with self._lock:
            self._cache[key] = value
        return value

    # -- planning (read with the scan's registration) -------------------------------------------

    def _service_principal(self, app_id: str) -> dict:
        graph = self._graph("read")
        return self._cached(("sp", app_id), lambda: graph.call("GET", f"/servicePrincipals(appId='{quote(app_id)}')?$select={SP_FIELDS}"))

    def _resource(self, resource_id: str) -> dict:
        graph = self._graph("read")
        return self._cached(("resource", resource_id), lambda: graph.call(
            "GET", f"/servicePrincipals/{resource_id}?$select=id,displayName,appRoles"))

    def resolve(self, grant: PlannedGrant) -> list[Target]:
        graph = self._graph("read")
        try:
            sp = self._service_principal(grant.client_id)
        except GrantGone:
            return []
        targets = []
        if grant.grant_type == "application":
            assignments = self._cached(("assignments", sp["id"]), lambda: graph.collection(f"/servicePrincipals/{sp['id']}/appRoleAssignments?$top=999"))
            for assignment in assignments:
                if grant.resource not in (assignment.get("resourceDisplayName"), assignment.get("resourceId")):
                    continue
                roles = {role["id"]: role.get("value") for role in self._resource(assignment["resourceId"]).get("appRoles") or []}
                role = roles.get(assignment["appRoleId"], assignment["appRoleId"])
                targets.append(Target({"type": "appRoleAssignment", "id": assignment["id"], "resourceId": assignment["resourceId"],
                                       "principalId": assignment["principalId"]}, assignment, [role]))
            return targets
        grants = self._cached(("grants", sp["id"]), lambda: graph.collection(f"/servicePrincipals/{sp['id']}/oauth2PermissionGrants?$top=999"))
        for item in grants:
            mine = item.get("principalId") == grant.user_key if grant.user_key else item.get("consentType") == "AllPrincipals"
            if not mine:
                continue
            if grant.resource and grant.resource not in (self._resource(item["resourceId"]).get("displayName"), item["resourceId"]):
                continue
            targets.append(Target({"type": "oauth2PermissionGrant", "id": item["id"]}, item, (item.get("scope") or "").split()))
        return targets

    def resolve_app(self, client_id: str) -> Target:
        sp = self._service_principal(client_id)
        return Target({"type": "servicePrincipal", "id": sp["id"]}, sp)

    # -- applying (read and write with the write registration) ---------------------------------

    def read(self, action: dict) -> dict | None:
        graph, target = self._applying(), action["target"]
        try:
            if target["type"] == "oauth2PermissionGrant":
                return graph.call("GET", f"/oauth2PermissionGrants/{target['id']}")
            if target["type"] == "appRoleAssignment":
                found = graph.collection(f"/servicePrincipals/{target['principalId']}/appRoleAssignments")
                return next((a for a in found if a["id"] == target["id"]), None)
            return graph.call("GET", f"/servicePrincipals/{target['id']}?$select={SP_FIELDS}")
        except GrantGone:
            return None

    def changed(self, action: dict, current: dict) -> str | None:
        before, kind = action["snapshot"], action["target"]["type"]
        if kind == "oauth2PermissionGrant":
            for key in ("clientId", "consentType", "principalId", "resourceId"):
                if current.get(key) != before.get(key):
                    return f"its {key} is now {current.get(key)}"
            now = sorted((current.get("scope") or "").split())
            if now != sorted((before.get("scope") or "").split()):
                return f"its scopes are now {' '.join(now) or '(none)'}"
        elif kind == "appRoleAssignment" and current.get("appRoleId") != before.get("appRoleId"):
            return "it now holds another app role"
        return None

    def finished(self, action: dict, current: dict | None) -> bool:
        if action["action"] == "revoke":
            return current is None
        if current is None:
            return False
        if action["action"] == "narrow":
            return sorted((current.get("scope") or "").split()) == sorted(action["scopes_kept"])
        return current.get("accountEnabled") is False  # block

    def write(self, action: dict) -> None:
        graph, target = self._applying(), action["target"]
        if action["action"] == "revoke" and target["type"] == "oauth2PermissionGrant":
            graph.call("DELETE", f"/oauth2PermissionGrants/{target['id']}")
        elif action["action"] == "revoke" and target["type"] == "appRoleAssignment":
            graph.call("DELETE", f"/servicePrincipals/{target['resourceId']}/appRoleAssignedTo/{target['id']}")
        elif action["action"] == "narrow" and target["type"] == "oauth2PermissionGrant":
            graph.call("PATCH", f"/oauth2PermissionGrants/{target['id']}", {"scope": " ".join(action["scopes_kept"])})
        elif action["action"] == "block" and target["type"] == "servicePrincipal":
            graph.call("PATCH", f"/servicePrincipals/{target['id']}", {"accountEnabled": False})
        else:
            raise WriteFailed(f"cannot {action['action']} a {target['type']}")

    def restore(self, action: dict) -> dict:
        graph, target, before = self._applying(), action["target"], action["snapshot"]
        try:
            if action["action"] == "revoke" and target["type"] == "oauth2PermissionGrant":
                body = {key: before.get(key) for key in ("clientId", "consentType", "principalId", "resourceId", "scope")}
                made = graph.call("POST", "/oauth2PermissionGrants", body)
                if made.get("conflict_after_retry"):
                    made = next(g for g in graph.collection(f"/servicePrincipals/{before['clientId']}/oauth2PermissionGrants")
                                if g.get("principalId") == before.get("principalId") and g["resourceId"] == before["resourceId"])
                return made
            if action["action"] == "revoke" and target["type"] == "appRoleAssignment":
                body = {key: before.get(key) for key in ("principalId", "resourceId", "appRoleId")}
                made = graph.call("POST", f"/servicePrincipals/{before['resourceId']}/appRoleAssignedTo", body)
                if made.get("conflict_after_retry"):
                    made = next(a for a in graph.collection(f"/servicePrincipals/{before['principalId']}/appRoleAssignments")
                                if a["resourceId"] == before["resourceId"] and a["appRoleId"] == before["appRoleId"])
                return made
            if action["action"] == "narrow":
                graph.call("PATCH", f"/oauth2PermissionGrants/{target['id']}", {"scope": before.get("scope") or ""})
                return graph.call("GET", f"/oauth2PermissionGrants/{target['id']}")
            if action["action"] == "block":
                graph.call("PATCH", f"/servicePrincipals/{target['id']}", {"accountEnabled": bool(before.get("accountEnabled", True))})
                return graph.call("GET", f"/servicePrincipals/{target['id']}?$select={SP_FIELDS}")
        except GrantGone:
            raise WriteFailed("what it belonged to (the app or the person) is no longer in the tenant") from None
        except WriteUncertain as error:
            raise WriteFailed(f"{error}; check the app's permissions in the Entra admin center before restoring again") from None
        raise WriteFailed(f"cannot restore a {action['action']} of a {target['type']}")

    def close(self) -> None:
        with self._lock:
            graphs, self._graphs = list(self._graphs.values()), {}
        for graph in graphs:
            graph.close()
