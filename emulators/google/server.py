"""A local emulator of the Google Admin SDK (Directory users and tokens, Reports token
activity, batches) and Google's OAuth token endpoint, over real HTTP on 127.0.0.1.

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

The tenant is data (emulators.google.tenant); the knobs (emulators.google.api.Knobs)
set latency, the per-minute quota, seeded faults (error answers, 429 with Retry-After, reset
connections, stalls past the client's timeout, bodies cut short: on single calls, batches and
the token endpoint), page tokens that expire, token lifetime, an edition without `activity`
events, a Reports outage, report lag, and users deleted mid-scan.

For a benchmark that must measure the scanner's memory alone, `GoogleEmulatorProcess`
runs the same emulator in a child process (`python -m emulators.google.server`) from
tenant JSON or a `build_tenant` spec, with the same controls over a keyed
`/_emulator/` HTTP API. The child exits when its parent closes its stdin (or dies).
"""

from __future__ import annotations

import json
import secrets
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .api import HTTP_FAULT_KINDS, Answer, GoogleAPI, Knobs, Stats
from .oauth import TokenService, delegation_for, new_service_account_key
from .tenant import SCANNER_SCOPES, DirectoryUser, GoogleTenant, OAuthClient, ServiceAccount, build_tenant, parse_time

__all__ = [
    "GoogleEmulator", "GoogleEmulatorProcess", "GoogleTenant", "Knobs", "SCANNER_SCOPES", "build_tenant",
    "new_service_account_key",
]

CONTROL_PREFIX = "/_emulator/"


class EmulatorCore:
    """Tenant, knobs, counters, token endpoint and API: what both ways of running share."""

    def __init__(self, tenant: GoogleTenant, knobs: Knobs):
        self.tenant, self.knobs, self.stats_recorder = tenant, knobs, Stats()
        self.oauth = TokenService(tenant, lambda: self.knobs.token_lifetime, lambda: self.knobs.token_expires_in)
        self.api = GoogleAPI(tenant, knobs, self.stats_recorder, self.oauth)

    def answer(self, method: str, target: str, headers, body: bytes) -> Answer:
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
        raise ValueError(f"unknown emulator control {op!r}")

    def _mutate(self, change: dict[str, Any]) -> Any:
        tenant, op = self.tenant, change["op"]
        at = parse_time(change.get("at"))
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
        raise ValueError(f"unknown tenant change {op!r}; use authorize, revoke, use, add_user, delete_user or churn")


def _token_endpoint_failure(kind: str, retry_after: int) -> Answer:
    """An injected HTTP fault at the token endpoint, in OAuth's error format (codes google-auth retries)."""
    if kind == "429":
        return Answer(429, b'{"error":"rate_limit_exceeded","error_description":"Too many requests"}',
                      headers={"Retry-After": str(retry_after)})
    if kind == "500":
        return Answer(500, b'{"error":"internal_failure","error_description":"Backend Error"}')
    return Answer(503, b'{"error":"temporarily_unavailable","error_description":"The service is currently unavailable."}')


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httplib2 expects
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add 40 ms to every response on a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = "ESF"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        server: _Server = self.server  # type: ignore[assignment]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith(CONTROL_PREFIX):
            answer = server.control_answer(self.path[len(CONTROL_PREFIX):], self.headers.get("X-Emulator-Key"), body)
        else:
            answer = server.core.answer(method, self.path, self.headers, body)
            if server.core.knobs.latency:
                time.sleep(server.core.knobs.latency)
        fault = answer.fault.kind if answer.fault else None
        if fault in ("reset", "timeout"):
            self._drop(fault, server)
            return
        body, length = answer.fault.cut(answer.body) if fault == "truncated" else (answer.body, len(answer.body))
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        if fault == "truncated":
            self.close_connection = True  # whatever Content-Length said, nothing more comes

    def _drop(self, fault: str, server: _Server) -> None:
        """Answer nothing: stall past the client's read timeout then close ("timeout"), or reset the connection."""
        self.close_connection = True
        if fault == "timeout":
            server.stopping.wait(server.core.knobs.stall_seconds)
            return
        # SO_LINGER 0: closing sends RST, not FIN; the socket really closes when the handler
        # lets go of its files, before socketserver would shut it down gracefully.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks print their own
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, core: EmulatorCore, control_key: str):
        super().__init__(address, _Handler)
        self.core, self.control_key = core, control_key
        self.stopping = threading.Event()  # ends stalls ("timeout" faults) when the emulator stops

    def control_answer(self, op: str, key: str | None, body: bytes) -> Answer:
        if not key or not secrets.compare_digest(key, self.control_key):
            return Answer(403, b'{"error":"wrong or missing X-Emulator-Key"}')
        try:
            result = self.core.control(op, json.loads(body or b"{}"))
        except (ValueError, KeyError, TypeError) as error:
            return Answer(400, json.dumps({"error": f"{type(error).__name__}: {error}"}).encode())
        return Answer(200, json.dumps(result).encode())


class GoogleEmulator:
    """The emulator in this process: a context manager serving from a thread."""

    def __init__(self, tenant: GoogleTenant | dict | None = None, *, knobs: dict[str, Any] | Knobs | None = None,
                 host: str = "127.0.0.1", port: int = 0):
        if tenant is None:
            tenant = build_tenant(users=200)
        self.tenant = tenant if isinstance(tenant, GoogleTenant) else GoogleTenant.from_json(tenant)
        self.knobs = knobs if isinstance(knobs, Knobs) else Knobs()
        if isinstance(knobs, dict):
            self.knobs.update(**knobs)
        self.core = EmulatorCore(self.tenant, self.knobs)
        self.control_key = secrets.token_urlsafe(16)
        self._server = _Server((host, port), self.core, self.control_key)
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def start(self) -> GoogleEmulator:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="google-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        if self._thread:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> GoogleEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

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
        self.core.control("delegate", delegation_for(key_info, scopes))

    def set_knobs(self, **changes: Any) -> dict[str, Any]:
        return self.core.control("knobs", changes)

    def stats(self) -> dict[str, Any]:
        return self.core.control("stats", {})

    def reset_stats(self) -> None:
        self.core.control("reset_stats", {})

    def mutate(self, changes: list[dict[str, Any]]) -> list[Any]:
        """Change the tenant (authorize, revoke, use, add_user, delete_user, churn), recording audit events."""
        return self.core.control("mutate", {"changes": changes})

    def digest(self) -> dict[str, Any]:
        return self.core.control("digest", {})


class GoogleEmulatorProcess:
    """The same emulator in a child process, so a benchmark measures the scanner's memory alone.

    `tenant` is tenant JSON (GoogleTenant.to_json()); or `build` holds build_tenant() arguments
    ({"users": 100000, "seed": 1, "grants_per_user": 8}) and the child builds it.
    """

    def __init__(self, tenant: dict[str, Any] | None = None, *, build: dict[str, Any] | None = None,
                 knobs: dict[str, Any] | None = None):
        if (tenant is None) == (build is None):
            raise ValueError("give either tenant JSON or build_tenant arguments")
        self._spec = {"tenant": tenant, "build": build, "knobs": knobs or {}}
        self._process: subprocess.Popen | None = None
        self.url = ""
        self.control_key = ""

    def start(self, timeout: float = 600) -> GoogleEmulatorProcess:
        import requests  # only the parent needs it

        self._process = subprocess.Popen([sys.executable, "-m", "emulators.google.server"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
        self._process.stdin.write(json.dumps(self._spec) + "\n")
        self._process.stdin.flush()
        ready = self._process.stdout.readline()
        if not ready:
            raise RuntimeError(f"the Google emulator process exited with status {self._process.wait(timeout)}")
        info = json.loads(ready)
        self.url, self.control_key = info["url"], info["control_key"]
        self._session = requests.Session()
        self._session.headers["X-Emulator-Key"] = self.control_key
        return self

    def stop(self) -> None:
        if self._process:
            self._process.stdin.close()  # the child's watcher sees EOF and shuts down
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process.stdout.close()
            self._process = None

    def __enter__(self) -> GoogleEmulatorProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def api_root(self) -> str:
        return self.url + "/"

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    def _control(self, op: str, args: dict[str, Any]) -> Any:
        response = self._session.post(self.url + CONTROL_PREFIX + op, data=json.dumps(args), timeout=600)
        if response.status_code != 200:
            raise RuntimeError(f"emulator control {op} failed: {response.status_code} {response.text}")
        return response.json()

    def delegate(self, key_info: dict[str, str], scopes=SCANNER_SCOPES) -> None:
        self._control("delegate", delegation_for(key_info, scopes))

    def set_knobs(self, **changes: Any) -> dict[str, Any]:
        return self._control("knobs", changes)

    def stats(self) -> dict[str, Any]:
        return self._control("stats", {})

    def reset_stats(self) -> None:
        self._control("reset_stats", {})

    def mutate(self, changes: list[dict[str, Any]]) -> list[Any]:
        return self._control("mutate", {"changes": changes})

    def digest(self) -> dict[str, Any]:
        return self._control("digest", {})


def main() -> None:
    """Child process: read one JSON spec line on stdin, serve, print {"url", "control_key"}, exit on stdin EOF."""
    spec = json.loads(sys.stdin.readline())
    if spec.get("tenant") is not None:
        tenant = GoogleTenant.from_json(spec["tenant"])
    else:
        tenant = build_tenant(**spec["build"])
    emulator = GoogleEmulator(tenant, knobs=spec.get("knobs") or {}).start()
    print(json.dumps({"url": emulator.url, "control_key": emulator.control_key}), flush=True)
    sys.stdin.read()  # blocks until the parent closes stdin or dies
    emulator.stop()


if __name__ == "__main__":
    main()
