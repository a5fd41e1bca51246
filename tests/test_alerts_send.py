"""`alerts send` against a real SMTP server (aiosmtpd on loopback), with injected failures."""

import datetime as dt
import re
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from scanner import store, timestamps
from scanner.cli import cli
from scanner.providers import App, Grant, User
from tests.alerts_fixtures import MAIL, MAILER, PROFILE, alerts_district, alerts_rows, scan, set_catalog, write_config
from tests.conftest import free_port

ROOT = Path(__file__).parent.parent
ANA, CHIDI = "ms.rivera@district.org", "mr.okafor@district.org"
JAMIE, ZOE = "jlee@students.district.org", "zoe.muller@students.district.org"
DIGEST_TO = "privacy-team@district.org"


@pytest.fixture
def district(fake_tenant, smtp_server, tmp_path):
    """The alerts district scanned once (catalog first), and a config pointing at the test server."""
    alerts_district(fake_tenant)
    db_path = str(tmp_path / "inventory.db")
    config = write_config(tmp_path, smtp_server.port)
    set_catalog(db_path)
    scan(db_path, config)
    return Setup(db_path, config, smtp_server.handler, fake_tenant, tmp_path)


class Setup:
    def __init__(self, db_path, config, server, tenant, tmp_path):
        self.db_path, self.config, self.server, self.tenant, self.tmp_path = db_path, config, server, tenant, tmp_path

    def run(self, *args, config=None):
        return CliRunner().invoke(cli, ["--db", self.db_path, "--config", str(config or self.config), "alerts", *args])

    def send(self, *args, expect=0, config=None):
        result = self.run("send", *args, config=config)
        assert result.exit_code == expect, result.output
        return result

    def status(self, email, app):
        return [(r["kind"], r["status"], r["attempts"]) for r in alerts_rows(self.db_path) if r["email"] == email and r["app"] == app]


def test_one_email_per_person_listing_all_their_findings(district):
    result = district.send()
    assert "Emailed 2 people about 3 findings" in result.output

    people = district.server.people
    assert sorted(r.rcpt_tos[0] for r in people) == [CHIDI, ANA]
    [ana] = district.server.to(ANA)
    assert ana.message["To"] == f"Ana Rivera <{ANA}>"
    assert ana.message["From"] == "IT Privacy <privacy@district.org>"
    assert ana.message["Subject"] == "About 2 apps connected to your school account"
    assert "Quizlet" in ana.text and "Super Mail Merge" in ana.text and "Kahoot" not in ana.text
    # Every finding of Ana's was marked sent with the Message-ID the server received.
    ana_rows = [r for r in alerts_rows(district.db_path) if r["email"] == ANA]
    assert {r["app"] for r in ana_rows} == {"Quizlet", "Super Mail Merge"}
    assert {(r["status"], r["message_id"], r["recipient"]) for r in ana_rows} == {("sent", ana.message["Message-ID"], ANA)}
    assert ana.message["Message-ID"].endswith("@district.org>")


def test_text_and_html_parts_explain_the_app_kindly_and_exactly(district):
    district.send()
    [ana] = district.server.to(ANA)
    [chidi] = district.server.to(CHIDI)
    assert ana.message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in ana.message.iter_parts()] == ["text/plain", "text/html"]
    assert ana.message["Auto-Submitted"] == "auto-generated"

    text = ana.text
    assert text.startswith("Hello Ana,")
    flat = " ".join(text.split())
    assert "You are not in trouble, and nothing has been done to your account." in flat
    # What the app can reach, from the scopes table, in plain words.
    assert "Read, send, and permanently delete all your email" in flat
    assert "it can reach your email" in flat
    assert "See and change only the Drive files you open or create with this app" in flat
    # Why the district vets apps, the request form and the contact.
    assert "signs a data privacy agreement" in flat
    assert "ask for a review: https://district.org/app-request" in flat
    assert "contact the IT Privacy team at privacy@district.org" in flat
    assert "Under review." in flat and "Not reviewed yet" in flat
    assert all(len(line) <= 72 or "https://" in line for line in text.splitlines())

    # A denied app says so plainly and names the approved alternative from the catalog.
    chidi_flat = " ".join(chidi.text.split())
    assert "Not approved. The district reviewed this app and decided not to approve it." in chidi_flat
    assert "Please stop using it and remove its access" in chidi_flat
    assert "Approved instead: Google Forms quizzes." in chidi_flat

    html = chidi.html
    assert "<strong>Kahoot!</strong>" in html
    assert "<strong>Not approved.</strong>" in html
    assert "Approved instead: <strong>Google Forms quizzes</strong>" in html
    assert '<a href="https://district.org/app-request">ask for a review</a>' in html


def test_students_are_not_emailed_by_default_their_findings_go_to_the_digest(district):
    result = district.send()
    assert district.server.to(JAMIE) == [] and district.server.to(ZOE) == []
    assert "IT digest sent, reporting 2 findings not emailed to a person" in result.output

    [digest] = district.server.digests
    assert digest.rcpt_tos == [DIGEST_TO]
    text = " ".join(digest.text.split())
    assert f"{JAMIE} (student)" in text and f"{ZOE} (student)" in text
    assert "Emailed 2 people about 3 findings." in text
    assert "Kahoot! (Fake): not approved" in text
    assert "Most used unapproved apps" in text and "New unapproved apps" in text
    student_rows = [r for r in alerts_rows(district.db_path) if r["email"] in (JAMIE, ZOE)]
    assert {(r["status"], r["recipient"], r["message_id"]) for r in student_rows} == {("sent", "it-digest", digest.message["Message-ID"])}


def test_students_are_emailed_only_when_notify_students_is_true(district, smtp_server):
    config = write_config(district.tmp_path, smtp_server.port, notify_students=True)
    district.send(config=config)
    [jamie] = district.server.to(JAMIE)
    assert "Kahoot!" in jamie.text
    assert "Ask your teacher which approved app to use instead." in jamie.text
    assert "ask for a review" not in jamie.text  # the request form is for staff
    assert len(district.server.to(ZOE)) == 1


def test_accounts_of_unknown_role_and_suspended_staff_are_never_emailed(district, smtp_server):
    district.tenant.users[0] = User(id="1", email=ANA, name="Ana Rivera", role="unknown")
    district.tenant.users[1] = User(id="2", email=CHIDI, name="Chidi Okafor", role="staff", suspended=True)
    scan(district.db_path, district.config)
    district.send(config=write_config(district.tmp_path, smtp_server.port, notify_students=True))
    assert district.server.to(ANA) == [] and district.server.to(CHIDI) == []
    digest = " ".join(district.server.digests[0].text.split())
    assert f"{ANA} (role unknown)" in digest and f"{CHIDI} (suspended account)" in digest


def test_a_rerun_sends_nothing_new(district):
    district.send()
    before = alerts_rows(district.db_path)
    result = district.send()
    assert "Emailed 0 people about 0 findings" in result.output
    assert len(district.server.people) == 2
    assert len(district.server.digests) == 2  # the digest goes out after every run
    second = " ".join(district.server.digests[1].text.split())
    assert "For IT: findings not emailed to a person - None this time." in second
    assert "New unapproved apps since" in second and "- None." in second
    assert [(r["id"], r["status"], r["message_id"]) for r in alerts_rows(district.db_path)] == [
        (r["id"], r["status"], r["message_id"]) for r in before
    ]
    # A rescan finds the same grants: still nothing new.
    scan(district.db_path, district.config)
    district.send()
    assert len(district.server.people) == 2


def test_a_refused_recipient_stays_pending_and_is_sent_exactly_once_next_run(district):
    district.server.refuse_rcpt[ANA] = "450 4.2.1 Mailbox busy, try again later"
    result = district.send(expect=1)
    assert f"Not sent to {ANA}" in result.output and "450 4.2.1 Mailbox busy" in result.output
    assert "will retry next run" in result.output
    assert [r.rcpt_tos for r in district.server.people] == [[CHIDI]]
    assert district.status(ANA, "Quizlet") == [("unapproved", "pending", 1)]
    assert "Not sent to ms.rivera@district.org" in " ".join(district.server.digests[0].text.split())

    district.server.refuse_rcpt.clear()
    district.send()
    district.send()
    assert len(district.server.to(ANA)) == 1 and len(district.server.to(CHIDI)) == 1
    assert district.status(ANA, "Quizlet") == [("unapproved", "sent", 2)]


def test_a_message_refused_after_data_is_retried_next_run(district):
    district.server.refuse_data_to[CHIDI] = "554 5.7.1 Message rejected by policy"
    district.send(expect=1)
    assert district.server.to(CHIDI) == [] and len(district.server.to(ANA)) == 1
    assert district.status(CHIDI, "Kahoot!") == [("denied", "pending", 1)]
    [row] = [r for r in alerts_rows(district.db_path) if r["email"] == CHIDI]
    assert "554 5.7.1 Message rejected by policy" in row["last_error"]

    district.server.refuse_data_to.clear()
    district.send()
    district.send()
    assert len(district.server.to(CHIDI)) == 1 and len(district.server.to(ANA)) == 1


def test_a_dropped_connection_leaves_that_alert_pending_and_the_run_reconnects(district):
    district.server.drop_at_data_to.add(CHIDI)  # the first message of the run
    result = district.send(expect=1)
    assert "the server closed the connection" in result.output
    assert district.server.to(CHIDI) == []
    assert len(district.server.to(ANA)) == 1 and len(district.server.digests) == 1  # after reconnecting
    assert district.status(CHIDI, "Kahoot!") == [("denied", "pending", 1)]

    district.server.drop_at_data_to.clear()
    district.send()
    district.send()
    assert len(district.server.to(CHIDI)) == 1 and len(district.server.to(ANA)) == 1


def test_a_server_that_is_down_leaves_everything_pending(district):
    nobody_listens = write_config(district.tmp_path / "down", free_port())
    result = district.send(expect=1, config=nobody_listens)
    assert "cannot connect to the mail server 127.0.0.1" in result.output
    assert {r["status"] for r in alerts_rows(district.db_path)} == {"pending"}
    assert {r["attempts"] for r in alerts_rows(district.db_path)} == {0}  # nothing was attempted
    district.send()
    assert len(district.server.people) == 2


def test_attempts_are_capped_then_the_alert_fails_and_can_be_retried(district, smtp_server):
    config = write_config(district.tmp_path, smtp_server.port, max_attempts=2)
    district.server.refuse_rcpt[ANA] = "451 4.3.0 Temporary failure"
    district.send(config=config, expect=1)
    result = district.send(config=config, expect=1)
    assert "gave up" in result.output
    assert {s for _, s, _ in district.status(ANA, "Quizlet")} == {"failed"}
    third = district.send(config=config)  # nothing left to try for Ana: not attempted again
    assert ANA not in third.output
    digest = " ".join(district.server.digests[-1].text.split())
    assert "2 alerts gave up after repeated failures" in digest

    listed = district.run("list", "--status", "failed")
    assert "failed" in listed.output and "451 4.3.0 Temporary failure" in listed.output
    ids = [str(r["id"]) for r in alerts_rows(district.db_path) if r["email"] == ANA]
    district.server.refuse_rcpt.clear()
    assert district.run("retry", *ids).exit_code == 0
    district.send(config=config)
    assert len(district.server.to(ANA)) == 1


def test_crash_after_the_server_accepted_never_sends_twice_and_is_reported(district):
    """The server accepts Chidi's message, then SIGKILLs the client before it hears "250":
    the row stays claimed. The next run must not send it again, and says it is unconfirmed."""
    district.server.kill_after_accepting = 1
    process = subprocess.Popen(
        [sys.executable, "-m", "scanner", "--db", district.db_path, "--config", str(district.config), "alerts", "send"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    district.server.kill_pid = process.pid
    process.communicate(timeout=60)
    assert process.returncode == -9
    [accepted] = district.server.received
    assert accepted.rcpt_tos == [CHIDI]
    [row] = [r for r in alerts_rows(district.db_path) if r["email"] == CHIDI]
    assert row["status"] == "pending" and row["sending_since"] and row["message_id"] == accepted.message["Message-ID"]
    assert "unconfirmed" in district.run("list").output

    result = district.send()
    assert "Alert 1 is unconfirmed" in result.output
    district.send()
    assert len(district.server.to(CHIDI)) == 1  # never twice
    assert len(district.server.to(ANA)) == 1
    [row] = [r for r in alerts_rows(district.db_path) if r["email"] == CHIDI]
    assert (row["status"], row["unconfirmed"]) == ("failed", 1)
    assert row["message_id"] == accepted.message["Message-ID"]
    digest = " ".join(district.server.digests[0].text.split())
    assert f"Unconfirmed: alert {row['id']} (Kahoot!, {CHIDI})" in digest and accepted.message["Message-ID"] in digest
    assert district.server.digests[0].message["Subject"].endswith("needs attention")
    listed = district.run("list", "--status", "unconfirmed")
    assert "unconfirmed" in listed.output and CHIDI in listed.output


def test_dry_run_writes_eml_files_and_sends_and_records_nothing(district):
    db = store.open_db(district.db_path)
    before = (alerts_rows(district.db_path), db["alert_runs"].count if db["alert_runs"].exists() else 0)
    outbox = district.tmp_path / "outbox"
    result = district.send("--dry-run", "--outbox", str(outbox))
    assert "Dry run: wrote 3 message(s)" in result.output and "Nothing was sent" in result.output
    assert district.server.received == [] and district.server.data_commands == 0
    assert (alerts_rows(district.db_path), store.open_db(district.db_path)["alert_runs"].count) == before

    files = sorted(outbox.rglob("*.eml"))
    assert [f.name for f in files] == ["0001-mr.okafor@district.org.eml", "0002-ms.rivera@district.org.eml", "0003-privacy-team@district.org.eml"]
    ana = message_from_bytes(files[1].read_bytes(), policy=policy.default)
    assert ana["To"] == f"Ana Rivera <{ANA}>" and "Super Mail Merge" in ana.get_body(("plain",)).get_content()
    digest = message_from_bytes(files[2].read_bytes(), policy=policy.default)
    assert "(dry run)" in digest["Subject"]

    district.send()  # the real run afterwards sends everything, once
    assert len(district.server.people) == 2


def test_limit_caps_the_people_emailed_in_a_run(district):
    result = district.send("--limit", "1")
    assert "1 more people wait for the next run" in result.output
    assert [r.rcpt_tos for r in district.server.people] == [[CHIDI]]
    district.send()
    assert [r.rcpt_tos for r in district.server.people] == [[CHIDI], [ANA]]


def test_an_app_name_cannot_inject_headers_or_markup(district):
    evil = "Evil\r\nBcc: victim@evil.example\r\nSubject: you won\n<script>alert(1)</script><img src=x onerror=alert(2)>"
    district.tenant.apps.append(App(id="666-evil.apps.googleusercontent.com", name=evil, publisher="<b>Bad</b>\r\nX-Evil: 1"))
    district.tenant.users[0] = User(id="1", email=ANA, name="Ana\r\nBcc: victim@evil.example", role="staff")
    district.tenant.grants.append(Grant(user_id="1", app_id="666-evil.apps.googleusercontent.com", scopes=["<script>x</script>"]))
    scan(district.db_path, district.config)
    district.send()

    [ana] = district.server.to(ANA)
    assert ana.rcpt_tos == [ANA]
    assert all(r.rcpt_tos in ([ANA], [CHIDI], [DIGEST_TO]) for r in district.server.received)
    header_names = [name.lower() for name in ana.message.keys()]
    assert "bcc" not in header_names and "x-evil" not in header_names
    assert header_names.count("subject") == 1 and ana.message["Subject"] == "About 3 apps connected to your school account"
    head = ana.raw.split(b"\r\n\r\n", 1)[0]
    assert not re.search(rb"\r\n(Bcc|X-Evil|Subject: you)", head, re.IGNORECASE)
    # The user's odd name stays inside one quoted display name of one address.
    assert [a.addr_spec for a in ana.message["To"].addresses] == [ANA]
    assert ana.message["To"].addresses[0].display_name == "Ana Bcc: victim@evil.example"

    assert "<script>" not in ana.html and "<img" not in ana.html and "<b>Bad</b>" not in ana.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in ana.html
    assert "Evil Bcc: victim@evil.example Subject: you won <script>alert(1)</script>" in " ".join(ana.text.split())

    digest = district.server.digests[0]
    assert "<script>" not in digest.html and "&lt;script&gt;" not in digest.message["Subject"]
    listed = district.run("list")
    assert "\r" not in listed.output and "Evil Bcc: victim@evil.example" in listed.output


def test_a_staff_address_that_is_not_an_address_fails_without_being_sent(district):
    district.tenant.users[0] = User(id="1", email="ms.rivera at district.org", name="Ana Rivera", role="staff")
    scan(district.db_path, district.config)
    result = district.send(expect=1)
    assert "is not an email address" in result.output
    assert [r.rcpt_tos for r in district.server.people] == [[CHIDI]]
    rows = [r for r in alerts_rows(district.db_path) if r["email"] == "ms.rivera at district.org"]
    assert {r["status"] for r in rows} == {"failed"} and all("not an email address" in r["last_error"] for r in rows)


def test_revoked_before_sending_is_suppressed_and_not_mentioned(district):
    district.tenant.grants = [g for g in district.tenant.grants if not (g.user_id == "1" and g.app_id == MAILER)]
    scan(district.db_path, district.config)
    district.send()
    [ana] = district.server.to(ANA)
    assert "Quizlet" in ana.text and "Super Mail Merge" not in ana.text
    assert ana.message["Subject"] == "About an app connected to your school account"
    assert district.status(ANA, "Super Mail Merge") == [("unapproved", "suppressed", 0)]
    suppressed = district.run("list", "--status", "suppressed").output
    assert "access was removed before the alert was sent" in suppressed


def test_reminder_after_the_configured_days_when_the_grant_is_still_there(district, smtp_server, monkeypatch):
    now = [dt.datetime(2026, 11, 2, 8, tzinfo=dt.timezone.utc)]
    monkeypatch.setattr(timestamps, "clock", lambda: now[0])
    config = write_config(district.tmp_path, smtp_server.port, reminder_days=14)
    district.send(config=config)
    now[0] += dt.timedelta(days=7)
    district.send(config=config)
    assert len(district.server.to(ANA)) == 1  # too early
    # Ana removed Super Mail Merge; Quizlet is still there two weeks later.
    district.tenant.grants = [g for g in district.tenant.grants if not (g.user_id == "1" and g.app_id == MAILER)]
    scan(district.db_path, config)
    now[0] += dt.timedelta(days=8)
    district.send(config=config)
    district.send(config=config)
    first, reminder = district.server.to(ANA)
    assert reminder.message["Subject"] == "Reminder: an app is still connected to your school account"
    flat = " ".join(reminder.text.split())
    assert "Quizlet" in flat and "Super Mail Merge" not in flat
    assert "We first wrote to you about it on 2 November 2026" in flat
    assert len(district.server.to(CHIDI)) == 2


def test_no_reminders_by_default(district, monkeypatch):
    now = [dt.datetime(2026, 11, 2, 8, tzinfo=dt.timezone.utc)]
    monkeypatch.setattr(timestamps, "clock", lambda: now[0])
    district.send()
    now[0] += dt.timedelta(days=90)
    district.send()
    assert len(district.server.people) == 2


def test_tenant_wide_consent_is_reported_to_it(district):
    district.tenant.grants.append(Grant(user_id=None, app_id=MAILER, scopes=[*PROFILE, MAIL]))
    scan(district.db_path, district.config)
    district.send()
    digest = " ".join(district.server.digests[0].text.split())
    mail_merge = digest.split("Super Mail Merge (Fake): not reviewed or under review", 1)[1].split("Kahoot!")[0]
    assert "- every account (tenant-wide consent)" in mail_merge
    assert "consented for every account" in digest


def test_an_internationalized_address_is_sent_with_smtputf8(district, smtp_server):
    district.tenant.users[3] = User(id="4", email="zoë.müller@students.district.org", name="Zoë Müller", role="student")
    scan(district.db_path, district.config)
    district.send(config=write_config(district.tmp_path, smtp_server.port, notify_students=True))
    [zoe] = district.server.to("zoë.müller@students.district.org")
    # RFC 6532: with SMTPUTF8 the headers travel as UTF-8.
    assert "\r\nTo: Zoë Müller <zoë.müller@students.district.org>\r\n" in zoe.raw.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    assert "Hello Zoë," in zoe.text
