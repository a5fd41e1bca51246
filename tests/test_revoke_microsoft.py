"""`app-inventory revoke` against the Microsoft Graph emulator over HTTPS: delegated grants, app
role assignments, narrowing, blocking, restoring, and the separate write registration."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from sqlite_utils import Database

from plugins.microsoft.revoke import WRITE_PERMISSIONS
from tests.microsoft_fixtures import SECRET_ENV, scan, write_config
from tests.revoke_fixtures import actions, invoke, plan_id_from

WRITE_CLIENT = "5a0c2f7e-1d2b-4c8e-9f00-2b7c0de1e7a1"
WRITE_SECRET_ENV = "APP_INVENTORY_TEST_MS_WRITE_SECRET"


def state_of(tenant) -> dict:
    """The tenant's consents as data: grants by id (with scopes), assignments by id, disabled apps."""
    tenant.refresh()
    return {
        "grants": {g.id: tuple(sorted(g.scope.split())) for g in tenant.grants},
        "assignments": {a.id for a in tenant.assignments},
        "disabled": {sp["appId"] for sp in tenant.service_principals if sp.get("accountEnabled") is False},
    }


@pytest.fixture
def ms_place(tmp_path, ms_emulator, ms_tenant, monkeypatch):
    """A scanned Microsoft district with a catalog, the write registration set up but not configured yet."""
    with ms_emulator.mutate() as tenant:
        tenant.add_registration(WRITE_CLIENT, "write-secret-value", list(WRITE_PERMISSIONS))
    monkeypatch.setenv(WRITE_SECRET_ENV, "write-secret-value")
    db_path = str(tmp_path / "inventory.db")
    config_path = write_config(tmp_path, ms_emulator, ms_tenant)
    assert scan(db_path, config_path)["status"] == "succeeded"
    db = Database(db_path)
    # The apps to act on, chosen from what the scan found: the third-party app most people
    # consented to (denied), and one with application permissions (unreviewed, as all others).
    delegated = db.execute(
        """select apps.id, apps.client_id from apps join grants on grants.app_id = apps.id
           where apps.provider = 'microsoft' and apps.ownership = 'third_party' and grants.user_id is not null
           group by apps.id order by count(*) desc, apps.id limit 2""").fetchall()
    application = db.execute(
        """select apps.id, apps.client_id from apps join grants on grants.app_id = apps.id
           where apps.ownership = 'third_party' and grants.grant_type = 'application' order by apps.id limit 1""").fetchone()
    denied, approved = delegated
    approved_scopes = json.loads(db.execute("select scopes from grants where app_id = ? and user_id is not null limit 1",
                                            [approved[0]]).fetchone()[0])[:1]
    catalog = tmp_path / "catalog.csv"
    catalog.write_text(
        "id,name,vendor,status,google_client_ids,microsoft_app_ids,approved_scopes,audience,dpa_url,dpa_expires,alternative,notes\n"
        f"bad,Bad,Bad Co,Denied,,{denied[1]},,All,,,,\n"
        f"good,Good,Good Co,Approved,,{approved[1]},{';'.join(approved_scopes)},All,,,,\n", encoding="utf-8")
    place = SimpleNamespace(db_path=db_path, config_path=config_path, directory=tmp_path, emulator=ms_emulator, tenant=ms_tenant,
                            denied=denied[0], approved=approved[0], approved_scopes=approved_scopes, application=application[0])
    assert invoke(place, "catalog", "import", str(catalog)).exit_code == 0

    def opt_in(*, client_id: str = WRITE_CLIENT, extra: str = "") -> None:
        write_config(tmp_path, ms_emulator, ms_tenant, microsoft_extra=(
            f'client_secret_env = "{SECRET_ENV}"\n\n[microsoft.revoke]\nclient_id = "{client_id}"\n'
            f'client_secret_env = "{WRITE_SECRET_ENV}"\n{extra}'))

    place.opt_in = opt_in
    return place


def planned_ids(place, plan_id: int, kind: str) -> set[str]:
    return {a["target"]["id"] for a in actions(place, plan_id) if a["target"]["type"] == kind}


def test_plan_then_apply_removes_exactly_the_planned_grants(ms_place):
    place = ms_place
    before = state_of(place.tenant)
    result = invoke(place, "revoke", "plan", "--app", place.denied, "--app", place.application)
    assert result.exit_code == 0, result.output
    plan_id = plan_id_from(result.output)
    assert state_of(place.tenant) == before
    grants, assignments = planned_ids(place, plan_id, "oauth2PermissionGrant"), planned_ids(place, plan_id, "appRoleAssignment")
    assert grants and assignments and grants <= set(before["grants"]) and assignments <= before["assignments"]
    snapshot = json.loads(actions(place, plan_id)[0]["snapshot"])
    assert {"clientId", "consentType", "principalId", "resourceId", "scope"} <= set(snapshot) or "appRoleId" in snapshot

    place.opt_in()
    result = invoke(place, "revoke", "apply", str(plan_id), "--yes", actor="bob")
    assert result.exit_code == 0, result.output
    assert {a["state"] for a in actions(place, plan_id)} == {"done"}, result.output
    after = state_of(place.tenant)
    assert set(before["grants"]) - set(after["grants"]) == grants
    assert before["assignments"] - after["assignments"] == assignments
    assert {k: v for k, v in before["grants"].items() if k not in grants} == after["grants"]
    # Each object was deleted by exactly one request that succeeded.
    events = place.emulator.events_for("DELETE")
    deleted = [path.rsplit("/", 1)[-1] for _, _, status, _, path in events if status == 204]
    assert sorted(deleted) == sorted(grants | assignments)

    # The write registration's secret is never written anywhere.
    assert "write-secret-value" not in result.output
    assert b"write-secret-value" not in open(place.db_path, "rb").read()

    assert scan(place.db_path, place.config_path)["status"] == "succeeded"
    db = Database(place.db_path)
    revoked = db.execute("select count(*), min(revoked_by_plan), max(revoked_by_plan) from changes "
                         "where kind = 'revoked_grant' and scan_id = (select max(id) from scans)").fetchone()
    assert revoked[0] > 0 and revoked[1:] == (plan_id, plan_id)
    assert not db.execute("select count(*) from grants where app_id = ? and revoked_at is null", [place.denied]).fetchone()[0]


def test_the_scan_registration_cannot_write_and_apply_needs_the_write_section(ms_place):
    place = ms_place
    plan_id = plan_id_from(invoke(place, "revoke", "plan", "--app", place.denied).output)
    before = state_of(place.tenant)
    result = invoke(place, "revoke", "apply", str(plan_id), "--yes")
    assert result.exit_code == 2
    assert "[microsoft.revoke]" in result.output and "DelegatedPermissionGrant.ReadWrite.All" in result.output
    # The scan's own (read-only) registration, configured as the write one, is refused by Graph.
    place.opt_in(client_id=place.tenant.registration.client_id)
    import os
    os.environ[WRITE_SECRET_ENV] = place.tenant.registration.client_secret
    result = invoke(place, "revoke", "apply", str(plan_id), "--yes")
    assert result.exit_code == 1
    assert "Authorization_RequestDenied" in result.output or "Insufficient privileges" in result.output
    assert state_of(place.tenant) == before
    assert {a["state"] for a in actions(place, plan_id)} == {"failed"}


def test_scope_creep_narrowing_keeps_the_approved_scopes(ms_place):
    place = ms_place
    result = invoke(place, "revoke", "plan", "--kind", "scope_creep", "--app", place.approved)
    assert result.exit_code == 0, result.output
    plan_id = plan_id_from(result.output)
    planned = actions(place, plan_id)
    assert planned and {a["action"] for a in planned} <= {"narrow", "revoke"}
    place.opt_in()
    assert invoke(place, "revoke", "apply", str(plan_id), "--yes").exit_code == 0
    after = state_of(place.tenant)
    for action in planned:
        if action["action"] == "narrow":
            assert after["grants"][action["target"]["id"]] == tuple(sorted(json.loads(action["scopes_kept"])))
            assert set(json.loads(action["scopes_kept"])) <= set(place.approved_scopes)


def test_restore_recreates_a_grant_from_its_snapshot_once(ms_place):
    place = ms_place
    place.opt_in()
    plan_id = plan_id_from(invoke(place, "revoke", "plan", "--app", place.denied).output)
    before = state_of(place.tenant)
    assert invoke(place, "revoke", "apply", str(plan_id), "--yes").exit_code == 0
    first = actions(place, plan_id)[0]
    assert first["target"]["id"] not in state_of(place.tenant)["grants"]
    result = invoke(place, "revoke", "restore", str(first["id"]), actor="carol")
    assert result.exit_code == 0, result.output
    assert state_of(place.tenant)["grants"][first["target"]["id"]] == before["grants"][first["target"]["id"]]
    again = invoke(place, "revoke", "restore", str(first["id"]))
    assert again.exit_code == 2 and "already restored" in again.output
    audit = list(Database(place.db_path).query("select * from audit where restores_action_id = ?", [first["id"]]))
    assert [(a["plan_kind"], a["planned_by"], a["outcome"]) for a in audit] == [("restore", "carol", "done")]


def test_block_disables_the_app_for_everyone(ms_place):
    place = ms_place
    place.opt_in()
    result = invoke(place, "revoke", "plan", "--block", place.denied)
    assert result.exit_code == 0, result.output
    plan_id = plan_id_from(result.output)
    assert invoke(place, "revoke", "apply", str(plan_id), "--yes").exit_code == 0
    assert place.denied.removeprefix("microsoft:") in state_of(place.tenant)["disabled"]
    refused = invoke(place, "revoke", "plan", "--block", place.approved)
    assert refused.exit_code == 2 and "approved" in refused.output


def test_injected_faults_change_nothing_in_the_outcome(ms_place):
    place = ms_place
    place.opt_in()
    plan_id = plan_id_from(invoke(place, "revoke", "plan", "--app", place.denied, "--app", place.application).output)
    planned = {a["target"]["id"] for a in actions(place, plan_id)}
    before = state_of(place.tenant)
    place.emulator.configure(fault_rate=0.1, fault_seed=3, fault_retry_after=0.01)
    result = invoke(place, "revoke", "apply", str(plan_id), "--yes")
    place.emulator.configure(fault_rate=0.0)
    assert result.exit_code == 0, result.output
    assert {a["state"] for a in actions(place, plan_id)} == {"done"}
    after = state_of(place.tenant)
    assert (set(before["grants"]) | before["assignments"]) - (set(after["grants"]) | after["assignments"]) == planned
    assert place.emulator.stats()["faults"]
