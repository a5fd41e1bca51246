"""A school year of weekly scans, played in minutes: how much the inventory grows (scan_bench.py --weeks).

    python bench/scan_bench.py --users 5000 --weeks 52 [--churn 0.02] [--latency 0.005] [--json FILE]

Both emulators serve the same district for the whole run, each with a settable clock
(emulators.clock.SettableClock), and every scan is `app-inventory scan` (both providers,
as the weekly cron job runs it) through bench/clocked_scan.py, whose clock starts at the
week's date. Week 1 is a Monday at 02:00 UTC; each later week:

1. mid-week (the emulators' clocks set three days before the scan): `--churn` of the
   accounts authorize or revoke an app, on each provider, with the audit events Google
   logs; and accounts come and go as in a district's year (ACCOUNTS_*: enrolments and
   hires, suspensions, removals);
2. the scan (`app-inventory scan`, both providers). Google: a full scan every other week
   (`--full`, Monday 02:00) and an incremental one in between. The tool runs a full scan
   whenever none succeeded in the last 7 days, so a weekly cron job gets at best this
   alternation; the incremental weeks' scans start a minute earlier (01:59), so that last
   week's full scan is under 7 days old whatever the start-up time (a cron job at exactly
   the same minute would get a full or an incremental scan by a second either way).
   Microsoft scans are always full.

Reported: the inventory's size after the first week's scan and after the last (the
write-ahead log checkpointed, as `database_bytes`), their ratio (`history_growth_ratio`),
each week's size, and each table's size (its indexes included, from SQLite's dbstat) and
row count at both ends. `[retention]` stays at its default.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from clocked_scan import CLOCK_ENV
from emulators.google.server import GoogleEmulatorProcess, new_service_account_key
from emulators.google.tenant import POSTURE_SCOPES, SCANNER_SCOPES
from emulators.microsoft.server import MicrosoftEmulatorProcess
from scan_bench import (
    CORES, GOOGLE_ADMIN, GOOGLE_EXTRA_APPS, database_bytes, google_app_ids, import_catalog, microsoft_fetch_floor,
    microsoft_section, pin_emulator, remove_database, say, write_config,
)

CLOCKED_SCAN = Path(__file__).with_name("clocked_scan.py")
WEEK = dt.timedelta(days=7)
CHURN_BEFORE_SCAN = dt.timedelta(days=3)
INCREMENTAL_EARLIER = dt.timedelta(minutes=1)
# A district's year: about 13% of accounts arrive (enrolments, hires) and 13% leave, spread
# over the weeks, and a few are suspended (leave of absence, a staff member's contract ends).
ACCOUNTS_ADDED = 0.0025
ACCOUNTS_REMOVED = 0.0025
ACCOUNTS_SUSPENDED = 0.001


@dataclass
class Week:
    """One week's scan, measured from outside."""

    week: int
    google_mode: str
    microsoft_mode: str
    wall_seconds: float
    db_bytes: int


def first_monday(after: dt.datetime) -> dt.datetime:
    """The first Monday at 02:00 UTC after `after` (the cron job's time)."""
    day = (after + dt.timedelta(days=1)).date()
    day += dt.timedelta(days=(7 - day.weekday()) % 7)
    return dt.datetime.combine(day, dt.time(2, 0), dt.timezone.utc)


def run_school_year(args, workdir: Path, db_path: Path) -> dict:
    """Play args.weeks weeks on a fresh inventory; the figures as a dict (see summarize())."""
    remove_database(db_path)
    start = first_monday(dt.datetime.now(dt.timezone.utc))
    say(f"School year: {args.weeks} weeks of {args.users:,} accounts per provider, {args.churn:.0%} churn a week, "
        f"from {start:%Y-%m-%d}")
    google_build = {"users": args.users, "seed": 1, "grants_per_user": 8, "extra_apps": GOOGLE_EXTRA_APPS}
    microsoft_build = {"users": args.users, "seed": 2026, "grants_per_user": 8, "extra_apps": 40}
    knobs = {"latency": args.latency, "quota_per_minute": args.google_quota}
    with GoogleEmulatorProcess(build=google_build, knobs=knobs, settable_clock=True) as google, \
            MicrosoftEmulatorProcess(generate=microsoft_build, knobs={"latency": args.latency}, start_timeout=1800,
                                     settable_clock=True) as microsoft:
        for emulator in (google, microsoft):
            pin_emulator(emulator.pid)
        config = configure(args, workdir, db_path, google, microsoft)
        weeks: list[Week] = []
        first_tables = {}
        for week in range(1, args.weeks + 1):
            moment = start + (week - 1) * WEEK
            if week > 1:
                churn_week(google, microsoft, args, week, moment - CHURN_BEFORE_SCAN)
            full = week % 2 == 1
            if not full:
                moment -= INCREMENTAL_EARLIER
            for emulator in (google, microsoft):
                emulator.set_clock(moment.timestamp())
            weeks.append(scan_week(week, moment, db_path, config, full=full))
            if week == 1:
                first_tables = table_sizes(db_path)
        last_tables = table_sizes(db_path)
    return summarize(args, start, weeks, first_tables, last_tables)


def configure(args, workdir: Path, db_path: Path, google: GoogleEmulatorProcess,
              microsoft: MicrosoftEmulatorProcess) -> Path:
    """Both providers' sections, and the example catalog's decisions (unless --no-catalog)."""
    key = new_service_account_key(token_uri=google.token_uri)
    google.delegate(key, SCANNER_SCOPES + POSTURE_SCOPES)  # posture checks too, as a district delegates them
    key_file = workdir / "service-account.json"
    key_file.write_text(json.dumps(key), encoding="utf-8")
    config = write_config(workdir, f"""
[google]
admin_email = "{GOOGLE_ADMIN}"
service_account_file = "{key_file}"
api_root = "{google.api_root}"
policy_api_root = "{google.api_root}"
requests_per_minute = {args.google_quota}
""", microsoft_section(microsoft))
    if not args.no_catalog:
        floor = microsoft_fetch_floor(microsoft)
        import_catalog(db_path, config, google=google_app_ids(), microsoft=floor["app_ids"])
    return config


def churn_week(google: GoogleEmulatorProcess, microsoft: MicrosoftEmulatorProcess, args, week: int,
               moment: dt.datetime) -> None:
    """The week's changes, on the emulators' clocks set to `moment`: grants, then accounts."""
    accounts = {"add": round(args.users * ACCOUNTS_ADDED), "remove": round(args.users * ACCOUNTS_REMOVED),
                "suspend": round(args.users * ACCOUNTS_SUSPENDED), "seed": week}
    google.set_clock(moment.timestamp())
    google.mutate([{"op": "churn", "fraction": args.churn, "seed": week},
                   {"op": "lifecycle", **accounts, "protect": [GOOGLE_ADMIN]}])
    microsoft.set_clock(moment.timestamp())
    microsoft.mutate_tenant("churn", args.churn, seed=week)
    microsoft.control("lifecycle", accounts)


def scan_week(week: int, moment: dt.datetime, db_path: Path, config: Path, *, full: bool) -> Week:
    """`app-inventory scan [--full]` (every provider) at `moment`, through the clocked launcher."""
    command = [sys.executable, str(CLOCKED_SCAN), "--db", str(db_path), "--config", str(config), "--quiet", "scan"]
    command += ["--full"] if full else []
    started = time.monotonic()
    child = subprocess.Popen(command, env={**os.environ, CLOCK_ENV: str(moment.timestamp())}, stdout=subprocess.DEVNULL)
    if len(CORES) > 1:
        os.sched_setaffinity(child.pid, CORES[:-1])
    if child.wait() != 0:
        raise SystemExit(f"week {week}: the scan failed (exit code {child.returncode})")
    wall = time.monotonic() - started
    db = Database(db_path)
    modes = dict(db.execute("""select provider, mode from scans where id in
                                 (select max(id) from scans where status = 'succeeded' group by provider)""").fetchall())
    db.close()
    size = database_bytes(db_path)
    say(f"week {week:>2} ({moment:%Y-%m-%d}): google {modes.get('google')}, microsoft {modes.get('microsoft')}, "
        f"{wall:.1f} s, {size / 2**20:.1f} MB")
    return Week(week, modes.get("google", "-"), modes.get("microsoft", "-"), wall, size)


def table_sizes(db_path: Path) -> dict[str, dict[str, int]]:
    """Bytes (the table's pages and its indexes', from dbstat) and rows of each table."""
    db = Database(db_path)
    owners = dict(db.execute("select name, tbl_name from sqlite_master where type in ('table', 'index')").fetchall())
    sizes: dict[str, dict[str, int]] = {}
    for name, pages in db.execute("select name, sum(pgsize) from dbstat group by name").fetchall():
        table = owners.get(name, name)
        sizes.setdefault(table, {"bytes": 0, "rows": 0})["bytes"] += pages
    for table in sizes:
        if table in db.table_names():
            sizes[table]["rows"] = db.execute(f"select count(*) from [{table}]").fetchone()[0]
    db.close()
    return sizes


def summarize(args, start: dt.datetime, weeks: list[Week], first: dict, last: dict) -> dict:
    tables = sorted(set(first) | set(last), key=lambda t: -last.get(t, {}).get("bytes", 0))
    return {
        "users": args.users,
        "weeks": args.weeks,
        "churn": args.churn,
        "catalog": not args.no_catalog,
        "latency_seconds": args.latency,
        "accounts_per_week": {"added": ACCOUNTS_ADDED, "removed": ACCOUNTS_REMOVED, "suspended": ACCOUNTS_SUSPENDED},
        "first_week": start.strftime("%Y-%m-%d"),
        "history_first_bytes": weeks[0].db_bytes,
        "history_last_bytes": weeks[-1].db_bytes,
        "history_growth_ratio": round(weeks[-1].db_bytes / weeks[0].db_bytes, 3),
        "history_bytes_per_account": round(weeks[-1].db_bytes / (2 * args.users)),
        "history_wall_seconds": round(sum(week.wall_seconds for week in weeks), 1),
        "history_google_modes": {mode: sum(1 for w in weeks if w.google_mode == mode) for mode in ("full", "incremental")},
        "history_bytes_by_week": [week.db_bytes for week in weeks],
        "history_tables": {table: {"first_bytes": first.get(table, {}).get("bytes", 0),
                                   "last_bytes": last.get(table, {}).get("bytes", 0),
                                   "first_rows": first.get(table, {}).get("rows", 0),
                                   "last_rows": last.get(table, {}).get("rows", 0)} for table in tables},
    }


def print_school_year(figures: dict) -> None:
    """The year's table: the sizes, the ratio against its target, and each table's growth."""
    modes = figures["history_google_modes"]
    print(f"\n{figures['users']:,} accounts per provider, {figures['weeks']} weekly scans from {figures['first_week']}, "
          f"{figures['churn']:.0%} of accounts change their grants a week; Google: {modes['full']} full and "
          f"{modes['incremental']} incremental scans\n")
    last = f"MB week {figures['weeks']}"
    header = f"{'table':<28}{'MB week 1':>11}{last:>12}{'growth':>9}{'rows week 1':>13}{'rows last':>12}"
    print(header)
    print("-" * len(header))
    for table, row in figures["history_tables"].items():
        if not row["last_bytes"] and not row["first_bytes"]:
            continue
        growth = f"{row['last_bytes'] / row['first_bytes']:.2f}x" if row["first_bytes"] else "new"
        print(f"{table:<28}{row['first_bytes'] / 2**20:>11.2f}{row['last_bytes'] / 2**20:>12.2f}{growth:>9}"
              f"{row['first_rows']:>13,}{row['last_rows']:>12,}")
    print()
    rows = [
        ("Inventory after week 1", f"{figures['history_first_bytes'] / 2**20:.1f} MB", "", "WAL checkpointed"),
        (f"Inventory after week {figures['weeks']}", f"{figures['history_last_bytes'] / 2**20:.1f} MB", "",
         f"{figures['history_bytes_per_account']:,} B per account"),
        ("History growth", f"{figures['history_growth_ratio']:.2f}x", "<= 1.3x", "[retention] at its default"),
        ("Scans' wall time, all weeks", f"{figures['history_wall_seconds']:.0f} s", "", ""),
    ]
    for name, value, target, note in rows:
        print(f"{name:<36}{value:>16}   {target:<10} {note}")


__all__ = ["print_school_year", "run_school_year"]
