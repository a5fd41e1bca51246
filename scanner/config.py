"""The configuration file: one TOML file, loaded once and validated section by section.

The core declares its own sections (CORE_SECTIONS: [roles], [retention], [serve]);
every plugin, built-in or third-party, declares its own through the
`register_config_sections` hook, so each key the tool reads has a type and a default
in one place, and the example file, the docs and the validation all describe the
same thing. Secrets never live in the file: a key ending in `_env` names the
environment variable that holds the secret, read with `Config.secret()` only when needed.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_CONFIG_PATH = "app-inventory.toml"
CONFIG_ENV_VAR = "APP_INVENTORY_CONFIG"


class ConfigError(Exception):
    """A problem with the configuration, worded for the person who wrote it."""


@dataclass(frozen=True)
class ConfigKey:
    """One configuration key: its type, default and limits."""

    kind: str  # "str", "int", "bool", "path", "email", "url", "list[str]", "choice", "table[str]"
    default: Any = None
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConfigSection:
    """A section's keys, and an optional check of rules that span keys.

    check(values, where) receives the section's validated values (defaults not filled
    in) and `where` ("app-inventory.toml: [name]"); it raises ConfigError to refuse.
    moved maps keys that used to live here to where they live now ("[signin] password_accounts"),
    so an old configuration gets told what to change.
    """

    keys: dict[str, ConfigKey]
    check: Callable[[dict[str, Any], str], None] | None = None
    moved: dict[str, str] | None = None


# The core's own sections. Plugins declare theirs through `register_config_sections`.
CORE_SECTIONS: dict[str, ConfigSection] = {
    "roles": ConfigSection({
        "student_domains": ConfigKey("list[str]", []),
        "student_org_units": ConfigKey("list[str]", []),
        "student_license_skus": ConfigKey("list[str]", []),
        "student_groups": ConfigKey("list[str]", []),
    }),
    "retention": ConfigSection({
        # At most a century: a larger number overflows date arithmetic in every scan.
        "history_days": ConfigKey("int", 400, minimum=1, maximum=36500),
    }),
    "serve": ConfigSection({
        "host": ConfigKey("str", "127.0.0.1"),
        "port": ConfigKey("int", 8001, minimum=1, maximum=65535),
        "public": ConfigKey("bool", False),
        "district_name": ConfigKey("str", "Our district"),
        # Shown on the public page: who parents can ask about student data privacy.
        "public_contact": ConfigKey("str"),
        # A folder of the district's own public-page catalogs (<language>.yml): new languages,
        # or changed wording of the shipped ones (docs/publishing.md).
        "public_languages_dir": ConfigKey("str"),
        # Addresses of the web server in front (nginx on this machine: "127.0.0.1"). Only
        # requests from these may say, in X-Forwarded-Proto and X-Forwarded-For, that they
        # came over HTTPS and from which address.
        "trusted_proxies": ConfigKey("list[str]", []),
    }, check=lambda values, where: _check_trusted_proxies(values.get("trusted_proxies", []), where),
       moved={"it_accounts": "[signin] password_accounts"}),
}


def _check_trusted_proxies(addresses: list[str], where: str) -> None:
    for address in addresses:
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise ConfigError(
                f"{where} trusted_proxies: {address!r} is not an IP address or network; name the web server's "
                'own address, like "127.0.0.1" (never "*": anyone could then claim HTTPS or another address)'
            ) from None


def config_sections() -> dict[str, ConfigSection]:
    """Every section the configuration may hold: the core's and the loaded plugins'."""
    from .plugin_manager import load_plugins

    sections = dict(CORE_SECTIONS)

    def register(name: str, keys: dict[str, ConfigKey], check: Callable[[dict[str, Any], str], None] | None = None) -> None:
        # A dotted name ("microsoft.revoke") is a section inside another one: TOML's [microsoft.revoke].
        if not isinstance(name, str) or not all(part.isidentifier() for part in name.split(".")):
            raise TypeError(f"a configuration section name must be a plain word (or words joined by dots), got {name!r}")
        if name in sections:
            raise TypeError(f"configuration section [{name}] is declared twice (by the core or another plugin)")
        if not all(isinstance(key, ConfigKey) for key in keys.values()):
            raise TypeError(f"configuration section [{name}]: every key must be a scanner.ConfigKey")
        sections[name] = ConfigSection(dict(keys), check)

    load_plugins().hook.register_config_sections(register=register)
    return sections


@dataclass
class Config:
    """Validated configuration. `path` is None when no file was found."""

    path: Path | None
    sections: dict[str, dict[str, Any]]
    schema: dict[str, ConfigSection]

    def has(self, section: str) -> bool:
        """True when the file has this section (a provider is configured)."""
        return section in self.sections

    def section(self, name: str) -> dict[str, Any]:
        """The section's keys with defaults filled in (empty section if absent)."""
        values = {key: spec.default for key, spec in self.schema[name].keys.items()}
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

    def check_ready(self, section: str) -> None:
        """Before a command writes anything: every secret the section names is in the
        environment and every file it names can be read. Raises ConfigError naming the key."""
        values = self.section(section)
        for key, spec in self.schema[section].keys.items():
            if values.get(key) is None:
                continue
            if key.endswith("_env"):
                self.secret(section, key)
            elif spec.kind == "path":
                path = Path(values[key])
                if not path.is_file():
                    problem = "is a folder, not a file" if path.is_dir() else "file not found"
                    raise ConfigError(f"{self.where}: [{section}] {key} {path}: {problem}")
                if not os.access(path, os.R_OK):
                    raise ConfigError(f"{self.where}: [{section}] {key} {path}: cannot read the file (permission denied)")


class LiveConfig:
    """The configuration of a long-running server, read again when its file changes, so that
    an edit (removing someone's access) takes effect at the next request without a restart.

    current() costs one stat() of the file. A file that no longer loads raises ConfigError
    from current() until it is fixed: callers that decide access must then refuse.
    """

    def __init__(self, config: Config):
        self._config = config
        self._stamp = self._stat()
        self._error: ConfigError | None = None

    def _stat(self) -> tuple | None:
        if self._config.path is None:
            return None
        try:
            stat = self._config.path.stat()
        except OSError:
            return ("missing",)
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def current(self) -> Config:
        """The configuration as the file says now."""
        stamp = self._stat()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._config, self._error = load_config(self._config.path), None
            except ConfigError as error:
                self._error = error
        if self._error is not None:
            raise self._error
        return self._config


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
        return Config(path=None, sections={}, schema=config_sections())
    try:
        # utf-8-sig: Windows editors (Notepad) start a UTF-8 file with a byte order mark.
        raw = tomllib.loads(file.read_text(encoding="utf-8-sig"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{file}: not valid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{file}: cannot read: {error}") from None
    schema = config_sections()
    return Config(path=file, sections=_validate(raw, file, schema), schema=schema)


def _validate(raw: dict[str, Any], file: Path, schema: dict[str, ConfigSection]) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {}
    for name, table in raw.items():
        if name not in schema:
            known = ", ".join(f"[{s}]" for s in schema)
            raise ConfigError(
                f"{file}: unknown section [{name}] (known sections: {known}; "
                "a plugin's section is known once the plugin is installed)"
            )
        if not isinstance(table, dict):
            raise ConfigError(f"{file}: {name} must be a section ([{name}]), not a single value")
        # [name.sub] sections live inside [name] in TOML; each is validated as a section of its own.
        nested = {key: value for key, value in table.items() if isinstance(value, dict) and f"{name}.{key}" in schema}
        for key, value in nested.items():
            sections[f"{name}.{key}"] = _validate_section(f"{name}.{key}", value, file, schema[f"{name}.{key}"])
        if nested and not set(table) - set(nested):
            continue  # only [name.sub] was written: [name] itself is not configured
        sections[name] = _validate_section(name, {k: v for k, v in table.items() if k not in nested}, file, schema[name])
    return sections


def _validate_section(name: str, table: dict[str, Any], file: Path, section: ConfigSection) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in table.items():
        spec = section.keys.get(key)
        if spec is None and key in (section.moved or {}):
            raise ConfigError(f"{file}: [{name}] {key} has moved to {section.moved[key]}: "
                              "move the line there, with the same value")
        if spec is None:
            raise ConfigError(f"{file}: [{name}] unknown key {key!r} (known keys: {', '.join(section.keys)})")
        values[key] = _check_value(spec, value, f"{file}: [{name}] {key}", file)
    for key, spec in section.keys.items():
        if spec.required and key not in values:
            raise ConfigError(f"{file}: [{name}] {key} is required")
    if section.check is not None:
        section.check(values, f"{file}: [{name}]")
    return values


LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str | None) -> bool:
    """True for this computer's own addresses (127.0.0.0/8, ::1, localhost)."""
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_url(value: str, where: str) -> None:
    """https:// anywhere; plain http:// only to this computer (the emulators, a local relay)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        raise ConfigError(f"{where} is not a usable URL, got {value!r}") from None
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback(parts.hostname):
        return
    if parts.scheme == "http" and parts.hostname:
        raise ConfigError(
            f"{where} must start with https:// (plain http:// is allowed only for this computer, "
            f"127.0.0.1 or localhost), got {value!r}"
        )
    raise ConfigError(f"{where} must be a URL starting with https://, got {value!r}")


def _check_value(spec: ConfigKey, value: Any, where: str, file: Path) -> Any:
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
        if spec.maximum is not None and value > spec.maximum:
            raise ConfigError(f"{where} must be at most {spec.maximum}, got {value}")
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
    if kind == "url":
        _check_url(value, where)
    if kind == "path":
        path = Path(value).expanduser()
        # Relative paths are relative to the configuration file, not the shell.
        return path if path.is_absolute() else (file.parent / path)
    return value
