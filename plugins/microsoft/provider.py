"""The Microsoft 365 provider: apps connected to the district's Entra ID tenant, through Microsoft Graph.

Signs in as the district's app registration (client secret or certificate, MSAL
client credentials) and reads, with application permissions only: users and their
licences, service principals (the apps), delegated permission grants (one user's
consent, or an admin's consent for everyone), application permissions, and, with
Entra ID P1, each app's last sign-in; and the tenant's consent settings (the posture
checks) and people's requests for admin consent. Every scan is a full scan: grants no
longer seen are revoked in the inventory. See docs/microsoft.md for the app
registration it needs.
"""

from __future__ import annotations

from collections.abc import Iterator

import requests

from scanner import Provider, Record, ScanRun

from .auth import GraphToken
from .client import GraphClient
from .scan import TenantScan


class Microsoft365(Provider):
    name = "microsoft"
    label = "Microsoft 365"

    def scan(self, run: ScanRun) -> Iterator[Record]:
        run.mode = "full"  # Graph has no change feed for grants: every scan re-reads everything
        settings = self.config.section("microsoft")
        run.tenant = settings["tenant_id"]
        workers = settings["concurrent_requests"]
        sign_in = requests.Session()  # MSAL's own, so REQUESTS_CA_BUNDLE and proxies apply to sign-in too
        graph = None
        try:
            token = GraphToken.from_config(self.config, sign_in)
            token.get()  # sign in first: a wrong secret fails before any Graph request
            graph = GraphClient(settings["graph_url"], token, pool_size=workers + 2)
            yield from TenantScan(self.config, graph, run, workers=workers).records()
        finally:
            if graph:
                graph.close()
            sign_in.close()

