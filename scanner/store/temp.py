"""Scratch tables for the store's SQL: temp tables live on one connection, inside its transaction."""

from __future__ import annotations

from sqlite_utils import Database


def temp_table(db: Database, name: str, columns: str, *, rowid: bool = True) -> None:
    """An empty temp table `name` (made once a connection, emptied each time after)."""
    db.execute(f"create temp table if not exists {name} ({columns}){'' if rowid else ' without rowid'}")
    db.execute(f"delete from temp.{name}")
