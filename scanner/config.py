"""The configuration file: one TOML file, loaded once and validated against SCHEMA.

Every key the tool reads is declared in SCHEMA, with its type and default, so the
README, `app-inventory.example.toml` and the validation all describe the same thing.
Secrets never live in the file: a key ending in `_env` names the environment
variable that holds the secret, read with `Config.secret()` only when needed.
Third-party plugins keep their settings under `[plugins.<name>]`, which is passed
through unvalidated.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_CONFIG_PATH = "app-inventory.toml"
CONFIG_ENV_VAR = "APP_INVENTORY_CONFIG"


class ConfigError(Exception):
    """A problem with the configuration, worded for the person who wrote it."""


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default and limits."""

    kind: str  # "str", "int", "bool", "path", "email", "url", "list[str]", "choice", "table[str]"
    default: Any = None
    required: bool = False
    minimum: int | None = None
    choices: tuple[str, ...] = ()


SCHEMA: dict[str, dict[str, Key]] = {
    "google": {
        "admin_email": Key("email", required=True),
        "service_account_file": Key("path", required=True),
        "customer": Key("str", "my_customer"),
        "api_root": Key("url", "https://admin.googleapis.com/"),
        "requests_per_minute": Key("int", 2400, minimum=1),
        # GCP project numbers of the district's own OAuth clients (marked internal).
        "internal_project_numbers": Key("list[str]", []),
    },
    "microsoft": {
        "tenant_id": Key("str", required=True),
        "client_id": Key("str", required=True),
        "client_secret_env": Key("str"),
        "certificate_file": Key("path"),
        "certificate_thumbprint": Key("str"),
        "authority_host": Key("url", "https://login.microsoftonline.com"),
        "graph_url": Key("url", "https://graph.microsoft.com"),
        # How many Graph requests a scan keeps in flight at once.
        "concurrent_requests": Key("int", 6, minimum=1),
    },
    "roles": {
        "student_domains": Key("list[str]", []),
        "student_org_units": Key("list[str]", []),
        "student_license_skus": Key("list[str]", []),
        "student_groups": Key("list[str]", []),
    },
    "retention": {
        "history_days": Key("int", 400, minimum=1),
    },
    "alerts": {
        "smtp_host": Key("str", "localhost"),
        "smtp_port": Key("int", 587, minimum=1),
        "smtp_security": Key("choice", "starttls", choices=("starttls", "ssl", "none")),
        "smtp_username": Key("str"),
        "smtp_password_env": Key("str"),
        "smtp_timeout": Key("int", 30, minimum=1),
        "from_address": Key("str"),
        "reply_to": Key("str"),
        "it_digest_to": Key("list[str]", []),
        "notify_students": Key("bool", False),
        "request_form_url": Key("url"),
        "contact": Key("str"),
        "template_dir": Key("path"),
        "max_attempts": Key("int", 5, minimum=1),
        "reminder_days": Key("int", 0, minimum=0),
        "alert_outside_audience": Key("bool", True),
    },
    "serve": {
        "host": Key("str", "127.0.0.1"),
        "port": Key("int", 8001, minimum=1),
        "public": Key("bool", False),
        # IT staff who can sign in: username -> environment variable holding the
        # password hash made by `app-inventory hash-password`.
        "it_accounts": Key("table[str]", {}),
        "district_name": Key("str", "Our district"),
        # Shown on the public page: who parents can ask about student data privacy.
        "public_contact": Key("str"),
    },
}


@dataclass
class Config:
    """Validated configuration. `path` is None when no file was found."""

    path: Path | None
    sections: dict[str, dict[str, Any]]
    plugins: dict[str, dict[str, Any]]

    def has(self, section: str) -> bool:
        """True when the file has this section (a provider is configured)."""
        return section in self.sections

    def section(self, name: str) -> dict[str, Any]:
        """The section's keys with defaults filled in (empty section if absent)."""
        values = {key: spec.default for key, spec in SCHEMA[name].items()}
        values.update(self.sections.get(name, {}))
        return values

    @property
    def where(self) -> str:
        return str(self.path) if self.path else DEFAULT_CONFIG_PATH

    def secret(self, section: str, key: str) -> str:
        """Read the secret named by a `*_env` key from the environment."""
        variable = self.section(section).get(key)
        if not variable:
            raise ConfigError(f"{self.where}: [{section}] {key} is not set; name the environment variable that holds the secret")
        value = os.environ.get(variable)
        if not value:
            raise ConfigError(
                f"{self.where}: [{section}] {key}: environment variable {variable} is not set; "
                f"export it before running (the secret itself never goes in the file)"
            )
        return value


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Load and validate the configuration file.

    With no path, `$APP_INVENTORY_CONFIG` or `app-inventory.toml` is used; a missing
    default file gives an empty configuration, a missing named file is an error.
    """
    named = path or os.environ.get(CONFIG_ENV_VAR)
    file = Path(named or DEFAULT_CONFIG_PATH)
    if not file.exists():
        if named:
            raise ConfigError(f"{file}: configuration file not found (copy app-inventory.example.toml and edit it)")
        return Config(path=None, sections={}, plugins={})
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{file}: not valid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{file}: cannot read: {error}") from None
    return Config(path=file, **_validate(raw, file))


def _validate(raw: dict[str, Any], file: Path) -> dict[str, Any]:
    sections: dict[str, dict[str, Any]] = {}
    plugins: dict[str, dict[str, Any]] = {}
    for name, table in raw.items():
        if name == "plugins":
            if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
                raise ConfigError(f"{file}: [plugins] must hold one table per plugin, like [plugins.my_plugin]")
            plugins = table
            continue
        if name not in SCHEMA:
            known = ", ".join(f"[{s}]" for s in SCHEMA)
            raise ConfigError(f"{file}: unknown section [{name}] (known sections: {known}, [plugins.<name>])")
        if not isinstance(table, dict):
            raise ConfigError(f"{file}: {name} must be a section ([{name}]), not a single value")
        sections[name] = _validate_section(name, table, file)
    return {"sections": sections, "plugins": plugins}


def _validate_section(name: str, table: dict[str, Any], file: Path) -> dict[str, Any]:
    schema = SCHEMA[name]
    values: dict[str, Any] = {}
    for key, value in table.items():
        spec = schema.get(key)
        if spec is None:
            raise ConfigError(f"{file}: [{name}] unknown key {key!r} (known keys: {', '.join(schema)})")
        values[key] = _check_value(spec, value, f"{file}: [{name}] {key}", file)
    for key, spec in schema.items():
        if spec.required and key not in values:
            raise ConfigError(f"{file}: [{name}] {key} is required")
    if name == "microsoft":
        if not values.get("client_secret_env") and not values.get("certificate_file"):
            raise ConfigError(f"{file}: [microsoft] needs client_secret_env or certificate_file (with certificate_thumbprint)")
        if values.get("certificate_file") and not values.get("certificate_thumbprint"):
            raise ConfigError(f"{file}: [microsoft] certificate_thumbprint is required with certificate_file")
    return values


def _check_value(spec: Key, value: Any, where: str, file: Path) -> Any:
    kind = spec.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        if spec.minimum is not None and value < spec.minimum:
            raise ConfigError(f"{where} must be at least {spec.minimum}, got {value}")
        return value
    if kind == "list[str]":
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise ConfigError(f'{where} must be a list of strings, like ["a", "b"], got {value!r}')
        return value
    if kind == "table[str]":
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f'{where} must be a table of strings, like {{ name = "VALUE" }}, got {value!r}')
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if kind == "choice" and value not in spec.choices:
        raise ConfigError(f"{where} must be one of {', '.join(spec.choices)}, got {value!r}")
    if kind == "email" and (value.count("@") != 1 or value.startswith("@") or value.endswith("@") or " " in value):
        raise ConfigError(f"{where} must be an email address, got {value!r}")
    if kind == "url" and not value.startswith(("https://", "http://")):
        raise ConfigError(f"{where} must be a URL starting with https://, got {value!r}")
    if kind == "path":
        path = Path(value).expanduser()
        # Relative paths are relative to the configuration file, not the shell.
        return path if path.is_absolute() else (file.parent / path)
    return value
