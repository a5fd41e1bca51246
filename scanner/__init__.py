"""District App Inventory: third-party apps connected to a district's accounts.

This module is the public API: plugins, built-in or third-party, import what they
need from `scanner` and nothing below it (a test checks the built-in ones).

    from scanner import hookimpl, Provider, User, App, Grant, ScanRun, PostureFinding, ConsentRequest

Hooks are documented in docs/plugins.md; the record types in scanner.providers.
"""

__version__ = "0.1.0"

from .config import Config, ConfigError, ConfigKey
from .hookspecs import hookimpl
from .providers import (
    App, ConsentRequest, Grant, GrantsListed, LastUsed, PostureFinding, Provider, ProviderError, Record, ScanRun, User,
    UsersSeen,
)
from .revokers import GrantGone, PlannedGrant, Revoker, Target, WriteFailed, WriteNotConfigured, WriteUncertain, registered_revokers
from .catalog import AUDIENCES, STATUSES, CatalogError, client_id_columns
from .review import DECISION_FIELDS, ReviewError, decide, decided_provider_requests, find_person, products_of_person, request_review
from .roles import classify_role
from .schema import GRANT_ID, SCOPE_CREEP_KEYS, STATUSES_NEEDING_REVIEW, TENANT_WIDE_UNAPPROVED_KEYS, UNAPPROVED_IDS, UNAPPROVED_KEYS, iso_time
from .scopes import RISK_RANK, scope_risk
from .scan import ScanLock, ScanLocked
from .served import ServedInventory, served_inventory
from .store import AffectedFindings, ScanChanges, create_private_file, open_db
from .timestamps import iso, normalize_timestamp, parse_iso, utc_now

__all__ = [
    "AffectedFindings", "AUDIENCES", "CatalogError", "DECISION_FIELDS", "ReviewError", "STATUSES", "client_id_columns", "decide", "decided_provider_requests", "find_person",
    "products_of_person", "request_review",
    "App", "Config", "ConfigError", "ConfigKey", "ConsentRequest", "Grant", "GrantsListed", "LastUsed", "PostureFinding", "Provider",
    "ProviderError", "RISK_RANK", "Record", "STATUSES_NEEDING_REVIEW", "UNAPPROVED_IDS", "UNAPPROVED_KEYS", "TENANT_WIDE_UNAPPROVED_KEYS", "SCOPE_CREEP_KEYS", "ScanChanges", "ScanRun", "ServedInventory", "User",
    "classify_role", "create_private_file", "GRANT_ID", "hookimpl", "iso", "iso_time", "normalize_timestamp", "open_db", "parse_iso",
    "scope_risk", "served_inventory", "utc_now",
    "GrantGone", "PlannedGrant", "Revoker", "ScanLock", "ScanLocked", "Target", "WriteFailed", "WriteNotConfigured", "WriteUncertain",
    "registered_revokers", "UsersSeen",
]
