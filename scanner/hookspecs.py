"""The hooks a plugin can implement. Each is documented in the README's "Writing a plugin" (a test checks)."""

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("app_inventory")
hookimpl = HookimplMarker("app_inventory")


@hookspec
def register_config_sections(register):
    """Declare configuration sections: call register(name, keys, check=None) for each.

    keys maps key names to scanner.ConfigKey (type, default, limits); check, if given,
    is called with the section's values and "file: [name]" and raises ConfigError to
    refuse a combination. A plugin's section is then validated like the core's.
    """


@hookspec
def register_providers(register):
    """Register provider classes: call register(ProviderClass) for each (see scanner.Provider)."""


@hookspec
def register_commands(cli):
    """Add commands to the `app-inventory` click group."""


@hookspec
def scan_finished(db, scan, changes, config):
    """Called after a provider's scan succeeded and was committed.

    db: the sqlite_utils.Database; scan: the `scans` row as a dict;
    changes: a scanner.ScanChanges (counts by kind, iterable of `changes` rows);
    config: the validated scanner.Config. An implementation may take any subset.
    """


@hookspec
def datasette_plugins(register):
    """Give `app-inventory serve` Datasette plugins: call register(plugin, name) for each.

    plugin is a module (or object) with Datasette 0.65 hook implementations
    (`from datasette import hookimpl`); a module in a package with a templates/ folder
    brings its templates. It is registered with Datasette's plugin manager before the
    inventory is served. Its hooks find the served inventory and the configuration through
    scanner.served_inventory(datasette), and must do nothing when that is None.
    """


@hookspec
def register_revokers(register):
    """Give `app-inventory revoke` a way to remove access at a provider: call
    register(RevokerClass) for each (a subclass of scanner.Revoker, its `provider` set to the
    provider's name). See docs/revoke.md; the revoke plugin decides what is removed and when.
    """


@hookspec
def catalog_changed(db, config):
    """Called after the catalog changed (a `catalog import`, a decision made in the browser)
    and matching, unapproved_usage and the products were refreshed and committed.

    db: the sqlite_utils.Database; config: the validated scanner.Config. The alerts plugin
    queues new findings and suppresses those the change resolved, as after a scan.
    """
