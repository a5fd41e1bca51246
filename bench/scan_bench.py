"""Scan an emulated district of --users accounts on Google and Microsoft, and print the figures.

    python bench/scan_bench.py --users 100000 [--latency 0.08] [--google-quota 60000] [--repeat N] [--json FILE]
                               [--providers google,chrome,microsoft]

What runs, in this order (the emulators serve from child processes, so the scanner's
memory is measured alone; every scan is `python -m scanner scan` in a child process too):

1. Google: an Admin SDK emulator with --users accounts (about 8 grants each, a long tail
   up to 40, over 72 apps), --latency seconds added to every request and a quota of
   --google-quota requests a minute; the scanner is configured with the same
   requests_per_minute.
   - a full scan; its wall time against the quota floor (API calls / quota per second);
   - 2% of accounts authorize or revoke an app, then an incremental scan (its API calls
     as a share of the full scan's);
   - the naive baseline: one unbatched tokens.list per account, sequentially, as common
     admin scripts do, timed on a 1,000-account sample and extrapolated linearly.
   - Chrome extensions (the chrome provider) in the same tenant's browsers (emulators.google.chrome
     district_fleet), paced to --chrome-quota: a full scan (the API has no change feed), its wall
     time against its own quota floor.
2. Microsoft: a Graph emulator with the same number of accounts, grants and latency.
   - the raw fetch floor: the same Graph responses the scan reads, merely paged through
     with plain sequential requests (no parsing into records, no database);
   - a full scan, then 2% of accounts change their consents and a second scan.
3. Datasette: app_summary, product_summary and unapproved_usage on the resulting inventory,
   as signed-in IT staff (through the sign-in form) with Datasette's own client (median of 5).

--providers runs only some of the three (e.g. `--providers google` for a million accounts:
the Google scans, the baseline and Datasette; figures of the others are left out). The
Google emulator makes its district on demand (emulators.google.on_demand), and its browsers'
extensions too (emulators.google.chrome_on_demand), so a million accounts cost it a few
hundred megabytes rather than gigabytes.

A steadier measure on a small shared machine: where it has two cores or more, each emulator
is pinned to the last core and every scan to the others (os.sched_setaffinity), so the
scanner and the service it calls stop trading places; --repeat N runs the Google full scan
N times on a fresh inventory and reports the median and the spread; and each scan's CPU time
(user + system, from the kernel) per 1,000 grants, which the machine's other work moves
much less than wall time.

The district has a catalog, as districts running this tool do: the example catalog's
decisions (examples/catalog.csv: most popular apps approved, some denied or pending),
given the emulated apps' ids by name. --no-catalog scans a district that reviewed
nothing yet, where every third-party grant is unapproved and alerts (the worst case
for the work after each scan).

--weeks N [--churn F] instead plays a school year of N weekly scans of both providers, with
F of the accounts changing their grants each week, on a clock the benchmark sets, and reports
how the inventory grows (bench/school_year.py).

Not a test: nothing here is asserted; the targets are in docs/scale.md.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests
from googleapiclient.discovery import build
from google.oauth2 import service_account
from sqlite_utils import Database

from emulators.apps import district_apps
from emulators.google.chrome import CHROME_SCOPES
from emulators.google.server import GoogleEmulatorProcess, new_service_account_key
from emulators.google.tenant import SCANNER_SCOPES
from emulators.microsoft.server import MicrosoftEmulatorProcess
from plugins.microsoft.records import MICROSOFT_TENANTS, SERVICE_PRINCIPAL_FIELDS, USER_FIELDS
from scanner.config import load_config
from scanner.shipped import example_catalog

GOOGLE_ADMIN = "it-admin@district.example"
MICROSOFT_SECRET = "emulator-secret-do-not-use"  # what build_tenant gives the scanner's registration
SECRET_ENV = "APP_INVENTORY_BENCH_MS_SECRET"
CHURN = 0.02
BASELINE_SAMPLE = 1000
GOOGLE_EXTRA_APPS = 40
DATASETTE_PAGES = ("app_summary", "product_summary", "unapproved_usage")
PROVIDERS = ("google", "chrome", "microsoft")
IT_USERNAME = "bench-it"
IT_HASH_ENV = "APP_INVENTORY_HASH_BENCH_IT"


@dataclass
class ScanFigures:
    """One `app-inventory scan` child process, measured from outside."""

    label: str
    status: str
    mode: str
    api_calls: int
    http_requests: int
    wall_seconds: float
    peak_rss_mb: float
    db_mb: float
    rows: int  # accounts, apps and grants written
    grants: int
    cpu_seconds: float  # the scan process's user + system time

    @property
    def cpu_seconds_per_1000_grants(self) -> float:
        return 1000 * self.cpu_seconds / max(self.grants, 1)

    @property
    def calls_per_second(self) -> float:
        return self.api_calls / self.wall_seconds

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall_seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000, help="accounts in the district (default 100000)")
    parser.add_argument("--latency", type=float, default=0.08, help="seconds each emulated request takes (default 0.08)")
    parser.add_argument("--google-quota", type=int, default=60_000, help="Google requests per minute (default 60000)")
    parser.add_argument("--chrome-quota", type=int, default=600, help="Chrome Management requests per minute (default 600)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--workdir", type=Path, help="keep the inventory here (default: a temporary folder)")
    parser.add_argument("--no-catalog", action="store_true", help="scan a district that has reviewed no app yet")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run the Google full scan this many times on a fresh inventory (median and spread)")
    parser.add_argument("--weeks", type=int, help="instead: a school year of this many weekly scans (bench/school_year.py)")
    parser.add_argument("--churn", type=float, default=CHURN, help=f"with --weeks: share of accounts changing grants a week (default {CHURN})")
    parser.add_argument("--verbose", action="store_true", help="show the scans' debugging log (the time each step of a scan's end takes)")
    parser.add_argument("--providers", default=",".join(PROVIDERS),
                        help="which to run, comma-separated (default google,chrome,microsoft; chrome needs google)")
    args = parser.parse_args(argv)
    if args.weeks is not None:
        return school_year(parser, args)
    args.providers = [name.strip() for name in args.providers.split(",") if name.strip()]
    if not args.providers or set(args.providers) - set(PROVIDERS):
        parser.error(f"--providers takes {', '.join(PROVIDERS)} (comma-separated), not {', '.join(args.providers)!r}")
    if "chrome" in args.providers and "google" not in args.providers:
        parser.error("--providers: chrome runs in the Google tenant, so it needs google too")
    if args.users < BASELINE_SAMPLE:
        parser.error(f"--users must be at least {BASELINE_SAMPLE} (the baseline's sample)")
    if args.verbose:
        SCAN_OPTIONS.append("--verbose")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    with tempfile.TemporaryDirectory(prefix="scan-bench-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        db_path = workdir / "bench.db"
        remove_database(db_path)
        google = bench_google(args, workdir, db_path) if "google" in args.providers else None
        section = google["config_section"] if google else ""
        microsoft = bench_microsoft(args, workdir, db_path, section) if "microsoft" in args.providers else None
        db_bytes = database_bytes(db_path)
        pages = time_datasette(db_path, workdir / "app-inventory.toml")
    figures = summarize(args, google, microsoft, pages, db_bytes)
    print_table(args, google, microsoft, pages, figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"\nFigures written to {args.json}")


def school_year(parser, args) -> None:
    """--weeks: the inventory's growth over a school year of weekly scans (bench/school_year.py)."""
    from school_year import print_school_year, run_school_year

    if args.weeks < 1 or not 0 < args.churn < 1:
        parser.error("--weeks must be at least 1 and --churn between 0 and 1")
    with tempfile.TemporaryDirectory(prefix="scan-bench-") as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        figures = run_school_year(args, workdir, workdir / "bench.db")
    print_school_year(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        print(f"\nFigures written to {args.json}")


# --- Google -------------------------------------------------------------------------------

def bench_google(args, workdir: Path, db_path: Path) -> dict:
    say(f"Google: building a {args.users:,}-account tenant in the emulator process ...")
    knobs = {"latency": args.latency, "quota_per_minute": args.google_quota}
    build = {"users": args.users, "seed": 1, "grants_per_user": 8, "extra_apps": GOOGLE_EXTRA_APPS, "on_demand": True}
    chrome = {"seed": 1} if "chrome" in args.providers else None
    with GoogleEmulatorProcess(build=build, knobs=knobs, chrome=chrome, start_timeout=3600) as emulator:
        pin_emulator(emulator.pid)
        key = new_service_account_key(token_uri=emulator.token_uri)
        emulator.delegate(key, SCANNER_SCOPES + CHROME_SCOPES)
        key_file = workdir / "service-account.json"
        key_file.write_text(json.dumps(key), encoding="utf-8")
        section = f"""
[google]
admin_email = "{GOOGLE_ADMIN}"
service_account_file = "{key_file}"
api_root = "{emulator.api_root}"
requests_per_minute = {args.google_quota}
"""
        config = write_config(workdir, section)
        repeats = []
        for attempt in range(args.repeat):
            if attempt:
                remove_database(db_path)
            if not args.no_catalog:
                import_catalog(db_path, config, google=google_app_ids())
            label = "Google full scan" + (f" ({attempt + 1}/{args.repeat})" if args.repeat > 1 else "")
            repeats.append(run_scan(label, db_path, config, "google", full=True, stats=emulator.stats,
                                    reset=emulator.reset_stats))
        full = repeats[-1]
        changed = emulator.mutate([{"op": "churn", "fraction": CHURN, "seed": 2}])
        say(f"Google: {CHURN:.0%} of accounts changed their grants: {changed}")
        incremental = run_scan("Google incremental scan", db_path, config, "google", full=False, stats=emulator.stats,
                               reset=emulator.reset_stats)
        baseline = naive_google_baseline(emulator, key)
        if not chrome:
            return {"full": full, "repeats": repeats, "incremental": incremental, "chrome": None,
                    "baseline_sample_seconds": baseline, "config_section": section}
        # Chrome extensions: the same tenant's browsers, paced to --chrome-quota (a full scan: there is no change feed).
        section += f"""
[chrome]
api_root = "{emulator.api_root}"
requests_per_minute = {args.chrome_quota}
"""
        config = write_config(workdir, section)
        chrome = run_scan("Chrome extensions scan", db_path, config, "chrome", full=True, stats=emulator.stats,
                          reset=emulator.reset_stats)
    return {"full": full, "repeats": repeats, "incremental": incremental, "chrome": chrome,
            "baseline_sample_seconds": baseline,
            "config_section": section}


def google_app_ids() -> dict[str, str]:
    """Name -> client id of the apps the emulated Google district holds."""
    return {app.name: app.google_id for app in district_apps(GOOGLE_EXTRA_APPS) if app.google_id}


def naive_google_baseline(emulator: GoogleEmulatorProcess, key: dict) -> float:
    """Seconds for one unbatched tokens.list per account, sequentially, over BASELINE_SAMPLE accounts."""
    say(f"Google: naive baseline, one tokens.list at a time for {BASELINE_SAMPLE:,} accounts ...")
    credentials = service_account.Credentials.from_service_account_info(key, scopes=SCANNER_SCOPES, subject=GOOGLE_ADMIN)
    directory = build("admin", "directory_v1", credentials=credentials, static_discovery=True,
                      client_options={"api_endpoint": emulator.api_root}, cache_discovery=False)
    ids: list[str] = []
    request = directory.users().list(customer="my_customer", maxResults=500, fields="nextPageToken,users(id)")
    while request is not None and len(ids) < BASELINE_SAMPLE:
        page = request.execute(num_retries=5)
        ids += [user["id"] for user in page.get("users", [])]
        request = directory.users().list_next(request, page)
    started = time.monotonic()
    for user_id in ids[:BASELINE_SAMPLE]:
        directory.tokens().list(userKey=user_id).execute(num_retries=5)
    return time.monotonic() - started


# --- Microsoft ----------------------------------------------------------------------------

def bench_microsoft(args, workdir: Path, db_path: Path, google_section: str) -> dict:
    say(f"Microsoft: building a {args.users:,}-account tenant in the emulator process ...")
    generate = {"users": args.users, "seed": 2026, "grants_per_user": 8, "extra_apps": 40, "on_demand": True}
    with MicrosoftEmulatorProcess(generate=generate, knobs={"latency": args.latency}, start_timeout=1800) as emulator:
        pin_emulator(emulator.pid)
        config = write_config(workdir, google_section, microsoft_section(emulator))
        floor = microsoft_fetch_floor(emulator)
        if not args.no_catalog:
            import_catalog(db_path, config, google=google_app_ids(), microsoft=floor["app_ids"])
        emulator.configure(latency=args.latency)  # a fresh throttling window for the scan
        full = run_scan("Microsoft full scan", db_path, config, "microsoft", full=True, stats=emulator.stats,
                        reset=emulator.reset_stats)
        checkpointed_bytes = database_bytes(db_path)  # both providers' full scans
        changed = emulator.mutate_tenant("churn", CHURN, seed=2)
        say(f"Microsoft: {CHURN:.0%} of accounts changed their consents: {changed}")
        second = run_scan("Microsoft second scan", db_path, config, "microsoft", full=False, stats=emulator.stats,
                          reset=emulator.reset_stats)
    return {"full": full, "second": second, "floor": floor, "db_bytes": checkpointed_bytes}


def microsoft_section(emulator: MicrosoftEmulatorProcess) -> str:
    """The [microsoft] section for the emulator, with the environment its client needs (CA bundle, secret) set."""
    os.environ["REQUESTS_CA_BUNDLE"] = emulator.ca_pem_path
    os.environ[SECRET_ENV] = MICROSOFT_SECRET
    return f"""
[microsoft]
tenant_id = "{emulator.tenant_id}"
client_id = "{emulator.client_id}"
client_secret_env = "{SECRET_ENV}"
authority_host = "{emulator.authority_host}"
graph_url = "{emulator.graph_url}"
"""


def microsoft_fetch_floor(emulator: MicrosoftEmulatorProcess) -> dict:
    """Page through what the scan reads, sequentially, with one plain requests session and nothing else:
    the organization, licences, service principals, users, the tenant-wide grant census, every
    non-Microsoft app's delegated grants, their application permissions ($batch of 20) and the
    sign-in activity report."""
    say("Microsoft: raw fetch floor (plain sequential requests over the same responses) ...")
    emulator.reset_stats()
    session = requests.Session()
    token = session.post(f"{emulator.authority_host}/{emulator.tenant_id}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": emulator.client_id, "client_secret": MICROSOFT_SECRET,
        "scope": f"{emulator.graph_url}/.default"}, timeout=60)
    token.raise_for_status()
    session.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
    graph = emulator.graph_url
    started = time.monotonic()

    def pages(path: str):
        url = graph + path
        while url:
            response = session.get(url, timeout=120)
            response.raise_for_status()
            body = response.json()
            yield body.get("value", [])
            url = body.get("@odata.nextLink")

    own_tenant = session.get(f"{graph}/v1.0/organization?$select=id", timeout=60).json()["value"][0]["id"]
    session.get(f"{graph}/v1.0/subscribedSkus?$select=skuId,skuPartNumber", timeout=60).raise_for_status()
    principals = [sp for page in pages(f"/v1.0/servicePrincipals?$select={SERVICE_PRINCIPAL_FIELDS}&$top=999") for sp in page]
    apps = [sp["id"] for sp in principals if sp.get("appOwnerOrganizationId") not in MICROSOFT_TENANTS]
    for path in (f"/v1.0/users?$select={USER_FIELDS}&$top=999", "/v1.0/oauth2PermissionGrants?$select=clientId&$top=999"):
        for _ in pages(path):
            pass
    for sp_id in apps:
        for _ in pages(f"/v1.0/servicePrincipals/{sp_id}/oauth2PermissionGrants?$top=999"):
            pass
    for start in range(0, len(apps), 20):
        batch = [{"id": str(n), "method": "GET", "url": f"/servicePrincipals/{sp_id}/appRoleAssignments?$top=999"}
                 for n, sp_id in enumerate(apps[start:start + 20])]
        session.post(f"{graph}/v1.0/$batch", json={"requests": batch}, timeout=120).raise_for_status()
    for _ in pages("/beta/reports/servicePrincipalSignInActivities"):
        pass
    seconds = time.monotonic() - started
    stats = emulator.stats()
    say(f"Microsoft: raw fetch floor {seconds:.1f} s, {stats['http_requests']:,} requests "
        f"({len(apps):,} apps outside Microsoft's tenants, own tenant {own_tenant[:8]}...)")
    return {"seconds": seconds, "http_requests": stats["http_requests"],
            "app_ids": {sp["displayName"]: sp["appId"] for sp in principals}}


# --- Running a scan -----------------------------------------------------------------------

def write_config(workdir: Path, *sections: str) -> Path:
    """The configuration file: the providers' sections given, and the district's roles."""
    path = workdir / "app-inventory.toml"
    path.write_text("\n".join(sections) + """
[roles]
student_domains = ["students.district.example", "students.springfield-schools.example"]
student_org_units = ["/Students"]
""", encoding="utf-8")
    load_config(path)  # fail here, clearly, rather than in the child
    return path


def import_catalog(db_path: Path, config: Path, *, google: dict[str, str], microsoft: dict[str, str] | None = None) -> None:
    """The example catalog's decisions, with the ids the emulated apps of the same name have."""
    rows = list(csv.DictReader(io.StringIO(example_catalog().read_text(encoding="utf-8"))))
    for row in rows:
        row["google_client_ids"] = google.get(row["name"], "")
        row["microsoft_app_ids"] = (microsoft or {}).get(row["name"], "")
    path = config.parent / "bench-catalog.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    subprocess.run([sys.executable, "-m", "scanner", "--db", str(db_path), "--config", str(config), "catalog", "import",
                    str(path)], check=True)


def run_scan(label: str, db_path: Path, config: Path, provider: str, *, full: bool, stats, reset) -> ScanFigures:
    """`python -m scanner scan` in a child process; its peak RSS and CPU time from the kernel (wait4).

    Linux keeps the high-water mark across exec, so a child forked from a large process
    would report that process's size: this one must stay small (never hold a tenant)."""
    say(f"{label} ...")
    reset()
    command = [sys.executable, "-m", "scanner", *SCAN_OPTIONS, "--db", str(db_path), "--config", str(config),
               "scan", "--provider", provider] + (["--full"] if full else [])
    started = time.monotonic()
    child = subprocess.Popen(command)
    if len(CORES) > 1:
        os.sched_setaffinity(child.pid, CORES[:-1])  # its threads, started later, inherit this
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    db = Database(db_path)
    row = db.execute("select status, mode, api_calls, users_seen + apps_seen + grants_seen, grants_seen from scans "
                     "where provider = ? order by id desc limit 1", [provider]).fetchone()
    db.close()
    if child.returncode != 0 or row[0] != "succeeded":
        raise SystemExit(f"{label} failed (exit code {child.returncode}, scan {row[0] if row else 'missing'})")
    size = sum(Path(f"{db_path}{suffix}").stat().st_size for suffix in ("", "-wal") if Path(f"{db_path}{suffix}").exists())
    figures = ScanFigures(label, row[0], row[1], row[2], stats()["http_requests"], wall, usage.ru_maxrss / 1024,
                          size / 2**20, row[3], row[4], usage.ru_utime + usage.ru_stime)
    say(f"{label}: {figures.api_calls:,} API calls in {wall:.1f} s, {figures.cpu_seconds:.1f} s of CPU, "
        f"peak {figures.peak_rss_mb:.0f} MB")
    return figures


SCAN_OPTIONS: list[str] = []  # before the command: --verbose

# The cores this process may use: the emulators get the last one, the scans the others.
CORES = sorted(os.sched_getaffinity(0))


def pin_emulator(pid: int) -> None:
    """Pin every thread of an emulator process to the last core (new threads inherit it)."""
    if len(CORES) < 2:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), CORES[-1:])


def remove_database(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)


def database_bytes(db_path: Path) -> int:
    """The inventory's size on disk with its write-ahead log checkpointed into the file."""
    db = Database(db_path)
    db.execute("pragma wal_checkpoint(truncate)")
    db.close()
    return sum(Path(f"{db_path}{suffix}").stat().st_size for suffix in ("", "-wal") if Path(f"{db_path}{suffix}").exists())


# --- Datasette ----------------------------------------------------------------------------

def time_datasette(db_path: Path, config_path: Path) -> dict[str, float]:
    """Median milliseconds for each page, as IT staff signed in through the sign-in form, with Datasette's client."""
    from plugins.signin.passwords import hash_password
    from scanner.serve import DATABASE_NAME, build_datasette

    say(f"Datasette: timing {', '.join(DATASETTE_PAGES)} ...")
    password = secrets.token_urlsafe(16)
    os.environ[IT_HASH_ENV] = hash_password(password)
    config_path.write_text(config_path.read_text(encoding="utf-8") + f"""
[signin]
password_accounts = {{ {IT_USERNAME} = "{IT_HASH_ENV}" }}
""", encoding="utf-8")
    datasette = build_datasette(db_path, load_config(config_path))

    async def measure() -> dict[str, float]:
        await datasette.invoke_startup()
        form = await datasette.client.get("/-/login")
        token = re.search(r'name="csrftoken" value="([^"]+)"', form.text).group(1)
        signed_in = await datasette.client.post(
            "/-/login", data={"username": IT_USERNAME, "password": password, "csrftoken": token},
            cookies={"ds_csrftoken": form.cookies["ds_csrftoken"]})
        if signed_in.status_code != 302:
            raise SystemExit(f"Datasette refused the benchmark's sign-in ({signed_in.status_code})")
        cookies = {"ds_actor": signed_in.cookies["ds_actor"]}
        medians = {}
        for page in DATASETTE_PAGES:
            path = f"/{DATABASE_NAME}/{page}"
            response = await datasette.client.get(path, cookies=cookies)  # warm the page cache
            if response.status_code != 200:
                raise SystemExit(f"Datasette answered {path} with {response.status_code}")
            times = []
            for _ in range(5):
                started = time.perf_counter()
                await datasette.client.get(path, cookies=cookies)
                times.append((time.perf_counter() - started) * 1000)
            medians[page] = statistics.median(times)
        return medians

    return asyncio.run(measure())


# --- Report -------------------------------------------------------------------------------

def summarize(args, google: dict | None, microsoft: dict | None, pages: dict[str, float], db_bytes: int) -> dict:
    """The figures, as --json writes them; those of providers not run (--providers) are left out."""
    figures: dict = {"users": args.users, "providers": args.providers, "catalog": not args.no_catalog,
                     "latency_seconds": args.latency,
                     "pinned_cores": {"emulators": CORES[-1:], "scans": CORES[:-1]} if len(CORES) > 1 else None,
                     "db_bytes": db_bytes}
    scans = bench_scans(google, microsoft)
    if google:
        full, incremental = google["full"], google["incremental"]
        quota_floor = full.api_calls / (args.google_quota / 60)
        baseline = google["baseline_sample_seconds"] * args.users / BASELINE_SAMPLE
        ratios = [scan.wall_seconds / (scan.api_calls / (args.google_quota / 60)) for scan in google["repeats"]]
        figures.update({
            "google_quota_per_minute": args.google_quota,
            "google_quota_floor_seconds": round(quota_floor, 1),
            "google_quota_floor_ratio": round(statistics.median(ratios), 3),
            "google_quota_floor_ratio_runs": [round(ratio, 3) for ratio in ratios],
            "google_quota_floor_ratio_spread": round(max(ratios) - min(ratios), 3),
            "scan_cpu_seconds_per_1000_grants": round(full.cpu_seconds_per_1000_grants, 3),
            "google_incremental_wall_seconds": round(incremental.wall_seconds, 1),
            "google_baseline_seconds_extrapolated": round(baseline, 1),
            "google_baseline_speedup": round(baseline / full.wall_seconds, 1),
            "incremental_call_percent": round(100 * incremental.api_calls / full.api_calls, 2),
        })
    if google and google["chrome"]:
        chrome = google["chrome"]
        chrome_floor = chrome.api_calls / (args.chrome_quota / 60)
        figures.update({"chrome_quota_per_minute": args.chrome_quota, "chrome_quota_floor_seconds": round(chrome_floor, 1),
                        "chrome_quota_floor_ratio": round(chrome.wall_seconds / chrome_floor, 3)})
    if microsoft:
        figures.update({
            "microsoft_fetch_floor_seconds": round(microsoft["floor"]["seconds"], 1),
            "microsoft_fetch_floor_ratio": round(microsoft["full"].wall_seconds / microsoft["floor"]["seconds"], 3),
        })
    if google and microsoft:
        figures["db_bytes_per_account"] = round(microsoft["db_bytes"] / (2 * args.users))
    figures.update({
        "peak_rss_mb": round(max(scan.peak_rss_mb for scan in scans), 1),
        "datasette_ms": {page: round(ms, 1) for page, ms in pages.items()},
        "scans": [{**asdict(scan), "calls_per_second": round(scan.calls_per_second, 1),
                   "rows_per_second": round(scan.rows_per_second),
                   "cpu_seconds_per_1000_grants": round(scan.cpu_seconds_per_1000_grants, 3)} for scan in scans],
    })
    return figures


def bench_scans(google: dict | None, microsoft: dict | None) -> list[ScanFigures]:
    """The scans that ran, in the order they ran (the Google full scan's repeats aside)."""
    scans = [google["full"], google["incremental"], google["chrome"]] if google else []
    scans += [microsoft["full"], microsoft["second"]] if microsoft else []
    return [scan for scan in scans if scan]


def print_table(args, google: dict | None, microsoft: dict | None, pages: dict[str, float], figures: dict) -> None:
    scans = bench_scans(google, microsoft)
    catalog = "no catalog (nothing reviewed yet)" if args.no_catalog else "the example catalog's decisions"
    print(f"\n{args.users:,} accounts, {args.latency * 1000:.0f} ms per request, Google quota {args.google_quota:,}/min, "
          f"{catalog}, providers {', '.join(args.providers)}\n")
    pinned = figures["pinned_cores"]
    print(f"Cores: emulators on {pinned['emulators']}, scans on {pinned['scans']}\n" if pinned else
          "Cores: one only, nothing pinned\n")
    header = (f"{'scan':<26}{'mode':>12}{'API calls':>11}{'HTTP':>9}{'wall s':>9}{'calls/s':>9}{'peak MB':>9}"
              f"{'db MB':>8}{'rows/s':>9}{'CPU s/1k grants':>17}")
    print(header)
    print("-" * len(header))
    for scan in (google["repeats"][:-1] if google else []) + scans:
        print(f"{scan.label:<26}{scan.mode:>12}{scan.api_calls:>11,}{scan.http_requests:>9,}{scan.wall_seconds:>9.1f}"
              f"{scan.calls_per_second:>9,.0f}{scan.peak_rss_mb:>9.0f}{scan.db_mb:>8.0f}{scan.rows_per_second:>9,.0f}"
              f"{scan.cpu_seconds_per_1000_grants:>17.3f}")
    print()
    rows = []
    if google:
        runs = figures["google_quota_floor_ratio_runs"]
        spread = f", {len(runs)} runs {min(runs):.2f}-{max(runs):.2f}x" if len(runs) > 1 else ""
        rows.append(("Google full scan / quota floor", f"{figures['google_quota_floor_ratio']:.2f}x",
                     f"floor {figures['google_quota_floor_seconds']:.0f} s = calls / quota" + (f" (median{spread})" if spread else ""),
                     "<= 1.15x"))
    if "chrome_quota_floor_ratio" in figures:
        rows.append(("Chrome scan / quota floor", f"{figures['chrome_quota_floor_ratio']:.2f}x",
                     f"floor {figures['chrome_quota_floor_seconds']:.0f} s = calls / quota", "<= 1.15x"))
    if google:
        rows += [
            ("Google naive baseline / full scan", f"{figures['google_baseline_speedup']:.1f}x faster",
             f"baseline {figures['google_baseline_seconds_extrapolated']:,.0f} s from {BASELINE_SAMPLE:,} accounts", ">= 10x"),
            ("Google incremental calls", f"{figures['incremental_call_percent']:.2f}%", "of the full scan's", "< 5%"),
        ]
    if microsoft:
        rows.append(("Microsoft full scan / fetch floor", f"{figures['microsoft_fetch_floor_ratio']:.2f}x",
                     f"floor {figures['microsoft_fetch_floor_seconds']:.0f} s, {microsoft['floor']['http_requests']:,} requests",
                     "<= 1.5x"))
    rows.append(("Peak memory of a scan", f"{figures['peak_rss_mb']:.0f} MB", f"largest RSS of the {len(scans)}", "< 300 MB"))
    if google:
        rows.append(("Google incremental scan", f"{figures['google_incremental_wall_seconds']:.1f} s", "wall time", "<= 10 s"))
    if "db_bytes_per_account" in figures:
        rows.append(("Inventory on disk per account", f"{figures['db_bytes_per_account']:,} B",
                     "both full scans, WAL checkpointed", "<= 1,500 B"))
    rows.append(("Inventory on disk", f"{figures['db_bytes'] / 2**20:,.0f} MB", "at the end, WAL checkpointed", ""))
    if google:
        rows.append(("Google full scan CPU", f"{figures['scan_cpu_seconds_per_1000_grants']:.3f} s",
                     "user + system per 1,000 grants", ""))
    rows += [(f"Datasette {page}", f"{ms:.0f} ms", "median of 5, signed in as IT", "< 200 ms") for page, ms in pages.items()]
    for name, value, note, target in rows:
        print(f"{name:<36}{value:>16}   {target:<10} {note}")


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
