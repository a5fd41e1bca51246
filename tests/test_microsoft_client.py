"""The Graph client: retries, token renewal, $batch item retries and error messages, against the emulator."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading

import pytest
import requests
from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

from plugins.microsoft.auth import GraphToken
from plugins.microsoft.client import GraphCallError, GraphClient, GraphRetry, endpoint_name, relative_to_version
from scanner.config import load_config

from .microsoft_fixtures import write_config


@pytest.fixture
def client(ms_emulator, ms_tenant, tmp_path):
    config = load_config(write_config(tmp_path, ms_emulator, ms_tenant))
    session = requests.Session()
    token = GraphToken.from_config(config, session)
    graph = GraphClient(ms_emulator.graph_url, token, retries=3, backoff=0.05)
    yield graph
    graph.close()
    session.close()


def test_fractional_retry_after_is_understood():
    with pytest.raises(InvalidHeader):  # what urllib3 alone does with Graph's header
        Retry().parse_retry_after("2.128")
    assert GraphRetry().parse_retry_after("2.128") == pytest.approx(2.128)
    assert GraphRetry().parse_retry_after("3") == 3
    assert GraphRetry().parse_retry_after("9999") == 120


def test_backoff_starts_with_the_first_retry():
    retry = GraphRetry(total=5, backoff_factor=0.5, backoff_jitter=0)
    assert retry.get_backoff_time() == 0
    once = retry.increment("GET", "/", error=ConnectionResetError())
    twice = once.increment("GET", "/", error=ConnectionResetError())
    assert (once.get_backoff_time(), twice.get_backoff_time()) == (0.5, 1.0)


def test_expired_token_is_renewed_once(client, ms_emulator):
    assert client.get("/v1.0/organization")["value"]
    ms_emulator.expire_tokens()
    assert client.get("/v1.0/organization")["value"]
    statuses = [e[2] for e in ms_emulator.events_for("/v1.0/organization")]
    assert statuses == [200, 401, 200]
    assert ms_emulator.stats()["token_requests"] == 3  # openid-configuration, first token, renewed token


def test_graph_errors_keep_code_message_and_request_id(client, ms_emulator):
    with pytest.raises(GraphCallError) as caught:
        client.get("/v1.0/users?$top=1000")
    error = caught.value
    assert (error.status, error.code) == (400, "Request_UnsupportedQuery")
    assert "Invalid page size specified: '1000'" in str(error) and error.request_id in str(error)
    assert "Bearer" not in str(error)


def test_5xx_retries_are_counted_and_given_up(client, ms_emulator):
    ms_emulator.configure(fault_rate=1.0, fault_kinds=["503"])
    with pytest.raises(GraphCallError) as caught:
        client.get("/v1.0/organization")
    assert caught.value.status == 503 and caught.value.code == "serviceNotAvailable"
    assert client.stats.http_requests == 4 and client.stats.retries == 3


def test_batch_retries_throttled_items_only(client, ms_emulator, ms_tenant):
    ids = [sp["id"] for sp in ms_tenant.service_principals[:25]]
    ms_emulator.throttle_next(f"/servicePrincipals/{ids[3]}/appRoleAssignments", retry_after=0.3, times=2)
    results = dict(client.batch_collect({i: f"/servicePrincipals/{i}/appRoleAssignments?$top=999" for i in ids}))
    assert set(results) == set(ids)
    for sp_id in ids:
        assert len(results[sp_id]) == len(ms_tenant.assignments_by_principal.get(sp_id, []))
    stats = ms_emulator.stats()
    assert stats["batch_envelopes"] == 4 and stats["batch_items"] == 25 + 2  # 20 + 5, then the throttled item twice
    assert client.stats.calls == 27 and client.stats.http_requests == 4


def test_batch_gone_objects_and_refusals(client, ms_emulator):
    gone = "00000000-0000-0000-0000-00000000abcd"
    assert dict(client.batch_objects({gone: f"/servicePrincipals/{gone}"})) == {gone: None}
    with pytest.raises(GraphCallError) as caught:
        dict(client.batch_objects({"x": "/users?$top=0"}))
    assert caught.value.status == 400 and caught.value.code == "Request_UnsupportedQuery"


def test_url_helpers():
    assert endpoint_name("GET", "https://graph.microsoft.com/v1.0/servicePrincipals/00af5dfb-85da-4b41-a677-0c6b86dd34f8/appRoleAssignments?$top=9") \
        == "GET /v1.0/servicePrincipals/{id}/appRoleAssignments"
    assert relative_to_version("https://graph.microsoft.com/v1.0/servicePrincipals/x/appRoleAssignments?$top=999&$skiptoken=abc") \
        == "/servicePrincipals/x/appRoleAssignments?$top=999&$skiptoken=abc"


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A tiny Graph look-alike: answers with a nextLink that names `next_link`, and records requests."""

    def do_GET(self):
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        self._answer({"value": [{"id": f"u{len(self.server.seen)}"}], "@odata.nextLink": self.server.next_link})

    def do_POST(self):
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        length = int(self.headers["Content-Length"])
        items = json.loads(self.rfile.read(length))["requests"]
        self._answer({"responses": [{"id": item["id"], "status": 200, "body": {
            "value": [{"id": "x"}], "@odata.nextLink": self.server.next_link}} for item in items]})

    def _answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _recording_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen, server.next_link = [], None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class _FixedToken:
    def get(self):
        return "secret-access-token"

    def renew(self):
        pass


def test_a_next_link_to_another_host_is_not_followed_with_the_token():
    with _recording_server() as graph, _recording_server() as elsewhere:
        graph.next_link = f"http://127.0.0.1:{elsewhere.server_address[1]}/v1.0/users?$skiptoken=abc"
        client = GraphClient(f"http://127.0.0.1:{graph.server_address[1]}", _FixedToken(), retries=0, backoff=0.01)
        try:
            with pytest.raises(GraphCallError) as refused:
                list(client.pages("/v1.0/users"))
            assert "not followed" in str(refused.value) and "secret-access-token" not in str(refused.value)
            with pytest.raises(GraphCallError):
                list(client.batch_collect({"a": "/users/1/memberOf"}))
        finally:
            client.close()
        assert elsewhere.seen == []
        assert [path for path, _ in graph.seen] == ["/v1.0/users", "/v1.0/$batch"]


def test_a_next_link_to_the_configured_host_is_followed():
    with _recording_server() as graph:
        base = f"http://127.0.0.1:{graph.server_address[1]}"
        graph.next_link = None
        client = GraphClient(base, _FixedToken(), retries=0, backoff=0.01)
        try:
            graph.next_link = f"{base}/v1.0/users?$skiptoken=page2"
            pages = client.pages("/v1.0/users")
            first, second = next(pages), next(pages)
            assert first and second
        finally:
            client.close()
        assert [path for path, _ in graph.seen] == ["/v1.0/users", "/v1.0/users?$skiptoken=page2"]


def test_a_long_listing_keeps_what_it_handed_out_in_a_few_bytes_an_item(client, monkeypatch):
    """To skip what it handed out after a fresh start, a listing of users keeps each one's id:
    as a set of the id strings that took about 130 MB for a million users (docs/scale.md)."""
    import tracemalloc

    pages, size = 60, 999
    served = {"pages": 0}

    def page(method, url, headers=None):
        number = served["pages"]
        served["pages"] += 1
        body = {"value": [{"id": f"{number:04d}-{item:04d}-4c1e-9a2b-{'x' * 40}"} for item in range(size)]}
        if number + 1 < pages:
            body["@odata.nextLink"] = f"{client.url('/v1.0/users')}?$skiptoken={number + 1}"
        return body

    monkeypatch.setattr(client, "_request", page)
    tracemalloc.start()
    try:
        count = 0
        for items in client.pages("/v1.0/users"):
            count += len(items)
            del items
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == pages * size
    # 59,940 ids: 16 bytes each, beside one page in flight (about 0.3 MB), where the strings took 8 MB.
    assert peak < 3_000_000, peak
