"""Opening the inventory, writing many rows at once, and the WAL checkpoint beside a scan."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlite_utils import Database

from .. import scopes
from ..schema import ensure_db_shape
from .derived import refresh_derived


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


def open_db(path: str) -> Database:
    """Open (creating if needed) the inventory, with its schema and scope knowledge up to date."""
    db = Database(path)
    db.conn.execute("PRAGMA busy_timeout = 10000")
    upgraded = ensure_db_shape(db)
    if upgraded and db["users"].count:
        # An inventory made by an older version: fill what the new migrations added
        # (people, products) now, rather than after the next scan.
        with db.atomic():
            refresh_derived(db)
    sync_scopes(db)
    return db


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
