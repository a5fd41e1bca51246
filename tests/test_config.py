import re
from pathlib import Path

import pytest

from scanner.cli import cli
from scanner.config import SCHEMA, ConfigError, load_config

EXAMPLE = Path(__file__).parent.parent / "app-inventory.example.toml"


def write(tmp_path, text):
    path = tmp_path / "app-inventory.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_is_valid_and_documents_every_key():
    config = load_config(EXAMPLE)
    assert config.section("google")["requests_per_minute"] == 2400
    assert config.section("google")["service_account_file"] == EXAMPLE.parent / "sa.json"
    text = EXAMPLE.read_text()
    for section, keys in SCHEMA.items():
        assert f"[{section}]" in text
        for key in keys:
            assert re.search(rf"^#? ?{key} =", text, re.MULTILINE), f"[{section}] {key} is not in the example"


def test_defaults_apply_and_missing_default_file_is_empty(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("APP_INVENTORY_CONFIG", raising=False)
    config = load_config(None)
    assert config.path is None and not config.has("google")
    assert config.section("retention")["history_days"] == 400
    write(tmp_path, '[google]\nadmin_email = "a@d.org"\nservice_account_file = "/keys/sa.json"\n')
    assert load_config(None).section("google")["customer"] == "my_customer"


@pytest.mark.parametrize(
    "text,message",
    [
        ("[gogle]\n", r"unknown section \[gogle\]"),
        ('[google]\nadmin_email = "a@d.org"\nservice_account_file = "sa.json"\nrequest_per_minute = 5\n', r"\[google\] unknown key 'request_per_minute'"),
        ('[google]\nadmin_email = "a@d.org"\nservice_account_file = "sa.json"\nrequests_per_minute = "fast"\n', r"\[google\] requests_per_minute must be a whole number"),
        ('[google]\nadmin_email = "a@d.org"\nservice_account_file = "sa.json"\nrequests_per_minute = 0\n', r"must be at least 1"),
        ('[google]\nservice_account_file = "sa.json"\n', r"\[google\] admin_email is required"),
        ('[google]\nadmin_email = "not-an-email"\nservice_account_file = "sa.json"\n', r"admin_email must be an email address"),
        ('[roles]\nstudent_domains = "students.d.org"\n', r"\[roles\] student_domains must be a list of strings"),
        ("[alerts]\nnotify_students = 1\n", r"notify_students must be true or false"),
        ('[alerts]\nsmtp_security = "tls"\n', r"smtp_security must be one of starttls, ssl, none"),
        ('[microsoft]\ntenant_id = "t"\nclient_id = "c"\n', r"needs client_secret_env or certificate_file"),
        ('[google\n', r"not valid TOML"),
        ('retention = 5\n', r"retention must be a section"),
        ('[google]\nadmin_email = "a@d.org"\nservice_account_file = "sa.json"\napi_root = "ftp://x"\n', r"api_root must be a URL"),
    ],
)
def test_bad_configuration_names_the_key_and_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=message) as raised:
        load_config(path)
    assert str(raised.value).startswith(str(path))


def test_missing_named_file(tmp_path):
    with pytest.raises(ConfigError, match=r"nope.toml: configuration file not found"):
        load_config(tmp_path / "nope.toml")


def test_secrets_come_from_the_environment_only(tmp_path, monkeypatch):
    path = write(tmp_path, '[microsoft]\ntenant_id = "t"\nclient_id = "c"\nclient_secret_env = "TEST_MS_SECRET"\n')
    config = load_config(path)
    monkeypatch.delenv("TEST_MS_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"\[microsoft\] client_secret_env: environment variable TEST_MS_SECRET is not set"):
        config.secret("microsoft", "client_secret_env")
    monkeypatch.setenv("TEST_MS_SECRET", "s3cret")
    assert config.secret("microsoft", "client_secret_env") == "s3cret"


def test_plugin_sections_pass_through(tmp_path):
    config = load_config(write(tmp_path, '[plugins.clever]\ndistrict_id = "123"\n'))
    assert config.plugins == {"clever": {"district_id": "123"}}


def test_cli_reports_config_errors_with_exit_code_2_and_no_traceback(runner, tmp_path):
    path = write(tmp_path, "[retention]\nhistory_days = -1\n")
    result = runner.invoke(cli, ["--db", str(tmp_path / "i.db"), "--config", str(path), "scan"])
    assert result.exit_code == 2
    assert f"Error: {path}: [retention] history_days must be at least 1" in result.output
    assert "Traceback" not in result.output


def test_cli_missing_config_file_and_env_var(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("APP_INVENTORY_CONFIG", str(tmp_path / "missing.toml"))
    result = runner.invoke(cli, ["--db", str(tmp_path / "i.db"), "scan"])
    assert result.exit_code == 2 and "missing.toml: configuration file not found" in result.output
