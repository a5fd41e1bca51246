"""Extensions like any app: an unapproved extension on a staff profile is emailed about (aiosmtpd),
and an extension in the catalog is a row of the public page with counts of people."""

from __future__ import annotations

from click.testing import CliRunner

from emulators.google.chrome import ChromeFleet, DISTRICT_EXTENSIONS
from emulators.google.tenant import build_tenant
from scanner.cli import cli
from scanner.store import open_db
from tests.alerts_fixtures import smtp_server  # noqa: F401 (a fixture)
from tests.alerts_fixtures import write_config
from tests.test_chrome_scan import ALL_SCOPES, chrome_section

HONEY = "bmnlcjabgnpnenekpadlanbbkooimhnj"
READ_WRITE = "inoeonmfapjbbkmdafoankkfajkcphgd"


def test_an_unapproved_extension_on_a_staff_profile_is_emailed_about(district, smtp_server, tmp_path):  # noqa: F811
    tenant = build_tenant(users=40, seed=3)
    fleet = tenant.chrome = ChromeFleet()
    extensions = {e.app_id: e for e, _, _ in DISTRICT_EXTENSIONS}
    fleet.add_extension(extensions[HONEY])
    fleet.add_extension(extensions[READ_WRITE])
    users = sorted(tenant.users.values(), key=lambda u: u.primary_email)
    staff = next(u for u in users if u.org_unit_path.startswith("/Staff") and not u.suspended)
    students = [u for u in users if u.org_unit_path.startswith("/Students")][:12]
    fleet.install(HONEY, staff.primary_email, org_unit_id=tenant.org_unit_id(staff.org_unit_path))
    for student in students:
        fleet.install(READ_WRITE, student.primary_email, org_unit_id=tenant.org_unit_id(student.org_unit_path))
    place = district(tenant, scopes=ALL_SCOPES)
    alerts = write_config(tmp_path / "alerts", smtp_server.port).read_text(encoding="utf-8")
    place.write_config(extra=chrome_section(place) + alerts)
    catalog = tmp_path / "catalog.csv"
    catalog.write_text("name,status,chrome_extension_ids,alternative,audience,dpa_url\n"
                       f"Honey,denied,{HONEY},Ask the library for coupon codes,all,\n"
                       f"Read&Write,approved,{READ_WRITE},,all,https://district.example/dpa/texthelp.pdf\n", encoding="utf-8")
    runner = CliRunner()
    common = ["--db", place.db_path, "--config", str(place.config_path)]
    assert runner.invoke(cli, [*common, "catalog", "import", str(catalog)]).exit_code == 0
    result = runner.invoke(cli, [*common, "scan", "--provider", "chrome"])
    assert result.exit_code == 0, result.output

    sent = runner.invoke(cli, [*common, "alerts", "send"])
    assert sent.exit_code == 0, sent.output
    [mail] = smtp_server.handler.to(staff.primary_email.lower())
    assert "Honey" in mail.text and "Ask the library for coupon codes" in mail.text
    assert not any(r.rcpt_tos[0].lower() in {s.primary_email.lower() for s in students} for r in smtp_server.handler.people)
    # sent once: a second run sends nothing more
    assert runner.invoke(cli, [*common, "alerts", "send"]).exit_code == 0
    assert len(smtp_server.handler.to(staff.primary_email.lower())) == 1

    # the public page: the approved extension with its people counted (students in bands, never names)
    db = open_db(place.db_path)
    row = next(db.query("select * from public_apps where app = 'Read&Write'"))
    assert row["status"] == "approved" and row["students"] == "10 to 19" and row["agreement_url"]
    assert staff.primary_email not in str(list(db.query("select * from public_apps")))

    # ... and on the page itself, served by Datasette to anyone
    import asyncio

    from scanner.config import load_config
    from scanner.serve import build_datasette
    public = place.config_path.with_name("public.toml")
    public.write_text(place.config_path.read_text(encoding="utf-8") + '\n[serve]\npublic = true\ndistrict_name = "Test District"\n',
                      encoding="utf-8")
    page = asyncio.run(build_datasette(place.db_path, load_config(public)).client.get("/transparency"))
    assert page.status_code == 200 and "Read&amp;Write" in page.text and "10 to 19" in page.text
    assert staff.primary_email not in page.text
