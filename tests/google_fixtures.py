"""Shared helpers for the Google tests: an emulated district over real HTTP, a service account
key made at run time, a config pointing the real provider at it, and an oracle that reads
the expected inventory straight from the tenant's data (never from the scanner's code)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlite_utils import Database

from scanner.config import load_config
from emulators.clock import Clock
from emulators.google.server import GoogleEmulator, new_service_account_key
from emulators.google.tenant import SCANNER_SCOPES, GoogleTenant
from scanner.scan import run_scans

ADMIN = "it-admin@district.example"
INTERNAL_PROJECT = "123456789012"
ROLES = """
[roles]
student_domains = ["students.district.example"]
student_org_units = ["/Students"]
"""


@pytest.fixture(scope="session")
def rsa_key():
    """One RSA key for the session (generating one takes a moment); never written to the repo."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class District:
    """An emulated tenant, its key file and config, and an inventory to scan into."""

    emulator: GoogleEmulator
    key: dict[str, str]
    directory: Path
    config_path: Path
    db_path: str
    scans: list[dict] = field(default_factory=list)

    @property
    def tenant(self) -> GoogleTenant:
        return self.emulator.tenant

    def write_config(self, *, admin_email: str = ADMIN, requests_per_minute: int = 2400, extra: str = "",
                     key_file: str = "sa.json") -> Path:
        self.config_path.write_text(f"""
[google]
admin_email = "{admin_email}"
service_account_file = "{key_file}"
api_root = "{self.emulator.api_root}"
requests_per_minute = {requests_per_minute}
internal_project_numbers = ["{INTERNAL_PROJECT}"]
{extra}
{ROLES}
""", encoding="utf-8")
        return self.config_path

    def scan(self, *, full: bool = False) -> dict:
        """One Google scan through the core, as `app-inventory scan --provider google` runs it."""
        outcome = run_scans(self.db_path, load_config(self.config_path), only=["google"], force_full=full,
                            show_progress=False)
        self.scans.append(outcome.scans[0])
        return outcome.scans[0]

    def db(self) -> Database:
        return Database(self.db_path)


@pytest.fixture
def district(tmp_path, rsa_key):
    """Start an emulator for a tenant (with knobs, and a clock), delegate the scanner's scopes to a fresh key, write the config."""
    started: list[GoogleEmulator] = []

    def make(tenant: GoogleTenant, *, knobs: dict[str, Any] | None = None, scopes=SCANNER_SCOPES,
             requests_per_minute: int = 2400, clock: Clock | None = None) -> District:
        emulator = GoogleEmulator(tenant, knobs=knobs or {}, clock=clock).start()
        started.append(emulator)
        key = new_service_account_key(token_uri=emulator.token_uri, private_key=rsa_key)
        emulator.delegate(key, scopes)
        directory = tmp_path / f"district{len(started)}"
        directory.mkdir()
        (directory / "sa.json").write_text(json.dumps(key), encoding="utf-8")
        made = District(emulator, key, directory, directory / "app-inventory.toml", str(directory / "inventory.db"))
        made.write_config(requests_per_minute=requests_per_minute)
        return made

    try:
        yield make
    finally:
        for emulator in started:
            emulator.stop()


def expected_grants(tenant: GoogleTenant) -> set[tuple[str, str, tuple[str, ...]]]:
    """(user id, client id, sorted scopes) of every token the tenant holds now."""
    return {(user_id, token.client.client_id, tuple(sorted(token.scopes))) for user_id, token in tenant.all_tokens()}


def inventory_grants(db_path: str) -> set[tuple[str, str, tuple[str, ...]]]:
    """The same, read from the inventory's active grants."""
    rows = Database(db_path).query("select user_id, app_id, scopes from grants where provider = 'google' and revoked_at is null")
    return {(row["user_id"].removeprefix("google:"), row["app_id"].removeprefix("google:"), tuple(sorted(json.loads(row["scopes"]))))
            for row in rows}


def key_fragments(key: dict[str, str]) -> list[str]:
    """Pieces of the private key that must never appear in errors or the database."""
    body = "".join(line for line in key["private_key"].splitlines() if "PRIVATE KEY" not in line)
    return [body[i:i + 24] for i in range(0, len(body) - 24, 200)]


def inventory_snapshot(db_path: str) -> dict[str, list[dict[str, Any]]]:
    """Every Google row of users, apps, grants (and the scopes table), without the columns that
    only say when a scan saw them (or in which order: the integer keys): two scans of the same
    tenant must give equal snapshots."""
    db = Database(db_path)
    when = {"first_seen", "last_seen", "seen_scan_id", "key"}
    snapshot = {}
    for table, where in (("users", "provider = 'google'"), ("apps", "provider = 'google'"),
                         ("grants", "provider = 'google'"), ("scopes", "1")):
        columns = ", ".join(c.name for c in db[table].columns if c.name not in when)
        snapshot[table] = list(db.query(f"select {columns} from {table} where {where} order by 1, 2"))
    return snapshot
