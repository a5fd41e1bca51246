"""Opening the inventory, writing many rows at once, and the WAL checkpoint beside a scan."""

from __future__ import annotations

import os
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
        upgraded = ensure_db_shape(db)
        sync_scopes(db)
    except sqlite3.DatabaseError as error:
        db.close()
        problem = describe_unusable(path, error)
        if problem is None:
            raise
        raise InventoryUnreadable(problem) from None
    if {"0004_people_and_products", "0010_integer_keys"} & set(upgraded) and db["users"].count:
        # An inventory made by an older version: fill what the new migrations added
        # (people, products, unapproved) now, rather than after the next scan.
        with db.atomic():
            refresh_derived(db)
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
