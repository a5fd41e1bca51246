"""The hooks a plugin can implement. Each is documented in docs/plugins.md (a test checks)."""

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
