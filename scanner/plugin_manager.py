"""Loads built-in and third-party plugins into one pluggy PluginManager."""

from __future__ import annotations

import importlib
import logging
import sys
from importlib.metadata import version as distribution_version

import pluggy

from . import hookspecs

log = logging.getLogger(__name__)

# Built-in features are ordinary plugins, registered by import path.
DEFAULT_PLUGINS = (
    "plugins.google",
    "plugins.microsoft",
    "plugins.alerts",
    "plugins.signin",
    "plugins.chrome",
    "plugins.revoke",
    "plugins.review",
)
ENTRY_POINT_GROUP = "app_inventory"



class MissingPlugin(Exception):
    """A built-in plugin cannot be imported: the installation is broken."""


pm = pluggy.PluginManager("app_inventory")
pm.add_hookspecs(hookspecs)
_loaded = False


def load_plugins() -> pluggy.PluginManager:
    """Register the built-in plugins and installed third-party ones, once."""
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    # Under test only the built-in plugins load, so a plugin installed on the
    # developer's machine cannot change test results.
    if not getattr(sys, "_called_from_test", False):
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for module_name in DEFAULT_PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            raise MissingPlugin(
                f"the built-in plugin {module_name} is missing from this installation; "
                "reinstall app-inventory (pip install --force-reinstall from the checkout or wheel)"
            ) from None
        if not pm.is_registered(module):
            pm.register(module, name=module_name)
    pm.check_pending()
    return pm


def describe_plugins() -> list[dict]:
    """Name, version and implemented hooks of every loaded plugin (the `plugins` command)."""
    load_plugins()
    distributions = {plugin: dist for plugin, dist in pm.list_plugin_distinfo()}
    described = []
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin)
        dist = distributions.get(plugin)
        if dist is not None:
            version = dist.version
        else:
            try:
                version = distribution_version("app-inventory")
            except Exception:  # running from a checkout that was never installed
                version = None
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        described.append({"name": name, "version": version, "hooks": hooks})
    return sorted(described, key=lambda p: p["name"])


def call_each(hook_name: str, **kwargs) -> list[tuple[str, Exception]]:
    """Call every implementation of a hook one by one, so one failing plugin
    cannot stop the others. Returns the (plugin name, error) pairs that failed."""
    failures = []
    hook = getattr(pm.hook, hook_name)
    for impl in reversed(hook.get_hookimpls()):
        try:
            impl.function(**{name: kwargs[name] for name in impl.argnames})
        except Exception as error:  # a plugin's bug must not undo a committed scan
            log.error("plugin %s failed in %s: %s", impl.plugin_name, hook_name, error, exc_info=log.isEnabledFor(logging.DEBUG))
            failures.append((impl.plugin_name, error))
    return failures
