"""A local emulator of Microsoft Graph and the Microsoft identity platform, over real HTTPS.

    tenant = build_tenant(users=2000)
    with MicrosoftEmulator(tenant, knobs={"fault_rate": 0.1}) as emulator:
        os.environ["REQUESTS_CA_BUNDLE"] = emulator.ca_pem_path
        # [microsoft] authority_host = emulator.authority_host, graph_url = emulator.graph_url,
        # tenant_id = tenant.tenant_id, client_id = tenant.registration.client_id
        ...
        emulator.stats()         # requests by endpoint, batch items, throttled, faults

One server on 127.0.0.1 answers both the authority (what MSAL requests for client
credentials, and Sign in with Microsoft's authorization-code flow: emulators.microsoft.openid)
and Graph (`/v1.0`, `/beta`); its certificate comes from a throwaway
trustme CA made at start-up (nothing is committed), and clients trust it through
`REQUESTS_CA_BUNDLE=emulator.ca_pem_path`. The knobs (emulators.microsoft.graph.Knobs)
set latency, throttling budgets, Retry-After style, seeded faults (429, 500, 503,
504, connection resets, timeouts, truncated JSON), the tenant-wide grants list's 503
and incomplete pages, page-token (`$skiptoken`) expiry and the token lifetime.
Controls aim a fault at the next requests to a path: `throttle_next()`,
`fault_next()`, `expire_next_skiptokens()`, `expire_tokens_at()`.

Time is the emulator's clock (`clock=`, emulators.clock): throttling windows, $skiptoken
age, access-token expiry, stalls and the times in stats events. Under a `ManualClock`
they move only when the test advances it.

A "timeout" fault stalls for the `fault_stall` knob (set it above the client's read
timeout), either before answering or after the headers and half the body
(`timeout_mid_body`), then drops the connection. A "truncated" answer is JSON cut in
half with a matching Content-Length, so only the JSON parser can tell.

For a benchmark that must measure the scanner's memory alone, `MicrosoftEmulatorProcess`
runs the same emulator in a child process (`python -m emulators.microsoft.server`),
from tenant JSON or a `build_tenant` spec, and offers the same controls over the keyed
`/_emulator/` HTTP API (emulators.server).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..clock import Clock
from ..lifecycle import microsoft_lifecycle
from ..server import (
    EmulatorHandler, GateControls, EmulatorProcess, ServedEmulator, UnknownControl, clock_for, load_tenant_json, serve_in_child,
)
from .graph import FAULT_STATUSES, GUID, JSON_TYPE, GraphRequest, GraphService, Knobs, Stats
from .openid import SignInApp, SignInPages, UserSignIn
from .signin import SignInService
from .tenant import MUTATIONS, MicrosoftTenant, build_tenant

__all__ = ["Knobs", "MicrosoftEmulator", "MicrosoftEmulatorProcess", "MicrosoftTenant", "build_tenant"]


class _Handler(EmulatorHandler):
    server_version = "Microsoft-HTTPAPI/2.0"
    # As before the shared server: Nagle's algorithm stays on here, so an answer on a kept-alive
    # connection can wait for the client's delayed ACK (up to 40 ms). The benchmark's Microsoft
    # figures were measured so; turning it off is a change of its own, with a new benchmark run.
    disable_nagle_algorithm = False

    def setup(self) -> None:
        self.disable_nagle_algorithm = self.server.emulator.knobs.tcp_nodelay  # read by StreamRequestHandler.setup
        super().setup()

    def serve(self, body: bytes) -> None:
        emulator: MicrosoftEmulator = self.emulator
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        stats = emulator.stats_recorder
        stats.count("http_requests")
        if emulator.knobs.latency > 0:
            time.sleep(emulator.knobs.latency)  # real time: see emulators.clock
        if emulator.user_sign_in.handles(self.command, parts.path, body):  # Sign in with Microsoft (emulators.microsoft.openid)
            stats.count("sign_in_requests")
            answer = emulator.user_sign_in.answer(self.command, parts.path, parts.query, body)
            self.send_answer(answer.status, answer.body, answer.content_type, answer.headers)
            return
        if emulator.signin.handles(parts.path):
            stats.count("token_requests")
            if parts.path.endswith("/token") and emulator.take_token_failure():
                self._send(500, {"error": "server_error", "error_description": "AADSTS90033: A transient error has occurred. Please try again.",
                                 "error_codes": [90033]}, {"Retry-After": "1"}, json_type="application/json; charset=utf-8")
                return
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            answer = emulator.signin.answer(self.command, parts.path, dict(parse_qsl(parts.query)), form, emulator.tenant,
                                            emulator.knobs.token_lifetime, emulator.graph_audiences())
            self._send(answer.status, answer.body, {"Cache-Control": "no-store, no-cache"}, json_type="application/json; charset=utf-8")
            return
        stats.count("graph_requests")
        graph, knobs = emulator.graph, emulator.knobs
        fault = graph.forced_fault(parts.path) or graph.faults.pick(knobs.fault_kinds)
        if fault == "timeout" and graph.faults.chance(knobs.timeout_mid_body):
            fault = "timeout mid-body"
        if fault in ("reset", "timeout"):
            stats.fault(fault)
            if fault == "timeout":
                self.stall(knobs.fault_stall)  # no answer: the client's read timeout runs out first
            self.reset_connection()
            return
        request = GraphRequest(self.command, parts.path, dict(parse_qsl(parts.query, keep_blank_values=True)), headers, body)
        if fault in FAULT_STATUSES:
            answer = graph.injected_failure(fault, headers.get("client-request-id", ""))
            stats.record(f"{self.command} {GUID.sub('{id}', parts.path)} (injected)", answer.status, in_batch=False, path=parts.path)
        else:
            answer = graph.handle(request, item_faults=fault is None)
        if fault == "truncated" and isinstance(answer.body, str):
            fault = None  # only JSON is cut: a text answer ($count) cut short cannot be told from a whole one
        if fault:
            stats.fault(fault)
        self._send(answer.status, answer.body, answer.headers, cut=fault if fault in ("truncated", "timeout mid-body") else None)

    def _send(self, status: int, body: Any, headers: dict[str, str], *, cut: str | None = None, json_type: str = JSON_TYPE) -> None:
        """Answer; `cut="truncated"`: half the body with a matching Content-Length; `cut="timeout mid-body"`:
        the headers and half the body, then a stall of the fault_stall knob and a dropped connection."""
        if isinstance(body, str):
            data, content_type = body.encode(), "text/plain"
        else:
            data, content_type = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), json_type
        if status < 400 and content_type == JSON_TYPE:
            headers = {"OData-Version": "4.0", **headers}
        if cut == "timeout mid-body":
            self.send_answer(status, data[: len(data) // 2], content_type, headers, content_length=len(data))
            self.stall(self.emulator.knobs.fault_stall)
            self.reset_connection()
            return
        if cut == "truncated":
            data = data[: max(1, len(data) // 2)]
        self.send_answer(status, data, content_type, headers)


class MicrosoftControls(GateControls):
    """The controls, alike in process and in a child process: each is one `control(op, args)`."""

    url: str
    control: Callable[[str, dict[str, Any]], Any]  # in this process, or over HTTP to the child

    @property
    def authority_host(self) -> str:
        return self.url

    @property
    def graph_url(self) -> str:
        return self.url

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs (see Knobs); throttling windows and the fault sequence start afresh."""
        return self.control("knobs", knobs)

    def throttle_next(self, path_contains: str, *, retry_after: float | None = 1.0, times: int = 1) -> None:
        """Answer the next `times` Graph requests (or $batch items) whose path contains the text with 429."""
        self.control("throttle_next", {"path_contains": path_contains, "retry_after": retry_after, "times": times})

    def fault_next(self, path_contains: str, kind: str, *, times: int = 1) -> None:
        """Break the next `times` Graph HTTP requests whose path contains the text: "429", "500",
        "503", "504", "reset", "timeout" or "truncated"."""
        self.control("fault_next", {"path_contains": path_contains, "kind": kind, "times": times})

    def expire_next_skiptokens(self, path_contains: str = "", *, times: int = 1) -> None:
        """Answer the next `times` requests carrying a $skiptoken on a path containing the text
        with 400 Directory_ExpiredPageToken."""
        self.control("expire_next_skiptokens", {"path_contains": path_contains, "times": times})

    def expire_tokens_at(self, path_contains: str, *, nth: int = 1) -> None:
        """Every access token expires when the nth Graph request from now to a path containing the text arrives."""
        self.control("expire_tokens_at", {"path_contains": path_contains, "nth": nth})

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (Graph answers 401 until a new one is used)."""
        self.control("expire_tokens", {})

    def stats(self) -> dict[str, Any]:
        return self.control("stats", {})

    def reset_stats(self) -> None:
        self.control("reset_stats", {})

    def events_for(self, text: str) -> list:
        """Recent (clock time, endpoint, status, in_batch, path) whose endpoint or path contains the text."""
        return self.control("events", {"contains": text})

    def tenant_json(self) -> dict[str, Any]:
        return self.control("tenant", {})

    def replace_tenant(self, tenant: MicrosoftTenant | dict) -> None:
        self.control("replace_tenant", tenant.to_json() if isinstance(tenant, MicrosoftTenant) else tenant)

    # -- Sign in with Microsoft (emulators.microsoft.openid) ---------------------------------

    def register_sign_in_app(self, client_id: str, client_secret: str, redirect_uris: list[str], *,
                             groups_claim: bool = True, groups_limit: int = 200) -> None:
        """Register an app that signs people in (Entra admin center > App registrations), apart from
        the scanner's registration; groups_claim: ID tokens carry the user's group object ids."""
        self.control("openid_register_app", {"client_id": client_id, "client_secret": client_secret,
                                             "redirect_uris": list(redirect_uris), "groups_claim": groups_claim,
                                             "groups_limit": groups_limit})

    def remember_accounts(self, names: list[str]) -> None:
        """List these accounts (UPNs or addresses) first on the sign-in page, as a browser that signed in with them before."""
        self.control("openid_remember_accounts", {"names": list(names)})

    def spoil_next_id_token(self, kind: str) -> None:
        """Spoil the next ID token the token endpoint issues: expired, forged, wrong_audience,
        wrong_nonce or other_tenant."""
        self.control("openid_spoil_next", {"kind": kind})

    def rotate_signing_key(self, *, keep_previous: bool = True) -> str:
        """Sign ID tokens with a new key from now on; the old one stays published unless keep_previous is False."""
        return self.control("openid_rotate_key", {"keep_previous": keep_previous})["kid"]

    def mint_id_token(self, upn: str, *, client_id: str, nonce: str | None = None, spoil: str | None = None) -> str:
        """A v2.0 ID token for one of the tenant's users, as the token endpoint would issue it."""
        return self.control("openid_mint", {"upn": upn, "client_id": client_id, "nonce": nonce, "spoil": spoil})["id_token"]

    def mutate_tenant(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Change the tenant between scans by one of its MUTATIONS, e.g.
        `mutate_tenant("revoke_grants", app_id)`, `mutate_tenant("set_premium", False)`."""
        return self.control("mutate_tenant", {"method": method, "args": list(args), "kwargs": kwargs})


class MicrosoftEmulator(MicrosoftControls, ServedEmulator):
    """The emulator in this process: a context manager that serves from a thread."""

    handler = _Handler
    thread_name = "ms-emulator"
    queue_size = 64

    def __init__(self, tenant: MicrosoftTenant | dict | None = None, *, knobs: dict[str, Any] | Knobs | None = None,
                 host: str = "127.0.0.1", port: int = 0, clock: Clock | None = None, sign_in_pages: bool = False):
        """sign_in_pages: also serve the sign-in page over plain HTTP (`sign_in_pages_url`), for a
        browser that cannot trust the throwaway certificate (see emulators.microsoft.openid)."""
        if tenant is None:
            tenant = build_tenant(users=200)
        self._tenant = tenant if isinstance(tenant, MicrosoftTenant) else MicrosoftTenant.from_json(tenant)
        self.knobs = knobs if isinstance(knobs, Knobs) else Knobs()
        if isinstance(knobs, dict):
            self.knobs.update(**knobs)
        self._tenant_lock = threading.RLock()
        super().__init__(host=host, port=port, tls=True, clock=clock)
        self.stats_recorder = Stats(clock=self.clock)
        self.signin = SignInService(self.url, self.clock)
        self.graph = GraphService(self.url, self.signin, self.knobs, self.stats_recorder, lambda: self._tenant, self.clock)
        self.user_sign_in = UserSignIn(self.url, lambda: self._tenant, self.clock, self.signin._error)
        self._pages = SignInPages(self.user_sign_in, host=host, clock=self.clock) if sign_in_pages else None
        self.sign_in_pages_url = self._pages.url if self._pages else None
        if self._pages:
            self.signin.authorization_base = self._pages.url

    def start(self) -> MicrosoftEmulator:
        super().start()
        if self._pages:
            self._pages.start()
        return self

    def stop(self) -> None:
        if self._pages:
            self._pages.stop()
        super().stop()

    @property
    def tenant(self) -> MicrosoftTenant:
        return self._tenant

    @contextlib.contextmanager
    def mutate(self) -> Iterator[MicrosoftTenant]:
        """Change the tenant between scans: `with emulator.mutate() as tenant: tenant.users.append(...)`."""
        with self._tenant_lock:
            yield self._tenant
            self._tenant.reindex()

    def replace_tenant(self, tenant: MicrosoftTenant | dict) -> None:
        with self._tenant_lock:
            self._tenant = tenant if isinstance(tenant, MicrosoftTenant) else MicrosoftTenant.from_json(tenant)

    def provider_control(self, op: str, args: dict[str, Any]) -> Any:
        graph = self.graph
        if op == "stats":
            return self.stats_recorder.snapshot()
        if op == "reset_stats":
            self.stats_recorder.reset()
        elif op == "knobs":
            self.knobs.update(**args)
            graph.apply_knobs()
            return self.knobs.to_json()
        elif op == "throttle_next":
            graph.throttle_next(args["path_contains"], retry_after=args.get("retry_after", 1.0), times=args.get("times", 1))
        elif op == "fault_next":
            graph.fault_next(args["path_contains"], args["kind"], times=args.get("times", 1))
        elif op == "expire_next_skiptokens":
            graph.expire_next_skiptokens(args.get("path_contains", ""), times=args.get("times", 1))
        elif op == "expire_tokens_at":
            graph.expire_tokens_at(args["path_contains"], nth=args.get("nth", 1))
        elif op == "expire_tokens":
            self.signin.expire_all_tokens()
        elif op == "events":
            return self.stats_recorder.events_for(args.get("contains", ""))
        elif op == "tenant":
            return self.tenant.to_json()
        elif op == "replace_tenant":
            self.replace_tenant(args)
        elif op == "openid_register_app":
            self.user_sign_in.register_app(SignInApp(args["client_id"], args["client_secret"], list(args["redirect_uris"]),
                                                     groups_claim=args.get("groups_claim", True),
                                                     groups_limit=args.get("groups_limit", 200)))
        elif op == "openid_spoil_next":
            self.user_sign_in.spoils.add(args["kind"])
        elif op == "openid_remember_accounts":
            self.user_sign_in.remember_accounts(list(args["names"]))
        elif op == "openid_rotate_key":
            return {"kid": self.user_sign_in.keys.rotate(keep_previous=args.get("keep_previous", True))}
        elif op == "openid_mint":
            return {"id_token": self.user_sign_in.mint_id_token(args["upn"], client_id=args["client_id"], nonce=args.get("nonce"),
                                                                spoil_kind=args.get("spoil"))}
        elif op == "lifecycle":  # accounts added, disabled and deleted (emulators.lifecycle)
            with self.mutate() as tenant:
                return microsoft_lifecycle(tenant, add=args.get("add", 0), suspend=args.get("suspend", 0),
                                           remove=args.get("remove", 0), seed=args.get("seed", 0))
        elif op == "mutate_tenant":
            if args.get("method") not in MUTATIONS:
                raise ValueError(f"the tenant change must be one of {', '.join(sorted(MUTATIONS))}")
            with self.mutate() as tenant:
                result = getattr(tenant, args["method"])(*args.get("args", []), **args.get("kwargs", {}))
            return result._asdict() if hasattr(result, "_asdict") else result
        else:
            raise UnknownControl(f"no emulator control {op!r}")
        return {}

    def take_token_failure(self) -> bool:
        with self._tenant_lock:
            if self.knobs.token_failures > 0:
                self.knobs.token_failures -= 1
                return True
            return False

    def graph_audiences(self) -> tuple[str, ...]:
        return (self.url, "https://graph.microsoft.com")

    def ready_info(self) -> dict[str, Any]:
        return {**super().ready_info(), "tenant_id": self.tenant.tenant_id, "client_id": self.tenant.registration.client_id}


class MicrosoftEmulatorProcess(MicrosoftControls, EmulatorProcess):
    """The emulator in a child process, for measurements of the scanner alone.

    Give it a tenant (object or JSON data) or a `build_tenant` spec such as
    {"users": 100000, "grants_per_user": 8, "seed": 1}; knobs as a dict. `settable_clock`: the
    child's clock is a SettableClock, moved by set_clock() (a benchmark's year).
    """

    module = "emulators.microsoft.server"

    def __init__(self, tenant: MicrosoftTenant | dict | None = None, *, generate: dict[str, Any] | None = None,
                 knobs: dict[str, Any] | None = None, start_timeout: float = 300.0, settable_clock: bool = False):
        if (tenant is None) == (generate is None):
            raise ValueError("give either a tenant or a generate spec")
        data = tenant.to_json() if isinstance(tenant, MicrosoftTenant) else tenant
        super().__init__({"build": generate, "knobs": knobs or {}, "clock": "settable" if settable_clock else None},
                         tenant=data, start_timeout=start_timeout)
        self.tenant_id = self.client_id = ""

    def start(self) -> MicrosoftEmulatorProcess:
        super().start()
        self.tenant_id, self.client_id = self.info["tenant_id"], self.info["client_id"]
        return self


def _emulator_for(spec: dict[str, Any]) -> MicrosoftEmulator:
    data = load_tenant_json(spec)
    tenant = MicrosoftTenant.from_json(data) if data is not None else build_tenant(**spec["build"])
    return MicrosoftEmulator(tenant, knobs=spec.get("knobs") or {}, clock=clock_for(spec))


def main() -> None:
    """`python -m emulators.microsoft.server`: the child process of MicrosoftEmulatorProcess."""
    serve_in_child(_emulator_for)


if __name__ == "__main__":
    main()
