"""The tree keeps its promises: plugins use only the public API, `--help` stays light,
a broken installation says so."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import scanner
from scanner import plugin_manager
from scanner.installation import InstallationClash, check_installation, foreign_owners

ROOT = Path(__file__).parent.parent


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in a file, relative imports resolved to their package."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found.append((node.lineno, module))
    return found


def test_plugins_import_only_the_public_api():
    offences = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for line, module in imported_modules(path):
            top = module.split(".")[0]
            if (top == "scanner" and module != "scanner") or top == "emulators":
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not offences, "plugins may import `scanner` (its __init__) and nothing below it:\n" + "\n".join(offences)


def test_the_check_finds_a_deep_import(tmp_path, monkeypatch):
    # The test above must be able to fail: a deep import, absolute or relative, is seen.
    folder = tmp_path / "plugins" / "x"
    folder.mkdir(parents=True)
    (folder / "bad.py").write_text("from scanner.store import open_db\nfrom ..y import z\nimport scanner\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert [m for _, m in imported_modules(folder / "bad.py")] == ["scanner.store", "plugins.y", "scanner"]
    with pytest.raises(AssertionError, match="bad.py:1 imports scanner.store"):
        test_plugins_import_only_the_public_api()


def test_the_public_api_names_what_plugins_use():
    for name in scanner.__all__:
        assert hasattr(scanner, name), name


def test_help_loads_no_provider_library():
    code = (
        "import sys\n"
        "from scanner.cli import cli\n"
        "try:\n    cli(['--help'], prog_name='app-inventory')\nexcept SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'googleapiclient', 'google', 'httplib2', 'msal', 'requests', 'datasette'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert "Commands:" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_a_missing_builtin_plugin_is_an_error(monkeypatch):
    monkeypatch.setattr(plugin_manager, "DEFAULT_PLUGINS", (*plugin_manager.DEFAULT_PLUGINS, "plugins.not_there"))
    monkeypatch.setattr(plugin_manager, "_loaded", False)
    with pytest.raises(plugin_manager.MissingPlugin, match="plugins.not_there is missing from this installation; reinstall"):
        plugin_manager.load_plugins()


def fake_distribution(folder: Path, name: str, top_level: str) -> None:
    info = folder / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "top_level.txt").write_text(top_level + "\n")


def test_another_distribution_with_our_package_name_is_refused(tmp_path, monkeypatch):
    assert foreign_owners() == {}
    check_installation()
    fake_distribution(tmp_path, "scanner", "scanner")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert foreign_owners() == {"scanner": ["scanner"]}
    with pytest.raises(InstallationClash, match=r"'scanner' is also installed by scanner\); install app-inventory in a virtual environment of its own"):
        check_installation()


def test_the_command_stops_on_a_clash(tmp_path):
    fake_distribution(tmp_path, "plugins", "plugins")
    result = subprocess.run(
        [sys.executable, "-c", "from scanner.cli import main; main()", "--help"],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "'plugins' is also installed by plugins" in result.stderr and "Traceback" not in result.stderr
