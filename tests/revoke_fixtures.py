"""Shared helpers for the revoke tests: a small Google district with apps of each status."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from emulators.google.tenant import DirectoryUser, GoogleTenant, OAuthClient
from scanner.cli import cli

PROFILE = ["openid", "https://www.googleapis.com/auth/userinfo.email"]
DRIVE = "https://www.googleapis.com/auth/drive"
MAIL = "https://mail.google.com/"

DENIED = OAuthClient("111111111111-denied.apps.googleusercontent.com", "Sketchy Notes")
UNREVIEWED = OAuthClient("222222222222-unrev.apps.googleusercontent.com", "Quiz Maker")
APPROVED = OAuthClient("333333333333-approved.apps.googleusercontent.com", "Good Reader")
INTERNAL = OAuthClient("123456789012-internal.apps.googleusercontent.com", "District Portal")

CATALOG = f"""id,name,vendor,status,google_client_ids,microsoft_app_ids,approved_scopes,audience,dpa_url,dpa_expires,alternative,notes
sketchy,Sketchy Notes,Sketchy Inc,Denied,{DENIED.client_id},,,All,,,,
good,Good Reader,Good Co,Approved,{APPROVED.client_id},,openid;userinfo.email,All,,,,
"""


def google_district_tenant(users: int = 12) -> GoogleTenant:
    """Staff and students; every user holds the denied, unreviewed, approved (with Drive beyond
    what was approved) and internal apps."""
    tenant = GoogleTenant()
    for client in (DENIED, UNREVIEWED, APPROVED, INTERNAL):
        tenant.add_client(client)
    tenant.add_user(DirectoryUser("100000000000000000000", "it-admin@district.example", "IT", "Admin", is_admin=True))
    for n in range(users):
        student = n % 3 == 0
        user = tenant.add_user(DirectoryUser(
            f"1{n + 1:020d}", f"person{n}@district.example", "Person", str(n), org_unit_path="/Students" if student else "/Staff"))
        tenant.authorize(user.id, DENIED, PROFILE + [DRIVE])
        tenant.authorize(user.id, UNREVIEWED, PROFILE)
        tenant.authorize(user.id, APPROVED, PROFILE + [DRIVE])
        tenant.authorize(user.id, INTERNAL, PROFILE + [MAIL])
    return tenant


def tokens_of(tenant: GoogleTenant) -> set[tuple[str, str, tuple[str, ...]]]:
    with tenant.lock:
        return {(user_id, token.client.client_id, tuple(sorted(token.scopes))) for user_id, token in tenant.all_tokens()}


def revoke_events(tenant: GoogleTenant) -> list[tuple[str, str]]:
    """(user id, client id) of every revoke the emulator recorded (one per token it deleted)."""
    with tenant.lock:
        events = [tenant.event(i) for i in range(len(tenant.events))]
    return [(event.user.id, event.client.client_id) for event in events if event.name == "revoke"]


def invoke(place, *args: str, actor: str = "alice", input: str | None = None):
    """Run `app-inventory --db ... --config ... args` in-process."""
    return CliRunner().invoke(cli, ["--db", place.db_path, "--config", str(place.config_path), *args],
                              env={"APP_INVENTORY_ACTOR": actor}, input=input, catch_exceptions=False)


def import_catalog(place, text: str = CATALOG) -> None:
    path = Path(place.directory) / "catalog.csv"
    path.write_text(text, encoding="utf-8")
    result = invoke(place, "catalog", "import", str(path))
    assert result.exit_code == 0, result.output


def plan_id_from(output: str) -> int:
    first = next((line for line in output.splitlines() if line.startswith("Plan ")), None)
    assert first is not None, output
    return int(first.split()[1])


def actions(place, plan_id: int) -> list[dict]:
    from sqlite_utils import Database

    return [{**row, "target": json.loads(row["target"])} for row in
            Database(place.db_path).query("select * from revoke_actions where plan_id = ? order by id", [plan_id])]
