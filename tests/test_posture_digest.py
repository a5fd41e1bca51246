"""The IT digest tells, exactly once, about a consent setting that went from pass to fail
between two scans, and about new requests for admin consent: real scans of the emulators,
real `alerts send` runs against a real SMTP server."""

import re

import pytest
from click.testing import CliRunner

from emulators.google.tenant import POSTURE_SCOPES, SCANNER_SCOPES, build_tenant as google_tenant
from emulators.microsoft.server import MicrosoftEmulator
from emulators.microsoft.tenant import build_tenant as microsoft_tenant
from scanner.cli import cli
from tests.alerts_fixtures import write_config
from tests.microsoft_fixtures import SECRET_ENV, scan as microsoft_scan
from tests.microsoft_fixtures import write_config as microsoft_config

DIGEST_TO = "privacy-team@district.org"


def send(db_path, config, *args):
    result = CliRunner().invoke(cli, ["--db", db_path, "--config", str(config), "alerts", "send", *args])
    assert result.exit_code == 0, result.output
    return result


def section(text: str, title: str) -> str:
    """One section of the digest's text part (up to the next title), its wrapped lines joined again."""
    match = re.search(rf"^{re.escape(title)}\n(.*?)(?:\n\n|\Z)", text, re.DOTALL | re.MULTILINE)
    assert match, f"no section {title!r} in:\n{text}"
    return re.sub(r"\n +(?!- )", " ", match.group(1).strip())


def test_a_setting_that_went_from_pass_to_fail_reaches_the_digest_once(district, smtp_server, tmp_path):
    place = district(google_tenant(users=20, seed=1), scopes=SCANNER_SCOPES + POSTURE_SCOPES)
    google = place.write_config(extra=f'policy_api_root = "{place.emulator.api_root}"').read_text(encoding="utf-8")
    config = write_config(place.directory, smtp_server.port, extra=google)  # [alerts] and [google], scans and sends

    def trust_internal_apps(trusted: bool):
        place.emulator.mutate([{"op": "set_policy", "setting": "api_controls.internal_apps",
                                "value": {"trustInternalApps": trusted}, "org_unit": "/"}])
        assert place.scan()["status"] == "succeeded"

    def digest_text():
        send(place.db_path, config)
        return smtp_server.handler.digests[-1]

    trust_internal_apps(False)
    assert section(digest_text().text, "Consent settings that got weaker") == "- None."
    trust_internal_apps(True)  # pass -> fail
    trust_internal_apps(True)  # still failing: the same regression, not a new one
    # A dry run shows it, and remembers nothing.
    dry = send(place.db_path, config, "--dry-run", "--outbox", str(tmp_path / "outbox"))
    assert "dry run" in dry.output.lower()
    [written] = [p for p in (tmp_path / "outbox").rglob("*.eml") if DIGEST_TO in p.read_text(encoding="utf-8", errors="replace")]
    assert "GWS.COMMONCONTROLS.10.3" in written.read_text(encoding="utf-8", errors="replace")

    message = digest_text()
    weaker = section(message.text, "Consent settings that got weaker")
    assert weaker.count("GWS.COMMONCONTROLS.10.3") == 1 and "org unit /" in weaker
    assert "internal apps trusted" in weaker and "Trust internal apps" in weaker  # what it is now, and the fix
    assert "1 consent setting weaker" in message.message["Subject"]
    assert "GWS.COMMONCONTROLS.10.3" in message.html
    # Told once: the next digests, after more failing scans, do not repeat it.
    trust_internal_apps(True)
    assert section(digest_text().text, "Consent settings that got weaker") == "- None."
    assert section(digest_text().text, "Consent settings that got weaker") == "- None."
    # Fixed, then broken again: a new regression, told again.
    trust_internal_apps(False)
    trust_internal_apps(True)
    assert section(digest_text().text, "Consent settings that got weaker").count("GWS.COMMONCONTROLS.10.3") == 1


@pytest.fixture
def microsoft(monkeypatch, tmp_path, smtp_server):
    tenant = microsoft_tenant(users=300, seed=7)
    with MicrosoftEmulator(tenant) as emulator:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", emulator.ca_pem_path)
        monkeypatch.setenv(SECRET_ENV, tenant.registration.client_secret)
        (tmp_path / "ms").mkdir()
        extra = microsoft_config(tmp_path / "ms", emulator, tenant).read_text(encoding="utf-8")
        config = write_config(tmp_path / "alerts", smtp_server.port, extra=extra)
        yield emulator, config, str(tmp_path / "inventory.db")


def test_new_requests_for_admin_consent_reach_the_digest_once(microsoft, smtp_server):
    emulator, config, db_path = microsoft
    waiting = [(request["appDisplayName"], asked) for request in emulator.tenant.app_consent_requests
               for asked in request["userConsentRequests"] if asked["status"] == "InProgress"]
    assert len(waiting) >= 3
    assert microsoft_scan(db_path, config)["status"] == "succeeded"
    send(db_path, config)
    first = section(smtp_server.handler.digests[-1].text, "New requests for admin consent")
    # Every waiting request is new to the first digest: each app with how many asked.
    for app in {name for name, _ in waiting}:
        count = sum(1 for name, _ in waiting if name == app)
        assert f"- {app} (Microsoft, not reviewed yet): {count} new request" in first
    some_email = waiting[0][1]["createdBy"]["user"]["mail"]
    assert some_email in first

    # One more person asks; the next digest tells only that one.
    teacher = next(u for u in emulator.tenant.users if u.get("jobTitle") == "Teacher")
    emulator.mutate_tenant("add_consent_request", "8e5b7d2c-0000-4000-8000-0000000000aa", "Brand New Quiz", ["User.Read", "Mail.Read"],
                           teacher["id"], reason="for my <b>class</b>")
    assert microsoft_scan(db_path, config)["status"] == "succeeded"
    send(db_path, config)
    message = smtp_server.handler.digests[-1]
    second = section(message.text, "New requests for admin consent")
    assert second.startswith("- Brand New Quiz (Microsoft, not reviewed yet): 1 new request; 1 person waits")
    assert teacher["mail"] in second and some_email not in second
    assert "&lt;b&gt;class&lt;/b&gt;" in message.html  # a reason is the requester's words: escaped
    # And nothing new after that.
    assert microsoft_scan(db_path, config)["status"] == "succeeded"
    send(db_path, config)
    assert section(smtp_server.handler.digests[-1].text, "New requests for admin consent") == "- None."


def test_a_digest_the_server_refused_leaves_the_news_for_the_next(microsoft, smtp_server):
    emulator, config, db_path = microsoft
    assert microsoft_scan(db_path, config)["status"] == "succeeded"
    smtp_server.handler.refuse_data_to[DIGEST_TO] = "554 no thanks"
    CliRunner().invoke(cli, ["--db", db_path, "--config", str(config), "alerts", "send"])
    assert smtp_server.handler.digests == []
    smtp_server.handler.refuse_data_to.clear()
    send(db_path, config)
    assert "new request" in section(smtp_server.handler.digests[-1].text, "New requests for admin consent")
