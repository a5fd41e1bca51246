"""The Admin SDK emulator answers as Google does, checked through the real client libraries
(and raw HTTP where the libraries would refuse to send what we test)."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import re
from collections import Counter

import google_auth_httplib2
import httplib2
import pytest
import requests
from google.auth import exceptions as auth_exceptions
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import BatchHttpRequest

from emulators.clock import Clock, ManualClock
from emulators.google.server import GoogleEmulator, GoogleEmulatorProcess
from emulators.google.oauth import new_service_account_key
from emulators.google.tenant import SCANNER_SCOPES, GoogleTenant, build_tenant, to_micros
from tests.google_fixtures import ADMIN

UTC = dt.timezone.utc
TOKEN_FIELDS = "items(clientId,displayText,anonymous,nativeApp,userKey,scopes)"


class Client:
    """The real google-api-python-client, signed in through the emulator's token endpoint."""

    def __init__(self, emulator: GoogleEmulator, key: dict, subject: str = ADMIN, scopes=SCANNER_SCOPES):
        credentials = service_account.Credentials.from_service_account_info(key, scopes=list(scopes)).with_subject(subject)
        self.http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=30))
        options = {"api_endpoint": emulator.api_root}
        self.directory = build("admin", "directory_v1", http=self.http, client_options=options, static_discovery=True)
        self.reports = build("admin", "reports_v1", http=self.http, client_options=options, static_discovery=True)
        self.batch_uri = emulator.api_root + "batch/admin/directory_v1"
        self.credentials = credentials


@pytest.fixture
def emulated(rsa_key):
    emulators = []

    def start(tenant: GoogleTenant | None = None, clock: Clock | None = None, **knobs):
        emulator = GoogleEmulator(tenant or build_tenant(users=120, seed=1), knobs=knobs, clock=clock).start()
        emulators.append(emulator)
        key = new_service_account_key(token_uri=emulator.token_uri, private_key=rsa_key)
        emulator.delegate(key)
        return emulator, key

    yield start
    for emulator in emulators:
        emulator.stop()


def error_of(exc: HttpError) -> dict:
    return json.loads(exc.content)["error"]


def test_users_list_pages_with_discovery_shapes(emulated):
    emulator, key = emulated(build_tenant(users=250, seed=1))
    client = Client(emulator, key)
    seen, page_token, pages = [], None, 0
    while True:
        page = client.directory.users().list(customer="my_customer", maxResults=100, pageToken=page_token).execute()
        pages += 1
        assert page["kind"] == "admin#directory#users" and page["etag"].startswith('"')
        seen += page["users"]
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    assert pages == 3 and len(seen) == 251 == len({u["id"] for u in seen})
    emails = [u["primaryEmail"].lower() for u in seen]
    assert emails == sorted(emails)
    user = seen[0]
    assert user["kind"] == "admin#directory#user" and len(user["id"]) == 21
    assert {"givenName", "familyName", "fullName"} <= set(user["name"]) and user["orgUnitPath"].startswith("/")
    assert user["customerId"] == emulator.tenant.customer_id

    masked = client.directory.users().list(customer="my_customer", maxResults=2, fields="nextPageToken,users(id,name/fullName)").execute()
    assert set(masked) == {"nextPageToken", "users"} and set(masked["users"][0]) == {"id", "name"}
    assert set(masked["users"][0]["name"]) == {"fullName"}

    with pytest.raises(HttpError) as too_many:
        client.directory.users().list(customer="my_customer", maxResults=501).execute()
    assert too_many.value.resp.status == 400 and "[1, 500]" in error_of(too_many.value)["message"]
    with pytest.raises(HttpError) as neither:
        client.directory.users().list().execute()
    assert neither.value.resp.status == 400


def test_users_list_reports_aliases_and_emails_as_directory_does(emulated):
    """The synthetic district gives a quarter of the staff a short alias (their Microsoft
    address); users.list reports it in `aliases` and in `emails` (no type), as Directory does."""
    emulator, key = emulated(build_tenant(users=250, seed=1))
    users = Client(emulator, key).directory.users().list(
        customer="my_customer", maxResults=500, fields="users(primaryEmail,aliases,emails)").execute()["users"]
    aliased = [user for user in users if user.get("aliases")]  # Google leaves out an empty list
    assert aliased and all(set(user) <= {"primaryEmail", "aliases", "emails"} for user in users)
    for user in aliased:
        assert user["emails"] == [{"address": user["primaryEmail"], "primary": True},
                                  *({"address": alias} for alias in user["aliases"])]
        assert all("type" not in entry for entry in user["emails"])


def test_tokens_list_get_delete(emulated):
    tenant = build_tenant(users=50, seed=1)
    empty = next(u for u in tenant.users.values() if not tenant.tokens[u.id])
    holder = next(u for u in tenant.users.values() if tenant.tokens[u.id])
    emulator, key = emulated(tenant)
    tokens = Client(emulator, key).directory.tokens()

    assert tokens.list(userKey=empty.id).execute() == {"kind": "admin#directory#tokenList", "etag": tokens.list(userKey=empty.id).execute()["etag"]}
    assert tokens.list(userKey=empty.id, fields=TOKEN_FIELDS).execute() == {}  # items omitted when empty
    by_email = tokens.list(userKey=holder.primary_email, fields=TOKEN_FIELDS).execute()  # "@" goes as %40
    by_id = tokens.list(userKey=holder.id).execute()
    assert [t["clientId"] for t in by_email["items"]] == [t.client.client_id for t in tenant.tokens[holder.id]]
    first = by_id["items"][0]
    assert first["kind"] == "admin#directory#token" and first["userKey"] == holder.id  # the numeric id, not the email
    assert set(first) == {"kind", "etag", "clientId", "displayText", "anonymous", "nativeApp", "userKey", "scopes"}

    with pytest.raises(HttpError) as unknown:
        tokens.list(userKey="nobody@district.example").execute()
    assert unknown.value.resp.status == 404
    assert error_of(unknown.value) == {"code": 404, "message": "Resource Not Found: userKey",
                                       "errors": [{"message": "Resource Not Found: userKey", "domain": "global", "reason": "notFound"}]}

    client_id = first["clientId"]
    assert tokens.get(userKey=holder.id, clientId=client_id).execute()["clientId"] == client_id
    before = len(tenant.events)
    tokens.delete(userKey=holder.id, clientId=client_id).execute()
    assert client_id not in {t.client.client_id for t in tenant.tokens[holder.id]}
    assert len(tenant.events) == before + 1 and tenant.event(len(tenant.events) - 1).name == "revoke"
    with pytest.raises(HttpError) as gone:
        tokens.get(userKey=holder.id, clientId=client_id).execute()
    assert gone.value.resp.status == 404


def test_token_activity_newest_first_paged_and_within_180_days(emulated):
    tenant = build_tenant(users=200, seed=1)
    now = dt.datetime.now(UTC)
    user = next(u for u in tenant.users.values() if tenant.tokens[u.id])
    client_id = tenant.tokens[user.id][0].client.client_id
    tenant.use(user.id, client_id, at=now - dt.timedelta(days=200))  # too old to be served
    emulator, key = emulated(tenant)
    activities = Client(emulator, key).reports.activities()

    items, page_token = [], None
    while True:
        page = activities.list(userKey="all", applicationName="token", maxResults=300, pageToken=page_token,
                               startTime="2020-01-01T00:00:00Z").execute()  # older than 180 days: capped
        assert page["kind"] == "admin#reports#activities"
        items += page["items"]
        page_token = page.get("nextPageToken")
        if not page_token:
            break
    cutoff = to_micros(now - dt.timedelta(days=180))
    assert len(items) == sum(1 for micros in tenant.events.micros if micros >= cutoff) > 300
    times = [item["id"]["time"] for item in items]
    assert times == sorted(times, reverse=True)
    assert times[-1] >= (now - dt.timedelta(days=180, minutes=1)).strftime("%Y-%m-%dT%H:%M:%S")
    item = items[0]
    assert item["kind"] == "admin#reports#activity" and item["id"]["applicationName"] == "token"
    assert item["actor"]["profileId"] in tenant.users and item["events"][0]["type"] == "auth"
    names = {p["name"] for item in items for p in item["events"][0]["parameters"]}
    assert {"client_id", "app_name", "client_type", "scope", "scope_data", "num_response_bytes", "api_name"} <= names
    size = next(p for item in items for p in item["events"][0]["parameters"] if p["name"] == "num_response_bytes")
    assert isinstance(size["intValue"], str)  # int64 as a string, per the discovery document

    only = activities.list(userKey=user.primary_email, applicationName="token", eventName="authorize",
                           filters=f"client_id=={client_id}").execute()
    assert all(i["events"][0]["name"] == "authorize" and i["actor"]["profileId"] == user.id for i in only.get("items", []))
    with pytest.raises(HttpError) as future:
        activities.list(userKey="all", applicationName="token", startTime="2999-01-01T00:00:00Z").execute()
    assert future.value.resp.status == 400

    emulator.set_knobs(activity_events=False)
    without = activities.list(userKey="all", applicationName="token").execute()
    assert {i["events"][0]["name"] for i in without["items"]} == {"authorize"}


def _masked(value, spec):
    """A partial response as the Admin SDK documents it, worked out here from the whole answer."""
    def parse(text, at=0):
        tree = {}
        while at < len(text):
            match = re.compile(r"([A-Za-z0-9_*]+(?:/[A-Za-z0-9_*]+)*)").match(text, at)
            node = tree
            *parents, leaf = match.group(1).split("/")
            for name in parents:
                node = node.setdefault(name, {})
            node = node.setdefault(leaf, {})
            at = match.end()
            if at < len(text) and text[at] == "(":
                sub, at = parse(text, at + 1)
                node.update(sub)
                at += 1  # ")"
            if at < len(text) and text[at] == ")":
                return tree, at
            at += at < len(text) and text[at] == ","
        return tree, at

    def keep(item, tree):
        if not tree or "*" in tree:
            return item
        if isinstance(item, list):
            return [keep(each, tree) for each in item]
        if isinstance(item, dict):
            return {key: keep(item[key], sub) for key, sub in tree.items() if key in item}
        return item

    return keep(value, parse(spec)[0])


@pytest.mark.parametrize("fields", [
    "nextPageToken,items(id/time,actor(email,profileId),events(name,parameters(name,value)))",  # the scanner's
    "items(id,etag,ipAddress)",
    "items(id/uniqueQualifier,events/parameters(name,multiMessageValue))",
    "kind,items/events(type,parameters/multiValue)",
    "items(*)",
])
def test_activity_fields_mask_keeps_what_the_whole_answer_has(emulated, fields):
    tenant = build_tenant(users=40, seed=3)
    emulator, key = emulated(tenant)
    activities = Client(emulator, key).reports.activities()
    window = {"userKey": "all", "applicationName": "token", "maxResults": 1000,
              "startTime": (dt.datetime.now(UTC) - dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "endTime": dt.datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    whole = activities.list(**window).execute()
    names = {e["name"] for item in whole["items"] for e in item["events"]}
    assert {"authorize", "activity"} <= names and "nextPageToken" not in whole
    first = whole["items"][0]
    assert set(first) == {"kind", "id", "etag", "actor", "ipAddress", "events"}
    assert list(first["id"]) == ["time", "uniqueQualifier", "applicationName", "customerId"]
    scope_data = [p for item in whole["items"] for p in item["events"][0]["parameters"] if p["name"] == "scope_data"]
    assert scope_data and all(p["multiMessageValue"] for p in scope_data)

    partial = activities.list(**window, fields=fields).execute()

    assert partial == _masked(whole, fields) and partial["items"]


def test_batch_wire_format_and_limits(emulated):
    tenant = build_tenant(users=30, seed=1)
    emulator, key = emulated(tenant)
    client = Client(emulator, key)
    answers = {}
    batch = BatchHttpRequest(callback=lambda rid, resp, exc: answers.__setitem__(rid, (resp, exc)), batch_uri=client.batch_uri)
    ids = list(tenant.users)[:5]
    for user_id in ids:
        batch.add(client.directory.tokens().list(userKey=user_id, fields=TOKEN_FIELDS), request_id=user_id)
    batch.add(client.directory.tokens().list(userKey="999"), request_id="ghost")
    batch.execute(http=client.http)
    for user_id in ids:
        response, exception = answers[user_id]
        assert exception is None and [t["clientId"] for t in response.get("items", [])] == [t.client.client_id for t in tenant.tokens[user_id]]
    assert answers["ghost"][1].resp.status == 404
    stats = emulator.stats()
    assert stats["http"]["batch"] == 1 and stats["batch_parts"] == 6 and stats["calls"]["tokens.list"] == 6

    # Raw HTTP: more than 1000 parts, and a Reports call inside a Directory batch.
    client.credentials.refresh(google_auth_httplib2.Request(httplib2.Http()))
    auth = f"authorization: Bearer {client.credentials.token}"

    def raw(paths):
        body = "".join(f"--b\nContent-Type: application/http\nContent-ID: <x + {n}>\n\nGET {p} HTTP/1.1\n{auth}\n\n" for n, p in enumerate(paths))
        return requests.post(client.batch_uri, data=(body + "--b--").encode(), headers={"Content-Type": 'multipart/mixed; boundary="b"'})

    too_big = raw([f"/admin/directory/v1/users/{ids[0]}/tokens"] * 1001)
    assert too_big.status_code == 400 and "1000" in too_big.json()["error"]["message"]
    mixed = raw(["/admin/reports/v1/activity/users/all/applications/token"])
    assert mixed.status_code == 200 and "HTTP/1.1 400 Bad Request" in mixed.text and "Content-ID: <response-x + 0>" in mixed.text


def test_token_endpoint_answers_like_google(emulated):
    emulator, key = emulated()
    stranger = build_tenant(users=1).users  # ids and emails of another tenant

    def sign_in(subject, scopes=SCANNER_SCOPES, key_info=key):
        credentials = service_account.Credentials.from_service_account_info(key_info, scopes=list(scopes)).with_subject(subject)
        credentials.refresh(google_auth_httplib2.Request(httplib2.Http()))
        return credentials

    assert sign_in(ADMIN).token.startswith("ya29.")
    with pytest.raises(auth_exceptions.RefreshError) as wrong_subject:
        sign_in("someone@elsewhere.example")
    assert wrong_subject.value.args[1] == {"error": "invalid_grant", "error_description": "Invalid email or User ID"}
    with pytest.raises(auth_exceptions.RefreshError) as extra_scope:
        sign_in(ADMIN, [*SCANNER_SCOPES, "https://www.googleapis.com/auth/admin.directory.user"])
    assert extra_scope.value.args[1]["error"] == "unauthorized_client"
    forged = new_service_account_key(token_uri=emulator.token_uri, client_email=key["client_email"])
    with pytest.raises(auth_exceptions.RefreshError) as bad_signature:
        sign_in(ADMIN, key_info=forged)
    assert bad_signature.value.args[1]["error_description"] == "Invalid JWT Signature."
    assert stranger  # (the other tenant exists; its users are not ours)

    # Calls need a live token, an admin subject and the method's scope.
    assert requests.get(emulator.api_root + "admin/directory/v1/users?customer=my_customer").status_code == 401
    teacher = next(u for u in emulator.tenant.users.values() if not u.is_admin)
    with pytest.raises(HttpError) as not_admin:
        Client(emulator, key, subject=teacher.primary_email).directory.users().list(customer="my_customer").execute()
    assert error_of(not_admin.value)["message"] == "Not Authorized to access this resource/api"
    emulator.delegate(key, [*SCANNER_SCOPES[:1]])
    with pytest.raises(HttpError) as scope:
        Client(emulator, key, scopes=SCANNER_SCOPES[:1]).directory.tokens().list(userKey=teacher.id).execute()
    assert error_of(scope.value)["errors"][0]["reason"] == "insufficientPermissions"


def test_quota_answers_403_for_directory_and_503_for_reports(emulated):
    emulator, key = emulated(quota_per_minute=60, quota_burst=3)
    client = Client(emulator, key)
    statuses = []
    for _ in range(5):
        try:
            client.directory.users().list(customer="my_customer", maxResults=1).execute()
            statuses.append(200)
        except HttpError as error:
            statuses.append(error.resp.status)
            last = error_of(error)
    assert statuses[:3] == [200, 200, 200] and 403 in statuses[3:]
    assert last["errors"][0]["reason"] == "userRateLimitExceeded" and "Queries per minute per user" in last["message"]
    reports = [client.reports.activities().list(userKey="all", applicationName="token", maxResults=1) for _ in range(5)]
    codes = []
    for request in reports:
        try:
            request.execute()
            codes.append(200)
        except HttpError as error:
            codes.append(error.resp.status)
    assert 503 in codes and 403 not in codes  # Reports has its own bucket, and answers 503
    assert emulator.stats()["quota"]["directory"] >= 1 and emulator.stats()["quota"]["reports"] >= 1


def test_faults_are_seeded(emulated):
    def failures(seed):
        emulator, key = emulated(build_tenant(users=60, seed=1), fault_rate=0.3, fault_seed=seed)
        tokens = Client(emulator, key).directory.tokens()
        failed = []
        for user_id in emulator.tenant.users:
            try:
                tokens.list(userKey=user_id).execute()
            except HttpError as error:
                failed.append((user_id, error.resp.status))
        return failed

    first, again, other = failures(1), failures(1), failures(2)
    assert first == again and first != other
    assert 5 < len(first) < 40 and {status for _, status in first} <= {403, 429, 500, 503}


def test_tenant_json_round_trip_keeps_tokens_and_events():
    tenant = build_tenant(users=80, seed=4)
    tenant.churn(0.1, seed=2)
    copy = GoogleTenant.from_json(json.loads(json.dumps(tenant.to_json())))
    assert copy.grants_digest() == tenant.grants_digest()
    assert [copy.event(i)[:1] + copy.event(i)[2:3] for i in range(len(copy.events))] == \
        [tenant.event(i)[:1] + tenant.event(i)[2:3] for i in range(len(tenant.events))]


def test_churn_records_authorize_and_revoke_events():
    tenant = build_tenant(users=100, seed=4)
    before = len(tenant.events)
    summary = tenant.churn(0.1, seed=3)
    assert summary["users"] == 10 and summary["authorized"] + summary["revoked"] == 10
    new = [tenant.event(i).name for i in range(before, len(tenant.events))]
    assert sorted(new) == sorted(["authorize"] * summary["authorized"] + ["revoke"] * summary["revoked"])


def test_child_process_emulator_serves_and_is_controlled(rsa_key):
    with GoogleEmulatorProcess(build={"users": 40, "seed": 3}, knobs={"latency": 0.01}) as emulator:
        key = new_service_account_key(token_uri=emulator.token_uri, private_key=rsa_key)
        emulator.delegate(key)
        tokens = Client(emulator, key).directory.tokens()
        users = Client(emulator, key).directory.users().list(customer="my_customer").execute()["users"]
        holder = next(u for u in users if tokens.list(userKey=u["id"]).execute().get("items"))
        client_id = tokens.list(userKey=holder["id"]).execute()["items"][0]["clientId"]
        digest = emulator.digest()
        assert emulator.mutate([{"op": "revoke", "user": holder["id"], "client": client_id}]) == [True]
        assert emulator.digest()["grants"] == digest["grants"] - 1
        stats = emulator.stats()
        assert stats["calls"]["tokens.list"] >= 2 and stats["tokens_issued"] >= 1
        assert emulator.set_knobs(fault_rate=0.5)["fault_rate"] == 0.5
        denied = requests.post(emulator.url + "/_emulator/stats", data="{}")
        assert denied.status_code == 403  # controls need the key
        with pytest.raises(requests.HTTPError, match="404"):
            emulator.control("meteor", {})  # no such control
        process = emulator._process
    assert process.poll() is not None  # the child exited when its stdin closed


def test_connection_faults_reset_stall_or_cut_answers_short(emulated):
    clock = ManualClock()
    emulator, key = emulated(clock=clock, fault_rate=1.0, fault_kinds=["reset"], stall_seconds=1.0)
    users = Client(emulator, key).directory.users()
    with pytest.raises(ConnectionResetError):  # RST, no answer (httplib2 would quietly resend after a clean close)
        users.list(customer="my_customer").execute()

    emulator.set_knobs(fault_kinds=["timeout"])
    impatient = Client(emulator, key)
    impatient.http.http.timeout = 0.3
    with pytest.raises(TimeoutError):
        impatient.directory.users().list(customer="my_customer").execute()
    clock.wait_for_sleepers(1)  # the emulator stalls (however slowly this machine got there), until its clock moves
    clock.advance(1.0)
    clock.wait_for_sleepers(0)  # the stall lasts stall_seconds of the emulator's clock

    # Cut short: either Content-Length promised more and the connection closed (IncompleteRead),
    # or it matched the cut body and the client hands back text that is not JSON.
    emulator.set_knobs(fault_kinds=["truncated"])
    outcomes = set()
    for size in range(1, 13):
        try:
            answer = Client(emulator, key).directory.users().list(customer="my_customer", maxResults=size).execute()
            assert isinstance(answer, str) and answer.startswith('{"kind":"admin#directory#users"')
            outcomes.add("broken JSON")
        except http.client.IncompleteRead:
            outcomes.add("closed early")
    assert outcomes == {"broken JSON", "closed early"}

    emulator.set_knobs(fault_rate=0.0, batch_fault_rate=1.0)
    batch = BatchHttpRequest(callback=lambda *answer: None, batch_uri=impatient.batch_uri)
    for user_id in list(emulator.tenant.users)[:20]:
        batch.add(impatient.directory.tokens().list(userKey=user_id), request_id=user_id)
    with pytest.raises((http.client.IncompleteRead, BatchError, KeyError, TypeError, ValueError, IndexError)):
        batch.execute(http=Client(emulator, key).http)
    faults = emulator.stats()["faults"]
    assert faults["reset"] == 1 and faults["timeout"] == 1 and faults["truncated"] == 12 and faults["batch.truncated"] == 1


def test_429_asks_to_retry_after_and_early_retries_are_counted(emulated):
    emulator, key = emulated(fault_rate=1.0, fault_kinds=["429"], retry_after=3)
    client = Client(emulator, key)
    request = client.directory.users().list(customer="my_customer")
    with pytest.raises(HttpError) as refused:
        request.execute()
    assert refused.value.resp.status == 429 and refused.value.resp["retry-after"] == "3"
    assert error_of(refused.value)["status"] == "RESOURCE_EXHAUSTED"
    answers = {}
    batch = BatchHttpRequest(callback=lambda rid, resp, exc: answers.__setitem__(rid, exc), batch_uri=client.batch_uri)
    batch.add(client.directory.tokens().list(userKey=ADMIN), request_id="admin")
    batch.execute(http=client.http)
    assert answers["admin"].resp.status == 429 and answers["admin"].resp["retry-after"] == "3"  # parts say it too
    emulator.set_knobs(fault_rate=0.0)
    request.execute()  # at once, not 3 s later
    assert emulator.stats()["retry_after_ignored"] == 1


def test_page_tokens_can_expire(emulated):
    clock = ManualClock()
    emulator, key = emulated(build_tenant(users=30, seed=1), clock, expire_page_tokens={"users.list": 1, "activities.list": 1})
    client = Client(emulator, key)
    users = client.directory.users()
    first = users.list(customer="my_customer", maxResults=10).execute()
    for _ in range(2):  # an expired token stays expired
        with pytest.raises(HttpError) as expired:
            users.list(customer="my_customer", maxResults=10, pageToken=first["nextPageToken"]).execute()
        # What Google documents for a users.list paged through for over an hour.
        assert expired.value.resp.status == 503
        assert error_of(expired.value) == {"code": 503, "message": "Service unavailable. Please try again", "errors": [
            {"message": "Service unavailable. Please try again", "domain": "global", "reason": "backendError"}]}
    again = users.list(customer="my_customer", maxResults=10).execute()  # a new listing gets live tokens
    assert users.list(customer="my_customer", maxResults=10, pageToken=again["nextPageToken"]).execute()["users"]

    activities = client.reports.activities()
    page = activities.list(userKey="all", applicationName="token", maxResults=5).execute()
    with pytest.raises(HttpError) as invalid:
        activities.list(userKey="all", applicationName="token", maxResults=5, pageToken=page["nextPageToken"]).execute()
    assert invalid.value.resp.status == 400 and error_of(invalid.value)["errors"][0]["reason"] == "invalid"

    # Or by age, counted from the listing's first page.
    emulator.set_knobs(page_token_lifetime=60)
    fresh = users.list(customer="my_customer", maxResults=10).execute()
    clock.advance(50)
    second = users.list(customer="my_customer", maxResults=10, pageToken=fresh["nextPageToken"]).execute()
    clock.advance(11)  # 61 s since the first page, 11 s since the second
    with pytest.raises(HttpError):
        users.list(customer="my_customer", maxResults=10, pageToken=second["nextPageToken"]).execute()
    assert emulator.stats()["expired_page_tokens"] == {"users.list": 3, "activities.list": 1}


@pytest.mark.parametrize("knobs, complaint", [
    ({"fault_rate": 1.5}, "fault_rate must be a number from 0 to 1, not 1.5"),
    ({"fault_kinds": ["429", "flood"]}, "fault_kinds: 'flood'; use some of 429, 500, 503, 403, reset, timeout, truncated"),
    ({"stall_seconds": -1}, "stall_seconds must be a number >= 0"),
    ({"retry_after": 1.5}, "retry_after must be an integer >= 0"),
    ({"expire_page_tokens": {"tokens.list": 1}}, "expire_page_tokens must map users.list, activities.list or policies.list to a count"),
    ({"page_token_lifetime": "1h"}, "page_token_lifetime must be a number >= 0"),
    ({"fault_ratio": 0.1}, "unknown emulator knob 'fault_ratio'"),
])
def test_knobs_are_checked(knobs, complaint):
    with pytest.raises(ValueError, match=re.escape(complaint)):
        GoogleEmulator(build_tenant(users=5), knobs=knobs)


def test_synthetic_district_has_about_the_asked_grants_per_account_with_a_long_tail():
    now = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)
    tenant = build_tenant(users=3000, seed=4, grants_per_user=8, extra_apps=40, now=now)
    assert tenant.to_json() == build_tenant(users=3000, seed=4, grants_per_user=8, extra_apps=40, now=now).to_json()
    per_user = Counter(user_id for user_id, _ in tenant.all_tokens())
    assert 7.5 < sum(per_user.values()) / 3001 < 8.5
    assert 30 <= max(per_user.values()) <= 40  # heavy users, capped at 40
    assert sum(1 for client in tenant.clients.values() if client.display_text.startswith("EdTech Tool")) == 40
