"""Changing the catalog: imports (the entries a file names, or the whole catalog with --replace)
and decisions made in the browser, all or nothing, each change kept in `catalog_history` with
who and when, then the apps rematched and the products recounted (the one refresh path).

An import never silently overwrites a decision made in the browser: an entry changed in the
browser since the catalog was last exported is refused (CatalogConflict) unless the caller
says to overwrite it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from ..schema import CATALOG_ID_COLUMNS
from ..catalog import CatalogError
from .derived import apply_matching, refresh_unapproved_usage
from .products import refresh_products


CATALOG_COLUMNS = (
    "id", "name", "vendor", "status", "status_original", *CATALOG_ID_COLUMNS,
    "approved_scopes", "audience", "dpa_url", "dpa_expires", "alternative", "notes",
)
BROWSER = "browser"


class CatalogConflict(CatalogError):
    """An import would overwrite decisions made in the browser since the last export."""


def _catalog_columns(db: Database) -> list[str]:
    # The table's own columns: a provider's migration may add its id column (chrome_extension_ids).
    return [column.name for column in db["catalog"].columns]


def refresh_after_catalog_change(db: Database) -> None:
    """Rematch apps, rebuild unapproved_usage and recount the products that moved (inside the
    caller's transaction): what follows every catalog change, import or decision."""
    moved = apply_matching(db)
    refresh_unapproved_usage(db)
    refresh_products(db, moved_products=moved)


def import_catalog(
    db: Database, rows: list[dict[str, Any]], *, replace: bool = False, overwrite_decisions: bool = False,
    changed_by: str, source: str = "import", now: str,
) -> dict[str, int]:
    """Write catalog rows in one transaction: add and update the entries named (and, with
    replace, remove every entry not named), record each change in catalog_history, then
    refresh what follows from the catalog. An identical catalog writes nothing.

    Raises CatalogConflict, writing nothing, when an entry it would change or remove was
    decided in the browser since the last export, unless overwrite_decisions.
    Returns counts of added, updated, removed and unchanged entries.
    """
    columns = _catalog_columns(db)
    wanted = {row["id"]: {column: row.get(column) for column in columns} for row in rows}
    current = {row["id"]: row for row in db["catalog"].rows}
    added = [wanted[i] for i in wanted if i not in current]
    updated = [wanted[i] for i in wanted if i in current and current[i] != wanted[i]]
    removed = [i for i in current if i not in wanted] if replace else []
    counts = {"added": len(added), "updated": len(updated), "removed": len(removed), "unchanged": len(wanted) - len(added) - len(updated)}
    if not (added or updated or removed):
        return counts
    if source != BROWSER and not overwrite_decisions:
        decided = decided_since_export(db, [row["id"] for row in updated] + removed)
        if decided:
            raise CatalogConflict([
                f"catalog entry {entry_id!r} was decided in the browser by {who} at {when} after the last "
                f"`catalog export`; export the catalog and merge your file with it, or import with --overwrite-decisions"
                for entry_id, (who, when) in sorted(decided.items())
            ])
    history = []
    for row in added:
        history.append({"catalog_id": row["id"], "action": "added", "before": None, "after": json.dumps(row)})
    for row in updated:
        history.append({"catalog_id": row["id"], "action": "updated", "before": json.dumps(current[row["id"]]), "after": json.dumps(row)})
    for entry_id in removed:
        history.append({"catalog_id": entry_id, "action": "removed", "before": json.dumps(current[entry_id]), "after": None})
    with db.atomic():
        if removed:
            placeholders = ",".join("?" * len(removed))
            db.execute(f"update apps set catalog_id = null where catalog_id in ({placeholders})", removed)
            db.execute(f"delete from catalog_suggestions where catalog_id in ({placeholders})", removed)
            db.execute(f"delete from catalog where id in ({placeholders})", removed)
        if added or updated:
            db["catalog"].upsert_all(added + updated, pk="id")
        db["catalog_history"].insert_all(
            [{**entry, "changed_at": now, "changed_by": changed_by, "source": source} for entry in history])
        refresh_after_catalog_change(db)
    return counts


def replace_catalog(db: Database, rows: list[dict[str, Any]], *, changed_by: str = "import", now: str | None = None) -> dict[str, int]:
    """Make the catalog exactly `rows` (the behaviour of `catalog import --replace --overwrite-decisions`)."""
    from ..timestamps import iso, utc_now

    return import_catalog(db, rows, replace=True, overwrite_decisions=True, changed_by=changed_by,
                          source="import --replace", now=now or iso(utc_now()))


def decided_since_export(db: Database, entry_ids: list[str]) -> dict[str, tuple[str, str]]:
    """Of these entries, those changed in the browser after the last export: id -> (who, when)."""
    if not entry_ids:
        return {}
    last = db.execute("select coalesce(max(last_history_id), 0) from catalog_exports").fetchone()[0]
    placeholders = ",".join("?" * len(entry_ids))
    rows = db.execute(
        f"""select catalog_id, changed_by, max(changed_at) from catalog_history
            where source = ? and id > ? and catalog_id in ({placeholders}) group by catalog_id""",
        [BROWSER, last, *entry_ids]).fetchall()
    return {entry_id: (who, when) for entry_id, who, when in rows}


def record_export(db: Database, *, path: str, exported_by: str, now: str, entries: int) -> None:
    """Note that the catalog, as it is after every change so far, was exported."""
    with db.atomic():
        last = db.execute("select coalesce(max(id), 0) from catalog_history").fetchone()[0]
        db["catalog_exports"].insert({"exported_at": now, "exported_by": exported_by, "path": path, "entries": entries,
                                      "last_history_id": last})
