"""Is this installation whole? Checks that need the installed distributions, not the config.

The owner's folders are also the import names (`scanner`, `plugins`, `emulators`), and
those are generic: another distribution on the package index (one is named `scanner`)
installs a package of the same name, and pip would let the two overwrite each other's
files in one environment. Renaming them only in the wheel would make the folder and
the import differ for every reader, and hatchling refuses such renames for editable
installs. So the tool lives in its own virtual environment (docs/install.md), and
`app-inventory` refuses to run when another distribution claims one of its packages.
"""

from __future__ import annotations

from importlib.metadata import packages_distributions

DISTRIBUTION = "app-inventory"
TOP_LEVEL_PACKAGES = ("scanner", "plugins", "emulators")


class InstallationClash(Exception):
    """Another distribution installs a package with one of our names."""


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def foreign_owners() -> dict[str, list[str]]:
    """Our top-level package names that other installed distributions also claim."""
    owners = packages_distributions()
    clashes = {}
    for package in TOP_LEVEL_PACKAGES:
        others = sorted({d for d in owners.get(package, []) if _canonical(d) != DISTRIBUTION})
        if others:
            clashes[package] = others
    return clashes


def check_installation() -> None:
    """Raise InstallationClash naming the package and the distribution that also installs it."""
    clashes = foreign_owners()
    if clashes:
        found = "; ".join(f"{package!r} is also installed by {', '.join(others)}" for package, others in clashes.items())
        raise InstallationClash(
            f"this environment mixes app-inventory with other distributions that use its package names ({found}); "
            "install app-inventory in a virtual environment of its own (docs/install.md)"
        )
