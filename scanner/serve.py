"""Publishing the inventory with Datasette 0.65: IT staff see everything, the public a list.

    build_metadata(config, public=...)      metadata.yml + [serve] -> Datasette metadata
    build_datasette(db_path, config, ...)   the configured instance (tests use its .client)
    serve(db_path, config, host=..., ...)   runs it with uvicorn and says where to reach it

Permissions are deny-by-default: the whole instance and custom SQL are for actors with
role "it" (the accounts in [serve] it_accounts, signed in through datasette-auth-passwords).
Only the tables in PUBLIC_TABLES are opened to anonymous visitors, and only with
--public / `[serve] public = true`. The database file is served by name ("inventory"),
never in directory mode, so the repository's plugins/ folder is never loaded by Datasette.
"""

from __future__ import annotations

import copy
import os
import re
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import datasette_plugin, store
from .shipped import metadata_file
from .config import Config, ConfigError
from .datasette_plugin import DASHBOARD_PATH, DATABASE_NAME, IT_ONLY, IT_ROLE, PLUGIN_NAME, PUBLIC_PAGE_PATH, PUBLIC_VIEW

# Views an anonymous visitor may read with --public. Each must hold app-level rows only,
# with counts under 10 suppressed in SQL (see scanner.schema.PUBLIC_APPS).
PUBLIC_TABLES = (PUBLIC_VIEW,)

# Datasette plugins the inventory needs, by entry-point name. Datasette loads installed
# plugins itself, except under pytest; loading them by name makes both cases the same.
REQUIRED_DATASETTE_PLUGINS = {
    "auth_passwords": "datasette-auth-passwords",
    "dashboards": "datasette-dashboards",
    "leaflet": "datasette-leaflet",  # the dashboards' templates expect it
    "render_markdown": "datasette-render-markdown",
}

DATASETTE_SETTINGS = {
    # Only allow_sql in the metadata (IT staff) opens custom SQL.
    "default_allow_sql": False,
    # Suggesting facets runs a query per column of every big view on every page view.
    "suggest_facets": False,
    "sql_time_limit_ms": 3000,
    "truncate_cells_html": 300,
}

TEMPLATES = Path(__file__).parent / "templates"
MIN_PASSWORD_LENGTH = 12
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
ENV_VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PASSWORD_HASH = re.compile(r"^pbkdf2_sha256\$[0-9]+\$[^$\s]+\$[A-Za-z0-9+/=]+$")


class ServeError(Exception):
    """Datasette cannot start (the address is taken, a dependency is missing)."""


class InventoryNotFound(ServeError):
    """The --db file does not exist."""


# -- metadata ------------------------------------------------------------------------------

def load_metadata(path: Path | None = None) -> dict[str, Any]:
    """The shipped Datasette metadata, as a dict."""
    try:
        path = path or metadata_file()
    except FileNotFoundError as error:
        raise ServeError(str(error)) from None
    try:
        metadata = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ServeError(f"{path}: cannot read the Datasette metadata: {error}") from None
    if not isinstance(metadata, dict) or DATABASE_NAME not in (metadata.get("databases") or {}):
        raise ServeError(f"{path}: not the app inventory's Datasette metadata (no databases: {DATABASE_NAME}:)")
    return metadata


def it_accounts(config: Config) -> dict[str, str]:
    """[serve] it_accounts, checked: username -> the environment variable holding its hash.

    Raises ConfigError naming the account when a variable is missing or holds no hash;
    the value itself is never repeated in a message.
    """
    accounts = config.section("serve")["it_accounts"]
    for username, variable in accounts.items():
        where = f"{config.where}: [serve] it_accounts.{username}"
        if not USERNAME.match(username):
            raise ConfigError(f"{where}: a username may hold letters, digits and . _ @ - (up to 64 characters)")
        if not ENV_VARIABLE.match(variable):
            raise ConfigError(
                f"{where} must name the environment variable that holds the password hash, like "
                f'"{hash_variable_for(username)}" (the hash itself never goes in the file)'
            )
        value = os.environ.get(variable, "").strip()
        if not value:
            raise ConfigError(
                f"{where}: environment variable {variable} is not set; make a hash with "
                f"`app-inventory hash-password --username {username}` and export it as {variable}"
            )
        if not PASSWORD_HASH.match(value):
            raise ConfigError(
                f"{where}: environment variable {variable} does not hold a password hash from "
                "`app-inventory hash-password` (it starts with pbkdf2_sha256$)"
            )
    return dict(accounts)


def build_metadata(config: Config, *, public: bool) -> dict[str, Any]:
    """Datasette metadata: metadata.yml plus what depends on the configuration.

    IT accounts go in as `$env` references, so Datasette reads the hashes from the
    environment and /-/metadata never shows them.
    """
    metadata = copy.deepcopy(load_metadata())
    serve_settings = config.section("serve")
    accounts = it_accounts(config)
    # Deny by default, whatever the file says: a table added later stays IT-only.
    metadata["allow"] = dict(IT_ONLY)
    metadata["allow_sql"] = dict(IT_ONLY)
    if config.sections.get("serve", {}).get("district_name"):
        metadata["title"] = f"{serve_settings['district_name']} app inventory"
    plugins = metadata.setdefault("plugins", {})
    auth = {f"{username}_password_hash": {"$env": variable} for username, variable in accounts.items()}
    auth["actors"] = {username: {"id": username, "role": IT_ROLE} for username in accounts}
    plugins["datasette-auth-passwords"] = auth
    plugins[PLUGIN_NAME] = {
        "public": public,
        "district_name": serve_settings["district_name"],
        "public_contact": serve_settings.get("public_contact"),
    }
    tables = metadata["databases"][DATABASE_NAME].setdefault("tables", {})
    for table in PUBLIC_TABLES:
        tables.setdefault(table, {}).pop("allow", None)
        if public:
            tables[table]["allow"] = True
    return metadata


# -- the Datasette instance ----------------------------------------------------------------

def register_datasette_plugins() -> None:
    """Make sure the plugins the inventory relies on, and its own, are loaded (idempotent)."""
    from datasette.plugins import pm

    for entry_point_name, distribution in REQUIRED_DATASETTE_PLUGINS.items():
        if pm.get_plugin(entry_point_name) is None:
            pm.load_setuptools_entrypoints("datasette", name=entry_point_name)
        if pm.get_plugin(entry_point_name) is None:
            raise ServeError(f"the Datasette plugin {distribution} is not installed; reinstall app-inventory")
    if not pm.is_registered(datasette_plugin):
        pm.register(datasette_plugin, name=PLUGIN_NAME)


def build_datasette(db_path: str | os.PathLike, config: Config, *, public: bool | None = None):
    """The configured Datasette instance over the inventory at db_path.

    public=None takes `[serve] public` from the configuration.
    """
    from datasette.app import Datasette
    from datasette.database import Database

    path = Path(db_path)
    if not path.is_file():
        raise InventoryNotFound(
            f"{path}: no inventory here; run `app-inventory scan` (or `app-inventory demo`) first, or pass --db"
        )
    if public is None:
        public = config.section("serve")["public"]
    metadata = build_metadata(config, public=public)
    _update_db_shape(path)
    register_datasette_plugins()
    datasette = Datasette(
        metadata=metadata,
        settings=DATASETTE_SETTINGS,
        template_dir=str(TEMPLATES),
        # A fixed secret keeps IT staff signed in across restarts; otherwise one per start.
        secret=os.environ.get("DATASETTE_SECRET") or None,
    )
    datasette.remove_database("_memory")
    # Served under one name whatever the file is called: links stay the same.
    datasette.add_database(Database(datasette, path=str(path.resolve()), is_mutable=True), name=DATABASE_NAME)
    return datasette


def _update_db_shape(path: Path) -> None:
    """Apply pending migrations and views (the public view must exist before anyone asks for it)."""
    try:
        db = store.open_db(str(path))
    except sqlite3.DatabaseError as error:
        raise ServeError(f"{path}: cannot open the inventory: {error} (a scan may be writing it; try again when it finishes)") from None
    db.close()


# -- running it ----------------------------------------------------------------------------

def serve(
    db_path: str | os.PathLike,
    config: Config,
    *,
    host: str | None = None,
    port: int | None = None,
    public: bool | None = None,
    echo: Callable[[str], None] = print,
) -> None:
    """Serve the inventory with Datasette until interrupted (Ctrl-C).

    host, port and public default to the [serve] section. Prints where to reach it.
    """
    import uvicorn

    settings = config.section("serve")
    host = host or settings["host"]
    port = port or settings["port"]
    public = settings["public"] if public is None else public
    datasette = build_datasette(db_path, config, public=public)
    check_address_free(host, port)
    echo(describe_addresses(db_path, host, port, public=public, accounts=list(it_accounts(config))))
    # No access log: query strings of canned queries can hold staff and student emails.
    uvicorn.run(datasette.app(), host=host, port=port, log_level="warning", access_log=False, lifespan="on")


def check_address_free(host: str, port: int) -> None:
    """Fail with a clear message now rather than a traceback from the server later."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        if error.errno == 98 or "in use" in str(error).lower():
            raise ServeError(
                f"{host}:{port} is already in use (another `app-inventory serve`?); "
                "pass --port or set [serve] port"
            ) from None
        raise ServeError(f"cannot listen on {host}:{port}: {error.strerror or error}; check --host / [serve] host") from None


def describe_addresses(db_path, host: str, port: int, *, public: bool, accounts: list[str]) -> str:
    """The start-up message: where IT signs in, where the public page is, how to add accounts."""
    everywhere = host in ("0.0.0.0", "::", "")
    shown_host = "localhost" if everywhere else (f"[{host}]" if ":" in host else host)
    base = f"http://{shown_host}:{port}"
    lines = [f"Datasette is serving {db_path} at {base}/"]
    if accounts:
        lines.append(f"  IT staff:     sign in at {base}/-/login (accounts: {', '.join(sorted(accounts))})")
        lines.append(f"  Dashboard:    {base}{DASHBOARD_PATH}")
    else:
        lines.append(
            "  IT staff:     no account is configured, so nobody can sign in. To add one, run "
            "`app-inventory hash-password --username NAME`, export the hash, and name its variable "
            "in [serve] it_accounts (see app-inventory.example.toml)."
        )
    if public:
        lines.append(f"  Public page:  {base}{PUBLIC_PAGE_PATH} (open to anyone: app-level list, counts under 10 shown as <10)")
    else:
        lines.append(
            f"  Public page:  not published; IT staff can preview it at {base}{PUBLIC_PAGE_PATH}. "
            "Start with --public (or [serve] public = true) to publish it."
        )
    if everywhere:
        lines.append(f"Listening on every network interface ({host}); put a web server with TLS in front before exposing it.")
    elif host in ("127.0.0.1", "localhost", "::1"):
        lines.append("Only this computer can connect; to publish, put a web server with TLS in front (docs/publishing.md).")
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


# -- IT passwords --------------------------------------------------------------------------

def hash_password(password: str) -> str:
    """A datasette-auth-passwords hash (PBKDF2-SHA256) for an IT account's password."""
    from datasette_auth_passwords.utils import hash_password as make_hash

    return make_hash(password)


def hash_variable_for(username: str | None) -> str:
    """The conventional environment variable for an account: APP_INVENTORY_HASH_<USERNAME>."""
    suffix = re.sub(r"[^A-Za-z0-9]+", "_", username or "username").strip("_").upper() or "USERNAME"
    return f"APP_INVENTORY_HASH_{suffix}"

