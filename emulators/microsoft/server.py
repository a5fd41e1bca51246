"""A local emulator of Microsoft Graph and the Microsoft identity platform, over real HTTPS.

    tenant = build_tenant(users=2000)
    with MicrosoftEmulator(tenant, knobs={"fault_rate": 0.1}) as emulator:
        os.environ["REQUESTS_CA_BUNDLE"] = emulator.ca_pem_path
        # [microsoft] authority_host = emulator.authority_host, graph_url = emulator.graph_url,
        # tenant_id = tenant.tenant_id, client_id = tenant.registration.client_id
        ...
        emulator.stats()         # requests by endpoint, batch items, throttled, faults

One server on 127.0.0.1 answers both the authority (what MSAL requests for client
credentials) and Graph (`/v1.0`, `/beta`); its certificate comes from a throwaway
trustme CA made at start-up (nothing is committed), and clients trust it through
`REQUESTS_CA_BUNDLE=emulator.ca_pem_path`. The knobs (emulators.microsoft.graph.Knobs)
set latency, throttling budgets, Retry-After style, seeded faults (429, 500, 503,
504, connection resets, timeouts, truncated JSON), the tenant-wide grants list's 503
and incomplete pages, page-token (`$skiptoken`) expiry and the token lifetime.
Controls aim a fault at the next requests to a path: `throttle_next()`,
`fault_next()`, `expire_next_skiptokens()`, `expire_tokens_at()`.

A "timeout" fault stalls for the `fault_stall` knob (set it above the client's read
timeout), either before answering or after the headers and half the body
(`timeout_mid_body`), then drops the connection. A "truncated" answer is JSON cut in
half with a matching Content-Length, so only the JSON parser can tell.

For a benchmark that must measure the scanner's memory alone, `MicrosoftEmulatorProcess`
runs the same emulator in a child process (`python -m emulators.microsoft.server`),
from tenant JSON or a `build_tenant` spec, and exposes the same controls over a
keyed `/_emulator/` HTTP API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
import trustme

from .graph import FAULT_STATUSES, GUID, JSON_TYPE, GraphRequest, GraphService, Knobs, Stats
from .signin import SignInService
from .tenant import MUTATIONS, MicrosoftTenant, build_tenant

__all__ = ["Knobs", "MicrosoftEmulator", "MicrosoftEmulatorProcess", "MicrosoftTenant", "build_tenant"]

CONTROL_PREFIX = "/_emulator/"


class MicrosoftEmulator:
    """The emulator in this process: a context manager that serves from a thread."""

    def __init__(self, tenant: MicrosoftTenant | dict | None = None, *, knobs: dict[str, Any] | Knobs | None = None,
                 host: str = "127.0.0.1", port: int = 0):
        if tenant is None:
            tenant = build_tenant(users=200)
        self._tenant = tenant if isinstance(tenant, MicrosoftTenant) else MicrosoftTenant.from_json(tenant)
        self.knobs = knobs if isinstance(knobs, Knobs) else Knobs()
        if isinstance(knobs, dict):
            self.knobs.update(**knobs)
        self.stats_recorder = Stats()
        self.control_key = secrets.token_urlsafe(16)
        self._tenant_lock = threading.RLock()
        self._tmp = tempfile.TemporaryDirectory(prefix="ms-emulator-")
        ca = trustme.CA()
        self.ca_pem_path = os.path.join(self._tmp.name, "emulator-ca.pem")
        ca.cert_pem.write_to_path(self.ca_pem_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(host, "localhost").configure_cert(context)
        self._server = _HTTPSServer((host, port), _Handler, context, self)
        self.url = f"https://{host}:{self._server.server_address[1]}"
        self.signin = SignInService(self.url)
        self.graph = GraphService(self.url, self.signin, self.knobs, self.stats_recorder, lambda: self._tenant)
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> MicrosoftEmulator:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="ms-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
        self._tmp.cleanup()

    def __enter__(self) -> MicrosoftEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- where clients point ---------------------------------------------------------------

    @property
    def authority_host(self) -> str:
        return self.url

    @property
    def graph_url(self) -> str:
        return self.url

    @property
    def tenant(self) -> MicrosoftTenant:
        return self._tenant

    # -- controls --------------------------------------------------------------------------

    @contextlib.contextmanager
    def mutate(self) -> Iterator[MicrosoftTenant]:
        """Change the tenant between scans: `with emulator.mutate() as tenant: tenant.users.append(...)`."""
        with self._tenant_lock:
            yield self._tenant
            self._tenant.reindex()

    def replace_tenant(self, tenant: MicrosoftTenant | dict) -> None:
        with self._tenant_lock:
            self._tenant = tenant if isinstance(tenant, MicrosoftTenant) else MicrosoftTenant.from_json(tenant)

    def configure(self, **knobs: Any) -> None:
        """Change knobs (see Knobs); throttling windows and the fault sequence start afresh."""
        self.knobs.update(**knobs)
        self.graph.apply_knobs()

    def throttle_next(self, path_contains: str, *, retry_after: float | None = 1.0, times: int = 1) -> None:
        """Answer the next `times` Graph requests (or $batch items) whose path contains the text with 429."""
        self.graph.throttle_next(path_contains, retry_after=retry_after, times=times)

    def fault_next(self, path_contains: str, kind: str, *, times: int = 1) -> None:
        """Break the next `times` Graph HTTP requests whose path contains the text: "429", "500",
        "503", "504", "reset", "timeout" or "truncated"."""
        self.graph.fault_next(path_contains, kind, times=times)

    def expire_next_skiptokens(self, path_contains: str = "", *, times: int = 1) -> None:
        """Answer the next `times` requests carrying a $skiptoken on a path containing the text
        with 400 Directory_ExpiredPageToken."""
        self.graph.expire_next_skiptokens(path_contains, times=times)

    def expire_tokens_at(self, path_contains: str, *, nth: int = 1) -> None:
        """Every access token expires when the nth Graph request from now to a path containing the text arrives."""
        self.graph.expire_tokens_at(path_contains, nth=nth)

    def expire_tokens(self) -> None:
        """Every access token issued so far stops working (Graph answers 401 until a new one is used)."""
        self.signin.expire_all_tokens()

    def stats(self) -> dict[str, Any]:
        return self.stats_recorder.snapshot()

    def reset_stats(self) -> None:
        self.stats_recorder.reset()

    def events_for(self, text: str) -> list[tuple[float, str, int, bool, str]]:
        """Recent (monotonic time, endpoint, status, in_batch, path) whose endpoint or path contains the text."""
        return self.stats_recorder.events_for(text)

    def take_token_failure(self) -> bool:
        with self._tenant_lock:
            if self.knobs.token_failures > 0:
                self.knobs.token_failures -= 1
                return True
            return False

    def graph_audiences(self) -> tuple[str, ...]:
        return (self.url, "https://graph.microsoft.com")


class _HTTPSServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, address, handler, context: ssl.SSLContext, emulator: MicrosoftEmulator):
        super().__init__(address, handler)
        self.ssl_context = context
        self.emulator = emulator

    def finish_request(self, request, client_address) -> None:
        # The TLS handshake happens in the connection's own thread, never in the accept loop.
        try:
            request = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            request.close()
            return
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request, client_address) -> None:
        pass  # clients that hang up (or that we reset on purpose) are not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-HTTPAPI/2.0"
    sys_version = ""

    def log_message(self, format, *args) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    def _serve(self) -> None:
        emulator: MicrosoftEmulator = self.server.emulator
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if parts.path.startswith(CONTROL_PREFIX):
            self._control(emulator, parts.path[len(CONTROL_PREFIX):], dict(parse_qsl(parts.query)), headers, body)
            return
        stats = emulator.stats_recorder
        stats.count("http_requests")
        if emulator.knobs.latency > 0:
            time.sleep(emulator.knobs.latency)
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
                time.sleep(knobs.fault_stall)  # no answer: the client's read timeout runs out first
            self._reset()
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
        if cut == "truncated":
            data = data[: max(1, len(data) // 2)]
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if status < 400 and content_type == JSON_TYPE:
            self.send_header("OData-Version", "4.0")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if cut == "timeout mid-body":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            time.sleep(self.server.emulator.knobs.fault_stall)
            self._reset()
            return
        self.wfile.write(data)

    def _reset(self) -> None:
        # Close with SO_LINGER 0: the client sees a TCP reset, as when a proxy drops the connection.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socket.socket.close(self.connection)
        self.close_connection = True

    def _control(self, emulator: MicrosoftEmulator, action: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> None:
        if not secrets.compare_digest(headers.get("x-emulator-key", ""), emulator.control_key):
            self._send(403, {"error": "the emulator's control key is required"}, {})
            return
        data = json.loads(body) if body else {}
        try:
            if action == "stats":
                result: Any = emulator.stats()
            elif action == "reset-stats":
                emulator.reset_stats()
                result = {}
            elif action == "knobs":
                if data:
                    emulator.configure(**data)
                result = emulator.knobs.to_json()
            elif action == "throttle-next":
                emulator.throttle_next(data["path_contains"], retry_after=data.get("retry_after", 1.0), times=data.get("times", 1))
                result = {}
            elif action == "fault-next":
                emulator.fault_next(data["path_contains"], data["kind"], times=data.get("times", 1))
                result = {}
            elif action == "expire-next-skiptokens":
                emulator.expire_next_skiptokens(data.get("path_contains", ""), times=data.get("times", 1))
                result = {}
            elif action == "expire-tokens-at":
                emulator.expire_tokens_at(data["path_contains"], nth=data.get("nth", 1))
                result = {}
            elif action == "expire-tokens":
                emulator.expire_tokens()
                result = {}
            elif action == "events":
                result = emulator.events_for(query.get("contains", ""))
            elif action == "tenant-call":
                if data.get("method") not in MUTATIONS:
                    raise ValueError(f"the tenant change must be one of {', '.join(sorted(MUTATIONS))}")
                with emulator.mutate() as tenant:
                    result = getattr(tenant, data["method"])(*data.get("args", []), **data.get("kwargs", {}))
                result = result._asdict() if hasattr(result, "_asdict") else result
            elif action == "tenant" and self.command == "GET":
                result = emulator.tenant.to_json()
            elif action == "tenant":
                emulator.replace_tenant(data)
                result = {}
            else:
                self._send(404, {"error": f"no control action {action!r}"}, {})
                return
        except (ValueError, KeyError, TypeError) as error:
            self._send(400, {"error": str(error)}, {})
            return
        self._send(200, result, {}, json_type="application/json")


class MicrosoftEmulatorProcess:
    """The emulator in a child process, for measurements of the scanner alone.

    Give it a tenant (object or JSON data) or a `build_tenant` spec such as
    {"users": 100000, "grants_per_user": 8, "seed": 1}; knobs as a dict.
    """

    def __init__(self, tenant: MicrosoftTenant | dict | None = None, *, generate: dict[str, Any] | None = None,
                 knobs: dict[str, Any] | None = None, start_timeout: float = 300.0):
        if (tenant is None) == (generate is None):
            raise ValueError("give either a tenant or a generate spec")
        self._tenant, self._generate, self._knobs = tenant, generate, knobs or {}
        self._timeout = start_timeout
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._process: subprocess.Popen | None = None
        self.url = self.ca_pem_path = self.control_key = self.tenant_id = self.client_id = ""
        self.pid = 0

    def start(self) -> MicrosoftEmulatorProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix="ms-emulator-process-")
        command = [sys.executable, "-m", "emulators.microsoft.server", "--knobs", json.dumps(self._knobs)]
        if self._tenant is not None:
            path = os.path.join(self._tmp.name, "tenant.json")
            data = self._tenant.to_json() if isinstance(self._tenant, MicrosoftTenant) else self._tenant
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            command += ["--tenant-file", path]
        else:
            command += ["--generate", json.dumps(self._generate)]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        ready = _read_line(self._process, self._timeout)
        info = json.loads(ready)
        self.url, self.ca_pem_path, self.control_key, self.pid = info["url"], info["ca_pem"], info["control_key"], info["pid"]
        self.tenant_id, self.client_id = info["tenant_id"], info["client_id"]
        return self

    def stop(self) -> None:
        if self._process:
            with contextlib.suppress(OSError):
                self._process.stdin.close()  # the child exits when its stdin closes
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> MicrosoftEmulatorProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def authority_host(self) -> str:
        return self.url

    @property
    def graph_url(self) -> str:
        return self.url

    def _call(self, method: str, action: str, data: Any = None, **params: str) -> Any:
        response = requests.request(method, f"{self.url}{CONTROL_PREFIX}{action}", json=data, params=params,
                                    headers={"X-Emulator-Key": self.control_key}, verify=self.ca_pem_path, timeout=60)
        response.raise_for_status()
        return response.json()

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "stats")

    def reset_stats(self) -> None:
        self._call("POST", "reset-stats")

    def configure(self, **knobs: Any) -> dict[str, Any]:
        return self._call("POST", "knobs", knobs)

    def throttle_next(self, path_contains: str, *, retry_after: float | None = 1.0, times: int = 1) -> None:
        self._call("POST", "throttle-next", {"path_contains": path_contains, "retry_after": retry_after, "times": times})

    def expire_tokens(self) -> None:
        self._call("POST", "expire-tokens")

    def fault_next(self, path_contains: str, kind: str, *, times: int = 1) -> None:
        self._call("POST", "fault-next", {"path_contains": path_contains, "kind": kind, "times": times})

    def expire_next_skiptokens(self, path_contains: str = "", *, times: int = 1) -> None:
        self._call("POST", "expire-next-skiptokens", {"path_contains": path_contains, "times": times})

    def expire_tokens_at(self, path_contains: str, *, nth: int = 1) -> None:
        self._call("POST", "expire-tokens-at", {"path_contains": path_contains, "nth": nth})

    def events_for(self, endpoint_part: str) -> list:
        return self._call("GET", "events", contains=endpoint_part)

    def tenant_json(self) -> dict[str, Any]:
        return self._call("GET", "tenant")

    def replace_tenant(self, tenant: MicrosoftTenant | dict) -> None:
        self._call("PUT", "tenant", tenant.to_json() if isinstance(tenant, MicrosoftTenant) else tenant)

    def mutate_tenant(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Change the child's tenant between scans without shipping it whole, e.g.
        `mutate_tenant("revoke_grants", app_id)`, `mutate_tenant("set_premium", False)`."""
        return self._call("POST", "tenant-call", {"method": method, "args": list(args), "kwargs": kwargs})


def _read_line(process: subprocess.Popen, timeout: float) -> str:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        process.kill()
        raise RuntimeError(f"the Microsoft emulator process did not start within {timeout:.0f} s (exit code {process.poll()})")
    return result[0]


def main(argv: list[str] | None = None) -> None:
    """`python -m emulators.microsoft.server`: serve until stdin closes; print one JSON line when ready."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--tenant-file", help="tenant JSON (MicrosoftTenant.to_json())")
    source.add_argument("--generate", help='build_tenant arguments as JSON, e.g. {"users": 100000, "grants_per_user": 8}')
    parser.add_argument("--knobs", default="{}", help="knobs as JSON, e.g. {\"latency\": 0.08}")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    if args.tenant_file:
        with open(args.tenant_file, encoding="utf-8") as handle:
            tenant = MicrosoftTenant.from_json(json.load(handle))
    else:
        tenant = build_tenant(**json.loads(args.generate or '{"users": 2000}'))
    with MicrosoftEmulator(tenant, knobs=json.loads(args.knobs), port=args.port) as emulator:
        print(json.dumps({"url": emulator.url, "ca_pem": emulator.ca_pem_path, "control_key": emulator.control_key,
                          "pid": os.getpid(), "tenant_id": tenant.tenant_id, "client_id": tenant.registration.client_id}),
              flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()  # returns when the parent closes our stdin or dies


if __name__ == "__main__":
    main()
