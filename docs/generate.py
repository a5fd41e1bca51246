"""The generated parts of the docs, made from the code so they cannot drift from it.

Each docs page calls one of these inside a cog block; `cog -r docs/*.md` rewrites the
blocks and `cog --check docs/*.md` (run by tests/test_docs.py) fails when a page is
out of date. Run cog from the repository root.
"""

from __future__ import annotations

import re
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "app-inventory.example.toml"
METADATA = ROOT / "metadata.yml"

# Only the built-in plugins: a plugin installed on the writer's machine must not
# change the docs (the same switch the test suite uses).
sys._called_from_test = True
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# --- the command reference -------------------------------------------------------------

# The weekly work first, then the rest; any other command follows in alphabetical order.
COMMAND_ORDER = ["scan", "catalog", "serve", "hash-password", "alerts", "demo", "plugins", "send", "list", "retry"]


def cli_reference() -> str:
    """The --help of `app-inventory` and of every command and subcommand, in order."""
    import click
    from click.testing import CliRunner

    from scanner.cli import cli

    def walk(command: click.Command, path: list[str]):
        yield path
        if isinstance(command, click.Group):
            names = sorted(command.commands, key=lambda name: (COMMAND_ORDER.index(name) if name in COMMAND_ORDER else 99, name))
            for name in names:
                yield from walk(command.commands[name], [*path, name])

    out = []
    for path in walk(cli, []):
        # A fixed width, so the page does not depend on the terminal it was made in.
        result = CliRunner().invoke(cli, [*path, "--help"], prog_name="app-inventory", terminal_width=88)
        if result.exit_code != 0:
            raise RuntimeError(f"app-inventory {' '.join(path)} --help failed: {result.output}")
        name = " ".join(["app-inventory", *path])
        out.append(f"{'#' * min(len(path) + 2, 4)} {name}\n\n```text\n{result.output.strip()}\n```\n")
    return "\n".join(out)


# --- the configuration reference ----------------------------------------------------------

KIND_WORDS = {
    "str": "text",
    "int": "whole number",
    "bool": "`true` or `false`",
    "path": "file or folder (relative to the configuration file)",
    "email": "email address",
    "url": "URL (`https://…`)",
    "list[str]": 'list of text (`["a", "b"]`)',
    "table[str]": 'table of text (`{ name = "VALUE" }`)',
    "choice": "one of",
}


def example_comments(path: Path = EXAMPLE_CONFIG) -> dict[str, dict]:
    """The example file's words: per section, its intro and each key's comment.

    A comment block directly above a key (or above a commented-out `# key = value`)
    describes that key; a trailing `# ...` on the key's line is added to it. Comment
    lines right after a `[section]` line that end at a blank line introduce the section.
    """
    sections: dict[str, dict] = {}
    current = None
    pending: list[str] = []
    assignment = re.compile(r"^(#\s*)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        # A section the example leaves commented out (`# [google.revoke]`) is a section too.
        header = re.fullmatch(r"(?:#\s*)?\[([A-Za-z_][A-Za-z0-9_.]*)\]", line)
        if header:
            current = sections.setdefault(header.group(1), {"intro": "", "keys": {}, "examples": {}})
            pending = []
            continue
        if current is None:
            continue
        if not line:
            if pending and not current["keys"] and not current["intro"]:
                current["intro"] = " ".join(pending)
            pending = []
            continue
        match = assignment.match(line)
        if match and (match.group(1) is None or _looks_like_value(match.group(3))):
            key, rest = match.group(2), match.group(3)
            value, _, trailing = _split_trailing_comment(rest)
            words = " ".join([*pending, trailing.strip()]).strip()
            current["keys"][key] = words
            current["examples"][key] = value.strip()
            pending = []
            continue
        if line.startswith("#"):
            pending.append(line.lstrip("#").strip())
    return sections


def _looks_like_value(text: str) -> bool:
    """A commented-out `# key = value` line, not prose that happens to hold an equals sign."""
    try:
        tomllib.loads(f"x = {_split_trailing_comment(text)[0]}")
    except tomllib.TOMLDecodeError:
        return False
    return True


def _split_trailing_comment(text: str) -> tuple[str, str, str]:
    """Split `"a # b" # note` into the value and the note, minding quoted strings."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            return text[:i], "#", text[i + 1:]
    return text, "", ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _link_pages(text: str) -> str:
    """The example file names docs pages as docs/NAME.md; here they become links (titled by the page)."""
    return re.sub(r"docs/([a-z-]+)\.md", r"[](\1.md)", text)


def _default(spec) -> str:
    if spec.required:
        return "**required**"
    if spec.default is None:
        return "(none)"
    if isinstance(spec.default, bool):
        return f"`{str(spec.default).lower()}`"
    if isinstance(spec.default, str):
        return f'`"{spec.default}"`'
    return f"`{spec.default}`"


def _kind(spec) -> str:
    words = KIND_WORDS.get(spec.kind, spec.kind)
    if spec.kind == "choice":
        words += " " + ", ".join(f"`{choice}`" for choice in spec.choices)
    if spec.minimum is not None:
        words += f", at least {spec.minimum}"
    return words


def config_reference() -> str:
    """Every section and key the tool reads, with its type, default and the example file's words."""
    from scanner.config import CORE_SECTIONS, config_sections
    from scanner.plugin_manager import load_plugins

    owners = _section_owners(load_plugins())
    words = example_comments()
    sections = config_sections()
    # In the example file's order: the providers first, as a district sets them up.
    order = [name for name in words if name in sections] + [name for name in sections if name not in words]
    out = []
    for name in order:
        section = sections[name]
        example = words.get(name)
        if example is None:
            raise RuntimeError(f"app-inventory.example.toml has no [{name}] section: add it, with a comment for each key")
        owner = "the core" if name in CORE_SECTIONS else f"the `{owners.get(name, '?')}` plugin"
        out.append(f"### `[{name}]`\n")
        if example["intro"]:
            out.append(f"{_link_pages(example['intro'])}\n")
        out.append(f"Declared by {owner}.\n")
        out.append("| key | type | default | meaning |")
        out.append("|---|---|---|---|")
        for key, spec in section.keys.items():
            meaning = example["keys"].get(key)
            if not meaning:
                raise RuntimeError(f"app-inventory.example.toml: [{name}] {key} has no comment above it: say what it is for")
            out.append(f"| `{key}` | {_cell(_kind(spec))} | {_cell(_default(spec))} | {_cell(_link_pages(meaning))} |")
        unknown = set(example["keys"]) - set(section.keys)
        if unknown:
            raise RuntimeError(f"app-inventory.example.toml: [{name}] has keys the tool does not read: {sorted(unknown)}")
        out.append("")
    return "\n".join(out)


def _section_owners(pm) -> dict[str, str]:
    """Which plugin declared each configuration section."""
    owners = {}
    for impl in pm.hook.register_config_sections.get_hookimpls():
        def record(name, keys, check=None, _plugin=impl.plugin_name):
            owners[name] = _plugin
        impl.function(register=record)
    return owners


# --- the tables -----------------------------------------------------------------------------

def _metadata() -> dict:
    return yaml.safe_load(METADATA.read_text(encoding="utf-8"))


def _inventory_kinds() -> tuple[dict[str, str], set[str]]:
    """Each table's kind (table or view) in a new inventory, and the tables the alerts plugin adds."""
    from plugins.alerts.queue import ensure_alerts_tables
    from scanner import store

    with tempfile.TemporaryDirectory() as directory:
        db = store.open_db(str(Path(directory) / "inventory.db"))
        core = set(db.table_names()) | set(db.view_names())
        ensure_alerts_tables(db)
        rows = db.execute("select name, type from sqlite_master where type in ('table', 'view')").fetchall()
        db.close()
    kinds = {name: kind for name, kind in rows}
    return kinds, set(kinds) - core


def tables_reference() -> str:
    """Every table and view with its columns, in metadata.yml's words and order."""
    tables = _metadata()["databases"]["inventory"]["tables"]
    kinds, from_alerts = _inventory_kinds()
    out = []
    for name, meta in tables.items():
        if meta.get("hidden"):
            continue
        if name not in kinds:
            raise RuntimeError(f"metadata.yml describes {name}, which a new inventory does not have")
        kind = kinds[name]
        who = "anyone, when the public page is published" if name == "public_apps" else "signed-in IT staff"
        origin = " Added by the alerts plugin." if name in from_alerts else ""
        out.append(f"### `{name}`\n")
        out.append(f"*{kind.capitalize()}; seen by {who}.{origin}*\n")
        out.append(f"{' '.join(meta['description'].split())}\n")
        out.append("| column | meaning |")
        out.append("|---|---|")
        for column, words in meta.get("columns", {}).items():
            out.append(f"| `{column}` | {_cell(' '.join(str(words).split()))} |")
        out.append("")
    missing = sorted(set(kinds) - set(tables) - {"sqlite_sequence"})
    if missing:
        raise RuntimeError(f"metadata.yml does not describe {missing}")
    return "\n".join(out)


def canned_queries() -> str:
    """The canned queries on the inventory page, with what each asks for."""
    queries = _metadata()["databases"]["inventory"]["queries"]
    out = ["| query | asks for | what it shows |", "|---|---|---|"]
    for name, query in queries.items():
        params = ", ".join(f"`{p}`" for p in query.get("params", [])) or "nothing"
        description = " ".join(query["description"].split())
        out.append(f"| {query['title']} (`{name}`) | {params} | {_cell(description)} |")
    return "\n".join(out) + "\n"



# --- the plugin API ------------------------------------------------------------------------

# Constants carry no docstring of their own: their words live here (a new one stops cog).
CONSTANT_WORDS = {
    "RISK_RANK": "How risk levels compare: a higher number is riskier.",
    "STATUSES_NEEDING_REVIEW": "The catalog statuses that make an app unapproved (with a staff-only app on a student account).",
    "AUDIENCES": "Who a catalog entry is for: all, staff or students.",
    "STATUSES": "The catalog's decisions: approved, conditional, denied, pending.",
    "DECISION_FIELDS": "The catalog fields a decision made in the browser may set (scanner.decide).",
    "UNAPPROVED_IDS": ("SQL (a subquery) for the rows of unapproved_usage by ids: app_id, user_id, grant_id, reason, "
                       "status; filter it by account or app id, which its joins look up by index."),
    "UNAPPROVED_KEYS": ("SQL (a subquery) for each account's active unapproved grants by key: app_key, user_key "
                        "(users.key), resource, application, reason, status; filter it by user_key or app_key, which its indexes find."),
    "TENANT_WIDE_UNAPPROVED_KEYS": ("SQL (a subquery) for the tenant-wide consents (no account, user_key 0) the same rule "
                                    "finds unapproved, with the same columns as UNAPPROVED_KEYS."),
    "SCOPE_CREEP_KEYS": ("SQL template for the active grants holding scopes their catalog entry did not approve, by key: "
                         "app_key, user_key, resource, application, scope_set, first_seen, extra_scopes; format it with where, "
                         "a condition on the grant (g) and its app (apps), \"1\" for all."),
    "GRANT_ID": ("SQL template for a grant's id from its parts: format it with provider, user (the account's id, null "
                 "for tenant-wide), client, resource and application (1 or 0), each an SQL expression."),
}


def public_api() -> str:
    """Everything `scanner/__init__.py` offers plugins, with its signature and docstring."""
    import dataclasses
    import inspect
    import typing

    import scanner

    out = ["| name | what it is |", "|---|---|"]
    for name in sorted(scanner.__all__, key=str.lower):
        obj = getattr(scanner, name)
        doc = inspect.getdoc(obj) if (inspect.isclass(obj) or inspect.isfunction(obj)) else None
        summary = " ".join(doc.split("\n\n")[0].split()) if doc else ""
        if name == "hookimpl":
            shown, summary = "@hookimpl", "Marks a function in a plugin module as a hook implementation."
        elif typing.get_origin(obj) is typing.Union:
            shown = f"{name} = {' | '.join(arg.__name__ for arg in typing.get_args(obj))}"
            summary = "Any record a provider may yield."
        elif dataclasses.is_dataclass(obj) and name != "ScanChanges":
            fields = ", ".join(f.name for f in dataclasses.fields(obj))
            shown = f"{name}({fields})"
        elif inspect.isclass(obj) and issubclass(obj, Exception):
            shown = f"{name}(message)"
        elif inspect.isclass(obj):
            shown = name
        elif inspect.isfunction(obj):
            shown = f"{name}({', '.join(_parameter(p) for p in inspect.signature(obj).parameters.values())})"
        else:
            shown = f"{name} = {obj!r}"
            if name not in CONSTANT_WORDS:
                raise RuntimeError(f"scanner.{name} is public: say what it is in docs/generate.py CONSTANT_WORDS")
            summary = CONSTANT_WORDS[name]
        out.append(f"| `{_cell(shown)}` | {_cell(summary)} |")
    return "\n".join(out) + "\n"


def _parameter(parameter) -> str:
    if parameter.kind is parameter.KEYWORD_ONLY:
        text = f"{parameter.name}="
        return text + ("…" if parameter.default is parameter.empty else repr(parameter.default))
    return parameter.name
