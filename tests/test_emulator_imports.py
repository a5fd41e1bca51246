"""The emulators stand apart: they play Google and Microsoft, so they import nothing from
the scanner or its plugins (a fake that shares code with what it tests can hide a bug
in both). Checked on the source of every emulators/ module, imports inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

EMULATORS = Path(__file__).resolve().parent.parent / "emulators"
FORBIDDEN = ("scanner", "plugins")


def forbidden_imports(path: Path, root: Path = EMULATORS) -> list[str]:
    """`line: module` for each import in the file that reaches into scanner/ or plugins/, or
    (relative) out of the emulators package."""
    package = path.relative_to(root.parent).with_suffix("").parts[:-1]  # ("emulators", "google")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package[: len(package) - node.level + 1]
                modules = [".".join((*base, node.module or ""))] if base else [f"{'.' * node.level}{node.module or ''} (outside emulators)"]
            else:
                modules = [node.module or ""]
        else:
            continue
        for module in modules:
            root = module.split(".")[0]
            if root in FORBIDDEN or module.endswith("(outside emulators)"):
                found.append(f"{node.lineno}: {module}")
    return sorted(found, key=lambda entry: int(entry.split(":")[0]))


def emulator_modules() -> list[Path]:
    modules = sorted(EMULATORS.rglob("*.py"))
    assert len(modules) > 5, f"no emulator modules found under {EMULATORS}"
    return modules


@pytest.mark.parametrize("path", emulator_modules(), ids=lambda path: str(path.relative_to(EMULATORS.parent)))
def test_emulators_import_nothing_from_scanner_or_plugins(path):
    assert forbidden_imports(path) == []


def test_the_check_sees_every_kind_of_import(tmp_path):
    fake = tmp_path / "emulators" / "google"
    fake.mkdir(parents=True)
    module = fake / "leaky.py"
    module.write_text(
        "import json\n"
        "import scanner.timestamps\n"
        "from plugins.google import provider\n"
        "from . import tenant\n"
        "from .. import clock\n"
        "def later():\n"
        "    from scanner import Config\n"
        "    import plugins\n",
        encoding="utf-8")
    assert forbidden_imports(module, tmp_path / "emulators") == [
        "2: scanner.timestamps", "3: plugins.google", "7: scanner", "8: plugins"]
    (fake / "escaping.py").write_text("from ...scanner import cli\n", encoding="utf-8")
    assert forbidden_imports(fake / "escaping.py", tmp_path / "emulators") == ["1: ...scanner (outside emulators)"]
