"""What every emulator needs to be served over real HTTP(S) on 127.0.0.1.

- `EmulatorHTTPServer`: a threaded HTTP server, over TLS when given a context (the TLS
  handshake happens in the connection's own thread, never in the accept loop).
- `EmulatorHandler`: the request handler's shared part: HTTP/1.1 keep-alive, the keyed
  control API, answers, dropped connections (RST) and stalls; a subclass answers the API.
- `ServedEmulator`: an emulator served from a thread of this process, a context manager;
  `tls=True` serves HTTPS with a certificate from a throwaway trustme CA made at start-up
  (nothing is committed); clients trust it through `ca_pem_path`.
- `EmulatorProcess` and `serve_in_child()`: the same emulator in a child process, so a
  benchmark measures the scanner's memory alone. The child reads one JSON spec line on
  stdin, prints one JSON line when it serves, and exits when its stdin closes (the parent
  closed it, or died).

Controls: an emulator's `control(op, args)` changes or reads it (knobs, stats, tenant
changes, aimed faults). In process they are plain calls; over HTTP each is
`POST /_emulator/<op>` with JSON arguments and the `X-Emulator-Key` header (403 without
it, 404 for an unknown control, 400 for bad arguments), answered with JSON. Both kinds of
emulator object offer the same control methods, each one `self.control(op, args)`.

Every emulator has a `RequestGate` (`hold_after(n)`, `wait_held()`, `release()`): it answers
the next n requests and holds the later ones, so a test can catch a client mid-way (and kill
it there) at a point that does not depend on how fast this machine is.
"""

from __future__ import annotations

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
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .clock import Clock, SettableClock

CONTROL_PREFIX = "/_emulator/"
CONTROL_KEY_HEADER = "X-Emulator-Key"


class UnknownControl(LookupError):
    """No control of that name (404 over HTTP)."""


class RequestGate:
    """Answers the next `n` API requests, then holds each later one until released (or the
    emulator stops); thread-safe. Open (answering everything) until hold_after() is called."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._left: int | None = None  # requests still let through; None: open
        self._held = 0

    def hold_after(self, requests: int) -> None:
        if not isinstance(requests, int) or isinstance(requests, bool) or requests < 0:
            raise ValueError(f"hold_after takes a count of requests >= 0, not {requests!r}")
        with self._changed:
            self._left = requests

    def release(self) -> None:
        """Open the gate: held requests go on, and so does every later one."""
        with self._changed:
            self._left = None
            self._changed.notify_all()

    @property
    def held(self) -> int:
        """How many requests wait at the gate now."""
        with self._changed:
            return self._held

    def pass_through(self, stopping: threading.Event) -> None:
        """Called before each API request is answered: returns at once, or once released."""
        with self._changed:
            if self._left is None:
                return
            if self._left > 0:
                self._left -= 1
                return
            self._held += 1
            try:
                while self._left is not None and not stopping.is_set():
                    self._changed.wait(0.05)  # polls `stopping` (an Event cannot wake a Condition)
            finally:
                self._held -= 1


class EmulatorHTTPServer(ThreadingHTTPServer):
    """A threaded HTTP server for one emulator, over TLS when given a context."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[EmulatorHandler], emulator: ServedEmulator,
                 tls: ssl.SSLContext | None = None, queue_size: int = 128):
        self.request_queue_size = queue_size  # read when the socket starts listening, in __init__
        super().__init__(address, handler)
        self.emulator, self.tls = emulator, tls
        self.stopping = threading.Event()  # ends stalls ("timeout" faults) when the emulator stops

    def finish_request(self, request, client_address) -> None:
        if self.tls is not None:
            try:
                request = self.tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                request.close()
                return
        self.RequestHandlerClass(request, client_address, self)

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # clients that hang up (or that we reset on purpose) are not news
        super().handle_error(request, client_address)


class EmulatorHandler(BaseHTTPRequestHandler):
    """The shared part of an emulator's request handler; subclasses implement `serve(body)`."""

    protocol_version = "HTTP/1.1"  # keep-alive, as httplib2 and requests expect
    # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
    # client's delayed ACK add 40 ms to every response on a kept-alive connection.
    disable_nagle_algorithm = True
    sys_version = ""
    server: EmulatorHTTPServer

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = urlsplit(self.path).path
        if path.startswith(CONTROL_PREFIX):
            self._control(path[len(CONTROL_PREFIX):], body)
        else:
            self.emulator.gate.pass_through(self.server.stopping)
            self.serve(body)

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def serve(self, body: bytes) -> None:
        """Answer one API request (self.command, self.path, self.headers; the body read)."""
        raise NotImplementedError

    @property
    def emulator(self) -> Any:
        return self.server.emulator

    # -- answers ---------------------------------------------------------------------------

    def send_answer(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None, *,
                    content_length: int | None = None) -> None:
        """Status, headers and body; `content_length` announces another length than the body's (a cut answer)."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if content_length is None else content_length))
        self.end_headers()
        self.wfile.write(body)

    def reset_connection(self) -> None:
        """Drop the connection with a TCP reset (RST), as when a proxy gives up on it."""
        # SO_LINGER 0: closing sends RST, not FIN; the socket really closes once the handler
        # lets go of its files (finish()).
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socket.socket.close(self.connection)
        self.close_connection = True

    def stall(self, seconds: float) -> None:
        """Answer nothing for `seconds` of the emulator's clock (less if the emulator stops)."""
        self.emulator.clock.sleep(seconds, interrupt=self.server.stopping)

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # the connection may be reset or cut already
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and benchmarks print their own
        pass

    # -- the control API -------------------------------------------------------------------

    def _control(self, op: str, body: bytes) -> None:
        key = (self.headers.get(CONTROL_KEY_HEADER) or "").encode()
        if not secrets.compare_digest(key, self.emulator.control_key.encode()):
            status, result = 403, {"error": f"wrong or missing {CONTROL_KEY_HEADER}"}
        else:
            try:
                status, result = 200, self.emulator.control(op, json.loads(body or b"{}"))
            except UnknownControl as error:
                status, result = 404, {"error": str(error)}
            except (ValueError, KeyError, TypeError) as error:
                status, result = 400, {"error": f"{type(error).__name__}: {error}"}
        self.send_answer(status, json.dumps(result).encode(), "application/json")


class ServedEmulator:
    """An emulator served from a thread of this process: `with Emulator(...) as emulator:`.

    A subclass sets `handler` (its EmulatorHandler subclass) and implements `provider_control()`.
    """

    handler: type[EmulatorHandler]
    thread_name = "emulator"
    queue_size = 128

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tls: bool = False, clock: Clock | None = None):
        self.clock = clock or Clock()
        self.control_key = secrets.token_urlsafe(16)
        self.gate = RequestGate()
        self.ca_pem_path: str | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        context = self._tls_context(host) if tls else None
        self._server = EmulatorHTTPServer((host, port), self.handler, self, context, self.queue_size)
        self.url = f"{'https' if tls else 'http'}://{host}:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None

    def _tls_context(self, host: str) -> ssl.SSLContext:
        import trustme  # only the HTTPS emulators need it

        ca = trustme.CA()
        self._tmp = tempfile.TemporaryDirectory(prefix="emulator-ca-")
        self.ca_pem_path = os.path.join(self._tmp.name, "emulator-ca.pem")
        ca.cert_pem.write_to_path(self.ca_pem_path)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(host, "localhost").configure_cert(context)
        return context

    def start(self):
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.stopping.set()
        if self._thread:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def control(self, op: str, args: dict[str, Any]) -> Any:
        """Run one control (JSON arguments in, JSON-serializable result out); UnknownControl, or
        ValueError / KeyError / TypeError for bad arguments."""
        if op == "hold_after":
            self.gate.hold_after(args["requests"])
        elif op == "release":
            self.gate.release()
        elif op == "held":
            return self.gate.held
        elif op == "set_clock":
            if not isinstance(self.clock, SettableClock):
                raise ValueError("this emulator's clock cannot be set (start it with a SettableClock)")
            self.clock.set(float(args["time"]))
        else:
            return self.provider_control(op, args)
        return {}

    def provider_control(self, op: str, args: dict[str, Any]) -> Any:
        """The provider's own controls (see control())."""
        raise NotImplementedError

    def ready_info(self) -> dict[str, Any]:
        """What a child process tells its parent when it serves."""
        return {"url": self.url, "control_key": self.control_key, "ca_pem": self.ca_pem_path, "pid": os.getpid()}


class GateControls:
    """The request gate's controls, for both kinds of emulator object."""

    control: Callable[[str, dict[str, Any]], Any]

    def hold_after(self, requests: int) -> None:
        """Answer the next `requests` API requests, then hold each later one until release()."""
        self.control("hold_after", {"requests": requests})

    def release(self) -> None:
        self.control("release", {})

    def held(self) -> int:
        """How many requests wait at the gate now."""
        return self.control("held", {})

    def wait_held(self, count: int = 1, timeout: float = 60.0) -> None:
        """Return once `count` requests wait at the gate; TimeoutError after `timeout` real
        seconds (the client never got that far)."""
        deadline = time.monotonic() + timeout
        while self.held() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {count} request(s) held at the emulator's gate after {timeout:.0f} s")
            time.sleep(0.01)


class EmulatorProcess:
    """An emulator in a child process (`python -m <module>`, whose main() calls serve_in_child).

    `spec` is what the child builds its emulator from: {"tenant_file": path} or {"build":
    arguments of the tenant builder}, and {"knobs": {...}}; `tenant` (JSON data) is written
    to a temporary file for it. A subclass sets `module` and offers the control methods.
    """

    module: str

    def __init__(self, spec: dict[str, Any], *, tenant: dict[str, Any] | None = None, start_timeout: float = 600.0):
        self._spec, self._tenant, self._timeout = dict(spec), tenant, start_timeout
        self._process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.url = self.control_key = ""
        self.ca_pem_path: str | None = None
        self.pid = 0
        self.info: dict[str, Any] = {}

    def start(self):
        import requests  # only the parent needs it

        if self._tenant is not None:
            self._tmp = tempfile.TemporaryDirectory(prefix="emulator-process-")
            self._spec["tenant_file"] = os.path.join(self._tmp.name, "tenant.json")
            with open(self._spec["tenant_file"], "w", encoding="utf-8") as handle:
                json.dump(self._tenant, handle)
        self._process = subprocess.Popen([sys.executable, "-m", self.module], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)
        self._process.stdin.write(json.dumps(self._spec) + "\n")
        self._process.stdin.flush()
        self.info = json.loads(self._ready_line())
        self.url, self.control_key, self.ca_pem_path, self.pid = (
            self.info["url"], self.info["control_key"], self.info["ca_pem"], self.info["pid"])
        self._session = requests.Session()
        self._session.headers[CONTROL_KEY_HEADER] = self.control_key
        self._session.verify = self.ca_pem_path or True
        return self

    def _ready_line(self) -> str:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self._process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self._timeout)
        if not lines or not lines[0]:
            self._process.kill()
            raise RuntimeError(f"the emulator process ({self.module}) did not start within {self._timeout:.0f} s "
                               f"(exit code {self._process.wait()})")
        return lines[0]

    def stop(self) -> None:
        if self._process:
            with contextlib.suppress(OSError):
                self._process.stdin.close()  # the child exits when its stdin closes
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process.stdout.close()
            self._process = None
            self._session.close()
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_clock(self, moment: float) -> None:
        """Move the child's clock to `moment` (epoch seconds); it runs on from there. Only for a
        child started with a settable clock (spec {"clock": "settable"})."""
        self.control("set_clock", {"time": moment})

    def control(self, op: str, args: dict[str, Any]) -> Any:
        """Run a control in the child; requests.HTTPError (with the child's reason) when refused."""
        import requests

        response = self._session.post(self.url + CONTROL_PREFIX + op, data=json.dumps(args), timeout=600)
        if response.status_code != 200:
            raise requests.HTTPError(f"emulator control {op} failed: {response.status_code} {response.text}",
                                     response=response)
        return response.json()


def serve_in_child(make: Callable[[dict[str, Any]], ServedEmulator]) -> None:
    """The child process's main: read the JSON spec line, serve `make(spec)`, print its
    ready_info() as one JSON line, and stop when stdin closes."""
    spec = json.loads(sys.stdin.readline())
    with make(spec) as emulator:
        print(json.dumps(emulator.ready_info()), flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()  # returns when the parent closes our stdin or dies


def clock_for(spec: dict[str, Any]) -> Clock | None:
    """The clock a child's spec asks for: a SettableClock for {"clock": "settable"} (a benchmark
    that moves the date between scans), else None (the machine's time)."""
    return SettableClock() if spec.get("clock") == "settable" else None


def load_tenant_json(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The tenant JSON a spec names (its "tenant_file"), or None."""
    if not spec.get("tenant_file"):
        return None
    with open(spec["tenant_file"], encoding="utf-8") as handle:
        return json.load(handle)


__all__ = ["CONTROL_PREFIX", "EmulatorHTTPServer", "EmulatorHandler", "EmulatorProcess", "GateControls", "RequestGate",
           "ServedEmulator", "UnknownControl", "clock_for", "load_tenant_json", "serve_in_child"]
