"""After `revoke apply`: each person whose access was removed gets one email, exactly once, and
the IT digest reports the plan (the alerts plugin's machinery, to a real SMTP server)."""

from __future__ import annotations

import json

from sqlite_utils import Database

from tests.revoke_fixtures import DENIED, UNREVIEWED, google_district_tenant, import_catalog, invoke, plan_id_from


def alerts_section(port: int) -> str:
    settings = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none", "smtp_timeout": 5,
                "from_address": "IT Privacy <privacy@district.org>", "it_digest_to": ["privacy-team@district.org"],
                "contact": "the IT Privacy team"}
    return "[alerts]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())


def test_each_person_gets_one_access_removed_email_and_the_digest_reports_the_plan(district, smtp_server):
    tenant = google_district_tenant(6)  # person0, 3 are students; 1, 2, 4, 5 staff
    place = district(tenant)
    place.write_config(extra="[google.revoke]\n" + alerts_section(smtp_server.port))
    assert place.scan()["status"] == "succeeded"
    import_catalog(place)
    # Warn first: the staff get the usual email about the unapproved apps.
    assert invoke(place, "alerts", "send").exit_code == 0
    warned = {r.rcpt_tos[0] for r in smtp_server.handler.people}
    assert warned == {f"person{n}@district.example" for n in (1, 2, 4, 5)}
    smtp_server.handler.received.clear()

    plan_id = plan_id_from(invoke(place, "revoke", "plan", "--status", "denied", "--status", "unreviewed").output)
    assert invoke(place, "revoke", "apply", str(plan_id), "--yes").exit_code == 0
    result = invoke(place, "alerts", "send")
    assert result.exit_code == 0, result.output
    people = smtp_server.handler.people
    # One email per staff member, naming both apps; students are not emailed (notify_students = false).
    assert sorted(r.rcpt_tos[0] for r in people) == sorted(warned)
    for received in people:
        assert "access to your school account was removed" in received.message["Subject"]
        assert DENIED.display_text in received.text and UNREVIEWED.display_text in received.text
        assert "has removed 2 apps' access" in received.text and "Access removed on" in received.text
        assert "nothing has been done to your account" not in received.text
    digest = " ".join(smtp_server.handler.digests[-1].text.split())
    assert f"Plan {plan_id}, Quiz Maker, Sketchy Notes: 12 done" in digest and "applied by alice" in digest and "12 done" in digest

    # Exactly once: the next run (and the scan that finds the grants gone) sends nothing more.
    smtp_server.handler.received.clear()
    assert place.scan(full=True)["status"] == "succeeded"
    assert invoke(place, "alerts", "send").exit_code == 0
    assert smtp_server.handler.people == []
    assert f"Plan {plan_id}," not in smtp_server.handler.digests[-1].text
    rows = list(Database(place.db_path).query("select status, count(*) as n from alerts where kind = 'access_removed' group by status"))
    assert {row["status"]: row["n"] for row in rows} == {"sent": 12}  # 8 to staff, 4 (students') in the IT digest
