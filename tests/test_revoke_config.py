"""Nested configuration sections ([google.revoke], [microsoft.revoke]) and [revoke]."""

from __future__ import annotations

import pytest

from scanner.config import ConfigError, load_config

GOOGLE = '[google]\nadmin_email = "a@d.org"\nservice_account_file = "sa.json"\n'
MICROSOFT = '[microsoft]\ntenant_id = "t"\nclient_id = "c"\nclient_secret_env = "S"\n'


def load(tmp_path, text):
    path = tmp_path / "app-inventory.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def test_a_nested_section_is_a_section_of_its_own(tmp_path):
    config = load(tmp_path, GOOGLE + "[google.revoke]\n" + MICROSOFT + '[microsoft.revoke]\nclient_id = "w"\nclient_secret_env = "W"\n')
    assert config.has("google") and config.has("google.revoke") and config.has("microsoft.revoke")
    assert config.section("google")["admin_email"] == "a@d.org"  # the nested table is not a key of [google]
    assert config.section("google.revoke")["service_account_file"] is None
    assert config.section("microsoft.revoke")["resource_units_per_second"] == 500
    assert config.section("microsoft")["client_id"] == "c"
    assert config.section("revoke") == {"require_approval": False, "plan_max_age_hours": 24}


def test_without_the_nested_section_writing_is_not_configured(tmp_path):
    config = load(tmp_path, GOOGLE + MICROSOFT)
    assert not config.has("google.revoke") and not config.has("microsoft.revoke")


@pytest.mark.parametrize("text,message", [
    (MICROSOFT + '[microsoft.revoke]\nclient_secret_env = "W"\n', r"\[microsoft.revoke\] client_id is required"),
    (MICROSOFT + '[microsoft.revoke]\nclient_id = "w"\n', r"\[microsoft.revoke\] needs client_secret_env or certificate_file"),
    (GOOGLE + "[google.revoke]\nrequests_per_minute = 0\n", r"\[google.revoke\] requests_per_minute must be at least 1"),
    (GOOGLE + "[google.revoke]\nscopes = 1\n", r"\[google.revoke\] unknown key 'scopes'"),
    (GOOGLE + "[google.other]\nx = 1\n", r"\[google\] unknown key 'other'"),
    ("[revoke]\nplan_max_age_hours = 0\n", r"\[revoke\] plan_max_age_hours must be at least 1"),
])
def test_bad_nested_sections_are_refused_naming_the_section(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, text)
