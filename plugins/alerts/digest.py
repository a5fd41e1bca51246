"""What the IT digest reports after each `alerts send` run (the template context)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlite_utils import Database

from scanner import STATUSES_NEEDING_REVIEW, iso_time

from .compose import STATUS_WORDS, MailSettings, PROVIDER_WORDS, common_context, one_line
from .decisions import open_requests
from .digest_news import DigestNews
from .queue import KIND_CODES, REMINDER, SUPPRESSED, unix

MAX_APPS_LISTED = 15
MAX_ACCOUNTS_PER_APP = 25
MAX_PROBLEMS_LISTED = 50


def previous_digest_at(db: Database) -> str | None:
    """When the last digest the server accepted was started (None before the first)."""
    row = db.execute("select max(started_at) from alert_runs where digest_status = 'sent'").fetchone()
    return row[0] if row else None


def _product_row(row: dict) -> dict[str, Any]:
    """A product_summary row (a catalog entry, or an app no entry names) for the templates."""
    providers = [provider for provider in (row["providers"] or "").split(",") if provider]
    return {
        "name": one_line(row["name"], 120),
        "provider_label": " and ".join(PROVIDER_WORDS.get(p, p.replace("_", " ").title()) for p in providers) or "not in use",
        "status": row["status"],
        "status_words": STATUS_WORDS.get(row["status"], row["status"]),
        "risk": row["risk"],
        "people": row["people"],
        "users": row["people"],  # the name older custom templates use: people, not accounts
        "staff": row["staff"],
        "students": row["students"],
        "tenant_wide": bool(row["tenant_wide"]),
        "id": row["id"],
    }


def _review_statuses() -> tuple[str, list[str]]:
    return ",".join("?" * len(STATUSES_NEEDING_REVIEW)), list(STATUSES_NEEDING_REVIEW)


def top_apps(db: Database) -> list[dict]:
    """Unapproved third-party products in use, most people first (the counts the core keeps on `products`)."""
    marks, statuses = _review_statuses()
    rows = db.query(
        f"""select * from product_summary
            where ownership = 'third_party' and status in ({marks}) and (people > 0 or tenant_wide = 1)
            order by tenant_wide desc, people desc, name limit {MAX_APPS_LISTED}""",
        statuses,
    )
    return [_product_row(row) for row in rows]


def new_apps(db: Database, since: str | None) -> tuple[list[dict], int]:
    """Unapproved products first flagged since the last digest (all of them before the first digest)."""
    marks, statuses = _review_statuses()
    rows = list(db.query(
        f"""select product_summary.*, {iso_time("min(alert_rows.first_detected)")} as first_flagged
            from alert_rows join apps on apps.key = alert_rows.app_key join product_summary on product_summary.id = apps.product_id
            where alert_rows.kind in ({KIND_CODES['unapproved']}, {KIND_CODES['denied']}) and product_summary.status in ({marks})
            group by product_summary.id having first_flagged > ? order by product_summary.people desc, product_summary.name""",
        [*statuses, since or ""],
    ))
    return [_product_row(row) for row in rows[:MAX_APPS_LISTED]], max(0, len(rows) - MAX_APPS_LISTED)


def totals(db: Database, synced_at: str) -> dict[str, int]:
    """Open findings (seen by this run's sync, whatever their alert status), and who holds them."""
    counts = {kind: 0 for kind in ("denied", "unapproved", "outside_audience", "scope_creep")}
    words = {code: kind for kind, code in KIND_CODES.items()}
    # Findings (not reminders, whose codes are REMINDER and up), not what the district already removed.
    findings = (f"alert_rows.kind < {REMINDER} and alert_rows.kind != {KIND_CODES['access_removed']}"
                f" and alert_rows.status != {SUPPRESSED} and alert_rows.last_detected = ?")
    for kind, count in db.execute(f"select kind, count(*) from alert_rows where {findings} group by kind", [unix(synced_at)]):
        counts[words[kind]] = count
    # Distinct people (accounts that share an address are one), by the person's role.
    people = db.execute(
        f"""select count(distinct people.id), count(distinct case when people.role = 'staff' then people.id end),
             count(distinct case when people.role = 'student' then people.id end)
           from alert_rows join users on users.key = alert_rows.user_key join people on people.id = users.person_id
           where {findings}""",
        [unix(synced_at)],
    ).fetchone()
    return {**counts, "findings": sum(counts.values()), "people": people[0], "staff": people[1], "students": people[2]}


def for_it_groups(it_rows: Sequence[tuple[dict, str]], app_context) -> list[dict]:
    """Findings reported to IT instead of a person, grouped by app and kind."""
    groups: dict[tuple, dict] = {}
    for row, why in it_rows:
        key = (row["app_id"], row["kind"])
        group = groups.setdefault(key, {"app": app_context(row), "kind": row["kind"], "accounts": [], "more": 0})
        if len(group["accounts"]) < MAX_ACCOUNTS_PER_APP:
            account = "every account" if row["user_id"] is None else one_line(row["email"] or row["user_id"], 200)
            group["accounts"].append({"email": account, "role": row["role"] or "", "why": why})
        else:
            group["more"] += 1
    return sorted(groups.values(), key=lambda g: (-len(g["accounts"]) - g["more"], g["app"]["name"].lower()))


def problems(db: Database) -> dict[str, Any]:
    """Unconfirmed sends, alerts that gave up, and scans that failed since the last digest."""
    base = """select alerts.id, alerts.kind, alerts.recipient, alerts.message_id, alerts.last_error, alerts.attempts,
                apps.name as app, users.email from alerts join apps on apps.id = alerts.app_id
                left join users on users.id = alerts.user_id"""
    unconfirmed = [dict(r) for r in db.query(base + f" where alerts.status = 'failed' and alerts.unconfirmed = 1 order by alerts.id limit {MAX_PROBLEMS_LISTED}")]
    failed = [dict(r) for r in db.query(base + f" where alerts.status = 'failed' and alerts.unconfirmed = 0 order by alerts.id desc limit {MAX_PROBLEMS_LISTED}")]
    for row in unconfirmed + failed:
        row["app"] = one_line(row["app"], 120)
        row["last_error"] = one_line(row["last_error"], 300)
    failed_total = db.execute("select count(*) from alerts where status = 'failed' and unconfirmed = 0").fetchone()[0]
    unconfirmed_total = db.execute("select count(*) from alerts where status = 'failed' and unconfirmed = 1").fetchone()[0]
    return {
        "unconfirmed": unconfirmed, "unconfirmed_total": unconfirmed_total,
        "failed": failed, "failed_total": failed_total,
    }


def failed_scans(db: Database, since: str | None) -> list[dict]:
    return [
        {"provider": row["provider"], "started_at": row["started_at"], "error": one_line(row["error"], 300)}
        for row in db.query(
            "select provider, started_at, error from scans where status = 'failed' and started_at > ? order by id",
            [since or ""],
        )
    ]


def digest_context(db: Database, settings: MailSettings, *, run: dict, it_groups: list[dict], since: str | None,
                   news: DigestNews | None = None) -> dict[str, Any]:
    """Everything digest_subject.txt.j2, digest.txt.j2 and digest.html.j2 receive."""
    listed_new, more_new = new_apps(db, since)
    news = news or DigestNews()
    return {
        "posture_regressions": news.regressions,
        "consent_requests": news.requests,
        "revoke_plans": news.plans,
        "dpa_reminders": news.dpa_reminders,
        "open_requests": open_requests(db),
        "since": since,
        "run": run,
        "totals": totals(db, run["started_at"]),
        "new_apps": listed_new,
        "new_apps_more": more_new,
        "top_apps": top_apps(db),
        "for_it": it_groups,
        "for_it_count": sum(len(g["accounts"]) + g["more"] for g in it_groups),
        "problems": problems(db),
        "failed_scans": failed_scans(db, since),
        **common_context(settings),
    }
