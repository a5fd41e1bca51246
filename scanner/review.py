"""Review in the browser, for plugins: record IT's decision on a product, or a staff member's
request for a review, under the inventory's lock, then tell plugins the catalog changed
(the same path as `catalog import`). docs/review.md describes the loop.
"""

from __future__ import annotations

from typing import Any

from . import store
from .config import Config
from .plugin_manager import call_each
from .scan import ScanLock, ScanLocked
from .store.review import (
    DECISION_FIELDS, ReviewError, decided_provider_requests, file_request, find_person, products_of_person, record_decision,
)
from .timestamps import iso, utc_now

__all__ = ["DECISION_FIELDS", "ReviewError", "decide", "decided_provider_requests", "find_person", "products_of_person", "request_review"]


def decide(db_path: str, product_id: str, fields: dict[str, Any], *, changed_by: str, config: Config) -> dict[str, Any]:
    """Record a decision (scanner.store.review.record_decision) and run the catalog_changed
    hook; ReviewError when a scan or import holds the inventory, or the decision is refused."""
    try:
        with ScanLock(db_path):
            db = store.open_db(db_path)
            try:
                row = record_decision(db, product_id, fields, changed_by=changed_by, now=iso(utc_now()))
                call_each("catalog_changed", db=db, config=config)
                return row
            finally:
                db.close()
    except ScanLocked:
        raise ReviewError("a scan or catalog import is writing the inventory; try again in a few minutes") from None


def request_review(db_path: str, product_id: str, *, email: str, reason: str, use: str) -> int:
    """File a staff member's request for a review (scanner.store.review.file_request)."""
    db = store.open_db(db_path)
    try:
        return file_request(db, product_id, email=email, reason=reason, use=use, now=iso(utc_now()))
    finally:
        db.close()
