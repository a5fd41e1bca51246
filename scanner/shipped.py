"""Files kept at the top of the repository that the installed package also needs.

The wheel carries them inside the package (pyproject's hatch force-include); a checkout
or an editable install finds them at the repository's root.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def shipped_file(checkout_path: str, packaged_path: str) -> Path:
    """The file at `packaged_path` inside the installed package, or `checkout_path` in a checkout."""
    for candidate in (PACKAGE / packaged_path, PACKAGE.parent / checkout_path):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{Path(checkout_path).name} is missing from this installation (looked for {PACKAGE / packaged_path}); reinstall app-inventory")


def metadata_file() -> Path:
    """The Datasette metadata (metadata.yml)."""
    return shipped_file("metadata.yml", "metadata.yml")


def example_catalog() -> Path:
    """The example catalog, which is also the demo district's catalog."""
    return shipped_file("examples/catalog.csv", "demo/catalog.csv")
