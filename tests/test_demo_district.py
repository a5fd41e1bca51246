import csv
import datetime as dt
from collections import Counter
from pathlib import Path

import pytest

from emulators.google.chrome import DISTRICT_EXTENSIONS
from scanner.demo.tenants import demo_district

CATALOG = Path(__file__).parent.parent / "examples" / "catalog.csv"
NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.timezone.utc)


def test_the_district_is_deterministic():
    assert demo_district(500, now=NOW) == demo_district(500, now=NOW)
    assert demo_district(500, now=NOW).people != demo_district(500, seed=7, now=NOW).people


def test_the_example_catalog_lists_the_demo_apps_ids():
    district = demo_district(100, now=NOW)
    rows = list(csv.DictReader(CATALOG.open(encoding="utf-8")))
    extensions = {extension.app_id for extension, _, _ in DISTRICT_EXTENSIONS}
    for row in rows:
        if row["chrome_extension_ids"]:  # the browsers' extensions (emulators.google.chrome)
            assert row["chrome_extension_ids"] in extensions, row["name"]
            continue
        app = district.app(row["name"])
        assert (row["google_client_ids"] or None) == app.google_id, row["name"]
        assert (row["microsoft_app_ids"] or None) == app.microsoft_id, row["name"]
    assert len(district.apps) >= 40
    uncataloged = {a.name for a in district.apps} - {r["name"] for r in rows}
    assert {"PDF Merge Pro", "Inbox AI Assistant", "Quizizz"} <= uncataloged


def test_the_mix_looks_like_a_district():
    district = demo_district(3000, now=NOW)
    roles = Counter(p.role for p in district.people)
    assert roles["student"] > 10 * roles["staff"] > 0
    assert len({p.email for p in district.people}) == 3000
    assert len({p.school for p in district.people}) == 5
    assert any(not p.email.isascii() or not p.name.isascii() for p in district.people)  # Unicode names
    per_person = Counter(g.person for g in district.grants)
    assert 2 < len(district.grants) / len(district.people) < 8
    assert max(per_person.values()) >= 8
    # Some grants hold more than the catalog approved (scope creep).
    kahoot = district.app("Kahoot!")
    assert any(len(g.scopes) > len(kahoot.google_scopes) for g in district.grants if g.app.name == "Kahoot!" and g.provider == "google")
    assert all(g.last_used_at is None or g.authorized_at <= g.last_used_at <= NOW for g in district.grants)


def test_too_small_a_district_is_refused():
    with pytest.raises(ValueError, match="at least 10 users"):
        demo_district(3)
