"""The hooks a plugin can implement. Each is documented in the README's "Writing a plugin"."""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("app_inventory")
hookimpl = HookimplMarker("app_inventory")


@hookspec
def register_providers(register):
    """Register provider classes: call register(ProviderClass) for each (see scanner.providers.Provider)."""


@hookspec
def register_commands(cli):
    """Add commands to the `app-inventory` click group."""


@hookspec
def scan_finished(db, scan, changes, config):
    """Called after a provider's scan succeeded and was committed.

    db: the sqlite_utils.Database; scan: the `scans` row as a dict;
    changes: a scanner.store.ScanChanges (counts by kind, iterable of `changes` rows);
    config: the validated scanner.config.Config. An implementation may take any subset.
    """
