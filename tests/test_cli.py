import json
import subprocess
import sys
from pathlib import Path

from scanner import store
from scanner.cli import cli
from tests.conftest import district_tenant

ROOT = Path(__file__).parent.parent


def test_plugins_prints_name_version_and_hooks_as_json(runner, fake_tenant):
    result = runner.invoke(cli, ["plugins"])
    assert result.exit_code == 0
    plugins = {p["name"]: p for p in json.loads(result.output)}
    assert plugins["undo-fake-provider"]["hooks"] == ["register_providers"]
    for plugin in plugins.values():
        assert set(plugin) == {"name", "version", "hooks"}


def test_scan_command_reports_each_provider(runner, fake_tenant, db_path):
    district_tenant(fake_tenant)
    result = runner.invoke(cli, ["--db", db_path, "scan", "--provider", "fake"])
    assert result.exit_code == 0, result.output
    assert "fake: full scan 1 succeeded: 4 users, 3 apps, 4 grants, 11 API calls" in result.output
    assert store.open_db(db_path)["grants"].count == 4


def test_scan_failure_exits_1_with_the_reason(runner, fake_tenant, db_path):
    district_tenant(fake_tenant)
    fake_tenant.fail_after = 3
    result = runner.invoke(cli, ["--db", db_path, "scan"])
    assert result.exit_code == 1
    assert "fake: scan 1 failed: the fake API stopped answering" in result.output
    assert "Traceback" not in result.output


def test_unknown_provider_is_bad_input(runner, fake_tenant, db_path):
    result = runner.invoke(cli, ["--db", db_path, "scan", "--provider", "yahoo"])
    assert result.exit_code == 2
    assert "--provider yahoo: no such provider" in result.output


def test_every_command_has_help(runner):
    for args in (["--help"], ["scan", "--help"], ["catalog", "--help"], ["catalog", "import", "--help"], ["plugins", "--help"]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0 and "Usage:" in result.output


def test_python_dash_m_scanner_works():
    result = subprocess.run([sys.executable, "-m", "scanner", "--version"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "app-inventory, version" in result.stdout

