"""Writing one provider's scan: records in, changes and revocations out.

`ScanWriter` streams the provider's records into batched upserts, computes changes,
revokes what a scan that re-read a user's grants no longer sees, then (finish())
refreshes per-app counts, catalog matching and unapproved_usage, writes the posture
findings and consent requests (store.posture), marks the scan succeeded and applies
retention, all inside the caller's transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from sqlite_utils import Database

from .. import scopes
from ..progress import StepTimer
from ..providers import App, ConsentRequest, Grant, GrantsListed, LastUsed, PostureFinding, Record, ScanRun, User, UsersSeen
from ..schema import CHANGE_KIND_CODES, unix_time
from ..timestamps import iso, normalize_timestamp, parse_iso
from .database import insert_rows
from .derived import DEFAULT_HISTORY_DAYS, apply_matching, purge_history, refresh_app_stats, refresh_unapproved_usage
from .incremental import (
    AffectedFindings, affected_scope, refresh_changed_app_stats, refresh_changed_unapproved_usage, stop_tracking,
    track_derived_changes,
)
from .people import refresh_people, track_people_changes
from .posture import PostureWriter, purge_posture
from .products import refresh_products

log = logging.getLogger(__name__)

CHANGE_KINDS = tuple(CHANGE_KIND_CODES)


def aliases_json(user: User) -> str | None:
    """The account's other addresses as a JSON list (None when it has none): trimmed, each
    once whatever its case, without the primary address."""
    if not isinstance(user.aliases, (list, tuple)) or not all(isinstance(a, str) for a in user.aliases):
        raise ValueError(f"user {user.id}: aliases must be a list of addresses, got {user.aliases!r}")
    seen = {user.email.strip().lower()}
    kept = []
    for alias in (a.strip() for a in user.aliases):
        if alias and alias.lower() not in seen:
            seen.add(alias.lower())
            kept.append(alias)
    return json.dumps(kept) if kept else None


def grant_id(provider: str, grant: Grant) -> str:
    """Stable id: one grant per (user or tenant, app, resource, type)."""
    parts = [provider, grant.user_id or "*", grant.app_id]
    if grant.resource:
        parts.append(grant.resource)
    if grant.grant_type != "delegated":
        parts.append(grant.grant_type)
    return ":".join(parts)


USER_COLUMNS = ("id", "provider", "email", "name", "role", "org_unit", "suspended", "is_admin", "aliases", "first_seen", "last_seen",
                "listed_digest")
GRANT_ROW_COLUMNS = ("user_key", "app_key", "resource", "application", "scope_set", "risk", "first_seen", "last_seen",
                     "last_used", "seen_scan_id")
_RISK_RANKS = {"low": 0, "medium": 1, "high": 2}
CHANGE_COLUMNS = ("scan_id", "kind", "app_key", "user_key", "resource", "application", "scope_set", "detected_at")


class ScanWriter:
    """Writes one provider's records; call add() for each record, then finish() once.

    The caller owns the transaction (see scanner.scan): nothing here commits.
    """

    BATCH = 1000

    def __init__(self, db: Database, scan_id: int, provider: str, now: dt.datetime, *, baseline: bool,
                 run: ScanRun | None = None):
        self.db, self.scan_id, self.provider, self.run = db, scan_id, provider, run
        self.now = iso(now)
        self.baseline = baseline
        self.counts: Counter[str] = Counter()
        self.changes: Counter[str] = Counter()
        self.unix_now = int(parse_iso(self.now).timestamp())
        self._app_keys = dict(db.execute("select id, key from apps where provider = ?", [provider]).fetchall())
        self._known_apps = set(self._app_keys)
        self._scope_sets = dict(db.execute("select scopes, key from scope_sets").fetchall())
        self._scope_lists = {key: json.loads(scopes) for scopes, key in self._scope_sets.items()}
        self._apps_written: set[str] = set()
        self._users: dict[str, dict] = {}
        self._grants: dict[str, dict] = {}
        self._uses: list[tuple] = []
        self._app_last_used: dict[str, str] = {}
        self._listed: list[tuple] = []
        self._seen: list[tuple] = []
        self.posture = PostureWriter(db, scan_id, provider, self.now)
        db.execute("create temp table if not exists _listed_users (user_id text primary key)")
        # Every reported use, appended as reports come; finish() keeps the latest of each
        # (user, app). Appending is cheap while the scan's thread is the busiest part of a scan:
        # keeping the latest as they came cost 15 s of a 100,000-account scan (random upserts
        # into a large temp index), sorting them at the end costs 2.
        db.execute("create temp table if not exists _uses (user_id text not null, app_id text not null, at text not null)")
        db.execute("create temp table if not exists _seen_users (user_id text primary key) without rowid")
        db.execute("delete from temp._listed_users")
        db.execute("delete from temp._seen_users")
        db.execute("delete from temp._uses")
        track_people_changes(db)  # refresh_people then rebuilds only the people whose accounts changed
        # Whether finish() refreshes only what changed (store.incremental): decided at the first
        # write, by the mode the provider chose by then.
        self._writing = False
        self.incremental_refresh = False
        self.affected: AffectedFindings | None = None  # what scan_finished hooks may limit themselves to

    def _begin_writing(self) -> None:
        if self._writing:
            return
        self._writing = True
        if self.run is not None and self.run.mode == "incremental" and not self.baseline:
            track_derived_changes(self.db)
            self.incremental_refresh = True

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
        elif isinstance(record, UsersSeen):
            self.counts["users"] += len(record.user_ids)
            self._seen.extend((self._id(user_id),) for user_id in record.user_ids)
            if len(self._seen) >= self.BATCH:
                self._flush_notes()
        elif isinstance(record, (PostureFinding, ConsentRequest)):
            self.posture.add(record)
        else:
            raise TypeError(f"provider {self.provider} yielded {record!r}; expected User, App, Grant, LastUsed, "
                            "GrantsListed, UsersSeen, PostureFinding or ConsentRequest")

    # users ----------------------------------------------------------------------------------

    def _add_user(self, user: User) -> None:
        if user.role not in ("student", "staff", "unknown"):
            raise ValueError(f"user {user.id}: role must be student, staff or unknown, got {user.role!r}")
        row = {
            "id": self._id(user.id), "provider": self.provider, "email": user.email, "name": user.name,
            "role": user.role, "org_unit": user.org_unit, "suspended": int(user.suspended),
            "is_admin": None if user.is_admin is None else int(user.is_admin),
            "aliases": aliases_json(user), "first_seen": self.now, "last_seen": self.now, "listed_digest": user.digest,
        }
        if row["id"] not in self._users:
            self.counts["users"] += 1
        self._users[row["id"]] = row
        if self.run is not None and self.run.mode == "incremental":
            self._seen.append((row["id"],))  # for users_not_seen (its last_seen is already now)
        if len(self._users) >= self.BATCH:
            self._flush_users()

    def _flush_users(self) -> None:
        if not self._users:
            return
        self._begin_writing()
        insert_rows(
            self.db.conn,
            f"insert into users ({', '.join(USER_COLUMNS)})",
            [[row[column] for column in USER_COLUMNS] for row in self._users.values()],
            """on conflict(id) do update set email = excluded.email, name = excluded.name, role = excluded.role,
                 org_unit = excluded.org_unit, suspended = excluded.suspended, is_admin = excluded.is_admin,
                 aliases = excluded.aliases, last_seen = excluded.last_seen, listed_digest = excluded.listed_digest""",
        )
        self._users.clear()

    def users_not_seen(self) -> list[str]:
        """ScanRun.users_not_seen: service ids of the inventory's users this incremental scan
        has not yielded, as a User or in UsersSeen (both noted in temp._seen_users)."""
        if self.run is None or self.run.mode != "incremental":
            raise RuntimeError("users_not_seen is for an incremental scan (set run.mode first)")
        self._flush_users()
        self._flush_notes()
        rows = self.db.execute(
            "select substr(id, ?) from users where provider = ? and id not in (select user_id from temp._seen_users)",
            [len(self.provider) + 2, self.provider],
        )
        return [row[0] for row in rows]

    def _flush_notes(self) -> None:
        """LastUsed, GrantsListed and UsersSeen wait in temp tables until finish() applies them."""
        insert_rows(self.db.conn, "insert into temp._uses (user_id, app_id, at)", self._uses)
        insert_rows(self.db.conn, "insert or ignore into temp._listed_users (user_id)", self._listed)
        insert_rows(self.db.conn, "insert or ignore into temp._seen_users (user_id)", self._seen)
        self._uses.clear()
        self._listed.clear()
        self._seen.clear()

    # apps -----------------------------------------------------------------------------------

    def _write_app(self, app: App) -> None:
        app_id = self._id(app.id)
        if app_id in self._apps_written:
            return
        if app.ownership not in ("third_party", "internal", "first_party"):
            raise ValueError(f"app {app.id}: ownership must be third_party, internal or first_party, got {app.ownership!r}")
        self._apps_written.add(app_id)
        self.counts["apps"] += 1
        self._begin_writing()
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
        self._app_keys[app_id] = self.db.execute("select key from apps where id = ?", [app_id]).fetchone()[0]
        if app_id not in self._known_apps:
            self._known_apps.add(app_id)
            self._record_changes([{"kind": "new_app", "app_key": self._app_keys[app_id]}])

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
        last_used = normalize_timestamp(grant.last_used)
        self._grants[key] = {
            "id": key, "user_id": self._id(grant.user_id), "app_id": self._id(grant.app_id),
            "app_key": self._app_keys[self._id(grant.app_id)], "resource": grant.resource or "",
            "application": int(grant.grant_type == "application"), "scope_list": clean_scopes,
            "risk": _RISK_RANKS[scopes.grant_risk(self.provider, clean_scopes,
                                                  reaches_everyone=tenant_wide or grant.grant_type == "application")],
            "first_seen": self.unix_now, "last_seen": self.unix_now,
            "last_used": int(parse_iso(last_used).timestamp()) if last_used else (earlier or {}).get("last_used"),
            "seen_scan_id": self.scan_id,
        }
        if len(self._grants) >= self.BATCH:
            self._flush_grants()

    def _user_keys(self, user_ids: set[str]) -> dict[str, int]:
        """The keys of these accounts; an account the provider did not list gets a row, as an
        app it did not list does (role unknown, no address), rather than its grant be lost."""
        wanted = sorted(user_ids)
        placeholders = ",".join("?" * len(wanted))
        keys = dict(self.db.execute(f"select id, key from users where id in ({placeholders})", wanted).fetchall())
        missing = [user_id for user_id in wanted if user_id not in keys]
        if missing:
            insert_rows(self.db.conn, "insert into users (id, provider, email, role, first_seen, last_seen)",
                        [(user_id, self.provider, "", "unknown", self.now, self.now) for user_id in missing])
            keys.update(self.db.execute(f"select id, key from users where id in ({placeholders})", wanted).fetchall())
        return keys

    def _scope_set(self, scope_list: list[str]) -> int:
        """The key of this scope list in scope_sets (each distinct list is stored once)."""
        text = json.dumps(scope_list)
        key = self._scope_sets.get(text)
        if key is None:
            self.db.execute("insert into scope_sets (scopes) values (?)", [text])
            key = self.db.execute("select key from scope_sets where scopes = ?", [text]).fetchone()[0]
            self._scope_sets[text], self._scope_lists[key] = key, scope_list
        return key

    def _flush_grants(self) -> None:
        if not self._grants:
            return
        self._begin_writing()
        self._flush_users()
        batch = self._grants
        self._grants = {}
        user_keys = self._user_keys({row["user_id"] for row in batch.values() if row["user_id"] is not None})
        for row in batch.values():
            row["user_key"] = 0 if row["user_id"] is None else user_keys[row["user_id"]]
        wanted = sorted({row["user_key"] for row in batch.values()})
        existing = {
            (user_key, app_key, resource, application): (scope_set, revoked_at, seen_scan_id)
            for user_key, app_key, resource, application, scope_set, revoked_at, seen_scan_id in self.db.execute(
                f"""select user_key, app_key, resource, application, scope_set, revoked_at, seen_scan_id from grant_rows
                    where user_key in ({",".join("?" * len(wanted))})""", wanted)
        }
        changes = []
        for row in batch.values():
            old = existing.get((row["user_key"], row["app_key"], row["resource"], row["application"]))
            old_scopes = None if old is None else self._scope_lists[old[0]]
            if old and old[2] == self.scan_id:
                # Seen in an earlier batch of this scan: merge, the change was already recorded.
                row["scope_list"] = list(dict.fromkeys(old_scopes + row["scope_list"]))
                self.counts["grants"] -= 1
            elif self.baseline:
                pass
            elif old is None or old[1] is not None:
                changes.append({"kind": "new_grant", "grant": row, "scopes": row["scope_list"]})
            else:
                added = [s for s in row["scope_list"] if s not in set(old_scopes)]
                if added:
                    changes.append({"kind": "new_scopes", "grant": row, "scopes": added})
            row["scope_set"] = self._scope_set(row["scope_list"])
        insert_rows(
            self.db.conn,
            f"insert into grant_rows ({', '.join(GRANT_ROW_COLUMNS)})",
            [[row[column] for column in GRANT_ROW_COLUMNS] for row in batch.values()],
            """on conflict(user_key, app_key, resource, application) do update set scope_set = excluded.scope_set,
                 risk = excluded.risk, last_seen = excluded.last_seen, revoked_at = null, seen_scan_id = excluded.seen_scan_id,
                 last_used = nullif(max(coalesce(grant_rows.last_used, 0), coalesce(excluded.last_used, 0)), 0)""",
        )
        self._record_changes(
            {"kind": c["kind"], "app_key": c["grant"]["app_key"], "user_key": c["grant"]["user_key"],
             "resource": c["grant"]["resource"], "application": c["grant"]["application"], "scopes": c["scopes"]}
            for c in changes
        )

    def _record_changes(self, changes: Iterable[dict[str, Any]]) -> None:
        """Change records by key (change_rows; the `changes` view reads them): a grant's
        account, resource and type, or none (user_key 0, resource null) for a new app."""
        rows = [
            [self.scan_id, c["kind"], c["app_key"], c.get("user_key", 0), c.get("resource"), c.get("application"),
             self._scope_set(c["scopes"]) if c.get("scopes") is not None else None, self.unix_now]
            for c in changes
        ]
        if rows:
            self.changes.update(row[1] for row in rows)
            for row in rows:
                row[1] = CHANGE_KIND_CODES[row[1]]
            insert_rows(self.db.conn, f"insert into change_rows ({', '.join(CHANGE_COLUMNS)})", rows)

    # the end of a scan ----------------------------------------------------------------------

    def finish(self, run: ScanRun, *, history_days: int = DEFAULT_HISTORY_DAYS) -> dict:
        """Complete the scan inside the caller's transaction; returns the finished `scans` row."""
        if run.mode not in ("full", "incremental"):
            raise ValueError(f"provider {self.provider} set mode {run.mode!r}; expected full or incremental")
        self._begin_writing()
        incremental = self.incremental_refresh and run.mode == "incremental"
        step = StepTimer(f"{self.provider}: finishing")
        with step("the last writes"):
            self._flush_users()
            self._flush_grants()
            self._flush_notes()
            self._apply_last_used()
            self.db.execute("update users set last_seen = ? where id in (select user_id from temp._seen_users)", [self.now])
        with step("revoked grants"):
            self._revoke_unseen(incremental=run.mode == "incremental")
        with step("people"):
            people = refresh_people(self.db)
        if incremental:  # only what this scan touched (store.incremental)
            with step("app counts"):
                refresh_changed_app_stats(self.db)
            with step("matching"):
                apply_matching(self.db)
                self.affected = affected_scope(self.db)
                stop_tracking(self.db)
            with step("unapproved"):
                refresh_changed_unapproved_usage(self.db, self.affected)
        else:
            stop_tracking(self.db)
            with step("app counts"):
                refresh_app_stats(self.db, self.provider)
            with step("matching"):
                apply_matching(self.db)
            with step("unapproved"):
                refresh_unapproved_usage(self.db, self.provider)
        # A first scan records no new grants: it redoes every person's part of the products.
        partly = not (self.baseline or people.everyone)
        with step("products"):
            refresh_products(self.db, after_scan=self.scan_id if partly else None)
        self.posture.finish()
        scan = {
            "status": "succeeded", "finished_at": self.now, "mode": run.mode, "tenant": run.tenant,
            "users_seen": self.counts["users"], "apps_seen": self.counts["apps"], "grants_seen": self.counts["grants"],
            "api_calls": run.api_calls, "retries": run.retries, "baseline": int(self.baseline),
            "state": json.dumps(run.new_state, sort_keys=True),
        }
        self.db["scans"].update(self.scan_id, scan)
        moment = dt.datetime.fromisoformat(self.now)
        with step("retention"):
            purge_posture(self.db, history_days, moment)  # before the scans its rows belong to
            if purge_history(self.db, history_days, moment):
                # Forgotten accounts (none had a grant) leave their person, whose role may change.
                people = refresh_people(self.db)
                refresh_products(self.db, after_scan=None if people.everyone else self.scan_id)
        return self.db["scans"].get(self.scan_id)

    def _apply_last_used(self) -> None:
        self.db.execute(
            f"""update grant_rows set last_used = latest.at
                from (
                  select users.key as user_key, apps.key as app_key, {unix_time("max(uses.at)")} as at
                  from temp._uses as uses
                    join users on users.id = uses.user_id
                    join apps on apps.id = uses.app_id
                  group by uses.user_id, uses.app_id
                ) as latest
                where grant_rows.user_key = latest.user_key and grant_rows.app_key = latest.app_key
                  and (grant_rows.last_used is null or grant_rows.last_used < latest.at)"""
        )
        self.db.conn.executemany(
            "update apps set last_used = ? where id = ? and (last_used is null or last_used < ?)",
            [(at, app_id, at) for app_id, at in self._app_last_used.items()],
        )

    def _revoke_unseen(self, *, incremental: bool) -> None:
        """Revoke active grants this scan no longer sees: every one in a full scan; in an
        incremental scan only those of users whose grants it re-read (GrantsListed)."""
        sql = """update grant_rows set revoked_at = ?
                 where app_key in (select key from apps where provider = ?)
                   and revoked_at is null and (seen_scan_id is null or seen_scan_id != ?)"""
        if incremental:
            sql += " and user_key in (select users.key from temp._listed_users join users on users.id = _listed_users.user_id)"
        revoked = self.db.execute(sql + " returning user_key, app_key, resource, application",
                                  [self.unix_now, self.provider, self.scan_id]).fetchall()
        if not revoked:
            return
        self._record_changes({"kind": "revoked_grant", "user_key": user_key, "app_key": app_key, "resource": resource,
                              "application": application} for user_key, app_key, resource, application in revoked)
