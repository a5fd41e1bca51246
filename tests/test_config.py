import re
from pathlib import Path

import pytest

from scanner.cli import cli
from scanner import ConfigKey, hookimpl
from scanner.config import ConfigError, config_sections, load_config
from scanner.plugin_manager import pm

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
    for section, declared in config_sections().items():
        assert f"[{section}]" in text
        for key in declared.keys:
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


class CleverPlugin:
    """A third-party plugin that owns a section, as any installed plugin would."""

    __name__ = "CleverPlugin"

    @hookimpl
    def register_config_sections(self, register):
        def check(values, where):
            if values.get("district_id", "").startswith("0"):
                raise ConfigError(f"{where} district_id cannot start with 0")

        register("clever", {"district_id": ConfigKey("str", required=True), "sync_hours": ConfigKey("int", 24, minimum=1)}, check=check)


@pytest.fixture
def clever_plugin():
    pm.register(CleverPlugin(), name="undo-clever")
    try:
        yield
    finally:
        pm.unregister(name="undo-clever")


def test_a_third_party_plugin_declares_and_validates_its_own_section(tmp_path, clever_plugin):
    config = load_config(write(tmp_path, '[clever]\ndistrict_id = "123"\n'))
    assert config.has("clever")
    assert config.section("clever") == {"district_id": "123", "sync_hours": 24}
    with pytest.raises(ConfigError, match=r"\[clever\] sync_hours must be a whole number"):
        load_config(write(tmp_path, '[clever]\ndistrict_id = "123"\nsync_hours = "daily"\n'))
    with pytest.raises(ConfigError, match=r"\[clever\] district_id is required"):
        load_config(write(tmp_path, "[clever]\n"))
    with pytest.raises(ConfigError, match=r"\[clever\] district_id cannot start with 0"):
        load_config(write(tmp_path, '[clever]\ndistrict_id = "0123"\n'))


def test_a_section_without_its_plugin_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown section \[clever\].*once the plugin is installed"):
        load_config(write(tmp_path, '[clever]\ndistrict_id = "123"\n'))


def test_two_plugins_cannot_declare_one_section(clever_plugin):
    class Copycat:
        __name__ = "Copycat"

        @hookimpl
        def register_config_sections(self, register):
            register("clever", {})

    pm.register(Copycat(), name="undo-copycat")
    try:
        with pytest.raises(TypeError, match=r"\[clever\] is declared twice"):
            config_sections()
    finally:
        pm.unregister(name="undo-copycat")


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
