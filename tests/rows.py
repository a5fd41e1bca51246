"""Reading one inventory row by its readable id: accounts, apps and grants are keyed by integers
since migration 0010 (grants is a view), so sqlite-utils' .get() by primary key does not apply."""

from sqlite_utils import Database
from sqlite_utils.db import NotFoundError


def by_id(db: Database, table: str, id: str) -> dict:
    """The row of `table` (users, apps, grants or people) whose id is `id`; NotFoundError when none is."""
    for row in db.query(f"select * from {table} where id = ?", [id]):
        return row
    raise NotFoundError(f"no {table} row with id {id!r}")
