"""Property-based tests: any input gives a clean result or a clear error, never a traceback
or a partial write."""

import csv
import io
import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scanner import store
from scanner.catalog import COLUMNS, CatalogError, read_catalog
from scanner.config import ConfigError, config_sections, load_config

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# -- catalog ---------------------------------------------------------------------------------

cell_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["Approved", "Denied", "pending review", "Teacher use only", "staff", "students", "all",
                     "2027-06-30", "06/30/2027", "https://d.org/dpa.pdf", "openid;drive.file",
                     "957951205531-8bf6215da170cc0a96581b2aed932d84.apps.googleusercontent.com",
                     "e6702dab-6179-5480-8e50-e082f437172b", "Kahoot!", ""]),
)
column_names = st.one_of(st.sampled_from(COLUMNS), st.text(min_size=1, max_size=12))
# Mostly plausible values per column, sometimes junk, so both outcomes are exercised.
VALID = {
    "name": st.text(alphabet="abcdefghijklmnopqrstuvwxyz !é", min_size=1, max_size=12),
    "status": st.sampled_from(["Approved", "Denied", "pending review", "Teacher use only", "Not approved", "Under review"]),
    "audience": st.sampled_from(["", "all", "Staff", "students", "Teachers"]),
    "dpa_expires": st.sampled_from(["", "2027-06-30", "06/30/2027"]),
    "dpa_url": st.sampled_from(["", "https://d.org/dpa.pdf"]),
    "approved_scopes": st.sampled_from(["", "openid;drive.file", "User.Read"]),
    "vendor": st.text(max_size=10),
    "notes": st.text(max_size=20),
}
plausible_row = st.fixed_dictionaries(
    {"name": VALID["name"], "status": VALID["status"]},
    optional={column: st.one_of(strategy, strategy, cell_text) for column, strategy in VALID.items() if column not in ("name", "status")},
)
rows = st.lists(st.one_of(plausible_row, plausible_row, plausible_row, st.dictionaries(column_names, cell_text, max_size=8)), max_size=6)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), cell_text),
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(column_names, children, max_size=5)),
    max_leaves=20,
)


def to_csv(entries):
    header = list(dict.fromkeys(k for row in entries for k in row)) or ["name"]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in entries:
        writer.writerow([row.get(k, "") for k in header])
    return out.getvalue()


def check_import(suffix, text):
    """read_catalog either returns valid rows, which replace_catalog stores exactly, or raises
    CatalogError naming the file (the database is not touched until a file parses whole;
    tests/test_catalog.py checks that a failing replace_catalog changes nothing)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"catalog{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            parsed = read_catalog(path)
        except CatalogError as error:
            assert error.problems and all(p.startswith(str(path)) for p in error.problems)
            return
        assert parsed and all(r["status"] in ("approved", "conditional", "denied", "pending") for r in parsed)
        db = store.open_db(str(Path(folder) / "inventory.db"))
        store.replace_catalog(db, parsed)
        assert sorted(r["id"] for r in db["catalog"].rows) == sorted(r["id"] for r in parsed)


@SETTINGS
@given(rows)
def test_any_csv_catalog(entries):
    check_import(".csv", to_csv(entries))


@SETTINGS
@given(st.text(max_size=300))
def test_any_text_as_csv_yaml_or_json(text):
    for suffix in (".csv", ".yaml", ".json"):
        check_import(suffix, text)


@SETTINGS
@given(json_values)
def test_any_json_or_yaml_structure(value):
    check_import(".json", json.dumps(value, indent=1))
    check_import(".yaml", yaml.safe_dump(value, allow_unicode=True))


@SETTINGS
@given(st.lists(plausible_row, max_size=5))
def test_any_near_valid_yaml_catalog(entries):
    check_import(".yaml", yaml.safe_dump({"apps": entries}, allow_unicode=True))


# -- configuration -----------------------------------------------------------------------------

toml_values = st.one_of(
    st.text(max_size=20), st.integers(min_value=-5, max_value=10**6), st.booleans(),
    st.lists(st.text(max_size=10), max_size=3), st.lists(st.integers(), max_size=2),
    st.sampled_from(["a@district.org", "https://x.org/", "starttls", "sa.json"]),
)
SECTIONS = config_sections()
known_keys = st.sampled_from([(section, key) for section, declared in SECTIONS.items() for key in declared.keys])
any_keys = st.one_of(known_keys, st.tuples(st.sampled_from([*SECTIONS, "bogus"]), st.text(alphabet="abcdefghij_", min_size=1, max_size=8)))


def toml_literal(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return json.dumps(value)  # JSON strings and integers are valid TOML
    return "[" + ", ".join(toml_literal(v) for v in value) + "]"


def check_config(text):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "app-inventory.toml"
        path.write_text(text, encoding="utf-8")
        try:
            config = load_config(path)
        except ConfigError as error:
            assert str(error).startswith(str(path))
            return
        for section in config.sections:
            config.section(section)


@SETTINGS
@given(st.dictionaries(any_keys, toml_values, max_size=8))
def test_any_structured_config(entries):
    sections: dict[str, list[str]] = {}
    for (section, key), value in entries.items():
        sections.setdefault(section, []).append(f"{json.dumps(key)} = {toml_literal(value)}")
    check_config("".join(f"[{section}]\n" + "\n".join(lines) + "\n" for section, lines in sections.items()))


@SETTINGS
@given(st.text(max_size=200))
def test_any_text_as_config(text):
    check_config(text)
