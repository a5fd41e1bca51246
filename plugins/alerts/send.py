"""One `alerts send` run: sync the queue, email each person once, then the IT digest.

A person is everyone's accounts that share an address (the inventory's `people` table):
their findings from every account and provider go in one email to their primary address,
and their role (student if any account is a student's) decides whether they are emailed.

    lock                      one send at a time per inventory ({db}.alerts.lock)
    mark_unconfirmed          sends a stopped run left unrecorded -> failed, unconfirmed
    sync_alerts               findings -> pending rows; gone -> suppressed
    per person:  claim (commit) -> SMTP -> sent | pending/failed (commit)
    digest:      the same, for the findings reported to IT

With --dry-run the whole run happens inside one transaction that is rolled back,
and messages are written to an outbox folder: the same code path, nothing sent,
nothing recorded.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import filelock
from sqlite_utils import Database

from scanner import Config, iso, open_db, utc_now

from . import queue
from .compose import (
    InvalidAddress, MailSettings, ScopeWords, app_context, build_message, check_address, finding_context,
    new_message_id, one_line, person_context, with_name,
)
from . import decisions, digest_news
from .digest import digest_context, for_it_groups, previous_digest_at
from .smtp import ConnectionLost, MessageRefused, OutboxTransport, ServerUnavailable, SmtpTransport

log = logging.getLogger(__name__)


class SendLocked(Exception):
    """Another `alerts send` is running on this inventory."""


@dataclass
class RunReport:
    """What a run did, for the command's summary, the digest and `alert_runs`."""

    started_at: str
    dry_run: bool
    server: str = ""
    people_emailed: int = 0
    findings_emailed: int = 0
    decisions_emailed: int = 0
    failures: list[dict] = field(default_factory=list)  # {"recipient", "apps", "error", "gave_up"}
    deferred_people: int = 0
    findings_to_it: int = 0
    it_waiting: int = 0  # findings for IT held because it_digest_to is empty
    unconfirmed: list[dict] = field(default_factory=list)
    synced: dict = field(default_factory=dict)
    server_error: str | None = None
    digest_status: str = "not configured"  # sent | failed | skipped | not configured | written
    digest_error: str | None = None
    digest_message_id: str | None = None
    written: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.failures or self.server_error or self.digest_status == "failed")

    def as_context(self) -> dict:
        return {
            "started_at": self.started_at, "dry_run": self.dry_run,
            "people_emailed": self.people_emailed, "findings_emailed": self.findings_emailed,
            "failures": self.failures, "deferred_people": self.deferred_people,
            "server_error": self.server_error, "unconfirmed_now": self.unconfirmed,
            "queued": self.synced.get("queued", 0), "suppressed": self.synced.get("suppressed", 0),
        }


class _DryRun(Exception):
    """Raised at the end of a dry run to roll its transaction back."""


def send_alerts(db_path: str, config: Config, *, dry_run: bool = False, outbox: Path | None = None, limit: int | None = None) -> RunReport:
    """Run the alerts once against the inventory at db_path (see the module docstring)."""
    settings = MailSettings.from_config(config)
    lock = filelock.FileLock(f"{db_path}.alerts.lock", timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise SendLocked(f"another `alerts send` is running on {db_path} (lock {lock.lock_file}); wait for it to finish") from None
    try:
        db = open_db(db_path)
        queue.ensure_alerts_tables(db)
        started = utc_now()
        report = RunReport(started_at=iso(started), dry_run=dry_run)
        if dry_run:
            folder = (outbox or Path("outbox")) / started.strftime("%Y%m%d-%H%M%S")
            with OutboxTransport(folder) as transport:
                try:
                    with db.atomic():
                        _run(db, config, settings, transport, report, limit)
                        raise _DryRun
                except _DryRun:
                    pass
            report.written = transport.written
        else:
            with SmtpTransport(config) as transport:
                _run(db, config, settings, transport, report, limit)
        return report
    except sqlite3.OperationalError as error:
        if "locked" in str(error):
            raise SendLocked(f"the inventory {db_path} is busy (a scan or catalog import is writing); run `alerts send` when it has finished") from None
        raise
    finally:
        lock.release()


def _run(db: Database, config: Config, settings: MailSettings, transport, report: RunReport, limit: int | None) -> None:
    alerts = config.section("alerts")
    now = report.started_at
    report.server = transport.server
    run_id = db["alert_runs"].insert({"started_at": now}).last_pk
    since = previous_digest_at(db)

    report.unconfirmed = queue.mark_unconfirmed(db, now)
    for row in report.unconfirmed:
        log.warning("alert %s: the previous run stopped while sending it (Message-ID %s); marked unconfirmed, not resent", row["id"], row["message_id"])
    report.synced = queue.sync_configured(db, now, alerts)
    report.synced["reminders"] = queue.queue_reminders(db, now, alerts["reminder_days"])
    report.synced["decisions"] = decisions.queue_decisions(db, now, notify_students=settings.notify_students)
    queue.purge_alerts(db, now, config.section("retention")["history_days"])

    people: dict[str, list[dict]] = defaultdict(list)
    decided: dict[str, list[dict]] = defaultdict(list)  # the requester asked: told whatever their role
    it_rows: list[tuple[dict, str]] = []
    for row in queue.pending_rows(db):
        if row["kind"] == decisions.DECISION:
            decided[row["person_id"]].append(row)
            continue
        why = _reason_for_it(row, settings.notify_students)
        if why:
            it_rows.append((row, why))
        else:
            people[row["person_id"]].append(row)

    scope_words = ScopeWords(db)
    order = sorted(people, key=lambda person_id: (people[person_id][0]["person_email"].lower(), person_id))
    if limit is not None and len(order) > limit:
        report.deferred_people = len(order) - limit
        order = order[:limit]
    for user_id in order:
        rows = people[user_id]
        if report.server_error:
            break
        _email_person(db, settings, transport, report, rows, scope_words, alerts["max_attempts"])
    for person_id in sorted(decided):
        if report.server_error:
            break
        _email_decisions(db, settings, transport, report, decided[person_id], alerts["max_attempts"])

    it_groups = for_it_groups(it_rows, app_context)
    if not settings.digest_to:
        report.it_waiting = len(it_rows)
        if it_rows:
            log.warning("%d findings for IT are waiting: set [alerts] it_digest_to to receive the digest", len(it_rows))
    elif report.server_error:
        report.digest_status = "skipped"
    else:
        _send_digest(db, settings, transport, report, it_rows, it_groups, since, alerts["max_attempts"])

    db["alert_runs"].update(run_id, {
        "finished_at": iso(utc_now()), "people_emailed": report.people_emailed,
        "findings_emailed": report.findings_emailed, "findings_to_it": report.findings_to_it,
        "send_failures": len(report.failures), "unconfirmed": len(report.unconfirmed),
        "digest_status": report.digest_status, "digest_error": report.digest_error,
        "digest_message_id": report.digest_message_id,
    })


def _reason_for_it(row: dict, notify_students: bool) -> str | None:
    """Why a finding goes to the IT digest instead of the person (None: email the person).

    Only people known to be staff are emailed (students too with notify_students). The
    person's role counts, not the account's: someone with a student account is a student,
    even for a finding on their staff account. An `unknown` role means the district set no
    [roles] rules, so nobody can tell. A finding on a suspended account goes to IT."""
    if row["user_id"] is None:
        return "tenant-wide consent"
    if row["suspended"]:
        return "suspended account"
    if row["person_role"] == "staff":
        return None
    if row["person_role"] == "student":
        return None if notify_students else "student"
    return "role unknown"


def _email_person(db, settings: MailSettings, transport, report: RunReport, rows: list[dict], scope_words: ScopeWords, max_attempts: int) -> None:
    person = rows[0]
    ids = [row["id"] for row in rows]
    apps = ", ".join(sorted({one_line(row["app_name"], 80) for row in rows}))
    try:
        address = check_address(person["person_email"])
    except InvalidAddress as error:
        queue.mark_undeliverable(db, ids, error=f"not sent: {error}", recipient=None)
        report.failures.append({"recipient": person["person_email"], "apps": apps, "error": str(error), "gave_up": True})
        log.error("not emailing %s: %s", person["person_email"], error)
        return
    findings = [
        finding_context(row, scope_words, reminded_about=queue.first_sent_at(db, row) if row["kind"].endswith(queue.REMINDER_SUFFIX) else None)
        for row in rows
    ]
    message = build_message(
        settings, to=[with_name(address, person["person_name"])], template="alert",
        context=person_context(settings, person, findings), message_id=new_message_id(settings), now=utc_now(),
    )
    if _deliver(db, transport, report, message, ids, sender=settings.sender.addr_spec, recipient=address.addr_spec,
                recipients=[address.addr_spec], what=apps, max_attempts=max_attempts):
        report.people_emailed += 1
        report.findings_emailed += len(ids)
        log.info("emailed %s about %d finding(s)", address.addr_spec, len(ids))


def _email_decisions(db, settings: MailSettings, transport, report: RunReport, rows: list[dict], max_attempts: int) -> None:
    """One email to a requester with IT's decision on each app they asked about."""
    person = rows[0]
    ids = [row["id"] for row in rows]
    apps = ", ".join(sorted({one_line(row["catalog_name"] or row["app_name"], 80) for row in rows}))
    try:
        address = check_address(person["person_email"])
    except InvalidAddress as error:
        queue.mark_undeliverable(db, ids, error=f"not sent: {error}", recipient=None)
        report.failures.append({"recipient": person["person_email"], "apps": apps, "error": str(error), "gave_up": True})
        return
    context = {**person_context(settings, person, []), "decisions": [decisions.decision_context(db, row) for row in rows]}
    message = build_message(settings, to=[with_name(address, person["person_name"])], template="decision",
                            context=context, message_id=new_message_id(settings), now=utc_now())
    if _deliver(db, transport, report, message, ids, sender=settings.sender.addr_spec, recipient=address.addr_spec,
                recipients=[address.addr_spec], what=f"decision on {apps}", max_attempts=max_attempts):
        report.decisions_emailed += len(ids)
        log.info("emailed %s the decision on %s", address.addr_spec, apps)


def _send_digest(db, settings: MailSettings, transport, report: RunReport, it_rows, it_groups, since, max_attempts: int) -> None:
    ids = [row["id"] for row, _ in it_rows]
    report.findings_to_it = len(ids)
    news = digest_news.collect(db)  # posture regressions and new consent requests, each told once
    context = digest_context(db, settings, run=report.as_context(), it_groups=it_groups, since=since, news=news)
    message = build_message(
        settings, to=settings.digest_to, template="digest", context=context,
        message_id=new_message_id(settings), now=utc_now(),
    )
    recipients = [address.addr_spec for address in settings.digest_to]
    before = len(report.failures)
    if _deliver(db, transport, report, message, ids, sender=settings.sender.addr_spec, recipient=queue.IT_DIGEST,
                recipients=recipients, what="IT digest", max_attempts=max_attempts):
        report.digest_status = "written" if report.dry_run else "sent"
        report.digest_message_id = message["Message-ID"]
        digest_news.mark_reported(db, news, now=iso(utc_now()), message_id=message["Message-ID"])
    else:
        report.digest_status = "failed"
        report.findings_to_it = 0
        report.digest_error = report.failures[-1]["error"] if len(report.failures) > before else report.server_error


def _deliver(
    db, transport, report: RunReport, message: EmailMessage, ids: list[int], *,
    sender: str, recipient: str, recipients: list[str], what: str, max_attempts: int,
) -> bool:
    """Claim, send, record. True when the server accepted the message."""
    try:
        transport.open()
    except ServerUnavailable as error:
        report.server_error = str(error)
        log.error("%s; the rest stays pending for the next run", error)
        return False
    if ids and not queue.claim(db, ids, message_id=message["Message-ID"], recipient=recipient, now=iso(utc_now())):
        log.warning("alerts %s changed while this run was sending; left for the next run", ids)
        return False
    # The crash window runs from the claim above (committed, with the Message-ID)
    # to mark_sent below. If the process dies inside it (SIGKILL, power cut,
    # Ctrl-C), the server may or may not have accepted the message, and SMTP
    # gives no way to ask afterwards. Two choices: resend on the next run (at
    # least once: a teacher may get the same email twice) or never resend it
    # automatically (at most once: an email may be missing). The issue asks for
    # at most once, so the next run turns such rows into failed + unconfirmed
    # (queue.mark_unconfirmed), lists them in `alerts list` and the IT digest
    # with the Message-ID to look up in the mail server's log, and `alerts
    # retry` sends them again only when IT decides to. The window is kept small:
    # the connection is opened and logged in before the claim, and the answer is
    # recorded as soon as the server replies. A refusal or a dropped connection
    # is not this case: the server did not say 250, so the row goes back to
    # pending and is retried (up to max_attempts).
    try:
        refused = transport.deliver(message, sender, recipients)
    except (MessageRefused, ConnectionLost) as error:
        gave_up = queue.mark_attempt_failed(db, ids, error=str(error), max_attempts=max_attempts) if ids else 0
        report.failures.append({"recipient": ", ".join(recipients), "apps": what, "error": str(error), "gave_up": bool(gave_up)})
        log.error("sending to %s failed: %s (%s)", ", ".join(recipients), error, "gave up: max_attempts reached" if gave_up else "will retry next run")
        return False
    if ids:
        queue.mark_sent(db, ids, now=iso(utc_now()))
    for address, reason in refused.items():
        report.failures.append({"recipient": address, "apps": what, "error": reason, "gave_up": False})
        log.error("the server refused %s for the %s: %s", address, what, reason)
    return True
