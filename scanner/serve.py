"""Publishing the inventory with Datasette 0.65: IT staff see everything, the public a list.

    build_metadata(config, public=...)      metadata.yml + [serve] -> Datasette metadata
    build_datasette(db_path, config, ...)   the configured instance (tests use its .client)
    serve(db_path, config, host=..., ...)   runs it with uvicorn and says where to reach it

Permissions are deny-by-default: the whole instance and custom SQL are for actors with
role "it". Who gets that role is decided by the sign-in plugin (plugins/signin), which,
like any plugin, hands its Datasette hooks over through the `datasette_plugins` hook.
Only the tables in PUBLIC_TABLES are opened to anonymous visitors, and only with
--public / `[serve] public = true`. The database file is served by name ("inventory"),
never in directory mode, so the repository's plugins/ folder is never loaded by Datasette.
"""

from __future__ import annotations

import asyncio
import copy
import os
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from . import datasette_plugin, public_language, store
from .config import Config, LiveConfig
from .datasette_plugin import DASHBOARD_PATH, DATABASE_NAME, IT_ONLY, PLUGIN_NAME, PUBLIC_PAGE_PATH, PUBLIC_VIEW
from .plugin_manager import load_plugins
from .served import ServedInventory, serve_inventory, served_inventory
from .shipped import metadata_file

# Views an anonymous visitor may read with --public. Each must hold app-level rows only,
# with counts published as <10 or a range of ten, in SQL (see scanner.schema.PUBLIC_APPS).
PUBLIC_TABLES = (PUBLIC_VIEW,)

# Datasette plugins the inventory needs, by entry-point name. Datasette loads installed
# plugins itself, except under pytest; loading them by name makes both cases the same.
REQUIRED_DATASETTE_PLUGINS = {
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

# Installed Datasette plugins that must never run here, by entry-point name. Datasette loads
# every installed plugin; datasette-auth-passwords (used before plugins/signin) accepts HTTP
# Basic credentials on every URL, with no throttle, even with http_basic_auth off.
REFUSED_DATASETTE_PLUGINS = ("auth_passwords",)

TEMPLATES = Path(__file__).parent / "templates"


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


def build_metadata(config: Config, *, public: bool) -> dict[str, Any]:
    """Datasette metadata: metadata.yml plus what depends on the configuration."""
    metadata = copy.deepcopy(load_metadata())
    serve_settings = config.section("serve")
    # Deny by default, whatever the file says: a table added later stays IT-only.
    metadata["allow"] = dict(IT_ONLY)
    metadata["allow_sql"] = dict(IT_ONLY)
    if config.sections.get("serve", {}).get("district_name"):
        metadata["title"] = f"{serve_settings['district_name']} app inventory"
    plugins = metadata.setdefault("plugins", {})
    plugins[PLUGIN_NAME] = {
        "public": public,
        "district_name": serve_settings["district_name"],
        "public_contact": serve_settings.get("public_contact"),
        "public_languages_dir": _public_languages_dir(config),
    }
    tables = metadata["databases"][DATABASE_NAME].setdefault("tables", {})
    for table in PUBLIC_TABLES:
        tables.setdefault(table, {}).pop("allow", None)
        if public:
            tables[table]["allow"] = True
    return metadata


# -- the Datasette instance ----------------------------------------------------------------

def _public_languages_dir(config: Config) -> str | None:
    """[serve] public_languages_dir as an absolute path (relative to the config file), its catalogs
    checked now: a bad catalog stops start-up instead of breaking the public page later."""
    folder = config.section("serve").get("public_languages_dir")
    if not folder:
        return None
    path = Path(folder).expanduser()
    if not path.is_absolute() and config.path is not None:
        path = Path(config.path).parent / path
    if not path.is_dir():
        raise ServeError(f"{config.path}: [serve] public_languages_dir: {path} is not a folder")
    try:
        public_language.catalogs(str(path))
    except ValueError as error:
        raise ServeError(f"[serve] public_languages_dir: {error}") from None
    return str(path)


def register_datasette_plugins() -> None:
    """Make sure the plugins the inventory relies on, its own, and those that app-inventory
    plugins give through the `datasette_plugins` hook are loaded, and refused ones are not
    (idempotent)."""
    from datasette.plugins import pm

    for name in REFUSED_DATASETTE_PLUGINS:
        if pm.get_plugin(name) is not None:
            pm.unregister(name=name)
    for entry_point_name, distribution in REQUIRED_DATASETTE_PLUGINS.items():
        if pm.get_plugin(entry_point_name) is None:
            pm.load_setuptools_entrypoints("datasette", name=entry_point_name)
        if pm.get_plugin(entry_point_name) is None:
            raise ServeError(f"the Datasette plugin {distribution} is not installed; reinstall app-inventory")
    given = [(datasette_plugin, PLUGIN_NAME)]

    def register(plugin, name: str | None = None) -> None:
        given.append((plugin, name or getattr(plugin, "__name__", None) or repr(plugin)))

    load_plugins().hook.datasette_plugins(register=register)
    for plugin, name in given:
        if not pm.is_registered(plugin):
            pm.register(plugin, name=name)


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
    serve_inventory(datasette, ServedInventory(db_path=path, config=LiveConfig(config), public=public))
    return datasette


def _update_db_shape(path: Path) -> None:
    """Apply pending migrations and views (the public view must exist before anyone asks for it)."""
    try:
        db = store.open_db(str(path))  # InventoryUnreadable for a file that is no inventory
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
    # Plugins check their settings and open what they need now, so a mistake stops here (exit 2).
    asyncio.run(datasette.invoke_startup())
    check_address_free(host, port)
    lines = served_lines(datasette)
    echo(describe_addresses(db_path, host, port, public=public, plugin_lines=lines))
    proxies = settings["trusted_proxies"]
    uvicorn.run(
        datasette.app(), host=host, port=port, log_level="warning",
        # No uvicorn access log: query strings of canned queries hold staff and student emails
        # (the sign-in plugin keeps its own access log, where only IT can read it).
        access_log=False, lifespan="on",
        # X-Forwarded-Proto / -For are believed only from the configured web server in front.
        proxy_headers=bool(proxies), forwarded_allow_ips=",".join(proxies) if proxies else None,
    )


def served_lines(datasette) -> list[str]:
    """What plugins announced at start-up (the sign-in plugin: where and who signs in)."""
    served = served_inventory(datasette)
    return list(served.start_up_lines) if served else []


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


def describe_addresses(db_path, host: str, port: int, *, public: bool, plugin_lines: list[str]) -> str:
    """The start-up message: where IT signs in (as plugins describe it), where the public page is."""
    everywhere = host in ("0.0.0.0", "::", "")
    shown_host = "localhost" if everywhere else (f"[{host}]" if ":" in host else host)
    base = f"http://{shown_host}:{port}"
    lines = [f"Datasette is serving {db_path} at {base}/"]
    lines += ["  " + line.replace("{base}", base) for line in plugin_lines]
    lines.append(f"  Dashboard:    {base}{DASHBOARD_PATH} (IT staff)")
    if public:
        lines.append(f"  Public page:  {base}{PUBLIC_PAGE_PATH} (open to anyone: app-level list, counts as <10 or a range of ten)")
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
