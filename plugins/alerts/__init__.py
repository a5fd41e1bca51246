"""The alerts plugin: tell staff, kindly and exactly once, about unapproved apps they connected.

After each succeeded scan (`scan_finished`) the findings the inventory shows become
pending rows in `alerts`. `app-inventory alerts send` emails each person one
message listing all their pending findings, then sends IT a digest; `alerts list`
shows the queue; `alerts retry` puts failed alerts back in it. The parts:

    alerts_queue    the `alerts` table: findings -> rows, and the send protocol
    alerts_compose  addresses, template context, safe EmailMessages
    alerts_digest   what the IT digest reports
    alerts_smtp     smtplib (STARTTLS, SSL or none) and the dry-run outbox
    alerts_send     one run, from queue to digest
    alerts_templates/  the shipped Jinja2 templates (overridable: [alerts] template_dir)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
import filelock

from scanner import ConfigKey, hookimpl, iso, utc_now

from . import queue
from .compose import one_line
from .send import SendLocked, send_alerts

log = logging.getLogger(__name__)

SETTINGS = {
    "smtp_host": ConfigKey("str", "localhost"),
    "smtp_port": ConfigKey("int", 587, minimum=1),
    "smtp_security": ConfigKey("choice", "starttls", choices=("starttls", "ssl", "none")),
    "smtp_username": ConfigKey("str"),
    "smtp_password_env": ConfigKey("str"),
    "smtp_timeout": ConfigKey("int", 30, minimum=1),
    "from_address": ConfigKey("str"),
    "reply_to": ConfigKey("str"),
    "it_digest_to": ConfigKey("list[str]", []),
    "notify_students": ConfigKey("bool", False),
    "request_form_url": ConfigKey("url"),
    "contact": ConfigKey("str"),
    "template_dir": ConfigKey("path"),
    "max_attempts": ConfigKey("int", 5, minimum=1),
    "reminder_days": ConfigKey("int", 0, minimum=0),
    "alert_outside_audience": ConfigKey("bool", True),
}


@hookimpl
def register_config_sections(register):
    """The [alerts] section: outgoing mail and whom to tell."""
    register("alerts", SETTINGS)


@hookimpl
def scan_finished(db, scan, changes, config):
    """Queue an alert for every new finding, and suppress pending ones that went away (after an
    incremental scan, among the findings of the accounts and apps it touched)."""
    now = scan.get("finished_at") or iso(utc_now())
    counts = queue.sync_configured(db, now, config.section("alerts"), scope=getattr(changes, "affected", None))
    if any(counts.values()):
        log.info("alerts: %d queued, %d suppressed, %d back in the queue", counts["queued"], counts["suppressed"], counts["revived"])


@hookimpl
def catalog_changed(db, config):
    """A decision or an import changed the catalog: queue the findings it made, suppress those it resolved."""
    counts = queue.sync_configured(db, iso(utc_now()), config.section("alerts"))
    if any(counts.values()):
        log.info("alerts: %d queued, %d suppressed, %d back in the queue", counts["queued"], counts["suppressed"], counts["revived"])


@hookimpl
def register_commands(cli):
    """Add the `alerts` command group."""
    cli.add_command(alerts)


class NoInventory(click.ClickException):
    exit_code = 2


def open_inventory(app):
    """The inventory with the plugin's tables; never creates an empty one by mistake."""
    if not Path(app.db_path).exists():
        raise NoInventory(f"{app.db_path}: no inventory here; run `app-inventory scan` first (or pass --db)")
    db = app.open_db()
    queue.ensure_alerts_tables(db)
    return db


@click.group()
def alerts():
    """Email staff about unapproved apps they connected (once), and IT a digest."""


@alerts.command()
@click.option("--dry-run", is_flag=True, help="Write the messages as .eml files instead of sending them; record nothing.")
@click.option(
    "--outbox", type=click.Path(file_okay=False, path_type=Path), default=Path("outbox"), show_default=True,
    help="Folder for --dry-run messages (one subfolder per run).",
)
@click.option("--limit", type=click.IntRange(min=1), help="Email at most N people in this run; the rest wait for the next run.")
@click.pass_obj
def send(app, dry_run, outbox, limit):
    """Email each person their pending findings in one message, then send IT the digest."""
    open_inventory(app)
    try:
        report = send_alerts(app.db_path, app.config, dry_run=dry_run, outbox=outbox, limit=limit)
    except SendLocked as error:
        raise click.ClickException(str(error)) from None
    for line in summary_lines(report):
        if not app.quiet:
            click.echo(line)
    if not report.ok:
        raise click.ClickException(
            "some messages were not sent; their alerts stay in the queue for the next run "
            "(see `app-inventory alerts list`)"
        )


def summary_lines(report) -> list[str]:
    """What `alerts send` prints."""
    lines = []
    if report.dry_run:
        folder = report.written[0].parent if report.written else "(nothing to write)"
        lines.append(
            f"Dry run: wrote {len(report.written)} message(s) to {folder}: {report.people_emailed} people, "
            f"{report.findings_emailed} findings{', and the IT digest' if report.digest_status == 'written' else ''}. "
            "Nothing was sent and nothing was recorded."
        )
    else:
        lines.append(f"Emailed {report.people_emailed} people about {report.findings_emailed} findings through {report.server}.")
        if report.digest_status == "sent":
            lines.append(f"IT digest sent, reporting {report.findings_to_it} findings not emailed to a person.")
    if report.digest_status == "not configured":
        waiting = f"; {report.it_waiting} findings for IT are waiting" if report.it_waiting else ""
        lines.append(f"No IT digest: [alerts] it_digest_to is empty{waiting}.")
    if report.deferred_people:
        lines.append(f"{report.deferred_people} more people wait for the next run (--limit).")
    for row in report.unconfirmed:
        lines.append(
            f"Alert {row['id']} is unconfirmed: an earlier run stopped while sending it (Message-ID {row['message_id']}). "
            "It is not sent again; check the mail server log, then `app-inventory alerts retry` it if it never arrived."
        )
    for failure in report.failures:
        outcome = "gave up" if failure["gave_up"] else "will retry next run"
        lines.append(f"Not sent to {failure['recipient']} ({one_line(failure['apps'], 80)}): {failure['error']} ({outcome}).")
    if report.server_error:
        lines.append(f"Stopped: {report.server_error}.")
    return lines


LIST_STATUSES = ("pending", "sent", "failed", "unconfirmed", "suppressed")


@alerts.command(name="list")
@click.option(
    "--status", "statuses", multiple=True, type=click.Choice((*LIST_STATUSES, "all")),
    help="Show only these (repeatable). Default: pending, sent and failed (unconfirmed included).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per alert, for scripts.")
@click.pass_obj
def list_command(app, statuses, as_json):
    """Show the alerts: pending, sent, failed (and unconfirmed), or suppressed."""
    db = open_inventory(app)
    wanted = set(LIST_STATUSES) if "all" in statuses else set(statuses or ("pending", "sent", "failed", "unconfirmed"))
    sending_now = _send_running(app.db_path)
    rows = []
    for row in db.query(
        """select alerts.id, alerts.status, alerts.unconfirmed, alerts.sending_since, alerts.kind, apps.name as app,
             apps.provider, users.email, users.role, alerts.recipient, alerts.first_detected, alerts.sent_at,
             alerts.attempts, alerts.message_id, alerts.last_error, alerts.note
           from alerts join apps on apps.id = alerts.app_id left join users on users.id = alerts.user_id
           order by case alerts.status when 'pending' then 0 when 'failed' then 1 when 'sent' then 2 else 3 end, alerts.id"""
    ):
        shown = _shown_status(row, sending_now)
        if shown in wanted or (shown == "sending" and "pending" in wanted):
            rows.append({**row, "status": shown, "app": one_line(row["app"], 60), "last_error": one_line(row["last_error"], 300)})
    if as_json:
        for row in rows:
            click.echo(json.dumps({k: v for k, v in row.items() if k not in ("unconfirmed", "sending_since")}))
        return
    counts = {status: sum(1 for r in rows if r["status"] == status) for status in (*LIST_STATUSES, "sending")}
    click.echo(", ".join(f"{n} {status}" for status, n in counts.items() if n) or "No alerts.")
    if rows:
        click.echo(_table(rows))


def _shown_status(row: dict, sending_now: bool) -> str:
    if row["status"] == "failed" and row["unconfirmed"]:
        return "unconfirmed"
    if row["status"] == "pending" and row["sending_since"]:
        # Claimed: being sent right now, or left by a run that stopped (the next send marks it).
        return "sending" if sending_now else "unconfirmed"
    return row["status"]


def _send_running(db_path: str) -> bool:
    lock = filelock.FileLock(f"{db_path}.alerts.lock", timeout=0)
    try:
        lock.acquire()
    except filelock.Timeout:
        return True
    lock.release()
    return False


def _table(rows: list[dict]) -> str:
    columns = [
        ("ID", lambda r: str(r["id"])),
        ("STATUS", lambda r: r["status"]),
        ("KIND", lambda r: r["kind"]),
        ("APP", lambda r: r["app"]),
        ("ACCOUNT", lambda r: one_line(r["email"] or "(tenant-wide)", 50)),
        ("TO", lambda r: "IT digest" if r["recipient"] == queue.IT_DIGEST else ("person" if r["recipient"] else "")),
        ("DETECTED", lambda r: (r["first_detected"] or "")[:10]),
        ("SENT", lambda r: (r["sent_at"] or "")[:10]),
        ("TRIES", lambda r: str(r["attempts"])),
        ("NOTE", lambda r: r["last_error"] or one_line(r["note"], 120) or (f"Message-ID {r['message_id']}" if r["status"] == "sent" else "")),
    ]
    cells = [[get(row) for _, get in columns] for row in rows]
    widths = [max(len(title), *(len(line[i]) for line in cells)) for i, (title, _) in enumerate(columns)]
    widths[-1] = 0  # the note runs to the end of the line
    out = ["  ".join(title.ljust(width) for (title, _), width in zip(columns, widths)).rstrip()]
    out += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in cells]
    return "\n".join(out)


@alerts.command()
@click.argument("ids", nargs=-1, type=int, required=True)
@click.pass_obj
def retry(app, ids):
    """Put failed or unconfirmed alerts IDS back in the queue (after checking the mail server log)."""
    db = open_inventory(app)
    done = queue.requeue(db, ids)
    click.echo(f"{done} alert(s) back in the queue for the next `alerts send`.")
    if done < len(ids):
        raise click.ClickException("only failed or unconfirmed alerts can be retried; see `app-inventory alerts list --status failed`")
