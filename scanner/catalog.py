"""Reading the district's approved-app catalog from CSV, YAML or JSON.

`read_catalog()` returns clean rows or raises CatalogError listing every problem
as FILE:LINE: message, so a district fixes its spreadsheet in one pass. Writing
(all-or-nothing) is scanner.store.import_catalog. `write_catalog()` writes the catalog
back in exactly the import format (`catalog export`), so export then import changes
nothing; `validate_entry()` checks one entry made in the browser by the same rules.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path
from typing import Any

import yaml

from .schema import CATALOG_ID_COLUMNS
from .scopes import expand_scope

COLUMNS = (
    "id", "name", "vendor", "status", *CATALOG_ID_COLUMNS,
    "approved_scopes", "audience", "dpa_url", "dpa_expires", "alternative", "notes",
)
LIST_COLUMNS = (*CATALOG_ID_COLUMNS, "approved_scopes")
STATUSES = ("approved", "conditional", "denied", "pending")
AUDIENCES = ("all", "staff", "students")


def client_id_columns() -> dict[str, str]:
    """provider -> the catalog column listing that provider's client ids ("google" ->
    "google_client_ids"). Derived from LIST_COLUMNS, so a provider that adds its column there
    (chrome_extension_ids) reaches the decision form and the export without another change."""
    return {column.split("_", 1)[0]: column for column in LIST_COLUMNS if column != "approved_scopes"}

# The words districts actually use in their vetting spreadsheets.
STATUS_WORDS = {
    "approved": "approved", "approve": "approved", "yes": "approved", "allowed": "approved",
    "approved for use": "approved", "fully approved": "approved",
    "conditional": "conditional", "approved with conditions": "conditional",
    "conditionally approved": "conditional", "approved with restrictions": "conditional",
    "limited": "conditional", "restricted": "conditional", "teacher use only": "conditional",
    "staff use only": "conditional", "staff only": "conditional", "teachers only": "conditional",
    "approved for staff": "conditional", "approved for teachers": "conditional",
    "denied": "denied", "not approved": "denied", "no": "denied", "rejected": "denied",
    "blocked": "denied", "prohibited": "denied", "do not use": "denied", "not allowed": "denied",
    "pending": "pending", "pending review": "pending", "under review": "pending", "in review": "pending",
    "requested": "pending", "in progress": "pending", "submitted": "pending",
}
AUDIENCE_WORDS = {
    "all": "all", "everyone": "all", "": "all", "staff and students": "all", "students and staff": "all",
    "staff": "staff", "teachers": "staff", "teacher": "staff", "staff only": "staff", "faculty": "staff",
    "students": "students", "student": "students", "students only": "students",
}
GOOGLE_CLIENT_ID = re.compile(r"^\d+(-[a-z0-9]+)?(\.apps\.googleusercontent\.com)?$")
GOOGLE_CLIENT_ID_SUFFIX = ".apps.googleusercontent.com"
# Deeper than any catalog needs, and well inside Python's recursion limit.
MAX_NESTING = 20
# A Chrome Web Store extension id: 32 letters a to p.
CHROME_EXTENSION_ID = re.compile(r"^[a-p]{32}$")
MICROSOFT_APP_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class _RowProblem(str):
    """A row the file format itself could not read (as opposed to a value in it)."""


class CatalogError(Exception):
    """Every problem found in a catalog file, one `FILE:LINE: message` each."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def normalize_status(word: str) -> str | None:
    return STATUS_WORDS.get(re.sub(r"[^a-z]+", " ", word.lower()).strip())


def normalize_google_client_id(client_id: str) -> str:
    """123-abc -> 123-abc.apps.googleusercontent.com: Google reports every client id with its
    suffix, so an id copied without it would never match an app."""
    client_id = client_id.strip().lower()
    return client_id if client_id.endswith(GOOGLE_CLIENT_ID_SUFFIX) else client_id + GOOGLE_CLIENT_ID_SUFFIX


def read_catalog(path: str | Path) -> list[dict[str, Any]]:
    """Parse and validate a catalog file into rows for the `catalog` table."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise CatalogError([f"{name}: file not found"]) from None
    except UnicodeDecodeError:
        raise CatalogError([f"{name}: not UTF-8 text (save the spreadsheet as \"CSV UTF-8\")"]) from None
    except OSError as error:
        raise CatalogError([f"{name}: cannot read: {error.strerror}"]) from None
    suffix = path.suffix.lower()
    formats = {".csv": _csv_entries, ".yaml": _yaml_entries, ".yml": _yaml_entries, ".json": _json_entries}
    if suffix not in formats:
        raise CatalogError([f"{name}: unknown catalog format {suffix or '(none)'}; use .csv, .yaml, .yml or .json"])
    try:
        entries = formats[suffix](text, name)
    except RecursionError:  # the parsers recurse once per level of nesting
        raise _too_deep(name) from None
    return _validate(entries, name)


# -- formats: each yields (line, mapping of column -> raw value) --------------------------------

def _csv_entries(text: str, name: str) -> list[tuple[int, Any]]:
    # strict: an unterminated quote is an error, not one cell swallowing the rest of the file.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    line = 1
    try:
        header = next(reader, None)
        if not header:
            raise CatalogError([f"{name}:1: empty file; the first line must name the columns ({', '.join(COLUMNS)})"])
        columns = [_column_name(cell) for cell in header]
        entries = []
        line = reader.line_num + 1
        for cells in reader:
            if any(cell.strip() for cell in cells):
                if len(cells) > len(columns):
                    entries.append((line, _RowProblem(f"has {len(cells)} cells but the header names {len(columns)} columns")))
                else:
                    entries.append((line, dict(zip(columns, cells))))
            line = reader.line_num + 1
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise CatalogError([f"{name}:{line}: not valid CSV: a quote (\") opened in this row is never closed"]) from None
        raise CatalogError([f"{name}:{reader.line_num}: not valid CSV: {error}"]) from None
    return entries


class _CatalogYamlLoader(yaml.SafeLoader):
    """YAML's safe loader, keeping dates as text: `2027-02-30` then gets a row error naming
    its line from our own date check, instead of a traceback from the YAML library."""


_CatalogYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _too_deep(name: str) -> CatalogError:
    return CatalogError([f"{name}: nested too deeply to be a catalog (a list of apps, each with named fields)"])


def _depth(node: Any, limit: int) -> int:
    """How deeply lists and mappings nest in a composed YAML node (stops counting past limit)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((child, depth + 1) for pair in node.value for child in pair)
    return deepest


def _yaml_entries(text: str, name: str) -> list[tuple[int, Any]]:
    try:
        root = yaml.compose(text, Loader=_CatalogYamlLoader)
        if _depth(root, MAX_NESTING) > MAX_NESTING:
            raise _too_deep(name)
        data = yaml.load(text, Loader=_CatalogYamlLoader)  # noqa: S506 (a safe loader)
    except RecursionError:
        raise _too_deep(name) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(error, "problem", None) or str(error)
        raise CatalogError([f"{name}:{line}: not valid YAML: {problem}"]) from None
    if isinstance(data, dict) and isinstance(root, yaml.MappingNode):
        for key_node, value_node in root.value:
            if key_node.value in ("apps", "catalog"):
                root, data = value_node, data.get(key_node.value)
                break
    if not isinstance(data, list) or not isinstance(root, yaml.SequenceNode):
        raise CatalogError([f"{name}:1: expected a list of apps (or a mapping with an `apps:` list)"])
    return [(node.start_mark.line + 1, item) for node, item in zip(root.value, data)]


class _DuplicateKey(Exception):
    """A JSON object names the same key twice (json would silently keep the last one)."""


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _json_entries(text: str, name: str) -> list[tuple[int, Any]]:
    decoder = json.JSONDecoder(object_pairs_hook=_object_without_duplicates)
    duplicate: str | None = None
    try:
        data = decoder.decode(text)
    except json.JSONDecodeError as error:
        raise CatalogError([f"{name}:{error.lineno}: not valid JSON: {error.msg}"]) from None
    except RecursionError:
        raise _too_deep(name) from None
    except _DuplicateKey as error:
        duplicate, data = str(error), json.loads(text)  # read again, to find the item that holds it
    start = _json_list_start(text, data)
    if start is None:
        if duplicate is not None:
            raise CatalogError([f"{name}:1: the key {duplicate!r} appears twice in one object; keep one"])
        raise CatalogError([f"{name}:1: expected a list of apps (or an object with an \"apps\" list)"])
    # Decode the list item by item to learn the line each item starts on.
    entries, index = [], start + 1
    while True:
        index = _skip_json_space(text, index, ",")
        if text[index] == "]":
            break
        line = text.count("\n", 0, index) + 1
        try:
            item, end = decoder.raw_decode(text, index)
        except _DuplicateKey as error:
            raise CatalogError([f"{name}:{line}: the key {str(error)!r} appears twice in this app; keep one"]) from None
        entries.append((line, item))
        index = end
    if duplicate is not None:  # outside the list of apps, in the enclosing object
        raise CatalogError([f"{name}:1: the key {duplicate!r} appears twice in one object; keep one"])
    if any(_json_depth(item, MAX_NESTING) > MAX_NESTING for _, item in entries):
        raise _too_deep(name)
    return entries


def _json_depth(value: Any, limit: int) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, dict):
            stack.extend((item, depth + 1) for item in value.values())
    return deepest


def _json_list_start(text: str, data: Any) -> int | None:
    """Index of the '[' that opens the list of apps, or None."""
    index = _skip_json_space(text, 0)
    if isinstance(data, list):
        return index
    if not isinstance(data, dict) or not isinstance(data.get("apps", data.get("catalog")), list):
        return None
    decoder, index = json.JSONDecoder(), index + 1
    while True:
        index = _skip_json_space(text, index, ",")
        key, index = decoder.raw_decode(text, index)
        index = _skip_json_space(text, index, ":")
        if key in ("apps", "catalog") and isinstance(data[key], list):
            return index
        _, index = decoder.raw_decode(text, index)


def _skip_json_space(text: str, index: int, also: str = "") -> int:
    while text[index] in " \t\r\n" + also:
        index += 1
    return index


def _column_name(header: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")


# -- validation -----------------------------------------------------------------------------

def validate_entry(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """One entry (a decision made in the browser) checked by the import's own rules: the row
    for the `catalog` table, or CatalogError with each problem as `where: message`."""
    row, problems = _validate_row({_column_name(str(k)): v for k, v in raw.items()})
    if problems:
        raise CatalogError([f"{where}: {problem}" for problem in problems])
    return row


def export_entry(row: dict[str, Any]) -> dict[str, Any]:
    """A `catalog` row in the import format: the district's own status word, lists as lists,
    empty text as "" (reading it back gives the same row)."""
    entry: dict[str, Any] = {}
    for column in COLUMNS:
        value = row.get(column)
        if column in LIST_COLUMNS:
            entry[column] = json.loads(value or "[]")
        elif column == "status":
            original = row.get("status_original") or ""
            entry[column] = original if normalize_status(original) == row["status"] else row["status"]
        else:
            entry[column] = "" if value is None else str(value)
    return entry


def write_catalog(path: str | Path, rows: list[dict[str, Any]]) -> int:
    """Write `catalog` rows to path as CSV, YAML or JSON (by its extension), in the import
    format, sorted by id; written beside it first and renamed, so the file is whole or not
    there. Returns the number of entries."""
    path = Path(path)
    suffix = path.suffix.lower()
    entries = [export_entry(row) for row in sorted(rows, key=lambda row: row["id"])]
    if suffix == ".csv":
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for entry in entries:
            writer.writerow(["; ".join(v) if isinstance(v, list) else v for v in entry.values()])
        text = out.getvalue()
    elif suffix in (".yaml", ".yml"):
        text = yaml.safe_dump({"apps": entries}, sort_keys=False, allow_unicode=True, width=1000)
    elif suffix == ".json":
        text = json.dumps({"apps": entries}, indent=2, ensure_ascii=False) + "\n"
    else:
        raise CatalogError([f"{path}: unknown catalog format {suffix or '(none)'}; use .csv, .yaml, .yml or .json"])
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8", newline="")
        partial.replace(path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise CatalogError([f"{path}: cannot write: {error.strerror or error}"]) from None
    return len(entries)


def _validate(entries: list[tuple[int, Any]], name: str) -> list[dict[str, Any]]:
    problems: list[str] = []
    rows: list[dict[str, Any]] = []
    ids: dict[str, int] = {}
    client_ids: dict[tuple[str, str], int] = {}
    if not entries:
        raise CatalogError([f"{name}: no apps in the catalog"])
    for line, raw in entries:
        where = f"{name}:{line}"
        if isinstance(raw, _RowProblem):
            problems.append(f"{where}: {raw}")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected an app with named fields, got {type(raw).__name__}")
            continue
        row, row_problems = _validate_row({_column_name(str(k)): v for k, v in raw.items()})
        problems += [f"{where}: {p}" for p in row_problems]
        if row_problems:
            continue
        if row["id"] in ids:
            problems.append(f"{where}: id {row['id']!r} is already used on line {ids[row['id']]}")
            continue
        ids[row["id"]] = line
        for column in CATALOG_ID_COLUMNS:
            for client_id in json.loads(row[column]):
                first = client_ids.setdefault((column, client_id), line)
                if first != line:
                    problems.append(f"{where}: {column} {client_id!r} is already listed on line {first}")
        rows.append(row)
    if problems:
        raise CatalogError(problems)
    return rows


def _validate_row(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    problems = []
    unknown = sorted(set(raw) - set(COLUMNS))
    if unknown:
        problems.append(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} (known: {', '.join(COLUMNS)})")
    values: dict[str, Any] = {}
    for column in COLUMNS:
        value = raw.get(column)
        if column in LIST_COLUMNS:
            items = _as_list(value)
            if items is None:
                problems.append(f"{column} must be text (separate several with ;) or a list of text")
                items = []
            values[column] = items
        else:
            text = _as_text(value)
            if text is None:
                problems.append(f"{column} must be text, got {type(value).__name__}")
                text = ""
            values[column] = text
    if not values["name"]:
        problems.append("name is missing")
    status = normalize_status(values["status"])
    if not values["status"]:
        problems.append("status is missing (approved, conditional, denied or pending)")
    elif status is None:
        problems.append(f"status {values['status']!r} is not one we know; use approved, conditional, denied or pending")
    audience = AUDIENCE_WORDS.get(values["audience"].lower().strip())
    if audience is None:
        problems.append(f"audience {values['audience']!r} must be staff, students or all")
    for client_id in values["google_client_ids"]:
        if not GOOGLE_CLIENT_ID.match(client_id.lower()):
            problems.append(f"google_client_ids: {client_id!r} is not a Google OAuth client id (digits, then -xxxx.apps.googleusercontent.com)")
    values["google_client_ids"] = list(dict.fromkeys(normalize_google_client_id(c) for c in values["google_client_ids"]))
    for app_id in values["microsoft_app_ids"]:
        if not MICROSOFT_APP_ID.match(app_id):
            problems.append(f"microsoft_app_ids: {app_id!r} is not a Microsoft application (client) id like 00000000-0000-0000-0000-000000000000")
    for extension_id in values["chrome_extension_ids"]:
        if not CHROME_EXTENSION_ID.match(extension_id.lower()):
            problems.append(f"chrome_extension_ids: {extension_id!r} is not a Chrome extension id (32 letters a to p, "
                            "as in the Chrome Web Store address)")
    if values["dpa_url"] and not re.match(r"^https?://\S+$", values["dpa_url"]):
        problems.append(f"dpa_url {values['dpa_url']!r} must be a web address starting with https://")
    expires = _parse_date(values["dpa_expires"])
    if values["dpa_expires"] and expires is None:
        problems.append(f"dpa_expires {values['dpa_expires']!r} must be a date like 2027-06-30 (or 06/30/2027)")
    row_id = values["id"] or _slug(values["name"])
    if values["id"] and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*$", values["id"]):
        problems.append(f"id {values['id']!r} may hold only letters, digits, '.', '_' and '-'")
    if problems:
        return {}, problems
    return {
        "id": row_id,
        "name": values["name"],
        "vendor": values["vendor"] or None,
        "status": status,
        "status_original": values["status"],
        "google_client_ids": json.dumps(values["google_client_ids"]),
        "microsoft_app_ids": json.dumps([a.lower() for a in values["microsoft_app_ids"]]),
        "chrome_extension_ids": json.dumps(list(dict.fromkeys(e.lower() for e in values["chrome_extension_ids"]))),
        "approved_scopes": json.dumps([expand_scope(s) for s in values["approved_scopes"]]),
        "audience": audience,
        "dpa_url": values["dpa_url"] or None,
        "dpa_expires": expires,
        "alternative": values["alternative"] or None,
        "notes": values["notes"] or None,
    }, []


def _as_text(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, bool):
        return None
    if isinstance(value, (dt.date, int, float)):
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    if isinstance(value, str):
        return value.strip()
    return None


def _as_list(value: Any) -> list[str] | None:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(";")
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(dict.fromkeys(item.strip() for item in value if item.strip()))
    return None


def _parse_date(text: str) -> str | None:
    for fmt in ("%Y-%m-%d", "%m/%d/%Y"):
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    return None


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "app"
