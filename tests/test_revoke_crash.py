"""`revoke apply` killed (SIGKILL) at random points, then run again: no action is carried out
twice, and every action ends recorded."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from sqlite_utils import Database

from tests.revoke_fixtures import DENIED, UNREVIEWED, actions, google_district_tenant, import_catalog, invoke, plan_id_from, revoke_events, tokens_of
from tests.test_revoke_microsoft import ms_place  # noqa: F401 (a fixture)

FINAL = {"done", "already_gone", "skipped_changed", "skipped", "failed"}


def apply_in_child(place) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "scanner", "--db", place.db_path, "--config", str(place.config_path), "revoke", "apply", str(place.plan_id), "--yes"],
        env={**os.environ, "APP_INVENTORY_ACTOR": "bob"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(place.directory))


def states(place) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in Database(place.db_path).query("select state from revoke_actions where plan_id = ?", [place.plan_id]):
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    return counts


def test_sigkill_at_random_points_then_rerun_carries_out_each_action_once(district):
    tenant = google_district_tenant(40)
    place = district(tenant)
    # 80 tokens, a read and a delete each, paced at 40 calls a second: about four seconds of work.
    place.write_config(extra="[google.revoke]\nrequests_per_minute = 2400\n")
    assert place.scan()["status"] == "succeeded"
    import_catalog(place)
    place.plan_id = plan_id_from(invoke(place, "revoke", "plan", "--status", "denied", "--status", "unreviewed").output)
    planned = {(a["target"]["userKey"], a["target"]["clientId"]) for a in actions(place, place.plan_id)}
    assert len(planned) == 80
    before = tokens_of(tenant)
    place.emulator.reset_stats()
    place.emulator.set_knobs(latency=0.02)

    rng = random.Random(15)
    interrupted = 0
    for _ in range(5):
        child = apply_in_child(place)
        time.sleep(rng.uniform(0.6, 1.6))  # the interpreter starts in about half a second
        if child.poll() is not None:
            break
        child.send_signal(signal.SIGKILL)
        child.wait()
        counts = states(place)
        if set(counts) - FINAL:
            interrupted += 1
    assert interrupted >= 2, "no kill landed in the middle of the apply"
    final = apply_in_child(place)
    output = final.communicate(timeout=120)[0].decode()
    assert final.returncode == 0, output

    rows = actions(place, place.plan_id)
    assert all(row["state"] == "done" and row["finished_at"] for row in rows), states(place)
    assert {(u, c) for u, c, _ in before - tokens_of(tenant)} == planned
    assert {c for _, c, _ in tokens_of(tenant)} == {c for _, c, _ in before} - {DENIED.client_id, UNREVIEWED.client_id}
    # Each token was deleted by exactly one request: never a second DELETE after a kill.
    assert sorted(revoke_events(tenant)) == sorted(planned)
    assert place.emulator.stats()["calls"]["tokens.delete"] == len(planned)
    assert Database(place.db_path)["revoke_plans"].get(place.plan_id)["status"] == "applied"


def test_sigkill_during_a_microsoft_apply_then_rerun_deletes_each_grant_once(request):
    place = request.getfixturevalue("ms_place")
    # About 150 Graph units of work a second: a few seconds for the app's grants and permissions.
    place.opt_in(extra="resource_units_per_second = 150\n")
    place.plan_id = plan_id_from(invoke(place, "revoke", "plan", "--app", place.denied, "--app", place.application).output)
    planned = {a["target"]["id"] for a in actions(place, place.plan_id)}
    assert len(planned) > 60
    rng = random.Random(7)
    interrupted = 0
    for _ in range(4):
        child = apply_in_child(place)
        time.sleep(rng.uniform(0.8, 1.8))
        if child.poll() is not None:
            break
        child.send_signal(signal.SIGKILL)
        child.wait()
        if set(states(place)) - FINAL:
            interrupted += 1
    assert interrupted >= 1, "no kill landed in the middle of the apply"
    final = apply_in_child(place)
    output = final.communicate(timeout=180)[0].decode()
    assert final.returncode == 0, output
    assert all(row["state"] == "done" for row in actions(place, place.plan_id)), states(place)
    deleted = [path.rsplit("/", 1)[-1] for _, _, status, _, path in place.emulator.events_for("DELETE") if status == 204]
    assert sorted(deleted) == sorted(planned)  # each exactly once
    tenant = place.tenant
    tenant.refresh()
    assert not planned & ({g.id for g in tenant.grants} | {a.id for a in tenant.assignments})
