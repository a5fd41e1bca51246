"""[alerts] settings: STARTTLS/SSL with login against a real TLS SMTP server, clear
configuration errors, the password kept out of every message, and custom templates."""

import logging
import ssl
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner

from scanner.cli import cli
from tests.alerts_fixtures import Recorder, alerts_district, alerts_rows, scan, set_catalog, write_config
from tests.conftest import free_port

PASSWORD = "s3cret-Pa55word!"


@pytest.fixture
def inventory(fake_tenant, tmp_path):
    alerts_district(fake_tenant)
    db_path = str(tmp_path / "inventory.db")
    set_catalog(db_path)
    scan(db_path, write_config(tmp_path / "scan", 25))
    return db_path


def send(db_path, config, *args):
    return CliRunner().invoke(cli, ["--db", db_path, "--config", str(config), "alerts", "send", *args])


@pytest.fixture
def tls_server(tmp_path, monkeypatch, request):
    """An SMTP server with a certificate from a throwaway CA the client trusts
    (SSL_CERT_FILE), requiring login; request.param is "starttls" or "ssl"."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append(auth_data.login)
        ok = auth_data.login == b"mailer" and auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself

    handler, port = Recorder(), free_port()
    if request.param == "ssl":
        # Implicit TLS: aiosmtpd only counts STARTTLS as TLS for auth_require_tls.
        controller = Controller(handler, hostname="127.0.0.1", port=port, ssl_context=server_context,
                                authenticator=authenticator, auth_required=True, auth_require_tls=False)
    else:
        controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=server_context,
                                require_starttls=True, authenticator=authenticator, auth_required=True)
    controller.start()
    try:
        yield handler, port, logins, request.param
    finally:
        controller.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("tls_server", ["starttls", "ssl"], indirect=True)
def test_tls_and_login_then_wrong_password_is_clear_and_never_shows_the_password(tls_server, inventory, tmp_path, monkeypatch, caplog):
    handler, port, logins, security = tls_server
    config = write_config(tmp_path, port, smtp_security=security, smtp_username="mailer", smtp_password_env="TEST_SMTP_PASSWORD")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", PASSWORD)
    result = send(inventory, config)
    assert result.exit_code == 0, result.output
    assert logins == [b"mailer"] and len(handler.received) == 3

    # A wrong password: a clear message, exit 1, the rest stays queued, no password anywhere.
    assert [r["status"] for r in alerts_rows(inventory)] == ["sent"] * 5
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong-" + PASSWORD)
    caplog.set_level(logging.DEBUG)
    result = send(inventory, config)
    assert result.exit_code == 1
    assert f"the mail server 127.0.0.1:{port} refused the login of mailer" in result.output
    assert "check smtp_username and the password in the variable named by smtp_password_env" in result.output
    for text in (result.output, caplog.text, Path(inventory).read_bytes().decode("latin-1")):
        assert PASSWORD not in text


def test_untrusted_certificate_is_refused(inventory, tmp_path):
    ca = trustme.CA()  # the client does not trust this one
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    port = free_port()
    controller = Controller(Recorder(), hostname="127.0.0.1", port=port, tls_context=server_context)
    controller.start()
    try:
        result = send(inventory, write_config(tmp_path, port, smtp_security="starttls"))
    finally:
        controller.stop()
    assert result.exit_code == 1
    assert "CERTIFICATE_VERIFY_FAILED" in result.output
    assert {r["status"] for r in alerts_rows(inventory)} == {"pending"}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"from_address": None}, r"[alerts] from_address is required to send alerts"),
        ({"from_address": "privacy at district"}, r"[alerts] from_address: 'privacy at district' is not an email address; write one address"),
        ({"it_digest_to": ["it@district.org", "nobody"]}, r"[alerts] it_digest_to: 'nobody' is not an email address"),
        ({"smtp_host": "smtp.district.org", "smtp_username": "mailer", "smtp_password_env": "X"},
         'smtp_username is set with smtp_security = "none": the password would cross the network in clear text'),
        ({"smtp_security": "starttls", "smtp_username": "mailer", "smtp_password_env": "NOT_SET_ANYWHERE"},
         "[alerts] smtp_password_env: environment variable NOT_SET_ANYWHERE is not set"),
        ({"template_dir": "no-such-folder"}, "no-such-folder: no such folder"),
    ],
)
def test_bad_settings_stop_with_one_clear_message_and_exit_2(inventory, tmp_path, settings, message):
    config = write_config(tmp_path, 25, **settings)
    result = send(inventory, config)
    assert result.exit_code == 2, result.output
    assert message in result.output and f"Error: {config}: [alerts]" in result.output
    assert "Traceback" not in result.output
    assert {r["status"] for r in alerts_rows(inventory)} == {"pending"}


def test_templates_can_be_overridden_from_template_dir(inventory, smtp_server, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "alert_subject.txt.j2").write_text("Apps and you, {{ recipient.first_name }}\nBcc: someone@evil.example")
    (templates / "alert.txt.j2").write_text(
        "Dear {{ recipient.name }},\n{% for f in findings %}* {{ f.app.name }}: {{ f.app.status_words }}\n{% endfor %}"
        "Form: {{ request_form_url }}\n"
    )
    config = write_config(tmp_path, smtp_server.port, template_dir="templates")
    result = send(inventory, config)
    assert result.exit_code == 0, result.output
    [ana] = smtp_server.handler.to("ms.rivera@district.org")
    assert ana.message["Subject"] == "Apps and you, Ana Bcc: someone@evil.example"  # one line: no header injection
    assert ana.text == (
        "Dear Ana Rivera,\n* Quizlet: under review\n* Super Mail Merge: not reviewed yet\nForm: https://district.org/app-request\n"
    )
    assert "Why we check" in ana.html  # the shipped HTML template still applies


def test_a_broken_custom_template_is_a_configuration_error_naming_the_file(inventory, smtp_server, tmp_path):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "alert.txt.j2").write_text("Hello {{ recipient.nickname }}\n")
    result = send(inventory, write_config(tmp_path, smtp_server.port, template_dir="templates"))
    assert result.exit_code == 2
    assert "alert.txt.j2: template error:" in result.output and "nickname" in result.output
    assert smtp_server.handler.people == []
    (templates / "alert.txt.j2").write_text("Hello {% if %}\n")
    result = send(inventory, write_config(tmp_path, smtp_server.port, template_dir="templates"))
    assert result.exit_code == 2 and "alert.txt.j2:1: template error:" in result.output
    assert {r["status"] for r in alerts_rows(inventory)} == {"pending"}
