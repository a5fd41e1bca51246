"""The Microsoft 365 provider against the emulated tenant, over HTTPS, through MSAL and requests."""

from __future__ import annotations

import json
import logging
import time

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from sqlite_utils import Database

from plugins.microsoft import auth as microsoft_auth
from scanner.cli import cli
from emulators.microsoft.server import MicrosoftEmulator
from emulators.apps import RETIRED_GRAPH_ROLE, microsoft_app_id
from emulators.microsoft.tenant import GRAPH_APP_ID, build_tenant, graph_role_id
from tests.rows import by_id

from .microsoft_fixtures import SECRET_ENV, expected_inventory, recorded_inventory, scan, write_config

KAMI = microsoft_app_id("Kami")
CLEVER = microsoft_app_id("Clever")
GRAPH_CLI = microsoft_app_id("Microsoft Graph Command Line Tools")
TEAMS_SERVICES = microsoft_app_id("Microsoft Teams Services")
SECURLY = microsoft_app_id("Securly")
BACKUP = microsoft_app_id("Cloud Backup for Schools")


def test_full_scan_records_exactly_the_tenants_grants_across_pages(ms_emulator, ms_tenant, tmp_path, db_path):
    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    assert row["mode"] == "full"
    assert row["tenant"] == "springfield-schools.example"
    assert recorded_inventory(db_path) == expected_inventory(ms_tenant)
    db = Database(db_path)
    assert db.execute("select count(*) from users where provider = 'microsoft'").fetchone()[0] == len(ms_tenant.users)
    # Pages of 50: users, the tenant-wide list and the biggest apps' grant lists all paged.
    endpoints = ms_emulator.stats()["endpoints"]
    assert endpoints["GET /v1.0/users"] == -(-len(ms_tenant.users) // 50)
    assert endpoints["GET /v1.0/oauth2PermissionGrants"] == -(-len(ms_tenant.grants) // 50)
    biggest = max(len(g) for g in ms_tenant.grants_by_client.values())
    assert biggest > 50
    assert row["api_calls"] >= sum(endpoints.values()) - endpoints["POST /v1.0/$batch"]


def test_roles_schools_and_disabled_accounts(ms_emulator, ms_tenant, tmp_path, db_path):
    scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    users = {row["id"].removeprefix("microsoft:"): row for row in Database(db_path)["users"].rows}
    for user in ms_tenant.users:
        row = users[user["id"]]
        student = user["jobTitle"] == "Student"
        assert row["role"] == ("student" if student else "staff"), user["userPrincipalName"]
        assert row["org_unit"] == (user["department"] or "")
        assert row["suspended"] == (not user["accountEnabled"])
        assert row["email"] == user["mail"]


def test_student_groups_classify_by_membership(ms_emulator, ms_tenant, tmp_path, db_path):
    students = next(g for g in ms_tenant.groups if g["displayName"] == "All Students")
    roles = f'[roles]\nstudent_groups = ["{students["id"]}"]\n'
    scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant, roles=roles))

    roles_seen = dict(Database(db_path).execute("select id, role from users"))
    members = set(students["members"])
    assert {user_id for user_id, role in roles_seen.items() if role == "student"} == {f"microsoft:{m}" for m in members}
    assert ms_emulator.stats()["endpoints"]["GET /v1.0/groups/{id}/members"] >= len(members) // 50


def test_unknown_student_group_is_a_clear_error(ms_emulator, ms_tenant, tmp_path, db_path):
    roles = '[roles]\nstudent_groups = ["00000000-1111-2222-3333-444444444444"]\n'
    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant, roles=roles))

    assert row["status"] == "failed"
    assert "student_groups: there is no group 00000000-1111-2222-3333-444444444444" in row["error"]


def test_admin_consent_for_everyone_is_one_tenant_wide_grant(ms_emulator, ms_tenant, tmp_path, db_path):
    scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))
    db = Database(db_path)

    clever = db.execute("select user_id, tenant_wide, grant_type, resource, scopes from grants where app_id = ? order by grant_type",
                        [f"microsoft:{CLEVER}"]).fetchall()
    # The admin's consent for everyone, and the application permissions: both reach every account.
    assert [(g[2], g[3], sorted(json.loads(g[4]))) for g in clever] == [
        ("application", "Microsoft Graph", ["EduRoster.Read.All", "User.Read.All"]),
        ("delegated", "Microsoft Graph", ["EduRoster.ReadBasic", "User.Read", "openid", "profile"]),
    ]
    assert all(user_id is None and tenant_wide == 1 for user_id, tenant_wide, *_ in clever)
    kami = db.execute("select count(*), sum(tenant_wide), sum(user_id is null) from grants where app_id = ?",
                      [f"microsoft:{KAMI}"]).fetchone()
    per_user = sum(1 for g in ms_tenant.grants if g.client_id == ms_tenant.sp_by_app_id[KAMI]["id"] and g.consent_type == "Principal")
    assert per_user > 0
    assert kami == (per_user + 1, 1, 1)
    assert by_id(db, "apps", f"microsoft:{KAMI}")["tenant_wide"] == 1


def test_first_party_internal_and_third_party_apps(ms_emulator, ms_tenant, tmp_path, db_path):
    scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))
    db = Database(db_path)
    apps = {row["client_id"]: row for row in db["apps"].rows}

    assert apps[GRAPH_CLI]["ownership"] == "first_party"  # recorded: users consented to it
    assert GRAPH_APP_ID not in apps  # a resource, never a client: not recorded
    assert TEAMS_SERVICES not in apps  # Microsoft's own application permissions are not inventoried
    assert apps[ms_tenant.registration.client_id]["ownership"] == "internal"  # the scanner's own registration
    assert apps[microsoft_app_id("district-automation")]["ownership"] == "internal"  # managed identity, no owner
    assert apps[SECURLY]["ownership"] == "third_party"
    assert apps[SECURLY]["verified_publisher"] == "Securly Inc."
    discord = apps[microsoft_app_id("Discord")]
    assert discord["verified_publisher"] is None and discord["publisher"] == "Discord Inc."
    details = json.loads(apps[SECURLY]["details"])
    assert details["servicePrincipalType"] == "Application" and details["signInAudience"] == "AzureADandPersonalMicrosoftAccount"
    # Only third-party apps reach the review views.
    reviewed = {row[0] for row in db.execute("select distinct app_id from unapproved_usage")}
    assert f"microsoft:{GRAPH_CLI}" not in reviewed
    assert f"microsoft:{microsoft_app_id('Springfield Staff Portal')}" not in reviewed
    assert f"microsoft:{microsoft_app_id('Kahoot!')}" in reviewed


def test_application_permissions_through_batch_with_a_throttled_item(ms_emulator, ms_tenant, tmp_path, db_path):
    backup_sp = ms_tenant.sp_by_app_id[BACKUP]["id"]
    ms_emulator.throttle_next(f"/servicePrincipals/{backup_sp}/appRoleAssignments", retry_after=0.6)

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    assert recorded_inventory(db_path)["application"] == expected_inventory(ms_tenant)["application"]
    scopes = json.loads(Database(db_path).execute(
        "select scopes from grants where app_id = ? and grant_type = 'application'", [f"microsoft:{BACKUP}"]).fetchone()[0])
    assert {"Mail.Read", "Files.Read.All", "Sites.Read.All", "User.Read.All", graph_role_id(RETIRED_GRAPH_ROLE)} == set(scopes)
    events = ms_emulator.events_for(f"/servicePrincipals/{backup_sp}/appRoleAssignments")
    assert [e[2] for e in events] == [429, 200] and all(e[3] for e in events)  # both inside $batch
    assert events[1][0] - events[0][0] >= 0.6  # the item's own Retry-After was honoured
    assert ms_emulator.stats()["endpoints"]["POST /v1.0/$batch"] >= 3  # 20 + 12 items, then the retried one
    assert row["retries"] >= 1


@pytest.mark.parametrize("style", ["fractional", "integer"])
def test_429_retry_after_is_honoured(ms_emulator, ms_tenant, tmp_path, db_path, style):
    ms_emulator.configure(retry_after=style)
    ms_emulator.throttle_next("/v1.0/users", retry_after=1.2)

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    events = ms_emulator.events_for("GET /v1.0/users")
    first_ok = next(e for e in events if e[1] == "GET /v1.0/users" and e[2] == 200)
    throttled = next(e for e in events if e[2] == 429)
    assert first_ok[0] - throttled[0] >= (1.2 if style == "fractional" else 2.0)
    assert row["retries"] >= 1


def test_429_without_retry_after_backs_off(ms_emulator, ms_tenant, tmp_path, db_path):
    ms_emulator.configure(retry_after="absent")
    ms_emulator.throttle_next("/v1.0/subscribedSkus", retry_after=5, times=3)

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    times = [e[0] for e in ms_emulator.events_for("GET /v1.0/subscribedSkus")]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) == 3 and gaps[0] >= 0.2 and gaps[1] >= 0.45 and gaps[2] >= 0.95  # 0.25, 0.5, 1 s and growing


def test_resource_unit_budget_throttles_and_the_scan_still_completes(ms_emulator, ms_tenant, tmp_path, db_path):
    config = write_config(tmp_path, ms_emulator, ms_tenant)
    scan(db_path, config)
    spent = ms_emulator.stats()["resource_units"]
    # Half the units the scan needs, over a window longer than the scan takes even on a
    # busy machine: this scan must be throttled, whatever the machine's speed.
    ms_emulator.configure(ru_budget=spent // 2, ru_window=3.0)
    ms_emulator.reset_stats()

    row = scan(db_path, config)

    assert row["status"] == "succeeded", row["error"]
    assert ms_emulator.stats()["throttled"] > 0
    assert recorded_inventory(db_path) == expected_inventory(ms_tenant)


def test_last_use_with_p1(ms_emulator, ms_tenant, tmp_path, db_path):
    scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    last_used = dict(Database(db_path).execute("select client_id, last_used from apps where last_used is not null"))
    kahoot = microsoft_app_id("Kahoot!")
    activity = ms_tenant.sign_in_activities[kahoot]
    assert last_used[kahoot] == activity["delegatedClientSignInActivity"]["lastSignInDateTime"]
    assert len(last_used) >= 10


def test_tenant_without_p1_scans_without_last_use_and_warns_once(ms_emulator, ms_tenant, tmp_path, db_path, caplog):
    with ms_emulator.mutate() as tenant:
        tenant.premium = False
    caplog.set_level(logging.WARNING)

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    warnings = [r.getMessage() for r in caplog.records if "last use" in r.getMessage()]
    assert len(warnings) == 1 and "Entra ID P1" in warnings[0]
    assert Database(db_path).execute("select count(*) from apps where last_used is not null").fetchone()[0] == 0
    assert recorded_inventory(db_path) == expected_inventory(ms_tenant)


def test_wrong_secret_says_what_to_do(ms_emulator, ms_tenant, tmp_path, db_path, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "not-the-secret")

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "failed"
    assert "client secret for app" in row["error"] and "AADSTS7000215" in row["error"]
    assert SECRET_ENV in row["error"] and "not-the-secret" not in row["error"]
    assert ms_emulator.stats()["graph_requests"] == 0


def test_expired_secret(ms_emulator, ms_tenant, tmp_path, db_path):
    with ms_emulator.mutate() as tenant:
        tenant.registration.secret_expired = True
    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))
    assert "has expired (AADSTS7000222)" in row["error"]


def test_wrong_tenant(ms_emulator, ms_tenant, tmp_path, db_path):
    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant, tenant_id="11111111-2222-3333-4444-555555555555"))
    assert row["status"] == "failed"
    assert "does not know the tenant '11111111-2222-3333-4444-555555555555'" in row["error"]
    assert "[microsoft] tenant_id" in row["error"]


def test_unknown_client_id(ms_emulator, ms_tenant, tmp_path, db_path):
    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant, client_id="99999999-2222-3333-4444-555555555555"))
    assert "no application with client id 99999999-2222-3333-4444-555555555555" in row["error"]
    assert "AADSTS700016" in row["error"]


def test_unreachable_authority(ms_emulator, ms_tenant, tmp_path, db_path):
    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant, authority_host="https://127.0.0.1:9"))
    assert row["status"] == "failed"
    assert row["error"].startswith("cannot reach Microsoft sign-in at https://127.0.0.1:9")
    assert "authority_host" in row["error"]


def test_untrusted_certificate_is_explained(ms_emulator, ms_tenant, tmp_path, db_path, monkeypatch):
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca))
    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))
    assert "certificate is not trusted" in row["error"] and "REQUESTS_CA_BUNDLE" in row["error"]


def test_missing_permission_names_it(ms_emulator, ms_tenant, tmp_path, db_path):
    client_id = ms_tenant.registration.client_id
    with ms_emulator.mutate() as tenant:
        tenant.remove_app_permission(client_id, "DelegatedPermissionGrant.Read.All")
        tenant.remove_app_permission(client_id, "Directory.Read.All")
        tenant.add_app_permission(client_id, "User.Read.All")
        tenant.add_app_permission(client_id, "Organization.Read.All")

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "failed"
    assert "refused to read the delegated permission grants" in row["error"]
    assert "DelegatedPermissionGrant.Read.All" in row["error"] and "Grant admin consent" in row["error"]
    assert Database(db_path).execute("select count(*) from grants").fetchone()[0] == 0  # nothing half-written


def test_missing_audit_log_permission_only_costs_last_use(ms_emulator, ms_tenant, tmp_path, db_path, caplog):
    client_id = ms_tenant.registration.client_id
    with ms_emulator.mutate() as tenant:
        tenant.remove_app_permission(client_id, "AuditLog.Read.All")
        tenant.remove_app_permission(client_id, "Directory.Read.All")
        tenant.add_app_permission(client_id, "User.Read.All")
        tenant.add_app_permission(client_id, "Organization.Read.All")
    caplog.set_level(logging.WARNING)

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    assert any("AuditLog.Read.All" in r.getMessage() for r in caplog.records)


def test_ten_percent_faults_give_the_same_inventory(ms_tenant, tmp_path, monkeypatch, caplog):
    inventories = []
    for rate in (0.0, 0.1):
        caplog.clear()
        with MicrosoftEmulator(ms_tenant, knobs={"max_page_size": 50, "fault_rate": rate, "fault_seed": 4,
                                                 "fault_retry_after": 0.05}) as emulator:
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_pem_path)
            monkeypatch.setenv(SECRET_ENV, ms_tenant.registration.client_secret)
            db_path = str(tmp_path / f"faults-{rate}.db")
            row = scan(db_path, write_config(tmp_path, emulator, ms_tenant))
            assert row["status"] == "succeeded", row["error"]
            inventories.append((recorded_inventory(db_path), _users_and_apps(db_path)))
            faults = sum(emulator.stats()["faults"].values())
        if rate:
            # Every fault is retried, except that the tenant-wide grants list gives up after three
            # in a row and the per-app lists take over (its last fault is then not retried).
            gave_up = sum("the tenant-wide grants list failed" in r.getMessage() for r in caplog.records)
            assert faults >= 3 and row["retries"] + gave_up >= faults
    assert inventories[0] == inventories[1]
    assert inventories[0][0] == expected_inventory(ms_tenant)


@pytest.mark.parametrize("kind", ["429", "500", "503", "504", "reset", "truncated"])
def test_each_kind_of_fault_is_survived(ms_emulator, ms_tenant, tmp_path, db_path, kind):
    ms_emulator.configure(fault_rate=0.12, fault_seed=11, fault_kinds=[kind], fault_retry_after=0.05)

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    assert recorded_inventory(db_path) == expected_inventory(ms_tenant)
    faults = ms_emulator.stats()["faults"]
    assert faults.get(kind, 0) + faults.get(f"batch item {kind}", 0) >= 3


def test_sign_in_5xx_is_retried_then_explained(ms_emulator, ms_tenant, tmp_path, db_path, monkeypatch):
    monkeypatch.setattr(microsoft_auth, "TOKEN_RETRY_WAIT", 1.1)  # the emulator's 500 says Retry-After: 1
    config = write_config(tmp_path, ms_emulator, ms_tenant)
    ms_emulator.configure(token_failures=1)
    assert scan(db_path, config)["status"] == "succeeded"

    ms_emulator.configure(token_failures=10)
    row = scan(db_path, config)
    assert row["status"] == "failed"
    assert "Microsoft sign-in failed 3 times (HTTP Error: 500)" in row["error"] and "try again later" in row["error"]


def test_tenant_wide_list_unavailable_falls_back_per_app(ms_emulator, ms_tenant, tmp_path, db_path, caplog):
    ms_emulator.configure(grants_list_unavailable=True)
    caplog.set_level(logging.DEBUG, logger="plugins.microsoft.provider")

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    assert recorded_inventory(db_path) == expected_inventory(ms_tenant)
    assert any("listing the grants of Microsoft's" in r.getMessage() for r in caplog.records)
    assert any("per-app fallback took" in r.getMessage() for r in caplog.records)
    listed = ms_emulator.stats()["endpoints"]["GET /v1.0/servicePrincipals/{id}/oauth2PermissionGrants"]
    assert listed >= len(ms_tenant.service_principals)  # every app, Microsoft's included


def test_incomplete_tenant_wide_list_is_caught_by_the_cross_check(ms_emulator, ms_tenant, tmp_path, db_path, caplog):
    ms_emulator.configure(grants_list_drop_rate=0.05, grants_list_short_pages=True)
    caplog.set_level(logging.WARNING)

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    assert recorded_inventory(db_path) == expected_inventory(ms_tenant)
    assert any("left out" in r.getMessage() and "grants the per-app lists hold" in r.getMessage() for r in caplog.records)


def test_changes_between_scans_are_new_and_revoked_grants(ms_emulator, ms_tenant, tmp_path, db_path):
    config = write_config(tmp_path, ms_emulator, ms_tenant)
    assert scan(db_path, config)["status"] == "succeeded"
    quizlet = microsoft_app_id("Quizlet")
    teacher = next(u["id"] for u in ms_tenant.users if u["jobTitle"] == "Teacher")
    with ms_emulator.mutate() as tenant:
        revoked = tenant.revoke_grants(KAMI)
        tenant.add_grant(quizlet, "openid profile User.Read Files.Read.All", user_id=teacher)
        tenant.add_app_permission(SECURLY, "Mail.Read")

    row = scan(db_path, config)

    assert row["status"] == "succeeded", row["error"]
    assert recorded_inventory(db_path) == expected_inventory(ms_tenant)
    db = Database(db_path)
    changes = dict(db.execute("select kind, count(*) from changes where scan_id = ? group by kind", [row["id"]]))
    assert changes["revoked_grant"] == revoked
    assert changes.get("new_grant", 0) + changes.get("new_scopes", 0) >= 2
    assert db.execute("select count(*) from grants where app_id = ? and revoked_at is null", [f"microsoft:{KAMI}"]).fetchone()[0] == 0


def test_certificate_credential(tmp_path, db_path, monkeypatch):
    ca = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = ca.issue_cert("district-app-inventory", key_type=trustme.KeyType.RSA)
    certificate_pem = leaf.cert_chain_pems[0].bytes()
    pem_file = tmp_path / "app-inventory.pem"
    pem_file.write_bytes(leaf.private_key_pem.bytes() + certificate_pem)
    thumbprint = _sha1_thumbprint(certificate_pem).upper()
    tenant = build_tenant(users=60, seed=3, client_secret=None, certificate_pem=certificate_pem.decode())
    with MicrosoftEmulator(tenant) as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_pem_path)
        good = f'certificate_file = "{pem_file}"\ncertificate_thumbprint = "{thumbprint}"'
        row = scan(db_path, write_config(tmp_path, emulator, tenant, microsoft_extra=good))
        assert row["status"] == "succeeded", row["error"]
        assert recorded_inventory(db_path) == expected_inventory(tenant)

        other = trustme.CA(key_type=trustme.KeyType.RSA).issue_cert("someone-else", key_type=trustme.KeyType.RSA)
        other_file = tmp_path / "other.pem"
        other_file.write_bytes(other.private_key_pem.bytes() + other.cert_chain_pems[0].bytes())
        other_thumbprint = _sha1_thumbprint(other.cert_chain_pems[0].bytes())
        wrong = f'certificate_file = "{other_file}"\ncertificate_thumbprint = "{other_thumbprint}"'
        row = scan(str(tmp_path / "other.db"), write_config(tmp_path, emulator, tenant, microsoft_extra=wrong))
        assert row["status"] == "failed"
        assert "certificate for app" in row["error"] and "Certificates & secrets" in row["error"]

        mismatch = f'certificate_file = "{pem_file}"\ncertificate_thumbprint = "{other_thumbprint}"'
        row = scan(str(tmp_path / "mismatch.db"), write_config(tmp_path, emulator, tenant, microsoft_extra=mismatch))
        assert "is not the thumbprint of the certificate" in row["error"]


def test_short_lived_tokens_are_renewed(ms_emulator, ms_tenant, tmp_path, db_path):
    ms_emulator.configure(token_lifetime=60)  # under MSAL's 5-minute margin: a new token for every request

    row = scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant))

    assert row["status"] == "succeeded", row["error"]
    stats = ms_emulator.stats()
    assert stats["token_requests"] >= stats["graph_requests"] // 2


def test_cli_scan_and_failure_exit_code(ms_emulator, ms_tenant, tmp_path, runner, monkeypatch):
    config = write_config(tmp_path, ms_emulator, ms_tenant)
    db = str(tmp_path / "cli.db")

    result = runner.invoke(cli, ["--db", db, "--config", str(config), "scan", "--provider", "microsoft"])
    assert result.exit_code == 0, result.output
    assert f"microsoft: full scan 1 succeeded: {len(ms_tenant.users):,} users" in result.output

    monkeypatch.setenv(SECRET_ENV, "wrong")
    result = runner.invoke(cli, ["--db", db, "--config", str(config), "scan", "--provider", "microsoft"])
    assert result.exit_code == 1
    assert "AADSTS7000215" in result.output and "wrong" not in result.output.replace("wrong secret", "")


def _sha1_thumbprint(certificate_pem: bytes) -> str:
    return x509.load_pem_x509_certificate(certificate_pem).fingerprint(hashes.SHA1()).hex()


def _users_and_apps(db_path: str) -> tuple:
    db = Database(db_path)
    users = set(db.execute("select id, email, role, org_unit, suspended from users"))
    apps = set(db.execute("select id, name, publisher, verified_publisher, ownership, last_used, tenant_wide from apps"))
    return users, apps


def test_roles_config_without_rules_gives_unknown(ms_emulator, ms_tenant, tmp_path, db_path):
    scan(db_path, write_config(tmp_path, ms_emulator, ms_tenant, roles=""))
    assert {row[0] for row in Database(db_path).execute("select distinct role from users")} == {"unknown"}


def test_slow_graph_is_scanned_concurrently(ms_tenant, tmp_path, db_path, monkeypatch):
    with MicrosoftEmulator(ms_tenant, knobs={"latency": 0.15, "max_page_size": 50}) as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_pem_path)
        monkeypatch.setenv(SECRET_ENV, ms_tenant.registration.client_secret)
        started = time.monotonic()
        row = scan(db_path, write_config(tmp_path, emulator, ms_tenant))
        elapsed = time.monotonic() - started
        requests_made = emulator.stats()["http_requests"]
    assert row["status"] == "succeeded", row["error"]
    assert elapsed < requests_made * 0.15 * 0.6  # well under one request at a time

