"""The [signin] section: who signs in (with Google, Microsoft or a password) and who of them is
IT staff, how long a session lasts, when to lock an account, and where the access log lives."""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scanner import ConfigError, ConfigKey

from .passwords import is_password_hash

log = logging.getLogger(__name__)

SETTINGS = {
    # Who is IT staff when signing in with Google or Microsoft (read again at every request).
    "it_emails": ConfigKey("list[str]", []),
    "it_groups": ConfigKey("list[str]", []),
    # Sign in with Google: the OAuth client for sign-in, its secret's variable, the Workspace domain.
    "google_client_id": ConfigKey("str"),
    "google_client_secret_env": ConfigKey("str"),
    "google_domain": ConfigKey("str"),
    "google_issuer": ConfigKey("url", "https://accounts.google.com"),
    # Google groups in it_groups: a service account allowed (domain-wide delegation) to read group
    # membership, and the admin it acts as.
    "google_groups_key_file": ConfigKey("path"),
    "google_groups_admin": ConfigKey("email"),
    "google_directory_url": ConfigKey("url", "https://admin.googleapis.com/"),
    # Sign in with Microsoft: the app registration for sign-in, its secret's variable, the tenant.
    "microsoft_client_id": ConfigKey("str"),
    "microsoft_client_secret_env": ConfigKey("str"),
    "microsoft_tenant_id": ConfigKey("str"),
    "microsoft_authority_host": ConfigKey("url", "https://login.microsoftonline.com"),
    # The address IT staff open (behind a web server: https://inventory.district.org); the
    # redirect URIs registered with Google and Microsoft are made from it. Default: each request's.
    "site_url": ConfigKey("url"),
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
    # Let every member of the district (not only IT) sign in with Google or Microsoft, to see
    # their own apps and ask for a review (/-/requests); they never see the inventory.
    "staff_sign_in": ConfigKey("bool", False),
    # The access log's SQLite file; default: beside the inventory, <inventory name>-access.db.
    "access_log": ConfigKey("path"),
}

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
ENV_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def hash_variable_for(username: str | None) -> str:
    """The conventional environment variable for an account: APP_INVENTORY_HASH_<USERNAME>."""
    suffix = re.sub(r"[^A-Za-z0-9]+", "_", username or "username").strip("_").upper() or "USERNAME"
    return f"APP_INVENTORY_HASH_{suffix}"


GOOGLE_CLIENT_SUFFIX = ".apps.googleusercontent.com"
GOOGLE_KEYS = ("google_client_secret_env", "google_domain", "google_issuer", "google_groups_key_file",
               "google_groups_admin", "google_directory_url")
MICROSOFT_KEYS = ("microsoft_client_secret_env", "microsoft_tenant_id", "microsoft_authority_host")


def is_group_address(group: str) -> bool:
    """A Google group is named by its address; a Microsoft group by its object id."""
    return "@" in group


def check_settings(values: dict[str, Any], where: str) -> None:
    """Usernames are plain, and each names an environment variable, never the hash itself; each
    identity provider has what it needs; someone is IT staff when one is configured."""
    _check_password_accounts(values, where)
    google, microsoft = bool(values.get("google_client_id")), bool(values.get("microsoft_client_id"))
    if google:
        _check_google(values, where)
    elif stray := [key for key in GOOGLE_KEYS if values.get(key)]:
        raise ConfigError(f"{where} {stray[0]} is set but google_client_id is not; set it to sign in with Google, "
                          f"or remove {', '.join(stray)}")
    if microsoft:
        _check_microsoft(values, where)
    elif stray := [key for key in MICROSOFT_KEYS if values.get(key)]:
        raise ConfigError(f"{where} {stray[0]} is set but microsoft_client_id is not; set it to sign in with Microsoft, "
                          f"or remove {', '.join(stray)}")
    for email in values.get("it_emails", []):
        if "@" not in email or email.strip() != email:
            raise ConfigError(f"{where} it_emails: {email!r} is not an email address")
    for group in values.get("it_groups", []):
        if not group.strip():
            raise ConfigError(f"{where} it_groups: a group is empty")
        if is_group_address(group) and not values.get("google_groups_key_file"):
            raise ConfigError(f"{where} it_groups: {group} is a Google group; Google's ID tokens carry no groups, so "
                              "google_groups_key_file and google_groups_admin must name a service account that may "
                              "read group membership (docs/publishing.md)")
    if (google or microsoft) and not values.get("it_emails") and not values.get("it_groups"):
        raise ConfigError(f"{where}: sign-in with {'Google' if google else 'Microsoft'} is configured but nobody is IT "
                          "staff: list their addresses in it_emails (or their groups in it_groups)")
    site_url = values.get("site_url")
    if site_url and urlsplit(site_url).path not in ("", "/"):
        raise ConfigError(f"{where} site_url is the address of the server alone, like https://inventory.district.org, "
                          f"without a path, got {site_url!r}")


def _check_google(values: dict[str, Any], where: str) -> None:
    client_id = values["google_client_id"]
    if not client_id.endswith(GOOGLE_CLIENT_SUFFIX):
        raise ConfigError(f"{where} google_client_id must be the OAuth client's full id, ending in {GOOGLE_CLIENT_SUFFIX} "
                          f"(Google Cloud console > APIs & Services > Credentials), got {client_id!r}")
    for key in ("google_client_secret_env", "google_domain"):
        if not values.get(key):
            raise ConfigError(f"{where} {key} is required with google_client_id"
                              + (" (the district's Google Workspace domain, as in the hd claim)" if key == "google_domain" else ""))
    _check_variable_name(values["google_client_secret_env"], f"{where} google_client_secret_env")
    if bool(values.get("google_groups_key_file")) != bool(values.get("google_groups_admin")):
        raise ConfigError(f"{where} google_groups_key_file and google_groups_admin go together")


def _check_microsoft(values: dict[str, Any], where: str) -> None:
    for key in ("microsoft_client_secret_env", "microsoft_tenant_id"):
        if not values.get(key):
            raise ConfigError(f"{where} {key} is required with microsoft_client_id")
    _check_variable_name(values["microsoft_client_secret_env"], f"{where} microsoft_client_secret_env")
    for key, what in (("microsoft_client_id", "Application (client) ID"), ("microsoft_tenant_id", "Directory (tenant) ID")):
        try:
            uuid.UUID(values[key])
        except ValueError:
            raise ConfigError(f"{where} {key} must be the {what} on the app registration's Overview page "
                              f"(a GUID), got {values[key]!r}") from None
    authority = values.get("microsoft_authority_host")
    if authority and not authority.startswith("https://"):
        raise ConfigError(f"{where} microsoft_authority_host must be an https:// URL (MSAL accepts nothing else), got {authority!r}")


def _check_variable_name(variable: str, where: str) -> None:
    if not ENV_VARIABLE.match(variable):
        raise ConfigError(f"{where} names the environment variable that holds the secret (like APP_INVENTORY_SSO_SECRET), "
                          f"got {variable!r}; the secret itself never goes in the file")


def _check_password_accounts(values: dict[str, Any], where: str) -> None:
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


def client_secret(settings: dict[str, Any], key: str, where: str) -> str:
    """The client secret in the environment variable `key` names (a ConfigError saying which, if unset)."""
    variable = settings[key]
    value = os.environ.get(variable, "").strip()
    if not value:
        raise ConfigError(f"{where} {key}: environment variable {variable} is not set; export the sign-in app's "
                          "client secret there (the secret itself never goes in the file)")
    return value


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
                "outcome": ("succeeded, failed (a wrong username or password; signed in with Google or Microsoft but not IT "
                            "staff) or refused (locked, throttled, busy, an expired form; a token or answer that cannot be "
                            "trusted: another domain or tenant, expired, forged, a replayed or missing state)"),
                "auth": "How: password, google or microsoft",
                "username": "The username as typed, or the address Google or Microsoft vouched for",
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
