"""Handing messages to the district's SMTP server (smtplib), or to an outbox folder (dry run).

The password is read from the environment variable [alerts] smtp_password_env only
when a login is needed, and never appears in a log line or an error message.
"""

from __future__ import annotations

import logging
import os
import re
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

from scanner import Config, ConfigError

from .compose import message_bytes, one_line

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class MessageRefused(Exception):
    """The server refused this message (a recipient, the sender, or the content); the
    connection can carry on with the next one."""


class ConnectionLost(Exception):
    """The connection failed or dropped while this message was being sent."""


class ServerUnavailable(Exception):
    """Cannot connect or log in: nothing more can be sent in this run."""


def describe_smtp_error(error: BaseException) -> str:
    """One line for logs, `alerts list` and the digest (server words, never the password)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{address} refused: {code} {_text(reply)}" for address, (code, reply) in error.recipients.items())
    if isinstance(error, smtplib.SMTPSenderRefused):
        return f"sender {error.sender} refused: {error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return f"the server closed the connection ({error or 'no reason given'})"
    return one_line(f"{type(error).__name__}: {error}", 300)


def _text(reply: bytes | str) -> str:
    return one_line(reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply, 300)


class SmtpTransport:
    """One SMTP connection for a run, opened on first use and reopened once after a drop."""

    def __init__(self, config: Config):
        alerts = config.section("alerts")
        self.host, self.port = alerts["smtp_host"], alerts["smtp_port"]
        self.security, self.timeout = alerts["smtp_security"], alerts["smtp_timeout"]
        self.username = alerts["smtp_username"]
        self.where = f"{config.where}: [alerts]"
        self._password = None
        if self.username:
            if self.security == "none" and self.host not in LOOPBACK_HOSTS:
                raise ConfigError(
                    f"{self.where} smtp_username is set with smtp_security = \"none\": the password would cross the "
                    "network in clear text; use \"starttls\" or \"ssl\""
                )
            self._password = config.secret("alerts", "smtp_password_env")
        self._smtp: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def server(self) -> str:
        return f"{self.host}:{self.port}"

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()  # verifies the certificate; SSL_CERT_FILE adds a private CA
        try:
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except (OSError, smtplib.SMTPException) as error:
            raise ServerUnavailable(f"cannot connect to the mail server {self.server}: {describe_smtp_error(error)}") from None
        try:
            if self.security == "starttls":
                smtp.starttls(context=context)
            if self.username:
                smtp.login(self.username, self._password)
        except smtplib.SMTPAuthenticationError as error:
            smtp.close()
            raise ServerUnavailable(
                f"the mail server {self.server} refused the login of {self.username}: {describe_smtp_error(error)}; "
                f"check smtp_username and the password in the variable named by smtp_password_env"
            ) from None
        except smtplib.SMTPNotSupportedError as error:
            smtp.close()
            what = "STARTTLS" if self.security == "starttls" and "STARTTLS" in str(error) else "login (AUTH)"
            raise ServerUnavailable(f"the mail server {self.server} does not offer {what}; check {self.where} smtp_security and smtp_port") from None
        except (OSError, smtplib.SMTPException) as error:
            smtp.close()
            raise ServerUnavailable(f"cannot set up the connection to {self.server}: {describe_smtp_error(error)}") from None
        return smtp

    def open(self) -> None:
        """Connect and log in unless connected (again, after a drop). Raises ServerUnavailable."""
        if self._smtp is None:
            self._smtp = self._connect()

    def deliver(self, message: EmailMessage, envelope_from: str, recipients: list[str]) -> dict[str, str]:
        """Send one message over the open connection. Returns the recipients the server
        refused when it took the rest; raises MessageRefused or ConnectionLost."""
        if self._smtp is None:
            raise ConnectionLost("not connected")
        try:
            refused = self._smtp.send_message(message, from_addr=envelope_from, to_addrs=recipients)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError, smtplib.SMTPNotSupportedError) as error:
            if isinstance(error, smtplib.SMTPResponseException) and error.smtp_code == 421:
                self.close()  # 421: the server is closing the connection
                raise ConnectionLost(describe_smtp_error(error)) from None
            self._reset()
            raise MessageRefused(describe_smtp_error(error)) from None
        except (smtplib.SMTPException, OSError) as error:
            self.close()
            raise ConnectionLost(describe_smtp_error(error)) from None
        return {address: f"{code} {_text(reply)}" for address, (code, reply) in refused.items()}

    def _reset(self) -> None:
        try:
            self._smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None


class OutboxTransport:
    """--dry-run: writes each message as an .eml file instead of sending it."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.written: list[Path] = []
        self.server = str(folder)

    def __enter__(self) -> OutboxTransport:
        try:
            # Private folders and files: a digest lists hundreds of staff and student addresses.
            missing = [folder for folder in (self.folder, *self.folder.parents) if not folder.exists()]
            for folder in reversed(missing):
                folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as error:
            raise ConfigError(f"--outbox {self.folder}: cannot create the folder: {error.strerror}") from None
        return self

    def __exit__(self, *exc) -> None:
        pass

    def open(self) -> None:
        pass

    def deliver(self, message: EmailMessage, envelope_from: str, recipients: list[str]) -> dict[str, str]:
        first = recipients[0] + (f"+{len(recipients) - 1}-more" if len(recipients) > 1 else "")
        name = re.sub(r"[^A-Za-z0-9@._+-]+", "_", one_line(first, 80))
        path = self.folder / f"{len(self.written) + 1:04d}-{name}.eml"
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as file:
            file.write(message_bytes(message))
        self.written.append(path)
        return {}

    def close(self) -> None:
        pass
