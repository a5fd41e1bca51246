"""The one module that writes the inventory.

A scan of one provider is written inside one transaction: `start_scan()` records a
`running` row first (committed on its own), then `ScanWriter` streams the
provider's records into batched upserts, computes changes, revokes what a scan
that re-read a user's grants no longer sees, refreshes per-app counts and catalog
matching, marks the scan succeeded and applies retention, and only then commits.
Readers (Datasette, WAL mode) see either the previous inventory or the new one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from . import matching, schema, scopes
from .providers import App, Grant, GrantsListed, LastUsed, Record, ScanRun, User
from .schema import ensure_db_shape
from .timestamps import iso, normalize_timestamp, utc_now

log = logging.getLogger(__name__)

CHANGE_KINDS = ("new_app", "new_grant", "revoked_grant", "new_scopes")
DEFAULT_HISTORY_DAYS = 400


# -- many rows at once ---------------------------------------------------------------------

def insert_rows(conn: sqlite3.Connection, insert: str, rows: Sequence[Sequence[Any]], upsert: str = "") -> None:
    """Run `insert` ("insert into t (a, b)") for many rows as one statement a chunk,
    `insert values (?, ?), (?, ?), ... upsert`, instead of executemany().

    executemany() lets go of the GIL around each row and must win it back after; while a
    provider's threads parse answers, every row then waits for them to yield (up to the
    5 ms switch interval). On this machine 20,000 grant rows took 147 s next to one busy
    thread, against 0.3 s alone; one statement a chunk took 0.5 s.
    """
    if not rows:
        return
    width = len(rows[0])
    chunk = max(1, min(1000, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
    one = "(" + ", ".join("?" * width) + ")"
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        conn.execute(f"{insert} values {', '.join([one] * len(part))} {upsert}", [value for row in part for value in row])


# -- opening -------------------------------------------------------------------------------

# Files that hold staff and student data are readable by their owner only.
PRIVATE_FILE_MODE = 0o600


class InventoryUnreadable(Exception):
    """The --db file cannot be used: not SQLite, damaged, or not writable by this account."""


def create_private_file(path: str | os.PathLike) -> None:
    """Create an empty file readable and writable by its owner only, unless it exists.
    SQLite gives the database's -wal and -shm files the database file's own permissions."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        pass


def open_db(path: str) -> Database:
    """Open (creating if needed, owner-only) the inventory, with its schema and scope knowledge
    up to date. Raises InventoryUnreadable for a file that is not a usable inventory."""
    if path != ":memory:" and not str(path).startswith("file:"):
        try:
            create_private_file(path)
        except OSError as error:
            raise InventoryUnreadable(f"{path}: cannot create the inventory: {error.strerror}") from None
    db = Database(path)
    try:
        db.conn.execute("PRAGMA busy_timeout = 10000")
        ensure_db_shape(db)
        sync_scopes(db)
    except sqlite3.DatabaseError as error:
        db.close()
        problem = describe_unusable(path, error)
        if problem is None:
            raise
        raise InventoryUnreadable(problem) from None
    return db


def describe_unusable(path: str, error: sqlite3.DatabaseError) -> str | None:
    """What is wrong with an inventory file SQLite refused, or None for a passing problem (a lock)."""
    name = getattr(error, "sqlite_errorname", "")
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT") or type(error) is sqlite3.DatabaseError:
        return (f"{path}: not an app inventory, or a damaged one (SQLite: {error}); "
                "restore it from a backup, or pass another file with --db")
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM", "SQLITE_AUTH")):
        return (f"{path}: cannot open the inventory for writing (SQLite: {error}); run as the account that owns "
                "the file, and check that it may write the folder too (SQLite keeps -wal and -shm files beside it)")
    return None


@contextmanager
def checkpoint_alongside(db: Database) -> Iterator[None]:
    """Copy what the last commit put in the WAL into the database file on another thread
    while the body runs, then checkpoint what the body wrote.

    For a scan's connection, opened with `PRAGMA wal_autocheckpoint = 0`: a full scan of a
    large district commits a WAL of a gigabyte or more, and SQLite's automatic checkpoint
    would copy it on the scan's thread before the plugins could start. A passive
    checkpoint never blocks a writer or a reader, so the plugins write meanwhile.
    """
    path = db.execute("pragma database_list").fetchone()[2]

    def checkpoint() -> None:
        connection = sqlite3.connect(path, timeout=10)
        try:
            connection.execute("pragma wal_checkpoint(passive)")
        finally:
            connection.close()

    copying = threading.Thread(target=checkpoint, name="checkpoint", daemon=True)
    copying.start()
    try:
        yield
    finally:
        copying.join()
        db.execute("pragma wal_checkpoint(passive)")


def sync_scopes(db: Database) -> None:
    """Load the shipped scope knowledge into `scopes` when it differs from what is there."""
    wanted = {(r["provider"], r["scope"]): r for r in scopes.scope_rows()}
    current = {(r["provider"], r["scope"]): r for r in db["scopes"].rows}
    if wanted == current:
        return
    with db.atomic():
        db.execute("delete from scopes")
        db["scopes"].insert_all(wanted.values())


# -- scans ---------------------------------------------------------------------------------

def start_scan(db: Database, provider: str, now: dt.datetime) -> int:
    """Record a running scan (committed at once, so its failure is recorded even after a crash)."""
    with db.atomic():
        return db["scans"].insert({"provider": provider, "mode": "full", "started_at": iso(now), "status": "running"}).last_pk


def fail_scan(db: Database, scan_id: int, error: str, now: dt.datetime) -> None:
    with db.atomic():
        db["scans"].update(scan_id, {"status": "failed", "finished_at": iso(now), "error": error[:2000]})


def mark_interrupted_scans(db: Database, now: dt.datetime) -> int:
    """Scans left `running` by a killed process are failed (call while holding the scan lock)."""
    with db.atomic():
        cursor = db.execute(
            "update scans set status = 'failed', finished_at = ?, "
            "error = 'interrupted: the process stopped before the scan finished' where status = 'running'",
            [iso(now)],
        )
    return cursor.rowcount


def last_succeeded_scan(db: Database, provider: str, *, full_only: bool = False) -> dict | None:
    sql = "select * from scans where provider = ? and status = 'succeeded'"
    if full_only:
        sql += " and mode = 'full'"
    rows = list(db.query(sql + " order by id desc limit 1", [provider]))
    return rows[0] if rows else None


def known_user_ids(db: Database, provider: str) -> set[str]:
    """Service ids (without the provider prefix) of the users in the inventory."""
    prefix = len(provider) + 1
    return {row[0][prefix:] for row in db.execute("select id from users where provider = ?", [provider])}


@dataclass
class ScanChanges:
    """The changes one scan found, passed to `scan_finished`: counts, and the rows on demand."""

    db: Database
    scan_id: int
    counts: dict[str, int]

    def __len__(self) -> int:
        return sum(self.counts.values())

    def __iter__(self) -> Iterator[dict]:
        return iter(self.db.query("select * from changes where scan_id = ? order by id", [self.scan_id]))

    def of_kind(self, kind: str) -> Iterator[dict]:
        return iter(self.db.query("select * from changes where scan_id = ? and kind = ? order by id", [self.scan_id, kind]))


def grant_id(provider: str, grant: Grant) -> str:
    """Stable id: one grant per (user or tenant, app, resource, type)."""
    parts = [provider, grant.user_id or "*", grant.app_id]
    if grant.resource:
        parts.append(grant.resource)
    if grant.grant_type != "delegated":
        parts.append(grant.grant_type)
    return ":".join(parts)


USER_COLUMNS = ("id", "provider", "email", "name", "role", "org_unit", "suspended", "is_admin", "first_seen", "last_seen")
GRANT_COLUMNS = ("id", "provider", "user_id", "app_id", "scopes", "grant_type", "resource", "tenant_wide", "risk",
                 "first_seen", "last_seen", "last_used", "seen_scan_id")
CHANGE_COLUMNS = ("scan_id", "provider", "kind", "app_id", "user_id", "grant_id", "scopes", "detected_at")


class ScanWriter:
    """Writes one provider's records; call add() for each record, then finish() once.

    The caller owns the transaction (see scanner.scan): nothing here commits.
    """

    BATCH = 1000

    def __init__(self, db: Database, scan_id: int, provider: str, now: dt.datetime, *, baseline: bool):
        self.db, self.scan_id, self.provider = db, scan_id, provider
        self.now = iso(now)
        self.baseline = baseline
        self.counts: Counter[str] = Counter()
        self.changes: Counter[str] = Counter()
        self._known_apps = {row[0] for row in db.execute("select id from apps where provider = ?", [provider])}
        self._apps_written: set[str] = set()
        self._users: dict[str, dict] = {}
        self._grants: dict[str, dict] = {}
        self._uses: list[tuple] = []
        self._app_last_used: dict[str, str] = {}
        self._listed: list[tuple] = []
        db.execute("create temp table if not exists _listed_users (user_id text primary key)")
        # Every reported use, appended as reports come; finish() keeps the latest of each
        # (user, app). Appending is cheap while the scan's thread is the busiest part of a scan:
        # keeping the latest as they came cost 15 s of a 100,000-account scan (random upserts
        # into a large temp index), sorting them at the end costs 2.
        db.execute("create temp table if not exists _uses (user_id text not null, app_id text not null, at text not null)")
        db.execute("delete from temp._listed_users")
        db.execute("delete from temp._uses")

    def _id(self, native: str | None) -> str | None:
        return None if native is None else f"{self.provider}:{native}"

    def add(self, record: Record) -> None:
        if isinstance(record, Grant):
            self._add_grant(record)
        elif isinstance(record, User):
            self._add_user(record)
        elif isinstance(record, App):
            self._write_app(record)
        elif isinstance(record, LastUsed):
            app_id, at = self._id(record.app_id), normalize_timestamp(record.at)
            if at is None:
                raise ValueError(f"provider {self.provider} reported a use of app {record.app_id} without a time")
            if at > self._app_last_used.get(app_id, ""):
                self._app_last_used[app_id] = at
            if record.user_id is not None:
                self._uses.append((self._id(record.user_id), app_id, at))
            if len(self._uses) >= self.BATCH:
                self._flush_notes()
        elif isinstance(record, GrantsListed):
            self._listed.append((self._id(record.user_id),))
            if len(self._listed) >= self.BATCH:
                self._flush_notes()
        else:
            raise TypeError(f"provider {self.provider} yielded {record!r}; expected User, App, Grant, LastUsed or GrantsListed")

    # users ----------------------------------------------------------------------------------

    def _add_user(self, user: User) -> None:
        if user.role not in ("student", "staff", "unknown"):
            raise ValueError(f"user {user.id}: role must be student, staff or unknown, got {user.role!r}")
        row = {
            "id": self._id(user.id), "provider": self.provider, "email": user.email, "name": user.name,
            "role": user.role, "org_unit": user.org_unit, "suspended": int(user.suspended),
            "is_admin": None if user.is_admin is None else int(user.is_admin),
            "first_seen": self.now, "last_seen": self.now,
        }
        if row["id"] not in self._users:
            self.counts["users"] += 1
        self._users[row["id"]] = row
        if len(self._users) >= self.BATCH:
            self._flush_users()

    def _flush_users(self) -> None:
        if not self._users:
            return
        insert_rows(
            self.db.conn,
            f"insert into users ({', '.join(USER_COLUMNS)})",
            [[row[column] for column in USER_COLUMNS] for row in self._users.values()],
            """on conflict(id) do update set email = excluded.email, name = excluded.name, role = excluded.role,
                 org_unit = excluded.org_unit, suspended = excluded.suspended, is_admin = excluded.is_admin,
                 last_seen = excluded.last_seen""",
        )
        self._users.clear()

    def _flush_notes(self) -> None:
        """LastUsed and GrantsListed wait in temp tables until finish() applies them."""
        insert_rows(self.db.conn, "insert into temp._uses (user_id, app_id, at)", self._uses)
        insert_rows(self.db.conn, "insert or ignore into temp._listed_users (user_id)", self._listed)
        self._uses.clear()
        self._listed.clear()

    # apps -----------------------------------------------------------------------------------

    def _write_app(self, app: App) -> None:
        app_id = self._id(app.id)
        if app_id in self._apps_written:
            return
        if app.ownership not in ("third_party", "internal", "first_party"):
            raise ValueError(f"app {app.id}: ownership must be third_party, internal or first_party, got {app.ownership!r}")
        self._apps_written.add(app_id)
        self.counts["apps"] += 1
        self.db.execute(
            """insert into apps (id, provider, client_id, name, publisher, verified_publisher, ownership, homepage,
                 details, first_seen, last_seen, status, risk)
               values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'unreviewed', 'low')
               on conflict(id) do update set name = excluded.name, publisher = excluded.publisher,
                 verified_publisher = excluded.verified_publisher, ownership = excluded.ownership,
                 homepage = excluded.homepage, details = excluded.details, last_seen = excluded.last_seen""",
            [app_id, self.provider, app.id, app.name or app.id, app.publisher, app.verified_publisher,
             app.ownership, app.homepage, json.dumps(app.details, sort_keys=True) if app.details else None,
             self.now, self.now],
        )
        if app_id not in self._known_apps:
            self._known_apps.add(app_id)
            self._record_changes([{"kind": "new_app", "app_id": app_id}])

    # grants ---------------------------------------------------------------------------------

    def _add_grant(self, grant: Grant) -> None:
        if grant.grant_type not in ("delegated", "application"):
            raise ValueError(f"grant for app {grant.app_id}: grant_type must be delegated or application, got {grant.grant_type!r}")
        if self._id(grant.app_id) not in self._apps_written:
            # Providers should yield the App first; keep the grant rather than lose it.
            self._write_app(App(id=grant.app_id, name=grant.app_id))
        key = grant_id(self.provider, grant)
        clean_scopes = [s for s in dict.fromkeys(s.strip() for s in grant.scopes) if s]
        earlier = self._grants.get(key)
        if earlier:  # the same grant twice in one scan (e.g. two listings agree): merge scopes
            clean_scopes = list(dict.fromkeys(earlier["scope_list"] + clean_scopes))
        else:
            self.counts["grants"] += 1
        tenant_wide = grant.user_id is None
        self._grants[key] = {
            "id": key, "provider": self.provider, "user_id": self._id(grant.user_id), "app_id": self._id(grant.app_id),
            "scope_list": clean_scopes, "scopes": json.dumps(clean_scopes), "grant_type": grant.grant_type,
            "resource": grant.resource, "tenant_wide": int(tenant_wide),
            "risk": scopes.grant_risk(self.provider, clean_scopes, reaches_everyone=tenant_wide or grant.grant_type == "application"),
            "first_seen": self.now, "last_seen": self.now,
            "last_used": normalize_timestamp(grant.last_used) or (earlier or {}).get("last_used"),
            "seen_scan_id": self.scan_id,
        }
        if len(self._grants) >= self.BATCH:
            self._flush_grants()

    def _flush_grants(self) -> None:
        if not self._grants:
            return
        self._flush_users()
        batch = self._grants
        self._grants = {}
        placeholders = ",".join("?" * len(batch))
        existing = {
            row["id"]: row
            for row in self.db.query(f"select id, scopes, revoked_at, seen_scan_id from grants where id in ({placeholders})", list(batch))
        }
        changes = []
        for key, row in batch.items():
            old = existing.get(key)
            if old and old["seen_scan_id"] == self.scan_id:
                # Seen in an earlier batch of this scan: merge, the change was already recorded.
                merged = list(dict.fromkeys(json.loads(old["scopes"]) + row["scope_list"]))
                row["scope_list"], row["scopes"] = merged, json.dumps(merged)
                self.counts["grants"] -= 1
                continue
            if self.baseline:
                continue
            if old is None or old["revoked_at"] is not None:
                changes.append({"kind": "new_grant", "grant": row, "scopes": row["scope_list"]})
            else:
                added = [s for s in row["scope_list"] if s not in set(json.loads(old["scopes"]))]
                if added:
                    changes.append({"kind": "new_scopes", "grant": row, "scopes": added})
        insert_rows(
            self.db.conn,
            f"insert into grants ({', '.join(GRANT_COLUMNS)})",
            [[row[column] for column in GRANT_COLUMNS] for row in batch.values()],
            """on conflict(id) do update set scopes = excluded.scopes, risk = excluded.risk, grant_type = excluded.grant_type,
                 last_seen = excluded.last_seen, revoked_at = null, seen_scan_id = excluded.seen_scan_id,
                 last_used = nullif(max(coalesce(grants.last_used, ''), coalesce(excluded.last_used, '')), '')""",
        )
        self._record_changes(
            {"kind": c["kind"], "app_id": c["grant"]["app_id"], "user_id": c["grant"]["user_id"],
             "grant_id": c["grant"]["id"], "scopes": c["scopes"]}
            for c in changes
        )

    def _record_changes(self, changes: Iterable[dict[str, Any]]) -> None:
        rows = [
            {"scan_id": self.scan_id, "provider": self.provider, "kind": c["kind"], "app_id": c["app_id"],
             "user_id": c.get("user_id"), "grant_id": c.get("grant_id"),
             "scopes": json.dumps(c["scopes"]) if c.get("scopes") is not None else None, "detected_at": self.now}
            for c in changes
        ]
        if rows:
            insert_rows(self.db.conn, f"insert into changes ({', '.join(CHANGE_COLUMNS)})",
                        [[row[column] for column in CHANGE_COLUMNS] for row in rows])
            self.changes.update(row["kind"] for row in rows)

    # the end of a scan ----------------------------------------------------------------------

    def finish(self, run: ScanRun, *, history_days: int = DEFAULT_HISTORY_DAYS) -> dict:
        """Complete the scan inside the caller's transaction; returns the finished `scans` row."""
        if run.mode not in ("full", "incremental"):
            raise ValueError(f"provider {self.provider} set mode {run.mode!r}; expected full or incremental")
        self._flush_users()
        self._flush_grants()
        self._flush_notes()
        self._apply_last_used()
        self._revoke_unseen(incremental=run.mode == "incremental")
        refresh_app_stats(self.db, self.provider)
        apply_matching(self.db)
        refresh_unapproved_usage(self.db, self.provider)
        scan = {
            "status": "succeeded", "finished_at": self.now, "mode": run.mode, "tenant": run.tenant,
            "users_seen": self.counts["users"], "apps_seen": self.counts["apps"], "grants_seen": self.counts["grants"],
            "api_calls": run.api_calls, "retries": run.retries, "baseline": int(self.baseline),
            "state": json.dumps(run.new_state, sort_keys=True),
        }
        self.db["scans"].update(self.scan_id, scan)
        purge_history(self.db, history_days, dt.datetime.fromisoformat(self.now))
        return self.db["scans"].get(self.scan_id)

    def _apply_last_used(self) -> None:
        self.db.execute(
            """update grants set last_used = latest.at
               from (select user_id, app_id, max(at) as at from temp._uses group by user_id, app_id) as latest
               where grants.user_id = latest.user_id and grants.app_id = latest.app_id
                 and (grants.last_used is null or grants.last_used < latest.at)"""
        )
        self.db.conn.executemany(
            "update apps set last_used = ? where id = ? and (last_used is null or last_used < ?)",
            [(at, app_id, at) for app_id, at in self._app_last_used.items()],
        )

    def _revoke_unseen(self, *, incremental: bool) -> None:
        """Revoke active grants this scan no longer sees: every one in a full scan; in an
        incremental scan only those of users whose grants it re-read (GrantsListed)."""
        sql = """update grants set revoked_at = ?
                 where provider = ? and revoked_at is null and (seen_scan_id is null or seen_scan_id != ?)"""
        if incremental:
            sql += " and user_id in (select user_id from temp._listed_users)"
        revoked = list(self.db.execute(sql + " returning id, app_id, user_id", [self.now, self.provider, self.scan_id]))
        self._record_changes({"kind": "revoked_grant", "grant_id": g, "app_id": a, "user_id": u} for g, a, u in revoked)


def refresh_app_stats(db: Database, provider: str) -> None:
    """Keep per-app user counts, tenant-wide flag, risk and last use on `apps` (what app_summary reads)."""
    db.execute(
        """update apps set users = 0, students = 0, staff = 0, tenant_wide = 0 where provider = ?""", [provider]
    )
    # Grants are grouped by (app, user) first, so each account is counted once an app (a Microsoft
    # app holds a grant a resource), and its role is looked up once; the table is read in order,
    # not through an index: 3 s for 800,000 grants, against 5 s joining users to every grant.
    db.execute(
        """update apps set users = stats.users, students = stats.students, staff = stats.staff,
             tenant_wide = stats.tenant_wide,
             risk = case stats.risk_rank when 2 then 'high' when 1 then 'medium' else 'low' end,
             last_used = nullif(max(coalesce(apps.last_used, ''), coalesce(stats.last_used, '')), '')
           from (
             select app_id, count(user_id) as users,
               count(case when user_id in (select id from users where role = 'student') then 1 end) as students,
               count(case when user_id in (select id from users where role = 'staff') then 1 end) as staff,
               max(tenant_wide) as tenant_wide, max(risk_rank) as risk_rank, max(last_used) as last_used
             from (
               select app_id, user_id, max(tenant_wide) as tenant_wide,
                 max(case risk when 'high' then 2 when 'medium' then 1 else 0 end) as risk_rank, max(last_used) as last_used
               from grants not indexed
               where provider = ? and revoked_at is null
               group by app_id, user_id
             )
             group by app_id
           ) as stats
           where apps.id = stats.app_id""",
        [provider],
    )


def refresh_unapproved_usage(db: Database, provider: str | None = None) -> None:
    """Rebuild the unapproved_usage table (one provider's rows, or all after a catalog change)
    from grants, users, apps and the catalog, inside the caller's transaction."""
    if provider is None:
        db.execute("delete from unapproved_usage")
        db.execute(schema.refresh_unapproved_usage_sql())
    else:
        db.execute("delete from unapproved_usage where provider = ?", [provider])
        db.execute(schema.refresh_unapproved_usage_sql(provider=True), [provider])


def apply_matching(db: Database) -> None:
    """Match every app to the catalog by exact client id / app id; suggest (never approve) by name."""
    catalog = list(db["catalog"].rows)
    # Google client ids and Microsoft app ids (GUIDs) cannot collide, so one index serves
    # every provider, including third-party ones that reuse either kind of id.
    by_client_id: dict[str, dict] = {}
    for row in catalog:
        for column in ("google_client_ids", "microsoft_app_ids"):
            for client_id in json.loads(row[column] or "[]"):
                by_client_id[client_id.lower()] = row
    names = {row["id"]: row["name"] for row in catalog}
    updates, suggestions = [], []
    for app in db.query("select id, client_id, name, catalog_id, status from apps"):
        row = by_client_id.get(app["client_id"].lower())
        catalog_id, status = (row["id"], row["status"]) if row else (None, "unreviewed")
        if (catalog_id, status) != (app["catalog_id"], app["status"]):
            updates.append((catalog_id, status, app["id"]))
        if row is None:
            suggestion = matching.suggest_catalog_entry(app["name"], names)
            if suggestion:
                suggestions.append({"app_id": app["id"], "catalog_id": suggestion[0], "score": suggestion[1]})
    with db.atomic():
        db.conn.executemany("update apps set catalog_id = ?, status = ? where id = ?", updates)
        db.execute("delete from catalog_suggestions")
        if suggestions:
            db["catalog_suggestions"].insert_all(suggestions)


def purge_history(db: Database, history_days: int, now: dt.datetime) -> None:
    """Retention ([retention] history_days): forget revoked grants, change records, old scans
    and accounts not seen for that long. The latest succeeded scan of each provider is kept."""
    cutoff = iso(now - dt.timedelta(days=history_days))
    db.execute("delete from changes where detected_at < ?", [cutoff])
    db.execute("delete from grants where revoked_at is not null and revoked_at < ?", [cutoff])
    db.execute(
        """delete from users where last_seen < ?
           and not exists (select 1 from grants where grants.user_id = users.id)""",
        [cutoff],
    )
    db.execute(
        """delete from scans where coalesce(finished_at, started_at) < ?
           and status != 'running'
           and id not in (select max(id) from scans where status = 'succeeded' group by provider)
           and id not in (select scan_id from changes)""",
        [cutoff],
    )


# -- catalog -------------------------------------------------------------------------------

CATALOG_COLUMNS = (
    "id", "name", "vendor", "status", "status_original", "google_client_ids", "microsoft_app_ids",
    "approved_scopes", "audience", "dpa_url", "dpa_expires", "alternative", "notes",
)


def replace_catalog(db: Database, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Make the catalog exactly `rows` (one transaction) and rematch apps.

    Returns counts of added, updated, removed and unchanged entries; an identical
    catalog writes nothing at all.
    """
    wanted = {row["id"]: {column: row.get(column) for column in CATALOG_COLUMNS} for row in rows}
    current = {row["id"]: row for row in db["catalog"].rows}
    added = [wanted[i] for i in wanted if i not in current]
    updated = [wanted[i] for i in wanted if i in current and current[i] != wanted[i]]
    removed = [i for i in current if i not in wanted]
    counts = {"added": len(added), "updated": len(updated), "removed": len(removed), "unchanged": len(wanted) - len(added) - len(updated)}
    if not (added or updated or removed):
        return counts
    with db.atomic():
        if removed:
            placeholders = ",".join("?" * len(removed))
            db.execute(f"update apps set catalog_id = null where catalog_id in ({placeholders})", removed)
            db.execute(f"delete from catalog_suggestions where catalog_id in ({placeholders})", removed)
            db.execute(f"delete from catalog where id in ({placeholders})", removed)
        if added or updated:
            db["catalog"].upsert_all(added + updated, pk="id")
        apply_matching(db)
        refresh_unapproved_usage(db)
    return counts
