"""The core's side of posture: PostureFinding and ConsentRequest records through the provider
contract, into `posture` (a history per scan, each row with the previous scan's result),
`posture_current`, `consent_requests` and `consent_request_summary`, with retention."""

import datetime as dt
import json

import pytest

from scanner import ConsentRequest, PostureFinding, store, timestamps
from scanner.config import load_config
from scanner.scan import run_scans
from tests.conftest import district_tenant

NO_CONFIG = load_config(None)
APP = "444-askme.apps.googleusercontent.com"


@pytest.fixture
def clock(monkeypatch):
    moment = {"now": dt.datetime(2026, 11, 2, 8, tzinfo=dt.timezone.utc)}
    monkeypatch.setattr(timestamps, "clock", lambda: moment["now"])
    return moment


def finding(result="pass", scope="/", check="GWS.COMMONCONTROLS.10.3", **kwargs):
    return PostureFinding(check_id=check, title="Internal apps are not trusted automatically", expected="off",
                          actual=kwargs.pop("actual", result), result=result, fix="Admin console > API controls",
                          scope_kind="org_unit" if scope else "tenant", scope=scope,
                          reason=kwargs.pop("reason", "the scope is missing" if result == "unknown" else ""), **kwargs)


def request(status="InProgress", user="3", request_id="r1"):
    return ConsentRequest(id=request_id, app_id=APP, app_name="AskMe", scopes=["openid", " profile", "openid"], status=status,
                          user_id=user, email="jlee@students.district.org", user_name="Jamie Lee", reason="for class",
                          requested_at="2026-10-30T10:00:00.1234567Z")


def scan(db_path, config=NO_CONFIG):
    outcome = run_scans(db_path, config, show_progress=False)
    return outcome.scans[0]


def rows(db_path, sql, params=()):
    return [dict(row) for row in store.open_db(db_path).query(sql, params)]


def test_findings_are_kept_per_scan_with_the_previous_result(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    fake_tenant.posture = [finding("pass", "/"), finding("pass", "/Students"), finding("unknown", "", check="GWS.CLASSROOM.2.1")]
    first = scan(db_path)
    clock["now"] += dt.timedelta(days=1)
    fake_tenant.posture = [finding("fail", "/"), finding("pass", "/Students"), finding("pass", "", check="GWS.CLASSROOM.2.1")]
    second = scan(db_path)

    history = rows(db_path, "select scan_id, scope, check_id, result, previous_result, checked_at from posture order by id")
    assert [(r["scan_id"], r["scope"], r["result"], r["previous_result"]) for r in history] == [
        (first["id"], "/", "pass", None), (first["id"], "/Students", "pass", None), (first["id"], "", "unknown", None),
        (second["id"], "/", "fail", "pass"), (second["id"], "/Students", "pass", "pass"), (second["id"], "", "pass", "unknown"),
    ]
    assert history[3]["checked_at"] == "2026-11-03T08:00:00Z"
    # Each check's words are stored once, not once a scan (docs/scale.md).
    assert rows(db_path, "select count(*) as n from posture_checks") == [{"n": 2}]
    # posture_current holds the latest scan only, with the words IT reads.
    current = rows(db_path, "select * from posture_current order by scope")
    assert [(r["scope"], r["result"]) for r in current] == [("", "pass"), ("/", "fail"), ("/Students", "pass")]
    assert current[1]["fix"] == "Admin console > API controls" and current[1]["scope_kind"] == "org_unit"


def test_a_failed_scan_is_neither_current_nor_anyone_s_previous_result(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    fake_tenant.posture = [finding("pass")]
    scan(db_path)
    fake_tenant.posture = [finding("fail")]
    fake_tenant.fail_after = 5  # the provider breaks before its posture is written
    assert scan(db_path)["status"] == "failed"
    assert rows(db_path, "select result from posture") == [{"result": "pass"}]
    fake_tenant.fail_after = None
    scan(db_path)
    assert rows(db_path, "select result, previous_result from posture_current") == [{"result": "fail", "previous_result": "pass"}]


def test_a_check_reworded_by_a_new_version_keeps_its_history(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    fake_tenant.posture = [finding("pass")]
    scan(db_path)
    clock["now"] += dt.timedelta(days=1)
    reworded = finding("fail")
    reworded.title, reworded.fix = "Internal apps are not trusted on their own", "Admin console > Security > API controls"
    fake_tenant.posture = [reworded]
    scan(db_path)
    assert rows(db_path, "select title, fix, result, previous_result from posture order by id") == [
        {"title": "Internal apps are not trusted automatically", "fix": "Admin console > API controls", "result": "pass",
         "previous_result": None},
        {"title": reworded.title, "fix": reworded.fix, "result": "fail", "previous_result": "pass"}]


@pytest.mark.parametrize("bad, complaint", [
    (finding("maybe"), "result must be pass, fail, unknown"),
    (finding("unknown", reason=""), "an unknown result needs a reason"),
    (finding("pass", requirement="MUST"), "requirement must be SHALL or SHOULD"),
    (PostureFinding(check_id="X", title="t", expected="", actual="", result="pass", fix="", scope_kind="school"),
     "scope_kind must be tenant, org_unit, group"),
])
def test_a_malformed_finding_fails_the_scan_and_writes_nothing(fake_tenant, db_path, bad, complaint):
    district_tenant(fake_tenant)
    fake_tenant.posture = [bad]
    outcome = scan(db_path)
    assert outcome["status"] == "failed" and complaint in outcome["error"]
    assert rows(db_path, "select count(*) as n from posture") == [{"n": 0}]
    assert rows(db_path, "select count(*) as n from grants") == [{"n": 0}]


def test_the_same_check_and_scope_twice_in_one_scan_is_refused(fake_tenant, db_path):
    district_tenant(fake_tenant)
    fake_tenant.posture = [finding("pass"), finding("fail")]
    outcome = scan(db_path)
    assert outcome["status"] == "failed" and "reported twice" in outcome["error"]


def test_consent_requests_are_updated_by_each_scan_and_summed_up_against_the_catalog(fake_tenant, db_path, clock):
    district_tenant(fake_tenant)
    store.replace_catalog(store.open_db(db_path), [{
        "id": "askme", "name": "AskMe", "status": "denied", "status_original": "Denied", "audience": "all",
        "google_client_ids": json.dumps([APP.upper()]), "microsoft_app_ids": "[]", "approved_scopes": "[]",
        "alternative": "Google Forms"}])
    fake_tenant.posture = [request(), request(user="4", request_id="r2"), request(user="1", request_id="r3", status="Expired")]
    first = scan(db_path)
    saved = rows(db_path, "select * from consent_requests where id = 'fake:r1'")[0]
    assert saved["app_id"] == f"fake:{APP}" and saved["user_id"] == "fake:3" and json.loads(saved["scopes"]) == ["openid", "profile"]
    assert saved["requested_at"] == "2026-10-30T10:00:00Z" and saved["seen_scan_id"] == first["id"]
    # Matched to the catalog by exact client id (case aside): two students waiting for a denied app.
    assert rows(db_path, "select app, status, requests, people, students, staff, alternative from consent_request_summary") == [
        {"app": "AskMe", "status": "denied", "requests": 2, "people": 2, "students": 2, "staff": 0, "alternative": "Google Forms"}]

    clock["now"] += dt.timedelta(days=1)
    fake_tenant.posture = [request(status="Completed"), request(user="4", request_id="r2")]
    second = scan(db_path)
    decided = rows(db_path, "select status, first_seen, last_seen, seen_scan_id from consent_requests where id = 'fake:r1'")[0]
    assert decided == {"status": "Completed", "first_seen": "2026-11-02T08:00:00Z", "last_seen": "2026-11-03T08:00:00Z",
                       "seen_scan_id": second["id"]}
    # r3 was not seen again: it stays as it was, and only what the latest scan saw counts as waiting.
    assert rows(db_path, "select seen_scan_id from consent_requests where id = 'fake:r3'") == [{"seen_scan_id": first["id"]}]
    assert rows(db_path, "select people from consent_request_summary") == [{"people": 1}]


def test_retention_forgets_old_posture_but_never_the_latest_scan(fake_tenant, db_path, clock, tmp_path):
    config_file = tmp_path / "retention.toml"
    config_file.write_text("[retention]\nhistory_days = 30\n")
    config = load_config(config_file)
    district_tenant(fake_tenant)
    fake_tenant.posture = [finding("pass"), request()]
    scan(db_path, config)
    clock["now"] += dt.timedelta(days=40)
    fake_tenant.posture = [finding("fail")]
    latest = scan(db_path, config)
    assert rows(db_path, "select scan_id, result, previous_result from posture") == [
        {"scan_id": latest["id"], "result": "fail", "previous_result": "pass"}]
    assert rows(db_path, "select count(*) as n from consent_requests") == [{"n": 0}]
    assert rows(db_path, "select count(*) as n from scans") == [{"n": 1}]
    clock["now"] += dt.timedelta(days=40)
    fake_tenant.posture = []
    scan(db_path, config)
    # The provider's latest scan reported no posture: nothing is current, and the old rows went with their scan,
    # and the words of checks no row names any more.
    assert rows(db_path, "select count(*) as n from posture") == [{"n": 0}]
    assert rows(db_path, "select count(*) as n from posture_checks") == [{"n": 0}]


async def test_it_staff_see_the_posture_page_and_dashboard_anonymous_visitors_do_not(fake_tenant, tmp_path, monkeypatch):
    from scanner.serve import build_datasette
    from tests.publish_fixtures import IT_HASH_VARIABLE, IT_PASSWORD_HASH, sign_in_cookies, write_config

    monkeypatch.setenv(IT_HASH_VARIABLE, IT_PASSWORD_HASH)
    db_path = tmp_path / "inventory.db"
    district_tenant(fake_tenant)
    fake_tenant.posture = [finding("fail", "/"), finding("pass", "/Students"), finding("unknown", "", check="GWS.CLASSROOM.2.1"),
                           request()]
    scan(str(db_path))
    datasette = build_datasette(db_path, load_config(write_config(tmp_path, public=True)))
    await datasette.invoke_startup()
    cookies = await sign_in_cookies(datasette)
    page = await datasette.client.get("/inventory/posture_current", cookies=cookies)
    assert page.status_code == 200 and "Admin console &gt; API controls" in page.text
    facets = (await datasette.client.get("/inventory/posture_current.json", params={"_shape": "objects"}, cookies=cookies)).json()
    assert {item["value"]: item["count"] for item in facets["facet_results"]["result"]["results"]} == {
        "fail": 1, "pass": 1, "unknown": 1}
    dashboard = await datasette.client.get("/-/dashboards/overview", cookies=cookies)
    assert dashboard.status_code == 200 and "Posture: checks by provider and result" in dashboard.text
    for table in ("posture", "posture_current", "consent_requests", "consent_request_summary"):
        assert (await datasette.client.get(f"/inventory/{table}.json")).status_code == 404, table
