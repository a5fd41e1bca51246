"""A local emulator of the Google Admin SDK (Directory users, tokens and org units, Reports
token activity, batches), the Cloud Identity Policy API, Google's OAuth token endpoint and
Sign in with Google (OpenID Connect, emulators.google.openid), over real HTTP on 127.0.0.1.

    tenant = build_tenant(users=2000)
    with GoogleEmulator(tenant, knobs={"fault_rate": 0.1}) as emulator:
        key = new_service_account_key(token_uri=emulator.token_uri)   # RSA key made now, never committed
        emulator.delegate(key)                # domain-wide delegation of the scanner's three scopes
        # [google] api_root = emulator.api_root, service_account_file = <key written as JSON>,
        # admin_email = "it-admin@district.example"
        ...
        emulator.stats()                      # HTTP requests, API calls (batch parts included) by method,
                                              # quota rejections, injected faults, token exchanges
        emulator.mutate([{"op": "churn", "fraction": 0.02}])   # change grants, with audit events
        emulator.mutate([{"op": "set_policy", "setting": "api_controls.internal_apps",
                          "value": {"trustInternalApps": False}, "org_unit": "/"}])   # an admin console setting
        emulator.register_sign_in_client(client_id, secret, [redirect_uri])   # Sign in with Google:
        # [signin] google_issuer = emulator.issuer; spoil_next_id_token("other_domain"), rotate_signing_key()

The tenant is data (emulators.google.tenant); the knobs (emulators.google.api.Knobs)
set latency, the per-minute quota, seeded faults (error answers, 429 with Retry-After, reset
connections, stalls past the client's timeout, bodies cut short: on single calls, batches and
the token endpoint), page tokens that expire, token lifetime, an edition without `activity`
events, a Reports outage, report lag, and users deleted mid-scan.

Time is the emulator's clock (`clock=`, emulators.clock): page-token age, report lag, the
quota bucket, access-token expiry, the JWT's iat/exp, stalls, and when tenant changes made
through the controls happen. Under a `ManualClock` all of these move only when the test
advances it (the quota refills then too).

For a benchmark that must measure the scanner's memory alone, `GoogleEmulatorProcess`
runs the same emulator in a child process (`python -m emulators.google.server`) from
tenant JSON or a `build_tenant` spec, with the same controls over a keyed
`/_emulator/` HTTP API. The child exits when its parent closes its stdin (or dies).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..clock import Clock
from ..lifecycle import google_lifecycle
from ..server import (
    EmulatorHandler, GateControls, EmulatorProcess, ServedEmulator, UnknownControl, clock_for, load_tenant_json, serve_in_child,
)
from .chrome import district_fleet
from .api import HTTP_FAULT_KINDS, Answer, GoogleAPI, Knobs, Stats
from .oauth import TokenService, delegation_for, new_service_account_key
from .groups import DirectoryGroups
from .openid import GoogleSignIn
from .tenant import (
    POSTURE_SCOPES, SCANNER_SCOPES, DirectoryUser, GoogleTenant, OAuthClient, ServiceAccount, build_tenant, parse_time,
)

__all__ = [
    "GoogleEmulator", "GoogleEmulatorProcess", "GoogleTenant", "Knobs", "POSTURE_SCOPES", "SCANNER_SCOPES", "build_tenant",
    "new_service_account_key",
]


class EmulatorCore:
    """Tenant, knobs, counters, token endpoint and API: what both ways of running share."""

    def __init__(self, tenant: GoogleTenant, knobs: Knobs, clock: Clock, url: str):
        self.tenant, self.knobs, self.stats_recorder, self.clock = tenant, knobs, Stats(), clock
        self.oauth = TokenService(tenant, lambda: self.knobs.token_lifetime, lambda: self.knobs.token_expires_in, clock)
        self.api = GoogleAPI(tenant, knobs, self.stats_recorder, self.oauth, clock)
        self.openid = GoogleSignIn(tenant, clock, issuer=url)  # Sign in with Google (emulators.google.openid)
        self.groups = DirectoryGroups(tenant, self.oauth)  # members.hasMember, for sign-in (emulators.google.groups)

    def answer(self, method: str, target: str, headers, body: bytes) -> Answer:
        if self.openid.handles(method, urlsplit(target).path, body):
            self.stats_recorder.add("http.openid")
            return self.openid.answer(method, target, headers, body)
        if self.groups.handles(method, urlsplit(target).path):
            self.stats_recorder.add("http.members.hasMember")
            return self.groups.answer(urlsplit(target).path, headers.get("authorization"))
        if urlsplit(target).path == "/token":
            self.stats_recorder.add("http.token")
            if method != "POST":
                return Answer(405, b'{"error":"invalid_request","error_description":"POST only"}')
            fault = self.api.token_fault()
            if fault and fault.kind in HTTP_FAULT_KINDS:
                return _token_endpoint_failure(fault.kind, self.knobs.retry_after)
            if fault and fault.kind != "truncated":
                return Answer(0, fault=fault)
            status, payload = self.oauth.exchange(body)
            self.stats_recorder.add("token.issued" if status == 200 else f"token.error.{payload['error']}")
            return Answer(status, json.dumps(payload).encode(), fault=fault)
        return self.api.handle(method, target, headers, body)

    # -- controls (in process: call directly; child process: POST /_emulator/<op>) ----------

    def control(self, op: str, args: dict[str, Any]) -> Any:
        if op == "stats":
            return self.stats_recorder.snapshot()
        if op == "reset_stats":
            self.stats_recorder.reset()
            return {}
        if op == "knobs":
            self.knobs.update(**args)
            return asdict(self.knobs)
        if op == "delegate":
            account = ServiceAccount.from_json(args)
            with self.tenant.lock:
                self.tenant.service_accounts[account.client_email] = account
            return {"client_id": account.client_id}
        if op == "mutate":
            return [self._mutate(change) for change in args["changes"]]
        if op == "digest":
            return self.tenant.grants_digest()
        if op == "set_group_members":
            self.groups.set_members(args["group"], list(args["members"]))
            return {}
        if op == "openid_register_client":
            self.openid.register_client(args["client_id"], args["client_secret"], args["redirect_uris"])
            return {}
        if op == "openid_add_outside_account":
            self.openid.add_outside_account(args["email"], args.get("name", ""), args.get("hd"))
            return {}
        if op == "openid_spoil_next":
            self.openid.spoils.add(args["kind"])
            return {}
        if op == "openid_remember_accounts":
            self.openid.remember_accounts(list(args["emails"]))
            return {}
        if op == "openid_rotate_key":
            return {"kid": self.openid.keys.rotate(keep_previous=args.get("keep_previous", True))}
        if op == "openid_mint":
            return {"id_token": self.openid.mint_id_token(args["email"], client_id=args["client_id"], nonce=args.get("nonce"),
                                                          spoil_kind=args.get("spoil"))}
        raise UnknownControl(f"unknown emulator control {op!r}")

    def _mutate(self, change: dict[str, Any]) -> Any:
        tenant, op = self.tenant, change["op"]
        at = parse_time(change.get("at")) or self.clock.now()  # audit events happen on the emulator's clock
        if op == "churn":
            return tenant.churn(change["fraction"], seed=change.get("seed", 0), at=at)
        if op == "add_user":
            return tenant.add_user(DirectoryUser.from_json(change["user"])).id
        if op == "delete_user":
            tenant.delete_user(change["user"])
            return None
        if op == "authorize":
            client = change["client"]
            client = OAuthClient.from_json(client) if isinstance(client, dict) else client
            return list(tenant.authorize(change["user"], client, change["scopes"], at=at).scopes)
        if op == "revoke":
            return tenant.revoke(change["user"], change["client"], at=at)
        if op == "use":
            tenant.use(change["user"], change["client"], at=at)
            return None
        if op == "set_policy":
            return tenant.set_policy(change["setting"], change["value"], org_unit=change.get("org_unit", "/"),
                                     group=change.get("group"), kind=change.get("kind", "ADMIN"),
                                     sort_order=change.get("sort_order"))
        if op == "remove_policies":
            return tenant.remove_policies(change.get("setting"), org_unit=change.get("org_unit"))
        if op == "lifecycle":  # accounts added, suspended and removed (emulators.lifecycle)
            return google_lifecycle(tenant, add=change.get("add", 0), suspend=change.get("suspend", 0),
                                    remove=change.get("remove", 0), seed=change.get("seed", 0),
                                    protect=tuple(change.get("protect", ())))
        raise ValueError(f"unknown tenant change {op!r}; use authorize, revoke, use, add_user, delete_user, churn, "
                         "set_policy, remove_policies or lifecycle")


def _token_endpoint_failure(kind: str, retry_after: int) -> Answer:
    """An injected HTTP fault at the token endpoint, in OAuth's error format (codes google-auth retries)."""
    if kind == "429":
        return Answer(429, b'{"error":"rate_limit_exceeded","error_description":"Too many requests"}',
                      headers={"Retry-After": str(retry_after)})
    if kind == "500":
        return Answer(500, b'{"error":"internal_failure","error_description":"Backend Error"}')
    return Answer(503, b'{"error":"temporarily_unavailable","error_description":"The service is currently unavailable."}')


class _Handler(EmulatorHandler):
    server_version = "ESF"

    def serve(self, body: bytes) -> None:
        core: EmulatorCore = self.emulator.core
        answer = core.answer(self.command, self.path, self.headers, body)
        if core.knobs.latency:
            time.sleep(core.knobs.latency)  # real time: see emulators.clock
        fault = answer.fault.kind if answer.fault else None
        if fault == "reset":
            self.reset_connection()
            return
        if fault == "timeout":  # no answer: stall past the client's read timeout, then close
            self.stall(core.knobs.stall_seconds)
            self.close_connection = True
            return
        body, length = answer.fault.cut(answer.body) if fault == "truncated" else (answer.body, len(answer.body))
        self.send_answer(answer.status, body, answer.content_type, answer.headers, content_length=length)
        if fault == "truncated":
            self.close_connection = True  # whatever Content-Length said, nothing more comes


class GoogleControls(GateControls):
    """The controls, alike in process and in a child process: each is one `control(op, args)`."""

    url: str
    control: Callable[[str, dict[str, Any]], Any]  # in this process, or over HTTP to the child

    @property
    def api_root(self) -> str:
        """What [google] api_root points at."""
        return self.url + "/"

    @property
    def token_uri(self) -> str:
        """What a service account key's token_uri points at."""
        return self.url + "/token"

    def delegate(self, key_info: dict[str, str], scopes=SCANNER_SCOPES) -> None:
        """Set up domain-wide delegation for the key's client, for these scopes (the Admin console step)."""
        self.control("delegate", delegation_for(key_info, scopes))

    def set_knobs(self, **changes: Any) -> dict[str, Any]:
        return self.control("knobs", changes)

    def stats(self) -> dict[str, Any]:
        return self.control("stats", {})

    def reset_stats(self) -> None:
        self.control("reset_stats", {})

    def mutate(self, changes: list[dict[str, Any]]) -> list[Any]:
        """Change the tenant (authorize, revoke, use, add_user, delete_user, churn: with audit events;
        set_policy, remove_policies: the admin console's settings, as the Policy API serves them)."""
        return self.control("mutate", {"changes": changes})

    def digest(self) -> dict[str, Any]:
        return self.control("digest", {})

    # -- Sign in with Google (emulators.google.openid) --------------------------------------

    @property
    def issuer(self) -> str:
        """What [signin] google_issuer points at: the discovery document is under it."""
        return self.url

    def register_sign_in_client(self, client_id: str, client_secret: str, redirect_uris: list[str]) -> None:
        """Register a web app's OAuth client for Sign in with Google (Google Cloud > Credentials)."""
        self.control("openid_register_client", {"client_id": client_id, "client_secret": client_secret,
                                                "redirect_uris": list(redirect_uris)})

    def add_outside_account(self, email: str, *, name: str = "", hd: str | None = None) -> None:
        """An account from outside the tenant the sign-in page also offers (hd None: a consumer account)."""
        self.control("openid_add_outside_account", {"email": email, "name": name, "hd": hd})

    def remember_accounts(self, emails: list[str]) -> None:
        """List these accounts first on the sign-in page, as a browser that signed in with them before."""
        self.control("openid_remember_accounts", {"emails": list(emails)})

    def spoil_next_id_token(self, kind: str) -> None:
        """Spoil the next ID token the token endpoint issues: expired, forged, wrong_audience,
        wrong_nonce, other_domain, no_domain or unverified_email."""
        self.control("openid_spoil_next", {"kind": kind})

    def rotate_signing_key(self, *, keep_previous: bool = True) -> str:
        """Sign ID tokens with a new key from now on; the old one stays published unless keep_previous is False."""
        return self.control("openid_rotate_key", {"keep_previous": keep_previous})["kid"]

    def set_group_members(self, group: str, members: list[str]) -> None:
        """Create or replace a Google group (members: user or group addresses), for members.hasMember."""
        self.control("set_group_members", {"group": group, "members": list(members)})

    def mint_id_token(self, email: str, *, client_id: str, nonce: str | None = None, spoil: str | None = None) -> str:
        """An ID token for one of the tenant's (or an outside) accounts, as the token endpoint would issue it."""
        return self.control("openid_mint", {"email": email, "client_id": client_id, "nonce": nonce, "spoil": spoil})["id_token"]


class GoogleEmulator(GoogleControls, ServedEmulator):
    """The emulator in this process: a context manager serving from a thread."""

    handler = _Handler
    thread_name = "google-emulator"

    def __init__(self, tenant: GoogleTenant | dict | None = None, *, knobs: dict[str, Any] | Knobs | None = None,
                 host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None):
        if tenant is None:
            tenant = build_tenant(users=200)
        self.tenant = tenant if isinstance(tenant, GoogleTenant) else GoogleTenant.from_json(tenant)
        self.knobs = knobs if isinstance(knobs, Knobs) else Knobs()
        if isinstance(knobs, dict):
            self.knobs.update(**knobs)
        super().__init__(host=host, port=port, clock=clock)
        self.core = EmulatorCore(self.tenant, self.knobs, self.clock, self.url)

    def provider_control(self, op: str, args: dict[str, Any]) -> Any:
        return self.core.control(op, args)


class GoogleEmulatorProcess(GoogleControls, EmulatorProcess):
    """The same emulator in a child process, so a benchmark measures the scanner's memory alone.

    `tenant` is tenant JSON (GoogleTenant.to_json()); or `build` holds build_tenant() arguments
    ({"users": 100000, "seed": 1, "grants_per_user": 8}) and the child builds it. `chrome` holds
    district_fleet() arguments ({"seed": 1}): the tenant's browsers get extensions too (made when
    asked for, emulators.google.chrome_on_demand, when `build` has "on_demand": true).
    `settable_clock`: the child's clock is a SettableClock, moved by set_clock() (a benchmark's year).
    """

    module = "emulators.google.server"

    def __init__(self, tenant: dict[str, Any] | None = None, *, build: dict[str, Any] | None = None,
                 knobs: dict[str, Any] | None = None, start_timeout: float = 600, chrome: dict[str, Any] | None = None,
                 settable_clock: bool = False):
        if (tenant is None) == (build is None):
            raise ValueError("give either tenant JSON or build_tenant arguments")
        super().__init__({"build": build, "knobs": knobs or {}, "chrome": chrome, "clock": "settable" if settable_clock else None},
                         tenant=tenant, start_timeout=start_timeout)


def _emulator_for(spec: dict[str, Any]) -> GoogleEmulator:
    data = load_tenant_json(spec)
    tenant = GoogleTenant.from_json(data) if data is not None else build_tenant(**spec["build"])
    if spec.get("chrome") is not None:
        tenant.chrome = district_fleet(tenant, **spec["chrome"])
    return GoogleEmulator(tenant, knobs=spec.get("knobs") or {}, clock=clock_for(spec))


def main() -> None:
    """`python -m emulators.google.server`: the child process of GoogleEmulatorProcess."""
    serve_in_child(_emulator_for)


if __name__ == "__main__":
    main()
