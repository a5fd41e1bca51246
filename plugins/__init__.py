"""Built-in plugins: each module is an ordinary pluggy plugin (see scanner.plugin_manager.DEFAULT_PLUGINS)."""
