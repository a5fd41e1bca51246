"""The [signin] section: who signs in with a password, how long a session lasts, when to lock
an account, and where the access log lives."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from scanner import ConfigError, ConfigKey

from .passwords import is_password_hash

log = logging.getLogger(__name__)

SETTINGS = {
    # Password accounts (districts without Google or Microsoft sign-in): username = the
    # environment variable that holds the hash made by `app-inventory hash-password`.
    "password_accounts": ConfigKey("table[str]", {}),
    # A session ends this many hours after sign-in, whatever happens meanwhile.
    "session_hours": ConfigKey("int", 8, minimum=1, maximum=24 * 14),
    # After this many failed sign-ins for one username within lockout_minutes, that username
    # is refused until the failures are lockout_minutes old (known or not: no enumeration).
    "max_failures": ConfigKey("int", 5, minimum=1, maximum=1000),
    "lockout_minutes": ConfigKey("int", 15, minimum=1, maximum=24 * 60),
    # The same for one client address, across usernames (password spraying).
    "max_failures_per_address": ConfigKey("int", 20, minimum=1, maximum=10000),
    # The access log's SQLite file; default: beside the inventory, <inventory name>-access.db.
    "access_log": ConfigKey("path"),
}

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
ENV_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def hash_variable_for(username: str | None) -> str:
    """The conventional environment variable for an account: APP_INVENTORY_HASH_<USERNAME>."""
    suffix = re.sub(r"[^A-Za-z0-9]+", "_", username or "username").strip("_").upper() or "USERNAME"
    return f"APP_INVENTORY_HASH_{suffix}"


def check_settings(values: dict[str, Any], where: str) -> None:
    """Usernames are plain, and each names an environment variable, never the hash itself."""
    for username, variable in values.get("password_accounts", {}).items():
        account = f"{where} password_accounts.{username}"
        if not USERNAME.match(username):
            raise ConfigError(f"{account}: a username may hold letters, digits and . _ @ - (up to 64 characters)")
        if not ENV_VARIABLE.match(variable):
            raise ConfigError(
                f"{account} must name the environment variable that holds the password hash, like "
                f'"{hash_variable_for(username)}" (the hash itself never goes in the file)'
            )


def password_hashes(settings: dict[str, Any], where: str, *, strict: bool) -> dict[str, str]:
    """username -> hash, read from the environment variables password_accounts names.

    strict (at start-up): a missing variable, or one that holds no hash, is a ConfigError
    naming the account (never the value). Not strict (the configuration was edited while
    serving): such an account cannot sign in, and a warning says why.
    """
    hashes = {}
    for username, variable in settings.get("password_accounts", {}).items():
        account = f"{where} password_accounts.{username}"
        value = os.environ.get(variable, "").strip()
        problem = None
        if not value:
            problem = (f"{account}: environment variable {variable} is not set; make a hash with "
                       f"`app-inventory hash-password --username {username}` and export it as {variable}")
        elif not is_password_hash(value):
            problem = (f"{account}: environment variable {variable} does not hold a password hash from "
                       "`app-inventory hash-password` (it starts with pbkdf2_sha256$)")
        if problem and strict:
            raise ConfigError(problem)
        if problem:
            log.warning("signin: %s", problem)
            continue
        hashes[username] = value
    return hashes


def access_log_path(settings: dict[str, Any], db_path: Path) -> Path:
    """[signin] access_log, or <inventory name>-access.db beside the inventory."""
    return Path(settings["access_log"]) if settings.get("access_log") else db_path.with_name(f"{db_path.stem}-access.db")


# Datasette's descriptions of the access log (shown to IT staff, who alone may read it).
ACCESS_LOG_METADATA = {
    "description": (
        "Who signed in, and who read per-person data: every sign-in (succeeded, failed or refused), "
        "sign-out and ended session, and every request by a signed-in person to a page that can "
        "show per-person rows. Written by app-inventory serve alone; append-only; purged after "
        "[retention] history_days."
    ),
    "tables": {
        "sign_ins": {
            "description": "Every sign-in attempt, sign-out and ended session.",
            "sort_desc": "id",
            "facets": ["event", "outcome", "auth"],
            "columns": {
                "id": "The entry's number",
                "at": "When (UTC)",
                "event": "sign_in, sign_out or session_ended",
                "outcome": "succeeded, failed (wrong username or password) or refused (locked, throttled, busy, an expired form)",
                "auth": "How: password (later also google or microsoft)",
                "username": "The username as typed (failed attempts) or the account",
                "client_ip": "The address the request came from (behind a trusted proxy, the client's own)",
                "user_agent": "The browser, as it names itself",
                "reason": "Why it failed, was refused or ended",
                "session": "The session it started or ended (sessions.id)",
            },
        },
        "requests": {
            "description": "Every request by a signed-in person that could show per-person rows: who, when, what.",
            "sort_desc": "id",
            "facets": ["actor_id"],
            "columns": {
                "id": "The entry's number",
                "at": "When (UTC)",
                "actor_id": "Who (the account or email address)",
                "auth": "How they signed in",
                "client_ip": "From which address",
                "method": "GET, or POST for a form",
                "path": "The page or export (a table, view, row, query or SQL)",
                "query": "Its query string: the SQL, filters or canned query parameters (an email address searched for shows here)",
                "session": "The session (sessions.id)",
            },
        },
        "sessions": {
            "description": "Who is or was signed in: one row per sign-in, until it ends (sign-out, expiry, or removal from the configuration).",
            "sort_desc": "started_at",
            "facets": ["actor_id", "end_reason"],
            "columns": {
                "id": "A one-way hash of the session's cookie (the cookie cannot be made from it)",
                "actor_id": "Who",
                "auth": "How they signed in",
                "identity": "What the sign-in established, as JSON",
                "client_ip": "The address they signed in from",
                "started_at": "When they signed in",
                "expires_at": "When the session ends at the latest ([signin] session_hours)",
                "ended_at": "When it ended, if it has",
                "end_reason": "signed out, expired, no longer IT staff in the configuration, or replaced by a new sign-in",
            },
        },
    },
}
