"""Composing the alert emails: addresses, template context, and safe EmailMessages.

Everything that reaches a header goes through `one_line()` and the email package's
own header checks (policy.SMTP refuses CR/LF in header values), and the subject
is a template of its own that by default names no app at all. App names, scope
labels and notes come from third parties: the HTML templates autoescape them,
and the text templates receive them as single lines without control characters.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email import policy
from email.errors import HeaderParseError, MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import jinja2
from sqlite_utils import Database

from scanner import RISK_RANK, Config, ConfigError

from .queue import REMINDER_SUFFIX

SHIPPED_TEMPLATES = "templates"
TEMPLATE_NAMES = (
    "alert_subject.txt.j2", "alert.txt.j2", "alert.html.j2",
    "digest_subject.txt.j2", "digest.txt.j2", "digest.html.j2",
    "decision_subject.txt.j2", "decision.txt.j2", "decision.html.j2",
)
MAX_SUBJECT = 150
MAX_ACCESS_LINES = 8
TEXT_WIDTH = 72

STATUS_WORDS = {
    "unreviewed": "not reviewed yet",
    "pending": "under review",
    "denied": "not approved",
    "conditional": "approved with conditions",
    "approved": "approved",
}
# Data categories of scanner/data/scopes.csv, in the words a teacher would use.
DATA_WORDS = {
    "sign-in": "your sign-in",
    "profile": "your name, email address and profile",
    "mail": "your email",
    "files": "your files and documents",
    "calendar": "your calendar",
    "contacts": "your contacts",
    "directory": "the district directory of staff and students",
    "classroom rosters": "your class rosters (students' names and emails)",
    "coursework": "coursework, assignments and grades",
    "chat": "your chats",
    "notes": "your notes",
    "tasks": "your tasks",
    "media": "your photos and videos",
    "scripts": "scripts and automations",
    "admin": "administrator settings",
    "other": "other information",
}
PROVIDER_WORDS = {"google": "Google", "microsoft": "Microsoft"}
# Where a person removes an app's access to their own account.
REMOVE_ACCESS_URLS = {
    "google": "https://myaccount.google.com/connections",
    "microsoft": "https://myapps.microsoft.com",
}
KIND_ORDER = {"access_removed": -1, "denied": 0, "unapproved": 1, "outside_audience": 2, "scope_creep": 3}

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s+")


def one_line(value: Any, limit: int = 200) -> str:
    """A value from the inventory made safe for a header, a file name or a terminal:
    control characters (CR, LF, ESC...) become spaces, runs of spaces become one."""
    text = _SPACES.sub(" ", _CONTROL.sub(" ", str(value or ""))).strip()
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf") or ch == " ")
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


class InvalidAddress(ValueError):
    """Not an email address this tool will send to."""


def check_address(value: str) -> Address:
    """Validate a bare address (what users.email holds) and return it as an Address.

    Internationalized addresses (zoë@…) are allowed: the email package checks the
    structure on an ASCII stand-in, and smtplib uses SMTPUTF8 when the address needs it.
    """
    text = value if isinstance(value, str) else ""
    if not text or text != text.strip() or any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in text):
        raise InvalidAddress(f"{one_line(value)!r} is not an email address")
    stand_in = re.sub(r"[^\x00-\x7f]", "x", text)
    try:
        parsed = Address(addr_spec=stand_in)
    except (ValueError, IndexError, HeaderParseError, MessageError) as error:
        raise InvalidAddress(f"{one_line(value)!r} is not an email address ({error})") from None
    if not parsed.username or "." not in parsed.domain.strip("[]"):
        raise InvalidAddress(f"{one_line(value)!r} is not an email address (it needs a name, @ and a full domain)")
    local, _, domain = text.rpartition("@")
    return Address(username=local, domain=domain)


def parse_mailbox(value: str) -> Address:
    """Validate "Name <address>" or a bare address (the configuration's from_address and friends)."""
    if not isinstance(value, str) or _CONTROL.search(value):
        raise InvalidAddress(f"{one_line(value)!r} is not an email address")
    try:
        header = policy.SMTP.header_factory("To", value)
        addresses = header.addresses
    except (ValueError, IndexError, HeaderParseError, MessageError):
        addresses, header = (), None
    if len(addresses) != 1 or header.defects:
        raise InvalidAddress(f"{value!r} is not an email address; write one address, like \"IT Privacy <privacy@district.org>\"")
    bare = check_address(addresses[0].addr_spec)
    return Address(display_name=one_line(addresses[0].display_name), username=bare.username, domain=bare.domain)


def with_name(address: Address, name: str | None) -> Address:
    return Address(display_name=one_line(name, 80), username=address.username, domain=address.domain)


@dataclass
class MailSettings:
    """The [alerts] settings composing needs, validated once per run."""

    sender: Address
    reply_to: Address | None
    digest_to: list[Address]
    request_form_url: str | None
    contact: str
    district: str
    notify_students: bool
    templates: jinja2.Environment
    template_dir: Path | None = None
    msgid_domain: str = field(init=False)

    def __post_init__(self):
        # A stable domain for Message-IDs: the district's own (never the machine's hostname).
        self.msgid_domain = self.sender.domain

    @classmethod
    def from_config(cls, config: Config) -> MailSettings:
        alerts = config.section("alerts")
        where = f"{config.where}: [alerts]"
        if not alerts["from_address"]:
            raise ConfigError(f"{where} from_address is required to send alerts, like \"IT Privacy <privacy@district.org>\"")
        sender = _config_address(alerts["from_address"], f"{where} from_address")
        reply_to = _config_address(alerts["reply_to"], f"{where} reply_to") if alerts["reply_to"] else None
        digest_to = [_config_address(value, f"{where} it_digest_to") for value in alerts["it_digest_to"]]
        # Unset, [serve]'s default "Our district" reads oddly mid-sentence.
        district = config.sections.get("serve", {}).get("district_name") or "the district"
        contact = alerts["contact"] or str(reply_to or sender)
        return cls(
            sender=sender, reply_to=reply_to, digest_to=digest_to,
            request_form_url=alerts["request_form_url"] or _request_page_url(config), contact=one_line(contact, 300),
            district=one_line(district, 120), notify_students=alerts["notify_students"],
            templates=template_environment(alerts["template_dir"], where), template_dir=alerts["template_dir"],
        )


def _request_page_url(config: Config) -> str | None:
    """Without an external request_form_url: the inventory's own request page (plugins/review),
    when staff may sign in ([signin] staff_sign_in) at a known address ([signin] site_url)."""
    signin = config.sections.get("signin", {})
    if signin.get("staff_sign_in") and signin.get("site_url"):
        return signin["site_url"].rstrip("/") + "/-/requests"
    return None


def _config_address(value: str, where: str) -> Address:
    try:
        return parse_mailbox(value)
    except InvalidAddress as error:
        raise ConfigError(f"{where}: {error}") from None


# -- templates -------------------------------------------------------------------------------

def template_environment(template_dir: Path | None, where: str = "[alerts]") -> jinja2.Environment:
    """Jinja2 with the district's template_dir first, then the templates shipped with the plugin.
    HTML templates (*.html.j2) autoescape; undefined variables are errors, not blanks."""
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None:
        if not template_dir.is_dir():
            raise ConfigError(f"{where} template_dir {template_dir}: no such folder (it holds your own {', '.join(TEMPLATE_NAMES)})")
        loaders.append(jinja2.FileSystemLoader(template_dir))
    loaders.append(jinja2.PackageLoader("plugins.alerts", SHIPPED_TEMPLATES))
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    environment.filters["plain_date"] = plain_date
    return environment


def render(settings: MailSettings, name: str, context: dict[str, Any]) -> str:
    """Render one template; a broken custom template is a configuration error naming file and line."""
    try:
        return settings.templates.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as error:
        raise ConfigError(f"{error.filename or name}:{error.lineno}: template error: {error.message}") from None
    except jinja2.UndefinedError as error:
        where = settings.template_dir / name if settings.template_dir and (settings.template_dir / name).exists() else name
        raise ConfigError(f"{where}: template error: {error.message} (docs/alerts.md, \"Customizing the alert emails\", lists the variables)") from None


_LIST_ITEM = re.compile(r"^(\s*)(- |\d+\. )")


def tidy_text(text: str, width: int = TEXT_WIDTH) -> str:
    """Wrap the rendered text part at `width`, keeping each line's indent (and hanging
    list items under their text); blank-line runs become one blank line. URLs are
    never broken."""
    lines: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line and lines and not lines[-1]:
            continue
        if len(line) <= width:
            lines.append(line)
            continue
        item = _LIST_ITEM.match(line)
        indent = re.match(r"\s*", line).group(0)
        hanging = indent + " " * len(item.group(2)) if item else indent
        lines.extend(textwrap.wrap(line, width=width, subsequent_indent=hanging, break_long_words=False, break_on_hyphens=False))
    return "\n".join(lines).strip("\n") + "\n"


def plain_date(value: str | None) -> str:
    """2026-11-02T08:00:00Z -> 2 November 2026."""
    if not value:
        return ""
    moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return f"{moment.day} {moment:%B %Y}"


# -- what a finding says ---------------------------------------------------------------------

class ScopeWords:
    """Plain-word labels and data categories from the `scopes` table."""

    def __init__(self, db: Database):
        rows = list(db.query("select provider, scope, label, risk, data_category from scopes"))
        self.by_provider = {(r["provider"], r["scope"]): r for r in rows}
        self.any_provider: dict[str, dict] = {}
        for row in rows:  # a provider the file does not name (a third-party plugin): first match
            self.any_provider.setdefault(row["scope"], row)

    def describe(self, provider: str, scopes: Iterable[str]) -> dict[str, Any]:
        """Labels (riskiest first), data categories in plain words, and how many labels were left off."""
        known = []
        for scope in dict.fromkeys(scopes):
            row = self.by_provider.get((provider, scope)) or self.any_provider.get(scope)
            if row:
                known.append((RISK_RANK.get(row["risk"], 1), one_line(row["label"]), row["data_category"]))
            else:
                known.append((RISK_RANK["medium"], f"access the district has no description for ({one_line(scope, 120)})", "other"))
        known.sort(key=lambda item: -item[0])
        labels = list(dict.fromkeys(label for _, label, _ in known))
        categories = list(dict.fromkeys(DATA_WORDS.get(category, one_line(category)) for _, _, category in known))
        return {
            "access": labels[:MAX_ACCESS_LINES],
            "more_access": max(0, len(labels) - MAX_ACCESS_LINES),
            "data": categories,
            "high_risk": bool(known) and known[0][0] == RISK_RANK["high"],
        }


def app_context(row: dict) -> dict[str, Any]:
    provider = row["provider"]
    return {
        "name": one_line(row["app_name"], 120),
        "publisher": one_line(row["publisher"], 120),
        "verified_publisher": one_line(row["verified_publisher"], 120),
        "provider": provider,
        "provider_label": PROVIDER_WORDS.get(provider, provider.replace("_", " ").title()),
        "status": row["app_status"],
        "status_words": STATUS_WORDS.get(row["app_status"], row["app_status"]),
        "risk": row["app_risk"],
        "homepage": one_line(row["homepage"], 300) if (row["homepage"] or "").startswith(("https://", "http://")) else "",
        "catalog_name": one_line(row["catalog_name"], 120),
    }


def finding_context(row: dict, scope_words: ScopeWords, *, reminded_about: str | None = None) -> dict[str, Any]:
    """What the templates get for one alert row (docs/alerts.md, "Customizing the alert emails")."""
    kind = row["kind"].removesuffix(REMINDER_SUFFIX)
    granted = json.loads(row["grant_scopes"] or "[]")
    described = scope_words.describe(row["provider"], granted)
    extra = json.loads(row["details"] or "{}").get("extra_scopes", [])
    return {
        "id": row["id"],
        "kind": kind,
        "is_reminder": row["kind"].endswith(REMINDER_SUFFIX),
        "first_emailed": reminded_about,
        "app": app_context(row),
        **described,
        "extra_access": scope_words.describe(row["provider"], extra)["access"] if extra else [],
        "alternative": one_line(row["alternative"], 200),
        "audience": row["audience"],
        "connected_since": row["grant_first_seen"],
        "account": row["email"] or "",
        "last_used": row["grant_last_used"],
        "remove_access_url": REMOVE_ACCESS_URLS.get(row["provider"], ""),
        "removed_at": json.loads(row["details"] or "{}").get("removed_at") if kind == "access_removed" else None,
    }


def sort_findings(findings: list[dict]) -> list[dict]:
    return sorted(findings, key=lambda f: (f["is_reminder"], KIND_ORDER.get(f["kind"], 9), f["app"]["name"].lower()))


def person_context(settings: MailSettings, person: dict, findings: Sequence[dict]) -> dict[str, Any]:
    """The person's email: `person` is one of their alert rows (person_name, person_email, person_role)."""
    name = one_line(person["person_name"], 80)
    return {
        "recipient": {
            "name": name,
            "first_name": name.split(" ")[0] if name else "",
            "email": person["person_email"],
            "role": person["person_role"],
        },
        "findings": sort_findings(list(findings)),
        **common_context(settings),
    }


def common_context(settings: MailSettings) -> dict[str, Any]:
    return {
        "district": settings.district,
        "request_form_url": settings.request_form_url or "",
        "contact": settings.contact,
        "sender_name": settings.sender.display_name or settings.district,
        "remove_access_urls": REMOVE_ACCESS_URLS,
    }


# -- the message ----------------------------------------------------------------------------

def new_message_id(settings: MailSettings) -> str:
    return make_msgid(domain=settings.msgid_domain)


def build_message(
    settings: MailSettings,
    *,
    to: Sequence[Address],
    template: str,
    context: dict[str, Any],
    message_id: str,
    now: dt.datetime,
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) from `<template>_subject.txt.j2`,
    `<template>.txt.j2` and `<template>.html.j2`."""
    subject = one_line(render(settings, f"{template}_subject.txt.j2", context), MAX_SUBJECT)
    text = tidy_text(render(settings, f"{template}.txt.j2", context))
    html = render(settings, f"{template}.html.j2", context)
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = settings.sender
    message["To"] = list(to)
    if settings.reply_to:
        message["Reply-To"] = settings.reply_to
    message["Subject"] = subject or "Apps connected to your account"
    message["Date"] = format_datetime(now.astimezone(dt.timezone.utc))
    message["Message-ID"] = message_id
    # An automatic message (RFC 3834): no out-of-office replies, no auto-forward loops.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


def message_bytes(message: EmailMessage) -> bytes:
    """The message as it goes on the wire (SMTPUTF8 when an address needs it)."""
    needs_utf8 = any(not str(value).isascii() for value in (message["From"], message["To"]))
    return message.as_bytes(policy=policy.SMTPUTF8 if needs_utf8 else policy.SMTP)
