"""Revoke --grants Google tokens and --grants Microsoft grants through `app-inventory revoke`,
and print the wall time of `revoke apply` as a ratio of the quota floor.

    python bench/revoke_bench.py [--grants 10000] [--google-quota 24000] [--graph-units 800] [--json FILE]

For each provider (the emulators serve from child processes; every command is
`python -m scanner ...` in a child process too):

1. an emulated district in which --grants accounts each hold one grant of one unapproved app;
2. a full scan, then `revoke plan --app <that app>` (reads each grant: not measured);
3. `revoke apply PLAN --yes`, timed from outside, start-up of the interpreter included;
4. the emulator's state afterwards: every planned grant gone, nothing else touched.

The quota floor is the least time the provider's quota allows for what apply must do:
a read and a delete per grant.
- Google: 2 calls per token at --google-quota calls a minute (the emulator's per-admin
  quota; `[google.revoke] requests_per_minute` is set to it).
- Microsoft: Graph's resource units, 1 for the read and 3 for the delete, at --graph-units a
  second (the emulator's budget, over its 10-second window); the revoker is configured to
  95% of it (`resource_units_per_second`), as a district leaves headroom for the scan.

Not a test: nothing is asserted; the target (apply within 1.15x the floor) is in docs/revoke.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emulators.google.server import GoogleEmulatorProcess, new_service_account_key
from emulators.google.tenant import DirectoryUser, GoogleTenant, OAuthClient
from emulators.microsoft.server import MicrosoftEmulatorProcess
from emulators.microsoft.tenant import GRAPH_APP_ID, MICROSOFT_CORP_TENANT, MICROSOFT_SERVICES_TENANT, DelegatedGrant, build_tenant

GOOGLE_ADMIN = "it-admin@district.example"
GOOGLE_APP = OAuthClient("999999999999-flashcards.apps.googleusercontent.com", "Flashcard Frenzy")
MICROSOFT_SECRET = "emulator-secret-do-not-use"
WRITE_CLIENT = "5a0c2f7e-1d2b-4c8e-9f00-2b7c0de1e7a1"
SECRET_ENV, WRITE_SECRET_ENV = "APP_INVENTORY_BENCH_MS_SECRET", "APP_INVENTORY_BENCH_MS_WRITE_SECRET"
WRITE_PERMISSIONS = ["DelegatedPermissionGrant.ReadWrite.All", "AppRoleAssignment.ReadWrite.All", "Application.ReadWrite.All"]
HEADROOM = 0.95


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grants", type=int, default=10_000, help="grants to revoke per provider")
    parser.add_argument("--google-quota", type=int, default=24_000, help="Admin SDK calls a minute (the emulator's quota)")
    parser.add_argument("--graph-units", type=int, default=800, help="Graph resource units a second (the emulator's budget)")
    parser.add_argument("--provider", choices=("google", "microsoft"), action="append", help="only this provider (repeatable)")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    providers = args.provider or ["google", "microsoft"]
    figures = {"grants": args.grants}
    with tempfile.TemporaryDirectory(prefix="revoke-bench-") as temp:
        workdir = Path(temp)
        if "google" in providers:
            figures["google"] = bench_google(args, workdir / "google")
        if "microsoft" in providers:
            figures["microsoft"] = bench_microsoft(args, workdir / "microsoft")
    print(f"\nRevoking {args.grants:,} grants per provider (`revoke apply`, wall time from outside)")
    print(f"{'provider':<10} {'apply s':>8} {'floor s':>8} {'ratio':>6} {'done':>7} {'untouched ok':>12}")
    for name in providers:
        row = figures[name]
        print(f"{name:<10} {row['apply_seconds']:>8.1f} {row['floor_seconds']:>8.1f} {row['ratio']:>6.2f} {row['done']:>7,} "
              f"{'yes' if row['others_untouched'] and row['all_removed'] else 'NO':>12}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


def run(workdir: Path, *command: str, actor: str = "bench") -> str:
    result = subprocess.run([sys.executable, "-m", "scanner", "--db", str(workdir / "inventory.db"),
                             "--config", str(workdir / "app-inventory.toml"), *command],
                            capture_output=True, text=True, env={**os.environ, "APP_INVENTORY_ACTOR": actor})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def plan_and_apply(workdir: Path, app_id: str, grants: int) -> tuple[int, float, dict]:
    say("  scan ...")
    run(workdir, "-q", "scan", "--full")
    say("  revoke plan ...")
    started = time.monotonic()
    output = run(workdir, "revoke", "plan", "--app", app_id, "--max", str(grants))
    plan_id = int(next(line for line in output.splitlines() if line.startswith("Plan ")).split()[1])
    say(f"  plan {plan_id} made in {time.monotonic() - started:.1f} s; revoke apply ...")
    started = time.monotonic()
    run(workdir, "revoke", "apply", str(plan_id), "--yes", "--max", str(grants), actor="bench-approver")
    seconds = time.monotonic() - started
    import sqlite3

    with sqlite3.connect(workdir / "inventory.db") as connection:
        states = dict(connection.execute("select state, count(*) from revoke_actions where plan_id = ? group by state", [plan_id]))
    return plan_id, seconds, states


# --- Google -------------------------------------------------------------------------------

def google_tenant(grants: int, *, revoked: bool = False) -> GoogleTenant:
    """`grants` accounts holding the app to revoke (not any more, with `revoked`); every tenth a kept app too."""
    tenant = GoogleTenant()
    tenant.add_client(GOOGLE_APP)
    other = tenant.add_client(OAuthClient("888888888888-other.apps.googleusercontent.com", "Kept App"))
    tenant.add_user(DirectoryUser("100000000000000000000", GOOGLE_ADMIN, "IT", "Admin", is_admin=True))
    for n in range(grants):
        user = tenant.add_user(DirectoryUser(f"1{n + 1:020d}", f"user{n}@district.example", "User", str(n)))
        if not revoked:
            tenant.authorize(user.id, GOOGLE_APP, ["openid", "https://www.googleapis.com/auth/drive"])
        if n % 10 == 0:
            tenant.authorize(user.id, other, ["openid"])
    return tenant


def bench_google(args, workdir: Path) -> dict:
    workdir.mkdir(parents=True)
    say(f"Google: {args.grants:,} tokens, quota {args.google_quota:,} calls a minute")
    tenant = google_tenant(args.grants)
    with GoogleEmulatorProcess(tenant.to_json(), knobs={"quota_per_minute": args.google_quota}) as emulator:
        key = new_service_account_key(token_uri=emulator.token_uri)
        emulator.delegate(key)
        (workdir / "sa.json").write_text(json.dumps(key), encoding="utf-8")
        (workdir / "app-inventory.toml").write_text(f"""
[google]
admin_email = "{GOOGLE_ADMIN}"
service_account_file = "sa.json"
api_root = "{emulator.api_root}"
requests_per_minute = {args.google_quota}

[google.revoke]
requests_per_minute = {args.google_quota}
""", encoding="utf-8")
        plan_id, seconds, states = plan_and_apply(workdir, f"google:{GOOGLE_APP.client_id}", args.grants)
        digest = emulator.digest()
        stats = emulator.stats()
    floor = 2 * args.grants / (args.google_quota / 60)
    expected = google_tenant(args.grants, revoked=True).grants_digest()
    say(f"Google: apply {seconds:.1f} s, floor {floor:.1f} s, {stats['calls'].get('tokens.delete', 0):,} deletes")
    return {"plan_id": plan_id, "apply_seconds": seconds, "floor_seconds": floor, "ratio": seconds / floor,
            "done": states.get("done", 0), "states": states, "deletes": stats["calls"].get("tokens.delete", 0),
            "quota_rejected": stats["quota_rejected"],
            # The tenant afterwards is exactly the tenant without the revoked app's tokens.
            "all_removed": digest["sha256"] == expected["sha256"], "others_untouched": digest["sha256"] == expected["sha256"]}


# --- Microsoft ----------------------------------------------------------------------------

def bench_microsoft(args, workdir: Path) -> dict:
    workdir.mkdir(parents=True)
    say(f"Microsoft: {args.grants:,} delegated grants, {args.graph_units} resource units a second")
    tenant = build_tenant(users=args.grants, seed=2026)
    graph = tenant.sp_by_app_id[GRAPH_APP_ID]["id"]
    members = [user["id"] for user in tenant.users if user.get("userType") != "Guest"][: args.grants]
    own = {None, tenant.tenant_id, MICROSOFT_CORP_TENANT, MICROSOFT_SERVICES_TENANT}
    third_party = [sp for sp in tenant.service_principals if sp.get("appOwnerOrganizationId") not in own
                   and sp["appId"] != tenant.registration.client_id and sp.get("servicePrincipalType") == "Application"]
    target, kept = third_party[0], third_party[1]
    tenant.grants = [DelegatedGrant(target["id"], "Principal", user, graph, "openid profile User.Read Files.Read")
                     for user in members]
    tenant.grants += [DelegatedGrant(kept["id"], "Principal", user, graph, "User.Read") for user in members[::10]]
    tenant.add_registration(WRITE_CLIENT, "write-secret", WRITE_PERMISSIONS)
    tenant.reindex()
    knobs = {"tcp_nodelay": True, "ru_budget": args.graph_units * 10, "ru_window": 10.0}
    with MicrosoftEmulatorProcess(tenant, knobs=knobs, start_timeout=1800) as emulator:
        os.environ["REQUESTS_CA_BUNDLE"] = emulator.ca_pem_path
        os.environ[SECRET_ENV], os.environ[WRITE_SECRET_ENV] = MICROSOFT_SECRET, "write-secret"
        (workdir / "app-inventory.toml").write_text(f"""
[microsoft]
tenant_id = "{emulator.tenant_id}"
client_id = "{emulator.client_id}"
client_secret_env = "{SECRET_ENV}"
authority_host = "{emulator.authority_host}"
graph_url = "{emulator.graph_url}"

[microsoft.revoke]
client_id = "{WRITE_CLIENT}"
client_secret_env = "{WRITE_SECRET_ENV}"
resource_units_per_second = {int(args.graph_units * HEADROOM)}
""", encoding="utf-8")
        emulator.configure(**knobs)  # a fresh throttling window after the scan and the plan
        plan_id, seconds, states = plan_and_apply(workdir, f"microsoft:{target['appId']}", args.grants)
        stats = emulator.stats()
        after = emulator.tenant_json()
    remaining = [g for g in after["oauth2_permission_grants"]]
    floor = args.grants * 4 / args.graph_units
    say(f"Microsoft: apply {seconds:.1f} s, floor {floor:.1f} s, {stats['throttled']} throttled")
    return {"plan_id": plan_id, "apply_seconds": seconds, "floor_seconds": floor, "ratio": seconds / floor,
            "done": states.get("done", 0), "states": states, "throttled": stats["throttled"],
            "all_removed": not any(g["client_id"] == target["id"] for g in remaining),
            "others_untouched": sum(1 for g in remaining if g["client_id"] == kept["id"]) == len(members[::10])}


if __name__ == "__main__":
    main()
