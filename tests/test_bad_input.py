"""Bad input gets one line naming what and where, the documented exit code (2), and nothing
written: a damaged --db for every command, a folder this account cannot write, numbers out of
range, a byte order mark, malformed catalogs, a missing secret or key file before a scan."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from scanner import store
from scanner.cli import cli
from scanner.config import load_config
from scanner.providers import App, Grant, User
from tests.conftest import district_tenant

ROOT = Path(__file__).parent.parent


def one_line_error(result, exit_code=2) -> str:
    """The command failed with exit_code and printed exactly one line, without a traceback."""
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file in a folder and a hash of its bytes."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir()) if path.is_file()}


def damaged_inventories(folder: Path) -> dict[str, Path]:
    good = folder / "good.db"
    store.open_db(str(good)).close()
    data = good.read_bytes()
    files = {
        "truncated": data[: len(data) // 3],
        "header only": data[:50],
        "not SQLite": b"name,status\nKahoot,approved\n" * 50,
    }
    paths = {}
    for label, content in files.items():
        path = folder / f"{label.replace(' ', '-')}.db"
        path.write_bytes(content)
        paths[label] = path
    good.unlink()
    for leftover in folder.glob("good.db*"):
        leftover.unlink()
    return paths


COMMANDS = {
    "scan": ["scan", "--provider", "fake"],
    "catalog import": ["catalog", "import", str(ROOT / "examples" / "catalog.csv")],
    "alerts list": ["alerts", "list"],
    "alerts send": ["alerts", "send", "--dry-run", "--outbox", "{tmp}/outbox"],
    "alerts retry": ["alerts", "retry", "1"],
    "serve": ["serve", "--port", "1"],
    "demo": ["demo", "--users", "10", "--no-serve"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_a_damaged_or_foreign_db_is_one_line_exit_2_for_every_command(runner, tmp_path, fake_tenant, command):
    district_tenant(fake_tenant)
    folder = tmp_path / "inventories"
    folder.mkdir()
    config = tmp_path / "empty.toml"
    config.write_text("", encoding="utf-8")
    for label, path in damaged_inventories(folder).items():
        before = fingerprint(folder)
        args = [arg.replace("{tmp}", str(tmp_path)) for arg in COMMANDS[command]]
        result = runner.invoke(cli, ["--db", str(path), "--config", str(config), *args])
        line = one_line_error(result)
        assert str(path) in line, (label, line)
        after = fingerprint(folder)
        # The inventory is untouched; at most an empty lock file appears beside it.
        assert {name: digest for name, digest in after.items() if not name.endswith(".lock")} == before, (label, command)
        assert all(not (folder / name).read_bytes() for name in after if name.endswith(".lock"))
        for name in list(after):
            if name.endswith(".lock"):
                (folder / name).unlink()


# -- a folder this account cannot write -------------------------------------------------------

def run_where_folder_is_read_only(folder: Path, command: list[str]) -> subprocess.CompletedProcess:
    """Run `python -m scanner ...` unable to write `folder`. Root may write anywhere, so as root
    the folder is bind-mounted read-only in a mount namespace of the command's own; otherwise
    the folder loses its write bit."""
    scanner = [sys.executable, "-m", "scanner", *command]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return subprocess.run(scanner, capture_output=True, text=True, env=env, timeout=60)
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare(1): cannot make a folder read-only")
    script = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    completed = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(folder), *scanner],
                               capture_output=True, text=True, env=env, timeout=60)
    if "mount:" in completed.stderr or "unshare:" in completed.stderr:
        pytest.skip(f"cannot make a read-only folder here: {completed.stderr.strip()}")
    return completed


@pytest.mark.parametrize("command", [
    ["alerts", "list"],
    ["catalog", "import", str(ROOT / "examples" / "catalog.csv")],
])
def test_a_read_only_folder_is_one_line_exit_2(tmp_path, command):
    folder = tmp_path / "readonly"
    folder.mkdir()
    db = folder / "inventory.db"
    store.open_db(str(db)).close()
    before = fingerprint(folder)
    try:
        completed = run_where_folder_is_read_only(folder, ["--db", str(db), "--config", "/dev/null", *command])
    finally:
        folder.chmod(0o755)
    output = (completed.stdout + completed.stderr).strip()
    assert completed.returncode == 2, output
    assert "Traceback" not in output and len(output.splitlines()) == 1, output
    assert str(folder) in output
    assert fingerprint(folder) == before


# -- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("text,message", [
    ("[serve]\nport = 99999\n", "[serve] port must be at most 65535, got 99999"),
    ("[retention]\nhistory_days = 99999999999\n", "[retention] history_days must be at most 36500"),
    ('[google]\nadmin_email = "a@d.org"\nservice_account_file = "sa.json"\napi_root = "http://admin.example.org/"\n',
     "api_root must start with https:// (plain http:// is allowed only for this computer"),
    ('[microsoft]\ntenant_id = "t"\nclient_id = "c"\nclient_secret_env = "X"\ngraph_url = "http://graph.example.org"\n',
     "graph_url must start with https://"),
])
def test_out_of_range_numbers_and_plain_http_are_refused_at_once(runner, tmp_path, db_path, text, message):
    config = tmp_path / "app-inventory.toml"
    config.write_text(text, encoding="utf-8")
    result = runner.invoke(cli, ["--db", db_path, "--config", str(config), "scan"])
    assert message in one_line_error(result)
    assert not Path(db_path).exists()


def test_plain_http_is_fine_for_this_computer(tmp_path):
    config = tmp_path / "app-inventory.toml"
    config.write_text('[google]\nadmin_email = "a@d.org"\nservice_account_file = "sa.json"\napi_root = "http://127.0.0.1:8080/"\n'
                      '[microsoft]\ntenant_id = "t"\nclient_id = "c"\nclient_secret_env = "X"\ngraph_url = "http://localhost:9"\n',
                      encoding="utf-8")
    loaded = load_config(config)
    assert loaded.section("google")["api_root"] == "http://127.0.0.1:8080/"


def test_a_config_saved_with_a_byte_order_mark_is_read(tmp_path):
    config = tmp_path / "app-inventory.toml"
    config.write_bytes("\ufeff[serve]\ndistrict_name = \"Springfield\"\n".encode("utf-8"))
    assert load_config(config).section("serve")["district_name"] == "Springfield"


def test_a_missing_secret_or_key_file_stops_scan_before_anything_is_written(runner, tmp_path, db_path, monkeypatch):
    monkeypatch.delenv("APP_INVENTORY_TEST_UNSET_SECRET", raising=False)
    secret = tmp_path / "secret.toml"
    secret.write_text('[microsoft]\ntenant_id = "t"\nclient_id = "c"\nclient_secret_env = "APP_INVENTORY_TEST_UNSET_SECRET"\n',
                      encoding="utf-8")
    result = runner.invoke(cli, ["--db", db_path, "--config", str(secret), "scan"])
    assert "[microsoft] client_secret_env: environment variable APP_INVENTORY_TEST_UNSET_SECRET is not set" in one_line_error(result)
    key = tmp_path / "key.toml"
    key.write_text('[google]\nadmin_email = "a@d.org"\nservice_account_file = "missing-sa.json"\n', encoding="utf-8")
    result = runner.invoke(cli, ["--db", db_path, "--config", str(key), "scan"])
    assert f"[google] service_account_file {tmp_path / 'missing-sa.json'}: file not found" in one_line_error(result)
    # Nothing written: no inventory, so no failed scan row either.
    assert not Path(db_path).exists()


def test_a_missing_secret_leaves_an_existing_inventory_without_a_failed_scan(runner, tmp_path, db_path, fake_tenant, monkeypatch):
    district_tenant(fake_tenant)
    assert runner.invoke(cli, ["--db", db_path, "scan"]).exit_code == 0
    monkeypatch.delenv("APP_INVENTORY_TEST_UNSET_SECRET", raising=False)
    config = tmp_path / "secret.toml"
    config.write_text('[microsoft]\ntenant_id = "t"\nclient_id = "c"\nclient_secret_env = "APP_INVENTORY_TEST_UNSET_SECRET"\n',
                      encoding="utf-8")
    result = runner.invoke(cli, ["--db", db_path, "--config", str(config), "scan", "--provider", "microsoft"])
    one_line_error(result)
    assert [row[0] for row in sqlite3.connect(db_path).execute("select status from scans")] == ["succeeded"]


# -- catalog files ------------------------------------------------------------------------------

@pytest.mark.parametrize("name,text,message", [
    ("dates.yaml", "- name: Kahoot\n  status: approved\n\n- name: Quizlet\n  status: approved\n  dpa_expires: 2027-02-30\n",
     "dates.yaml:4: dpa_expires '2027-02-30' must be a date"),
    ("deep.json", "[" * 100_000 + "]" * 100_000, "deep.json: nested too deeply"),
    ("deep.yaml", "[" * 100_000 + "]" * 100_000, "deep.yaml: nested too deeply"),
    ("twice.json", '[\n {"name": "Kahoot", "status": "approved"},\n {"name": "Quizlet", "status": "approved", "status": "denied"}\n]',
     "twice.json:3: the key 'status' appears twice in this app"),
    ("quote.csv", 'name,status\nKahoot,approved\n"Quizlet,approved\nPadlet,denied\n',
     'quote.csv:3: not valid CSV: a quote (") opened in this row is never closed'),
])
def test_malformed_catalogs_are_one_line_exit_2_and_import_nothing(runner, tmp_path, db_path, name, text, message):
    store.open_db(db_path).close()
    before = sqlite3.connect(db_path).execute("select count(*) from catalog").fetchone()
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(cli, ["--db", db_path, "catalog", "import", str(path)])
    assert message in one_line_error(result)
    assert sqlite3.connect(db_path).execute("select count(*) from catalog").fetchone() == before


def test_a_google_client_id_without_its_suffix_still_matches_the_app(runner, tmp_path, db_path, fake_tenant):
    fake_tenant.users = [User(id="1", email="t@district.org", name="T", role="staff")]
    fake_tenant.apps = [App(id="1234-abcd.apps.googleusercontent.com", name="Kahoot!")]
    fake_tenant.grants = [Grant(user_id="1", app_id="1234-abcd.apps.googleusercontent.com", scopes=["openid"])]
    assert runner.invoke(cli, ["--db", db_path, "scan"]).exit_code == 0
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("name,status,google_client_ids\nKahoot!,Approved,1234-abcd\n", encoding="utf-8")
    result = runner.invoke(cli, ["--db", db_path, "catalog", "import", str(catalog)])
    assert result.exit_code == 0, result.output
    db = sqlite3.connect(db_path)
    assert db.execute("select google_client_ids from catalog").fetchone()[0] == '["1234-abcd.apps.googleusercontent.com"]'
    assert db.execute("select status from apps").fetchone()[0] == "approved"
