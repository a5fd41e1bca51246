"""A real SMTP server (aiosmtpd) on loopback with injectable failures, and a small district to alert about."""

from __future__ import annotations

import email
import json
import os
import signal
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from scanner import store
from scanner.config import load_config
from scanner.providers import App, Grant, User
from scanner.scan import run_scans
from tests.conftest import free_port

KAHOOT = "111-kahoot.apps.googleusercontent.com"
QUIZLET = "222-quizlet.apps.googleusercontent.com"
MAILER = "333-mailer.apps.googleusercontent.com"
PROFILE = ["openid", "https://www.googleapis.com/auth/userinfo.email"]
MAIL = "https://mail.google.com/"
DRIVE_FILE = "https://www.googleapis.com/auth/drive.file"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content().replace("\r\n", "\n")

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content().replace("\r\n", "\n")


@dataclass
class Recorder:
    """aiosmtpd handler: keeps accepted messages; tests set the failures it injects."""

    received: list[Received] = field(default_factory=list)
    refuse_rcpt: dict[str, str] = field(default_factory=dict)  # address -> reply, e.g. "450 mailbox busy"
    refuse_data_to: dict[str, str] = field(default_factory=dict)  # refuse the message after DATA
    drop_at_data_to: set[str] = field(default_factory=set)  # close the connection instead of answering DATA
    kill_after_accepting: int | None = None  # SIGKILL `kill_pid` once this many messages were accepted
    kill_pid: int | None = None
    data_commands: int = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse_rcpt:
            return self.refuse_rcpt[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_commands += 1
        to = set(envelope.rcpt_tos)
        if to & self.drop_at_data_to:
            server.transport.close()  # the connection drops before the server answers
            return "421 closing"
        for address, reply in self.refuse_data_to.items():
            if address in to:
                return reply
        raw = envelope.original_content or envelope.content
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), email.message_from_bytes(raw, policy=policy.default), raw))
        if self.kill_after_accepting is not None and len(self.received) >= self.kill_after_accepting and self.kill_pid:
            # The server has the message; the client dies before it hears "250" and can record it.
            os.kill(self.kill_pid, signal.SIGKILL)
            self.kill_pid = None
        return "250 Message accepted"

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if address in r.rcpt_tos]

    @property
    def digests(self) -> list[Received]:
        return [r for r in self.received if "privacy-team@district.org" in r.rcpt_tos]

    @property
    def people(self) -> list[Received]:
        return [r for r in self.received if "privacy-team@district.org" not in r.rcpt_tos]


@dataclass
class SmtpServer:
    handler: Recorder
    port: int
    controller: Controller


@pytest.fixture
def smtp_server():
    handler = Recorder()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, enable_SMTPUTF8=True)
    controller.start()
    try:
        yield SmtpServer(handler, port, controller)
    finally:
        controller.stop()


def write_config(directory: Path, port: int, extra: str = "", **alerts) -> Path:
    """An app-inventory.toml with [alerts] pointing at the test server."""
    settings = {
        "smtp_host": "127.0.0.1", "smtp_port": port, "smtp_security": "none", "smtp_timeout": 5,
        "from_address": "IT Privacy <privacy@district.org>",
        "it_digest_to": ["privacy-team@district.org"],
        "request_form_url": "https://district.org/app-request",
        "contact": "the IT Privacy team at privacy@district.org",
        **alerts,
    }
    lines = ["[alerts]"]
    for key, value in settings.items():
        if value is not None:
            lines.append(f"{key} = {json.dumps(value)}")  # JSON strings, lists and booleans are TOML too
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "app-inventory.toml"
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def alerts_district(tenant):
    """Two staff and two students. Ana (staff) has two unapproved apps, Chidi (staff) one
    denied app with mail access, the students use Kahoot (approved) and the unapproved mail merge."""
    tenant.users = [
        User(id="1", email="ms.rivera@district.org", name="Ana Rivera", role="staff"),
        User(id="2", email="mr.okafor@district.org", name="Chidi Okafor", role="staff"),
        User(id="3", email="jlee@students.district.org", name="Jamie Lee", role="student"),
        User(id="4", email="zoe.muller@students.district.org", name="Zoe Muller", role="student"),
    ]
    tenant.apps = [
        App(id=KAHOOT, name="Kahoot!", publisher="Kahoot ASA"),
        App(id=QUIZLET, name="Quizlet", publisher="Quizlet Inc."),
        App(id=MAILER, name="Super Mail Merge", publisher="Mergely LLC"),
    ]
    tenant.grants = [
        Grant(user_id="1", app_id=QUIZLET, scopes=[*PROFILE, DRIVE_FILE]),
        Grant(user_id="1", app_id=MAILER, scopes=[*PROFILE, MAIL]),
        Grant(user_id="2", app_id=KAHOOT, scopes=PROFILE),
        Grant(user_id="3", app_id=KAHOOT, scopes=PROFILE),
        Grant(user_id="4", app_id=MAILER, scopes=[*PROFILE, MAIL]),
    ]
    return tenant


CATALOG = [
    # Kahoot is denied here so Chidi's email says so plainly.
    {"id": "kahoot", "name": "Kahoot!", "status": "denied", "status_original": "Not approved", "audience": "all",
     "google_client_ids": f'["{KAHOOT}"]', "microsoft_app_ids": "[]", "approved_scopes": "[]",
     "alternative": "Google Forms quizzes"},
    {"id": "quizlet", "name": "Quizlet", "status": "pending", "status_original": "Under review", "audience": "all",
     "google_client_ids": f'["{QUIZLET}"]', "microsoft_app_ids": "[]", "approved_scopes": "[]",
     "alternative": None},
]


def scan(db_path: str, config_path: Path) -> None:
    outcome = run_scans(db_path, load_config(config_path), show_progress=False)
    assert outcome.failures == []


def set_catalog(db_path: str, rows=CATALOG) -> None:
    store.replace_catalog(store.open_db(db_path), [dict(row) for row in rows])


def alerts_rows(db_path: str) -> list[dict]:
    db = store.open_db(db_path)
    return list(db.query(
        "select alerts.*, apps.name as app, users.email from alerts join apps on apps.id = alerts.app_id "
        "left join users on users.id = alerts.user_id order by alerts.id"
    ))
