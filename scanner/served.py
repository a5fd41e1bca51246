"""What a Datasette plugin may know about the inventory `app-inventory serve` is serving.

Plugins give the core Datasette plugins through the `datasette_plugins` hook; their Datasette
hooks receive only the Datasette instance, and find the rest here:

    served = served_inventory(datasette)   # None: not an instance app-inventory built
    served.config.current()                 # the configuration, as the file says now
    served.db_path, served.public
    served.announce("...")                  # a line for the start-up message

Datasette's plugin manager is shared by every instance in the process; a hook that finds
None here must do nothing.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from pathlib import Path

from .config import LiveConfig


@dataclass(eq=False)
class ServedInventory:
    """The inventory behind one Datasette instance."""

    db_path: Path
    config: LiveConfig
    public: bool
    start_up_lines: list[str] = field(default_factory=list)

    def announce(self, line: str) -> None:
        """Add a line to what `app-inventory serve` prints when it starts (call from startup)."""
        self.start_up_lines.append(line)


_served: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def serve_inventory(datasette, served: ServedInventory) -> None:
    """Record what `datasette` serves (scanner.serve.build_datasette does this)."""
    _served[datasette] = served


def served_inventory(datasette) -> ServedInventory | None:
    """The inventory `datasette` serves, or None when app-inventory did not build it."""
    return _served.get(datasette)
