"""The `app-inventory` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from . import __version__, store
from .catalog import CatalogError, read_catalog
from .config import CONFIG_ENV_VAR, Config, ConfigError, load_config
from .installation import InstallationClash, check_installation
from .plugin_manager import call_each, describe_plugins, load_plugins
from .providers import ProviderError
from .scan import ScanLock, ScanLocked, run_scans

DEFAULT_DB = "inventory.db"
DEMO_DB = "demo.db"


class BadInput(click.ClickException):
    """Wrong configuration or input file: one clear message, exit code 2, no traceback."""

    exit_code = 2


class RunFailed(click.ClickException):
    exit_code = 1


class AppContext:
    """What every command (including plugins' commands) gets with @click.pass_obj."""

    def __init__(self, db_path: str, config_path: str | None, quiet: bool):
        self.db_path = db_path
        self.config_path = config_path
        self.quiet = quiet
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        """The configuration, loaded (and validated) the first time it is needed."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def open_db(self):
        return store.open_db(self.db_path)


class InventoryGroup(click.Group):
    """Turns the project's expected errors into clean messages with the right exit code."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ConfigError, CatalogError, store.InventoryUnreadable) as error:
            raise BadInput(str(error)) from None
        except (ProviderError, ScanLocked) as error:
            raise RunFailed(str(error)) from None
        except OSError as error:
            if error.filename is None:
                raise
            # A folder this account may not write (the lock files live beside the inventory), a full disk.
            raise BadInput(f"{error.filename}: {error.strerror or error}; run as the account that owns the inventory and its folder") from None


@click.group(cls=InventoryGroup)
@click.version_option(__version__, prog_name="app-inventory")
@click.option("--db", "db_path", default=DEFAULT_DB, show_default=True, type=click.Path(dir_okay=False), help="The inventory database.")
@click.option("--config", "config_path", envvar=CONFIG_ENV_VAR, type=click.Path(dir_okay=False), help=f"Configuration file [default: app-inventory.toml; env {CONFIG_ENV_VAR}].")
@click.option("-v", "--verbose", is_flag=True, help="Show debugging detail.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors; no progress.")
@click.pass_context
def cli(ctx, db_path, config_path, verbose, quiet):
    """Find the third-party apps connected to your district's Google Workspace and
    Microsoft 365 accounts, match them against your approved-app catalog, and
    publish the inventory with Datasette."""
    configure_logging(verbose=verbose, quiet=quiet)
    ctx.obj = AppContext(db_path, config_path, quiet)


def configure_logging(*, verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Client libraries log request details at DEBUG; keep them out of the output.
    for noisy in ("googleapiclient", "google", "google_auth_httplib2", "urllib3", "msal", "filelock", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.command()
@click.option("--provider", "providers", multiple=True, help="Scan only this provider (google, microsoft); repeatable. Default: every configured one.")
@click.option("--full", is_flag=True, help="Re-read every account instead of only what changed since the last scan.")
@click.pass_obj
def scan(app: AppContext, providers, full):
    """Scan the configured providers into the inventory."""
    outcome = run_scans(app.db_path, app.config, only=providers, force_full=full, show_progress=not app.quiet)
    for row in outcome.scans:
        click.echo(describe_scan(row))
    if outcome.failures:
        raise RunFailed("; ".join(outcome.failures) + " (run with --verbose for details)")


def describe_scan(row: dict) -> str:
    if row["status"] != "succeeded":
        return f"{row['provider']}: scan {row['id']} failed: {row['error']}"
    return (
        f"{row['provider']}: {row['mode']} scan {row['id']} succeeded: {row['users_seen']:,} users, "
        f"{row['apps_seen']:,} apps, {row['grants_seen']:,} grants, {row['api_calls']:,} API calls"
    )


@cli.group()
def catalog():
    """The approved-app catalog (the outcome of your vetting program)."""


@catalog.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Make the catalog exactly FILE: also remove the entries FILE does not name.")
@click.option("--overwrite-decisions", is_flag=True,
              help="Also overwrite entries decided in the browser since the last `catalog export`.")
@click.pass_obj
def catalog_import(app: AppContext, file: Path, replace: bool, overwrite_decisions: bool):
    """Add or update the entries FILE names (CSV, YAML or JSON), all or nothing, and rematch apps.

    Entries FILE does not name stay as they are, unless --replace. An entry decided in the
    browser since the last `catalog export` is never overwritten silently: the import is
    refused, naming it, unless --overwrite-decisions."""
    import getpass

    from .timestamps import iso, utc_now

    rows = read_catalog(file)
    app.config  # a configuration that does not load stops the import before it writes anything
    with ScanLock(app.db_path):
        db = app.open_db()
        try:
            counts = store.import_catalog(
                db, rows, replace=replace, overwrite_decisions=overwrite_decisions, changed_by=getpass.getuser(),
                source="import --replace" if replace else "import", now=iso(utc_now()))
            if counts["added"] or counts["updated"] or counts["removed"]:
                catalog_changed(db, app)
        finally:
            db.close()  # now, not whenever garbage collection gets to it: the WAL is copied into the file here
    if counts["added"] or counts["updated"] or counts["removed"]:
        click.echo(f"Catalog imported from {file}: {counts['added']} added, {counts['updated']} updated, {counts['removed']} removed, {counts['unchanged']} unchanged.")
    else:
        click.echo(f"Catalog unchanged: {file} matches the {counts['unchanged']} entries already imported.")


def catalog_changed(db, app: AppContext) -> None:
    """Tell plugins (the alerts queue) that the catalog changed."""
    call_each("catalog_changed", db=db, config=app.config)


@catalog.command(name="export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def catalog_export(app: AppContext, file: Path):
    """Write the catalog to FILE (CSV, YAML or JSON by its extension) in exactly the import
    format, decisions made in the browser included: importing it changes nothing."""
    import getpass

    from .catalog import write_catalog
    from .timestamps import iso, utc_now

    if not Path(app.db_path).exists():
        raise BadInput(f"{app.db_path}: no inventory here; run a scan or `catalog import` first")
    db = app.open_db()
    try:
        with db.atomic():  # the rows written and the export noted are the same catalog
            rows = list(db["catalog"].rows)
            count = write_catalog(file, rows)
            store.record_export(db, path=str(file), exported_by=getpass.getuser(), now=iso(utc_now()), entries=count)
    finally:
        db.close()
    click.echo(f"Catalog exported to {file}: {count} entries.")


@cli.command(name="plugins")
def plugins_command():
    """List installed plugins, their versions and hooks, as JSON."""
    click.echo(json.dumps(describe_plugins(), indent=2))


@cli.command(name="serve")
@click.option("--host", help="Address to listen on [default: [serve] host, 127.0.0.1].")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on [default: [serve] port, 8001].")
@click.option("--public", is_flag=True, default=None, help="Let anyone read the public list of apps (no names or emails; counts as <10 or a range of ten).")
@click.pass_obj
def serve_command(app: AppContext, host, port, public):
    """Publish the inventory with Datasette. IT staff sign in and see everything;
    with --public, anyone can read the public transparency page."""
    from .serve import InventoryNotFound, ServeError, serve

    try:
        serve(app.db_path, app.config, host=host, port=port, public=public or None, echo=click.echo)
    except InventoryNotFound as error:
        raise BadInput(str(error)) from None
    except ServeError as error:
        raise RunFailed(str(error)) from None


@cli.command()
@click.option("--users", type=click.IntRange(min=10), default=3000, show_default=True, help="How many accounts the district has.")
@click.option("--no-serve", is_flag=True, help="Scan and summarize, then exit instead of starting Datasette.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port for Datasette [default: 8001].")
@click.pass_context
def demo(ctx, users, no_serve, port):
    """Scan a synthetic district through local emulators of Google Workspace and
    Microsoft 365 with the real providers, then open it in Datasette.

    Writes demo.db unless --db is given; never overwrites a real inventory."""
    from .demo.run import run_demo
    from .serve import InventoryNotFound, ServeError

    app: AppContext = ctx.obj
    explicit = ctx.parent.get_parameter_source("db_path") is click.core.ParameterSource.COMMANDLINE
    try:
        run_demo(app.db_path if explicit else DEMO_DB, users=users, serve=not no_serve, port=port, echo=click.echo)
    except InventoryNotFound as error:
        raise BadInput(str(error)) from None
    except (ServeError, RuntimeError) as error:
        raise RunFailed(str(error)) from None


def main() -> None:
    try:
        check_installation()
    except InstallationClash as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(1)
    # Everything the tool writes (the inventory, its -wal and -shm, lock files, outboxes, the access
    # log) holds staff and student data: owner-only, whatever the shell's umask.
    os.umask(0o077)
    cli(prog_name="app-inventory")


load_plugins().hook.register_commands(cli=cli)
