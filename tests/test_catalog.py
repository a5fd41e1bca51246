import json
from pathlib import Path

import pytest

from scanner import store
from scanner.catalog import CatalogError, normalize_status, read_catalog
from scanner.cli import cli

EXAMPLE = Path(__file__).parent.parent / "examples" / "catalog.csv"
HEADER = "name,status,google_client_ids,microsoft_app_ids,approved_scopes,audience,dpa_url,dpa_expires\n"
KAHOOT_ID = "957951205531-8bf6215da170cc0a96581b2aed932d84.apps.googleusercontent.com"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_example_catalog_imports_and_reimport_is_a_no_op(runner, tmp_path):
    db_path = str(tmp_path / "inventory.db")
    result = runner.invoke(cli, ["--db", db_path, "catalog", "import", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    rows = list(store.open_db(db_path)["catalog"].rows)
    assert len(rows) >= 15
    assert "26 added" in result.output
    assert {row["status"] for row in rows} == {"approved", "conditional", "denied", "pending"}
    kahoot = store.open_db(db_path)["catalog"].get("kahoot")
    assert kahoot["status_original"] == "Approved" and kahoot["audience"] == "all"
    assert json.loads(kahoot["google_client_ids"]) == [KAHOOT_ID]
    # short Google scope names are expanded, Microsoft names kept, duplicates dropped
    assert "https://www.googleapis.com/auth/classroom.rosters.readonly" in json.loads(kahoot["approved_scopes"])
    assert "User.Read" in json.loads(kahoot["approved_scopes"])
    padlet = store.open_db(db_path)["catalog"].get("padlet")
    assert (padlet["status"], padlet["status_original"], padlet["audience"]) == ("conditional", "Teacher use only", "staff")

    def state():
        # The WAL is gone when the last connection closed cleanly; a write would bring it back.
        wal = Path(db_path + "-wal")
        return Path(db_path).stat().st_mtime_ns, wal.stat().st_size if wal.exists() else 0

    before = state()
    again = runner.invoke(cli, ["--db", db_path, "catalog", "import", str(EXAMPLE)])
    assert again.exit_code == 0 and "Catalog unchanged" in again.output
    assert state() == before


@pytest.mark.parametrize(
    "word,status",
    [
        ("Approved", "approved"), ("approved with conditions", "conditional"), ("Teacher use only", "conditional"),
        ("Not approved", "denied"), ("DENIED", "denied"), ("Pending review", "pending"), ("Under Review", "pending"),
        ("  Approved - with conditions ", "conditional"), ("maybe", None),
    ],
)
def test_status_words_are_normalized(word, status):
    assert normalize_status(word) == status


def test_yaml_and_json_catalogs_with_lists(tmp_path):
    yaml_file = write(tmp_path, "catalog.yaml", f"""
apps:
  - name: Kahoot!
    status: Approved
    google_client_ids: [{KAHOOT_ID}]
    approved_scopes:
      - openid
      - userinfo.email
    dpa_expires: 2027-06-30
  - name: Blooket
    status: Pending review
""")
    rows = read_catalog(yaml_file)
    assert [(r["id"], r["status"], r["dpa_expires"]) for r in rows] == [("kahoot", "approved", "2027-06-30"), ("blooket", "pending", None)]
    json_file = write(tmp_path, "catalog.json", json.dumps([{"name": "Kahoot!", "status": "Approved", "google_client_ids": KAHOOT_ID}], indent=2))
    assert read_catalog(json_file)[0]["google_client_ids"] == json.dumps([KAHOOT_ID])


def test_every_bad_row_is_listed_with_its_line(tmp_path):
    path = write(
        tmp_path,
        "catalog.csv",
        HEADER
        + "Kahoot!,Approved,,,,all,,\n"  # line 2: fine
        + ",Approved,,,,all,,\n"  # 3: no name
        + "Thing,Maybe,,,,all,,\n"  # 4: unknown status
        + "Thing2,,,,,all,,\n"  # 5: missing status
        + "Thing3,Approved,,,,parents,,\n"  # 6: bad audience
        + "Thing4,Approved,not-a-client-id,,,all,,\n"  # 7: bad google id
        + "Thing5,Approved,,12345,,all,,\n"  # 8: bad microsoft id
        + "Thing6,Approved,,,,all,ftp://x,\n"  # 9: bad url
        + "Thing7,Approved,,,,all,,31/31/2027\n"  # 10: bad date
        + "Kahoot!,Approved,,,,all,,\n"  # 11: duplicate id
        + "\"Multi\nline\",Approved,,,,all,,\n"  # 12-13: a quoted newline is fine
        + "Thing8,Approved,,,,all,,,extra\n",  # 14: too many cells
    )
    with pytest.raises(CatalogError) as raised:
        read_catalog(path)
    problems = raised.value.problems
    expected_lines = [3, 4, 5, 6, 7, 8, 9, 10, 11, 14]
    assert [int(p.split(":")[1]) for p in problems] == expected_lines
    assert all(p.startswith(f"{path}:") for p in problems)
    text = "\n".join(problems)
    for fragment in ("name is missing", "status 'Maybe'", "status is missing", "audience 'parents'", "not a Google OAuth client id",
                     "not a Microsoft application (client) id", "must be a web address", "must be a date", "already used on line 2", "has 9 cells"):
        assert fragment in text


def test_duplicate_client_ids_and_unknown_columns(tmp_path):
    path = write(tmp_path, "c.csv", f"name,status,google_client_ids,reviewer\nA,Approved,{KAHOOT_ID},me\nB,Approved,{KAHOOT_ID},you\n")
    with pytest.raises(CatalogError) as raised:
        read_catalog(path)
    assert "unknown column reviewer" in raised.value.problems[0]
    path = write(tmp_path, "d.csv", f"name,status,google_client_ids\nA,Approved,{KAHOOT_ID}\nB,Approved,{KAHOOT_ID}\n")
    with pytest.raises(CatalogError, match=r"d.csv:3: google_client_ids .* already listed on line 2"):
        read_catalog(path)


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("bad.yaml", "apps:\n  - name: [unclosed\n", r"bad.yaml:\d+: not valid YAML"),
        ("bad.json", '[{"name": "A",\n "status": }]', r"bad.json:2: not valid JSON"),
        ("scalar.yaml", "just text\n", r"scalar.yaml:1: expected a list of apps"),
        ("items.json", '[\n  "not an object"\n]', r"items.json:2: expected an app with named fields"),
        ("types.yaml", "- name: A\n  status: Approved\n  audience: {x: 1}\n", r"types.yaml:1: audience must be text"),
        ("empty.csv", "", r"empty.csv:1: empty file"),
        ("header-only.csv", "name,status\n", r"header-only.csv: no apps in the catalog"),
        ("catalog.xlsx", "x", r"unknown catalog format .xlsx"),
        ("latin1.csv", None, r"not UTF-8 text"),
    ],
)
def test_malformed_files_give_clear_errors(tmp_path, name, text, message):
    path = tmp_path / name
    if text is None:
        path.write_bytes("name,status\nCafé,Approved\n".encode("latin-1"))
    else:
        path.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError, match=message):
        read_catalog(path)


def test_json_line_numbers_point_at_each_item(tmp_path):
    path = write(tmp_path, "c.json", '{"apps": [\n  {"name": "A", "status": "Approved"},\n\n  {"name": "B", "status": "nope"}\n]}')
    with pytest.raises(CatalogError) as raised:
        read_catalog(path)
    assert raised.value.problems == [f"{path}:4: status 'nope' is not one we know; use approved, conditional, denied or pending"]


def test_import_is_all_or_nothing(runner, tmp_path):
    db_path = str(tmp_path / "inventory.db")
    assert runner.invoke(cli, ["--db", db_path, "catalog", "import", str(EXAMPLE)]).exit_code == 0
    before = list(store.open_db(db_path)["catalog"].rows)
    bad = write(tmp_path, "bad.csv", HEADER + "Brand New,Approved,,,,all,,\nKahoot!,Sure,,,,all,,\n")
    result = runner.invoke(cli, ["--db", db_path, "catalog", "import", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:3: status 'Sure'" in result.output
    assert "Traceback" not in result.output
    assert list(store.open_db(db_path)["catalog"].rows) == before


def test_reimport_with_changes_reports_counts(runner, tmp_path):
    """By default an import adds and updates the entries it names and keeps the others; --replace
    makes the catalog exactly the file."""
    db_path = str(tmp_path / "inventory.db")
    first = write(tmp_path, "c.csv", "name,status\nA,Approved\nB,Pending\nC,Denied\n")
    runner.invoke(cli, ["--db", db_path, "catalog", "import", str(first)])
    second = write(tmp_path, "c2.csv", "name,status\nA,Approved\nB,Approved\nD,Denied\n")
    result = runner.invoke(cli, ["--db", db_path, "catalog", "import", str(second)])
    assert "1 added, 1 updated, 0 removed, 1 unchanged" in result.output
    assert sorted(r["id"] for r in store.open_db(db_path)["catalog"].rows) == ["a", "b", "c", "d"]
    result = runner.invoke(cli, ["--db", db_path, "catalog", "import", "--replace", str(second)])
    assert "0 added, 0 updated, 1 removed, 3 unchanged" in result.output
    assert sorted(r["id"] for r in store.open_db(db_path)["catalog"].rows) == ["a", "b", "d"]


def test_a_replace_that_fails_midway_changes_nothing(fake_tenant, runner, tmp_path, monkeypatch):
    """replace_catalog deletes, upserts and rematches in one transaction: a failure in its
    last step (the unapproved_usage refresh) leaves catalog, matching and findings as they were."""
    from tests.conftest import district_tenant

    db_path = str(tmp_path / "inventory.db")
    district_tenant(fake_tenant)
    assert runner.invoke(cli, ["--db", db_path, "scan"]).exit_code == 0
    first = write(tmp_path, "c.csv", "name,status,google_client_ids\nKahoot!,Approved,111-kahoot.apps.googleusercontent.com\nGone,Denied,\n")
    assert runner.invoke(cli, ["--db", db_path, "catalog", "import", str(first)]).exit_code == 0

    def snapshot():
        db = store.open_db(db_path)
        return {table: sorted(map(repr, db[table].rows)) for table in ("catalog", "apps", "catalog_suggestions", "unapproved_usage")}

    before = snapshot()
    second = write(tmp_path, "c2.csv", "name,status,google_client_ids\nKahoot!,Denied,111-kahoot.apps.googleusercontent.com\nQuizlet,Approved,222-quizlet.apps.googleusercontent.com\n")

    def broken(db, provider=None):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store.catalog, "refresh_unapproved_usage", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        store.replace_catalog(store.open_db(db_path), read_catalog(second))
    assert snapshot() == before
    monkeypatch.undo()
    store.replace_catalog(store.open_db(db_path), read_catalog(second))
    assert snapshot() != before  # the same replace, unbroken, does change all of it
