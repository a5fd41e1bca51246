"""Replacing the catalog, all or nothing, and rematching the apps."""

from __future__ import annotations

from typing import Any

from sqlite_utils import Database

from ..schema import CATALOG_ID_COLUMNS
from .derived import apply_matching, refresh_unapproved_usage
from .products import refresh_products


CATALOG_COLUMNS = (
    "id", "name", "vendor", "status", "status_original", *CATALOG_ID_COLUMNS,
    "approved_scopes", "audience", "dpa_url", "dpa_expires", "alternative", "notes",
)


def replace_catalog(db: Database, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Make the catalog exactly `rows` (one transaction), rematch apps and recount products.

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
        moved = apply_matching(db)
        refresh_unapproved_usage(db)
        refresh_products(db, moved_products=moved)
    return counts
