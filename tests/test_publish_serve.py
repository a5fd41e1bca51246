"""`app-inventory serve` and `hash-password`: configuration, start-up messages and failures."""

import os
import socket
import urllib.error
import urllib.request

import pytest
from plugins.signin.passwords import verify_password
from scanner import store
from scanner.cli import cli
from scanner.config import ConfigError, load_config
from scanner.serve import (
    InventoryNotFound, build_datasette, build_metadata, describe_addresses, load_metadata, metadata_file,
)
from scanner.schema import VIEWS
from tests.publish_fixtures import (
    IT_HASH_VARIABLE, IT_PASSWORD_HASH, IT_USERNAME, build_inventory, serving, write_config,
)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    return build_inventory(tmp_path_factory.mktemp("serve"))


def config_file(tmp_path, text):
    path = tmp_path / "app-inventory.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


async def test_a_configured_account_without_its_environment_variable_is_a_config_error(tmp_path, monkeypatch, inventory):
    monkeypatch.delenv("APP_INVENTORY_HASH_JSMITH", raising=False)
    config = config_file(tmp_path, '[signin]\npassword_accounts = { jsmith = "APP_INVENTORY_HASH_JSMITH" }\n')
    with pytest.raises(ConfigError) as error:
        await build_datasette(inventory.db_path, config).invoke_startup()
    assert "[signin] password_accounts.jsmith" in str(error.value) and "APP_INVENTORY_HASH_JSMITH is not set" in str(error.value)
    assert "hash-password --username jsmith" in str(error.value)


async def test_a_variable_that_holds_no_hash_is_refused_without_repeating_it(tmp_path, monkeypatch, inventory):
    monkeypatch.setenv("APP_INVENTORY_HASH_JSMITH", "my-plain-password")
    config = config_file(tmp_path, '[signin]\npassword_accounts = { jsmith = "APP_INVENTORY_HASH_JSMITH" }\n')
    with pytest.raises(ConfigError) as error:
        await build_datasette(inventory.db_path, config).invoke_startup()
    assert "does not hold a password hash" in str(error.value) and "my-plain-password" not in str(error.value)


def test_a_hash_pasted_into_the_file_is_refused_without_repeating_it(tmp_path):
    with pytest.raises(ConfigError) as error:
        config_file(tmp_path, f'[signin]\npassword_accounts = {{ jsmith = "{IT_PASSWORD_HASH}" }}\n')
    assert "must name the environment variable" in str(error.value) and IT_PASSWORD_HASH not in str(error.value)
    assert "APP_INVENTORY_HASH_JSMITH" in str(error.value)


def test_the_old_serve_it_accounts_says_where_it_moved(tmp_path):
    with pytest.raises(ConfigError) as error:
        config_file(tmp_path, '[serve]\nit_accounts = { jsmith = "APP_INVENTORY_HASH_JSMITH" }\n')
    assert "[serve] it_accounts has moved to [signin] password_accounts" in str(error.value)


def test_the_cli_reports_a_missing_variable_with_exit_code_2(runner, tmp_path, inventory, monkeypatch):
    monkeypatch.delenv(IT_HASH_VARIABLE, raising=False)
    result = runner.invoke(cli, ["--db", str(inventory.db_path), "--config", str(write_config(tmp_path, public=True)), "serve"])
    assert result.exit_code == 2
    assert f"[signin] password_accounts.{IT_USERNAME}: environment variable {IT_HASH_VARIABLE} is not set" in result.output


def test_only_public_tables_open_and_only_with_public(tmp_path, monkeypatch):
    monkeypatch.setenv(IT_HASH_VARIABLE, IT_PASSWORD_HASH)
    config = load_config(write_config(tmp_path, public=False))

    def opened(metadata):
        tables = metadata["databases"]["inventory"]["tables"]
        return {name for name, table in tables.items() if "allow" in table}

    assert opened(build_metadata(config, public=False)) == set()
    public = build_metadata(config, public=True)
    assert opened(public) == {"public_apps"} and public["databases"]["inventory"]["tables"]["public_apps"]["allow"] is True
    assert public["allow"] == {"role": "it"} and public["allow_sql"] == {"role": "it"}
    assert "allow" not in str(public["databases"]["inventory"]["queries"])
    assert public["title"] == "Springfield Test District app inventory"


def test_every_table_view_and_column_is_described(tmp_path):
    db = store.open_db(str(tmp_path / "fresh.db"))
    described = load_metadata()["databases"]["inventory"]["tables"]
    names = [t for t in db.table_names() + db.view_names() if not t.startswith("sqlite_")]
    assert set(VIEWS) <= set(names)
    for name in names:
        meta = described.get(name)
        assert meta and meta.get("description"), f"metadata.yml: describe {name}"
        if meta.get("hidden"):
            continue
        columns = [column.name for column in db[name].columns]
        missing = [column for column in columns if column not in meta.get("columns", {})]
        assert not missing, f"metadata.yml: describe {name} columns {missing}"
        assert not set(meta.get("columns", {})) - set(columns), f"metadata.yml: {name} describes columns it does not have"
    for per_user_table in ("alerts", "alert_runs"):
        assert described[per_user_table]["description"]


def test_metadata_yml_is_found_in_the_checkout():
    path = metadata_file()
    assert path.name == "metadata.yml" and "databases" in path.read_text(encoding="utf-8")


def test_serving_a_missing_inventory_is_bad_input(runner, tmp_path):
    config = tmp_path / "empty.toml"
    config.write_text("", encoding="utf-8")
    result = runner.invoke(cli, ["--db", str(tmp_path / "nope.db"), "--config", str(config), "serve"])
    assert result.exit_code == 2
    assert "nope.db: no inventory here" in result.output and "app-inventory scan" in result.output
    with pytest.raises(InventoryNotFound):
        build_datasette(tmp_path / "nope.db", load_config(config))
    assert not (tmp_path / "nope.db").exists()


def test_a_port_in_use_is_reported_clearly(runner, tmp_path, inventory):
    config = tmp_path / "none.toml"
    config.write_text("", encoding="utf-8")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(cli, ["--db", str(inventory.db_path), "--config", str(config), "serve", "--port", str(port)])
    assert result.exit_code == 1
    assert f"127.0.0.1:{port} is already in use" in result.output and "--port" in result.output


async def test_without_accounts_the_start_up_message_says_how_to_add_one(inventory, tmp_path):
    from scanner.serve import served_lines

    datasette = build_datasette(inventory.db_path, load_config(write_config(tmp_path, public=True, accounts=False)))
    await datasette.invoke_startup()
    message = describe_addresses("inventory.db", "127.0.0.1", 8001, public=True, plugin_lines=served_lines(datasette))
    assert "no way to sign in is configured" in message and "app-inventory hash-password" in message
    assert "http://127.0.0.1:8001/transparency" in message
    assert "Access log:" in message and "http://127.0.0.1:8001/access_log" in message
    message = describe_addresses("inventory.db", "0.0.0.0", 8001, public=False,
                                 plugin_lines=["IT staff:     sign in at {base}/-/login (password accounts: jsmith)"])
    assert "http://localhost:8001/-/login (password accounts: jsmith)" in message and "--public" in message
    assert "every network interface" in message


async def test_without_accounts_the_public_page_still_works(inventory, tmp_path):
    config = load_config(write_config(tmp_path, public=True, accounts=False))
    datasette = build_datasette(inventory.db_path, config)
    assert (await datasette.client.get("/transparency")).status_code == 200
    login = await datasette.client.get("/-/login")
    assert "No way to sign in is configured" in login.text and "id_password" not in login.text
    assert (await datasette.client.get("/inventory/users.json")).status_code == 404


def test_hash_password_prints_a_hash_that_verifies_and_the_lines_to_configure(runner):
    result = runner.invoke(cli, ["hash-password", "--username", "j.smith"], input="a long enough secret\na long enough secret\n")
    assert result.exit_code == 0, result.output
    hashed = result.stdout.strip().splitlines()[-1]
    assert verify_password("a long enough secret", hashed) and not verify_password("another", hashed)
    assert f"export APP_INVENTORY_HASH_J_SMITH='{hashed}'" in result.stderr
    assert '[signin]\n    password_accounts = { "j.smith" = "APP_INVENTORY_HASH_J_SMITH" }' in result.stderr
    assert "a long enough secret" not in result.output


def test_hash_password_refuses_a_short_password(runner):
    result = runner.invoke(cli, ["hash-password"], input="short\nshort\n")
    assert result.exit_code == 2 and "at least 12 characters" in result.output


def test_the_serve_command_runs_datasette_for_real(inventory, tmp_path):
    env = {**os.environ, IT_HASH_VARIABLE: IT_PASSWORD_HASH}
    with serving(inventory.db_path, write_config(tmp_path, public=True), public=True, env=env) as server:
        with urllib.request.urlopen(f"{server.url}/transparency") as response:
            assert response.status == 200 and "Kahoot!" in response.read().decode()
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{server.url}/inventory/users.json")
        assert refused.value.code == 404
    assert f"{server.url}/-/login (password accounts: {IT_USERNAME})" in server.output
    assert f"{server.url}/transparency (open to anyone" in server.output

