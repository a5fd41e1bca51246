"""The `scans` rows: a scan is recorded running, then succeeded or failed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlite_utils import Database

from ..timestamps import iso
from .incremental import AffectedFindings


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


def user_digests(db: Database, provider: str, service_ids: Iterable[str]) -> dict[str, int | None]:
    """Of these service ids (without the provider prefix), those of users in the inventory, and their User.digest."""
    prefix = f"{provider}:"
    ids = [prefix + service_id for service_id in service_ids]
    found: dict[str, int | None] = {}
    for start in range(0, len(ids), LOOKUP_CHUNK):
        chunk = ids[start:start + LOOKUP_CHUNK]
        rows = db.execute(f"select id, listed_digest from users where id in ({', '.join('?' * len(chunk))})", chunk)
        found.update((row[0][len(prefix):], row[1]) for row in rows)
    return found


LOOKUP_CHUNK = 500  # ids a query (a users.list page)


@dataclass
class ScanChanges:
    """The changes one scan found, passed to `scan_finished`: counts, and the rows on demand."""

    db: Database
    scan_id: int
    counts: dict[str, int]
    # An incremental scan: the accounts and apps whose findings may have changed (the rest are
    # as the last scan left them). None: anything may have changed.
    affected: AffectedFindings | None = None

    def __len__(self) -> int:
        return sum(self.counts.values())

    def __iter__(self) -> Iterator[dict]:
        return iter(self.db.query("select * from changes where scan_id = ? order by id", [self.scan_id]))

    def of_kind(self, kind: str) -> Iterator[dict]:
        return iter(self.db.query("select * from changes where scan_id = ? and kind = ? order by id", [self.scan_id, kind]))
