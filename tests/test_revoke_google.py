"""`app-inventory revoke` against the Google emulator over HTTP: plan, approve, apply, and what
the tenant and the inventory look like afterwards."""

from __future__ import annotations

import datetime as dt
import json

from sqlite_utils import Database

from plugins.alerts.queue import STATUS_CODES
from tests.revoke_fixtures import (
    APPROVED, DENIED, INTERNAL, UNREVIEWED, actions, google_district_tenant, import_catalog, invoke, plan_id_from,
    revoke_events, tokens_of,
)

OPT_IN = "[google.revoke]\n"


def ready(district, *, users: int = 12, knobs=None, opt_in: bool = True):
    tenant = google_district_tenant(users)
    place = district(tenant, knobs=knobs)
    if opt_in:
        place.write_config(extra=OPT_IN)
    assert place.scan()["status"] == "succeeded"
    import_catalog(place)
    return place, tenant


def test_plan_changes_nothing_and_apply_removes_exactly_the_planned_tokens(district):
    place, tenant = ready(district)
    before = tokens_of(tenant)
    result = invoke(place, "revoke", "plan", "--status", "denied")
    assert result.exit_code == 0, result.output
    plan_id = plan_id_from(result.output)
    assert "Nothing has changed in the tenant" in result.output
    assert tokens_of(tenant) == before  # planning only reads
    planned = actions(place, plan_id)
    assert len(planned) == 12 and {a["target"]["clientId"] for a in planned} == {DENIED.client_id}
    # The snapshot is the token as tokens.get returned it.
    snapshot = json.loads(planned[0]["snapshot"])
    assert snapshot["kind"] == "admin#directory#token" and snapshot["clientId"] == DENIED.client_id

    result = invoke(place, "revoke", "apply", str(plan_id), "--yes", actor="bob")
    assert result.exit_code == 0, result.output
    removed = {(a["target"]["userKey"], a["target"]["clientId"]) for a in planned}
    after = tokens_of(tenant)
    assert {(u, c) for u, c, _ in before - after} == removed and after < before
    assert {row["state"] for row in actions(place, plan_id)} == {"done"}
    assert sorted(revoke_events(tenant)) == sorted(removed)  # each token deleted once

    # Applying again does nothing; the next scan marks the grants revoked by the district.
    again = invoke(place, "revoke", "apply", str(plan_id), "--yes")
    assert again.exit_code == 0 and "already applied" in again.output
    assert sorted(revoke_events(tenant)) == sorted(removed)
    assert place.scan(full=True)["status"] == "succeeded"
    db = Database(place.db_path)
    changes = list(db.query("select * from changes where kind = 'revoked_grant' and scan_id = (select max(id) from scans)"))
    assert len(changes) == 12 and {c["revoked_by_plan"] for c in changes} == {plan_id}
    audit = list(db.query("select * from audit where plan_id = ?", [plan_id]))
    assert {(a["planned_by"], a["applied_by"], a["outcome"]) for a in audit} == {("alice", "bob", "done")}
    assert all(a["email"].startswith("person") for a in audit)


def test_never_touches_internal_or_approved_apps(district):
    place, tenant = ready(district)
    for app in (INTERNAL.client_id, f"google:{APPROVED.client_id}"):
        result = invoke(place, "revoke", "plan", "--app", app)
        assert result.exit_code == 2 and "nothing to revoke" in result.output
    result = invoke(place, "revoke", "plan", "--user", "person1@district.example")
    assert result.exit_code == 0, result.output
    planned = actions(place, plan_id_from(result.output))
    assert {a["target"]["clientId"] for a in planned} == {DENIED.client_id, UNREVIEWED.client_id}


def test_apply_refuses_without_the_opt_in_section(district):
    place, tenant = ready(district, opt_in=False)
    plan_id = plan_id_from(invoke(place, "revoke", "plan", "--status", "unreviewed").output)
    before = tokens_of(tenant)
    result = invoke(place, "revoke", "apply", str(plan_id), "--yes")
    assert result.exit_code == 2
    assert "[google.revoke]" in result.output and "nothing was changed" in result.output
    assert tokens_of(tenant) == before
    assert {row["state"] for row in actions(place, plan_id)} == {"pending"}


def test_approval_by_another_person_and_the_age_limit(district):
    place, tenant = ready(district)
    place.write_config(extra=OPT_IN + "[revoke]\nrequire_approval = true\nplan_max_age_hours = 2\n")
    plan_id = plan_id_from(invoke(place, "revoke", "plan", "--status", "denied").output)
    before = tokens_of(tenant)
    refused = invoke(place, "revoke", "apply", str(plan_id), "--yes")
    assert refused.exit_code == 2 and "not approved" in refused.output
    same = invoke(place, "revoke", "approve", str(plan_id), actor="ALICE")
    assert same.exit_code == 2 and "different person" in same.output
    assert tokens_of(tenant) == before
    # A plan older than plan_max_age_hours is refused, approved or not.
    db = Database(place.db_path)
    old = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    db.execute("update revoke_plans set created_at = ? where id = ?", [old, plan_id])
    db.conn.commit()
    stale = invoke(place, "revoke", "approve", str(plan_id), actor="bob")
    assert stale.exit_code == 2 and "plan_max_age_hours" in stale.output
    fresh = plan_id_from(invoke(place, "revoke", "plan", "--status", "denied").output)
    assert invoke(place, "revoke", "approve", str(fresh), actor="bob").exit_code == 0
    result = invoke(place, "revoke", "apply", str(fresh), "--yes", actor="carol")
    assert result.exit_code == 0, result.output
    row = db["revoke_plans"].get(fresh)
    assert (row["created_by"], row["approved_by"], row["applied_by"], row["status"]) == ("alice", "bob", "carol", "applied")


def test_already_gone_and_changed_after_planning(district):
    place, tenant = ready(district, users=6)
    plan_id = plan_id_from(invoke(place, "revoke", "plan", "--status", "denied").output)
    planned = actions(place, plan_id)
    gone, changed = planned[0]["target"]["userKey"], planned[1]["target"]["userKey"]
    tenant.revoke(gone, DENIED.client_id)  # the person removed it themselves
    tenant.revoke(changed, DENIED.client_id)
    tenant.authorize(changed, DENIED, ["openid"])  # ... and consented again, to less
    result = invoke(place, "revoke", "apply", str(plan_id), "--yes")
    assert result.exit_code == 0, result.output
    states = {a["target"]["userKey"]: (a["state"], a["error"]) for a in actions(place, plan_id)}
    assert states[gone][0] == "already_gone"
    assert states[changed][0] == "skipped_changed" and "scopes" in states[changed][1]
    assert [s for s, _ in states.values()].count("done") == 4
    assert (changed, DENIED.client_id, ("openid",)) in tokens_of(tenant)  # left alone


def test_scope_creep_is_skipped_for_google_unless_whole_token(district):
    place, tenant = ready(district, users=3)
    result = invoke(place, "revoke", "plan", "--kind", "scope_creep")
    assert result.exit_code == 0, result.output
    planned = actions(place, plan_id_from(result.output))
    assert {a["state"] for a in planned} == {"skipped"} and "--whole-token" in planned[0]["error"]
    assert {a["target"]["clientId"] for a in planned} == {APPROVED.client_id}
    whole = invoke(place, "revoke", "plan", "--kind", "scope_creep", "--whole-token")
    plan_id = plan_id_from(whole.output)
    assert {(a["action"], a["state"]) for a in actions(place, plan_id)} == {("revoke", "pending")}
    assert invoke(place, "revoke", "apply", str(plan_id), "--yes").exit_code == 0
    assert not any(client == APPROVED.client_id for _, client, _ in tokens_of(tenant))


def test_google_cannot_restore_or_block(district):
    place, tenant = ready(district, users=3)
    plan_id = plan_id_from(invoke(place, "revoke", "plan", "--status", "denied").output)
    assert invoke(place, "revoke", "apply", str(plan_id), "--yes").exit_code == 0
    first = actions(place, plan_id)[0]["id"]
    result = invoke(place, "revoke", "restore", str(first))
    assert result.exit_code == 2 and "cannot restore" in result.output and "signs in to the app again" in result.output
    blocked = invoke(place, "revoke", "plan", "--block", f"google:{DENIED.client_id}")
    assert blocked.exit_code == 2 and "App access control" in blocked.output


def test_the_plan_size_limit(district):
    place, tenant = ready(district, users=6)
    result = invoke(place, "revoke", "plan", "--status", "denied", "--max", "5")
    assert result.exit_code == 2 and "more than --max 5" in result.output
    plan_id = plan_id_from(invoke(place, "revoke", "plan", "--status", "denied").output)
    refused = invoke(place, "revoke", "apply", str(plan_id), "--yes", "--max", "5")
    assert refused.exit_code == 2 and "more than --max 5" in refused.output


def test_after_warning_days_keeps_only_grants_warned_long_enough_ago_and_still_there(district):
    place, tenant = ready(district, users=6)
    db = Database(place.db_path)
    # The finding each person would be told about (the import after the scan replaced the
    # 'unapproved' findings by 'denied' ones and suppressed the old).
    alerts = list(db.query("select id, user_id from alerts where app_id = ? and status != 'suppressed' order by user_id",
                           [f"google:{DENIED.client_id}"]))
    assert len(alerts) == 6
    now = dt.datetime.now(dt.timezone.utc)
    sent = lambda days: (now - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    # Two were warned 10 days ago (one of them removed the app since), one 3 days ago, the rest never.
    for alert, days in zip(alerts[:3], (10, 10, 3)):
        db.execute("update alert_rows set status = ?, sent_at = ? where id = ?", [STATUS_CODES["sent"], sent(days), alert["id"]])
    db.conn.commit()
    warned_long_ago = [a["user_id"].removeprefix("google:") for a in alerts[:2]]
    tenant.revoke(warned_long_ago[1], DENIED.client_id)
    result = invoke(place, "revoke", "plan", "--status", "denied", "--after-warning-days", "7")
    assert result.exit_code == 0, result.output
    assert "1 selected grant(s) were already gone" in result.output
    planned = actions(place, plan_id_from(result.output))
    assert [(a["target"]["userKey"], a["target"]["clientId"]) for a in planned] == [(warned_long_ago[0], DENIED.client_id)]


def test_ten_percent_faults_change_nothing_in_the_outcome(district):
    calm, calm_tenant = ready(district, users=10)
    stormy, stormy_tenant = ready(district, users=10)
    outcomes = []
    for place, tenant in ((calm, calm_tenant), (stormy, stormy_tenant)):
        plan_id = plan_id_from(invoke(place, "revoke", "plan", "--status", "denied", "--status", "unreviewed").output)
        if place is stormy:
            place.emulator.set_knobs(fault_rate=0.1, fault_seed=5, retry_after=0, fault_kinds=["429", "500", "503", "403", "reset"])
        result = invoke(place, "revoke", "apply", str(plan_id), "--yes")
        assert result.exit_code == 0, result.output
        outcomes.append((sorted((a["target"]["userKey"], a["target"]["clientId"], a["state"]) for a in actions(place, plan_id)),
                         tokens_of(tenant), sorted(revoke_events(tenant))))
    assert stormy.emulator.stats()["faults"]
    assert outcomes[0] == outcomes[1]
    assert {state for _, _, state in outcomes[1][0]} == {"done"}


def test_an_app_approved_after_planning_is_left_alone(district):
    place, tenant = ready(district, users=3)
    plan_id = plan_id_from(invoke(place, "revoke", "plan", "--status", "denied", "--status", "unreviewed").output)
    from tests.revoke_fixtures import CATALOG
    import_catalog(place, CATALOG + f"quiz,Quiz Maker,Quiz Co,Approved,{UNREVIEWED.client_id},,,All,,,,\n")
    before = tokens_of(tenant)
    result = invoke(place, "revoke", "apply", str(plan_id), "--yes")
    assert result.exit_code == 0, result.output
    outcome = {(a["target"]["clientId"], a["state"]) for a in actions(place, plan_id)}
    assert outcome == {(DENIED.client_id, "done"), (UNREVIEWED.client_id, "skipped")}
    assert {c for _, c, _ in before - tokens_of(tenant)} == {DENIED.client_id}
