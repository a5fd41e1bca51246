"""The one place that writes the inventory.

A scan of one provider is written inside one transaction: `start_scan()` records a
`running` row first (committed on its own), then a `ScanWriter` takes the provider's
records and finishes the scan; only then does the caller commit. Readers (Datasette,
WAL mode) see either the previous inventory or the new one.

    database.py   opening (schema and scope knowledge up to date), many rows at once, checkpoints
    scans.py      the `scans` rows: running, succeeded, failed, interrupted
    writer.py     ScanWriter: one provider's records -> users, apps, grants, changes
    posture.py    the tenant's consent posture (history per scan) and consent requests
    derived.py    recomputed after a scan or catalog change: counts, matching, unapproved_usage, retention
    people.py     accounts that share an address are one person (users.person_id, people)
    products.py   catalog entries and uncatalogued apps, counted in distinct people (products,
                  multi_account_usage)
    temp.py       scratch temp tables for the SQL above
    catalog.py    changing the catalog (imports, decisions), all or nothing, with its history
    review.py     decisions made in the browser and staff requests for a review
"""

from .catalog import (
    CATALOG_COLUMNS, CatalogConflict, decided_since_export, import_catalog, record_export, refresh_after_catalog_change,
    replace_catalog,
)
from .database import (
    PRIVATE_FILE_MODE, InventoryUnreadable, checkpoint_alongside, create_private_file, describe_unusable, insert_rows,
    open_db, sync_scopes,
)
from .derived import (
    DEFAULT_HISTORY_DAYS, apply_matching, product_of, purge_history, refresh_app_stats, refresh_derived,
    refresh_unapproved_usage,
)
from .incremental import AffectedFindings
from .people import PeopleRefresh, refresh_people, track_people_changes
from .products import refresh_products
from .scans import ScanChanges, fail_scan, last_succeeded_scan, mark_interrupted_scans, start_scan, user_digests
from .writer import CHANGE_KINDS, ScanWriter, grant_id

__all__ = [
    "AffectedFindings", "CATALOG_COLUMNS", "CHANGE_KINDS", "DEFAULT_HISTORY_DAYS", "PRIVATE_FILE_MODE", "InventoryUnreadable", "PeopleRefresh",
    "ScanChanges", "ScanWriter", "apply_matching", "checkpoint_alongside", "create_private_file", "describe_unusable",
    "fail_scan", "grant_id", "insert_rows", "last_succeeded_scan", "mark_interrupted_scans", "open_db",
    "product_of", "purge_history", "refresh_app_stats", "refresh_derived", "refresh_people", "refresh_products",
    "refresh_unapproved_usage", "track_people_changes",
    "replace_catalog", "start_scan", "user_digests", "sync_scopes",
    "CatalogConflict", "decided_since_export", "import_catalog", "record_export", "refresh_after_catalog_change",
]
