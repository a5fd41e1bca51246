"""`app-inventory demo`: a synthetic district, scanned for real, opened in Datasette.

    district -> Google Admin SDK emulator (HTTP) + Microsoft Graph emulator (HTTPS) on 127.0.0.1
             -> the real providers, through a generated configuration, exactly as `scan` runs them
             -> example catalog imported, apps matched -> Datasette (unless --no-serve), where IT
                staff sign in with the district's Google or Microsoft account (the same emulators
                play Sign in with Google and Sign in with Microsoft) or the demo password

Nothing leaves this machine: the service account key, the Entra client secret, the sign-in
clients' secrets and the emulators' certificate are made for this run and deleted when it ends.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

from emulators.apps import DISTRICT_PROJECT_NUMBER
from emulators.district import District
from emulators.google.chrome import CHROME_SCOPES
from emulators.google.server import POSTURE_SCOPES, SCANNER_SCOPES, GoogleEmulator, new_service_account_key
from emulators.microsoft.server import MicrosoftEmulator
from scanner import store
from scanner.catalog import read_catalog
from scanner.config import Config, ConfigError, load_config
from scanner.scan import ScanLock, run_scans
from scanner.shipped import example_catalog

from . import tenants
from .apps import DISTRICT_TENANT_ID

DEFAULT_USERS = 3000
DEMO_IT_USER = "demo"
DEMO_IT_PASSWORD = "springfield-demo"
# The demo password's hash, made once with `app-inventory hash-password` (a test checks it):
# the demo is public, so is this, and the core needs no import of the sign-in plugin for it.
DEMO_IT_PASSWORD_HASH = "pbkdf2_sha256$480000$springfield-demo-salt$7QtiKSjowgCkYKcKxsFtXKZ4lxSghouxpopp2h1jhcw="
# Written into the header of every inventory the demo creates (SQLite's application_id), so
# the demo deletes a file only when it made it: "AIdm".
DEMO_APPLICATION_ID = 0x4149646D
SECRET_ENV = "APP_INVENTORY_DEMO_MS_SECRET"
HASH_ENV = "APP_INVENTORY_DEMO_HASH"
# The demo's sign-in clients (apart from the scanner's, as a district keeps them).
GOOGLE_SIGN_IN_CLIENT = "274102026-springfield-signin.apps.googleusercontent.com"
MICROSOFT_SIGN_IN_CLIENT = "6d1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
GOOGLE_SIGN_IN_ENV = "APP_INVENTORY_DEMO_GOOGLE_SIGNIN_SECRET"
MICROSOFT_SIGN_IN_ENV = "APP_INVENTORY_DEMO_MS_SIGNIN_SECRET"
DEFAULT_PORT = 8001


@dataclass
class DemoResult:
    district: District
    config: Config
    scans: list[dict]
    seconds: float


def run_demo(db_path: str, *, users: int = DEFAULT_USERS, serve: bool = True, port: int | None = None,
             echo: Callable[[str], None] = print) -> DemoResult:
    """Build the district, scan it through the emulators into db_path, then serve it (blocks)."""
    started = time.monotonic()
    prepare_demo_inventory(db_path)
    district = tenants.demo_district(users)
    echo(f"Demo district: {district.name}, {len(district.people):,} accounts "
         f"({sum(p.role == 'student' for p in district.people):,} students) in 5 schools, {len(district.apps)} apps.")
    with tempfile.TemporaryDirectory(prefix="app-inventory-demo-") as folder:
        workdir = Path(folder)
        ms_secret = secrets.token_urlsafe(24)
        sign_in = DemoSignIn(port or DEFAULT_PORT)
        # The emulators stay up while Datasette serves: they are also the identity providers.
        with GoogleEmulator(tenants.demo_google_tenant(district)) as google, \
                MicrosoftEmulator(tenants.demo_microsoft_tenant(district, client_secret=ms_secret), sign_in_pages=True) as microsoft:
            key = new_service_account_key(token_uri=google.token_uri)
            google.delegate(key, SCANNER_SCOPES + POSTURE_SCOPES + CHROME_SCOPES)  # the posture checks' and Chrome's too
            key_file = workdir / "demo-service-account.json"
            key_file.write_text(json.dumps(key), encoding="utf-8")
            key_file.chmod(0o600)
            sign_in.register(district, google, microsoft)
            config = load_config(write_demo_config(workdir, district, google, microsoft, key_file, sign_in))
            echo(f"Emulated Google Workspace at {google.api_root} and Microsoft 365 at {microsoft.graph_url} (127.0.0.1 only).")
            with environment({SECRET_ENV: ms_secret, "REQUESTS_CA_BUNDLE": microsoft.ca_pem_path, **sign_in.environment}):
                import_catalog(db_path)
                outcome = run_scans(db_path, config, force_full=True)
                for row in outcome.scans:
                    echo(describe(row))
                if outcome.failures:
                    raise RuntimeError("the demo scan failed: " + "; ".join(outcome.failures))
                result = DemoResult(district, config, outcome.scans, time.monotonic() - started)
                echo(summary(db_path, result))
                if serve:
                    from scanner.serve import serve as serve_datasette

                    with environment({HASH_ENV: DEMO_IT_PASSWORD_HASH}):
                        echo(sign_in.instructions(district))
                        serve_datasette(db_path, config, port=port, public=True, echo=echo)
    return result


def demo_it_person(district: District):
    """The IT technician whose district account signs in as IT staff (with Google or Microsoft)."""
    staff = [person for person in district.people if person.role == "staff" and not person.suspended]
    return next((person for person in staff if person.title == "IT Technician"), staff[0])


class DemoSignIn:
    """Sign in with Google and Microsoft for the demo: a sign-in client registered with each
    emulator (redirect URIs on 127.0.0.1 and localhost at the demo's port), fresh secrets, and
    the district's IT technician (and Google's super admin) as IT staff."""

    def __init__(self, port: int):
        self.port = port
        self.google_secret, self.microsoft_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.google_issuer = self.microsoft_authority = ""

    @property
    def environment(self) -> dict[str, str]:
        return {GOOGLE_SIGN_IN_ENV: self.google_secret, MICROSOFT_SIGN_IN_ENV: self.microsoft_secret}

    def redirect_uris(self, provider: str) -> list[str]:
        return [f"http://{host}:{self.port}/-/sign-in/{provider}/callback" for host in ("127.0.0.1", "localhost")]

    def register(self, district: District, google, microsoft) -> None:
        google.register_sign_in_client(GOOGLE_SIGN_IN_CLIENT, self.google_secret, self.redirect_uris("google"))
        microsoft.register_sign_in_app(MICROSOFT_SIGN_IN_CLIENT, self.microsoft_secret, self.redirect_uris("microsoft"))
        it_person = demo_it_person(district)
        # As if this browser had signed in with them before: first on the providers' pages.
        google.remember_accounts([it_person.email, tenants.admin_email(district)])
        microsoft.remember_accounts([it_person.email])
        self.google_issuer, self.microsoft_authority = google.issuer, microsoft.authority_host

    def config_lines(self, district: District) -> str:
        it_emails = [demo_it_person(district).email, tenants.admin_email(district)]
        return f"""it_emails = {json.dumps(it_emails)}
google_client_id = "{GOOGLE_SIGN_IN_CLIENT}"
google_client_secret_env = "{GOOGLE_SIGN_IN_ENV}"
google_domain = "{district.domain}"
google_issuer = "{self.google_issuer}"
microsoft_client_id = "{MICROSOFT_SIGN_IN_CLIENT}"
microsoft_client_secret_env = "{MICROSOFT_SIGN_IN_ENV}"
microsoft_tenant_id = "{DISTRICT_TENANT_ID}"
microsoft_authority_host = "{self.microsoft_authority}"
staff_sign_in = true
"""

    def instructions(self, district: District) -> str:
        person = demo_it_person(district)
        return (f"Sign in as IT staff: click \"Sign in with Google\" or \"Sign in with Microsoft\" and choose "
                f"{person.given} {person.family} ({person.email}), the district's IT technician; or use the password "
                f"account: username {DEMO_IT_USER!r}, password {DEMO_IT_PASSWORD!r}. Any other account of the district "
                f"signs in as staff, to its own apps and requests (/-/requests).")


def prepare_demo_inventory(db_path: str) -> None:
    """Start the demo from an empty inventory of its own, never overwriting a file it did not create."""
    path = Path(db_path)
    if path.exists():
        if not is_demo_inventory(path):
            raise ConfigError(
                f"{db_path} exists and was not made by the demo; the demo will not overwrite it. "
                "Pass another file with --db (the demo's default is demo.db), or delete it yourself if it is an old demo."
            )
        with ScanLock(db_path):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    store.create_private_file(path)
    connection = sqlite3.connect(path)
    try:
        connection.execute(f"pragma application_id = {DEMO_APPLICATION_ID}")
        connection.commit()
    finally:
        connection.close()


def is_demo_inventory(path: str | Path) -> bool:
    """True only for a file the demo created (its SQLite header carries the demo's application id)."""
    try:
        # immutable: read the header without creating -wal or -shm files beside someone else's file.
        with closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as connection:
            return connection.execute("pragma application_id").fetchone()[0] == DEMO_APPLICATION_ID
    except sqlite3.DatabaseError:
        return False


def write_demo_config(folder: Path, district: District, google, microsoft, key_file: Path, sign_in: DemoSignIn) -> Path:
    """The configuration a district would write, pointed at the emulators."""
    path = folder / "app-inventory.toml"
    path.write_text(f"""
[google]
admin_email = "{tenants.admin_email(district)}"
service_account_file = "{key_file}"
api_root = "{google.api_root}"
policy_api_root = "{google.api_root}"
internal_project_numbers = ["{DISTRICT_PROJECT_NUMBER}"]

[chrome]
api_root = "{google.api_root}"
requests_per_minute = 6000

[microsoft]
tenant_id = "{DISTRICT_TENANT_ID}"
client_id = "{tenants.MICROSOFT_CLIENT_ID}"
client_secret_env = "{SECRET_ENV}"
authority_host = "{microsoft.authority_host}"
graph_url = "{microsoft.graph_url}"

[roles]
student_domains = ["{district.student_domain}"]
student_org_units = ["/Students"]
student_license_skus = ["{tenants.STUDENT_SKU}"]

[serve]
public = true
district_name = "{district.name}"
public_contact = "https://www.{district.domain}/privacy"

[signin]
password_accounts = {{ {DEMO_IT_USER} = "{HASH_ENV}" }}
{sign_in.config_lines(district)}""", encoding="utf-8")
    return path


def import_catalog(db_path: str) -> None:
    with ScanLock(db_path):
        store.replace_catalog(store.open_db(db_path), read_catalog(example_catalog()))


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for a block (the scan reads its secret and CA from them)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def describe(row: dict) -> str:
    if row["status"] != "succeeded":
        return f"{row['provider']}: scan failed: {row['error']}"
    return (f"{row['provider']}: {row['users_seen']:,} accounts, {row['apps_seen']:,} apps, "
            f"{row['grants_seen']:,} grants, {row['api_calls']:,} API calls")


# Apps are products (Kahoot! on Google and on Microsoft is one) and people are people, as on the dashboard.
SUMMARY_COUNTS = {
    "apps": "select count(*) from products where clients > 0",
    "clients": "select count(*) from apps",
    "unapproved_apps": "select count(*) from product_summary where ownership = 'third_party' "
                       "and status in ('unreviewed', 'pending', 'denied') and (people > 0 or tenant_wide = 1)",
    "unapproved_people": "select count(distinct person_id) from unapproved_usage",
    "scope_creep": "select count(*) from scope_creep",
    "high_risk": "select count(*) from products where risk = 'high' and (people > 0 or tenant_wide = 1)",
    "agreements": "select count(*) from dpa_expiring where days_left < 60",
    "alerts": "select count(*) from alerts where status = 'pending'",
    "posture_failing": "select count(*) from posture_current where result = 'fail'",
    "posture_unknown": "select count(*) from posture_current where result = 'unknown'",
    "consent_requests": "select coalesce(sum(requests), 0) from consent_request_summary",
}


def summary_counts(db_path: str) -> dict[str, int]:
    db = store.open_db(db_path)
    return {name: db.execute(sql).fetchone()[0] or 0 for name, sql in SUMMARY_COUNTS.items()}


def summary(db_path: str, result: DemoResult) -> str:
    """What the inventory now shows, in the words of the views IT will open."""
    n = summary_counts(db_path)
    return "\n".join([
        f"Scanned and matched in {result.seconds:.0f} s into {db_path}:",
        f"  {n['apps']:,} apps ({n['clients']:,} Google and Microsoft clients and Chrome extensions); "
        f"{n['unapproved_apps']:,} third-party apps in use are not approved",
        f"  {n['unapproved_people']:,} people use an unapproved app; {n['scope_creep']:,} grants hold more than the catalog approved",
        f"  {n['high_risk']:,} apps in use hold high-risk scopes; {n['agreements']:,} agreements expired or expire within 60 days",
        f"  {n['posture_failing']:,} consent settings fail their check ({n['posture_unknown']:,} unknown); "
        f"{n['consent_requests']:,} requests for admin consent wait for a decision",
        f"  {n['alerts']:,} alerts queued; to preview them, give a config file an [alerts] section (docs/demo.md) and run",
        f"    app-inventory --db {db_path} --config FILE alerts send --dry-run",
    ])
