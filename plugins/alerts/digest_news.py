"""What the IT digest tells once: consent settings that went from pass to fail, new
requests for admin consent, and agreements reaching 90, 30 and 0 days before they expire.

The core keeps every scan's posture findings, each with the previous scan's result for
the same check and scope (`posture.previous_result`), and every consent request. A
regression is a row that passed before and fails now; a new request is one still waiting
for a decision that no digest has told about. `digest_reported` (this plugin's table)
remembers what a digest the mail server accepted told, so each reaches the digest once
however many scans and runs come between: a digest that fails, or a dry run (rolled
back), leaves them for the next.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlite_utils import Database, Migrations

from .compose import PROVIDER_WORDS, STATUS_WORDS, one_line
from .decisions import dpa_reminders

migrations = Migrations("alerts_digest_news")

REGRESSION, REQUEST, PLAN = "posture_regression", "consent_request", "revoke_plan"
MAX_REQUESTERS_LISTED = 10
_OPEN = "lower(consent_requests.status) in ('inprogress', 'initializing')"


@migrations(name="0001_digest_reported")
def m0001_digest_reported(db: Database) -> None:
    db["digest_reported"].create(
        {"kind": str, "item_id": str, "reported_at": str, "message_id": str},
        pk=("kind", "item_id"),
        not_null={"reported_at"},
    )


@dataclass
class DigestNews:
    """The regressions and new requests one digest tells about, and the keys to mark once it is sent."""

    regressions: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)  # one entry per app
    plans: list[dict[str, Any]] = field(default_factory=list)  # revoke plans applied (app-inventory revoke)
    dpa_reminders: list[dict[str, Any]] = field(default_factory=list)  # 90, 30 and 0 days before, once each
    keys: list[tuple[str, str]] = field(default_factory=list)


def collect(db: Database, today: dt.date | None = None) -> DigestNews:
    """Everything not told yet (each key once). The plugin's tables exist (queue.ensure_alerts_tables)."""
    news = DigestNews()
    for row in db.query(
        f"""select posture.id, posture.provider, posture.check_id, posture.title, posture.scope_kind, posture.scope,
              posture.requirement, posture.expected, posture.actual, posture.fix, posture.checked_at,
              (select now.result from posture_current as now where now.provider = posture.provider
                 and now.check_id = posture.check_id and now.scope_kind = posture.scope_kind
                 and now.scope = posture.scope) as result_now
            from posture join scans on scans.id = posture.scan_id and scans.status = 'succeeded'
            where posture.previous_result = 'pass' and posture.result = 'fail'
              and not exists (select 1 from digest_reported where kind = '{REGRESSION}'
                              and item_id = cast(posture.id as text))
            order by posture.id"""
    ):
        news.keys.append((REGRESSION, str(row["id"])))
        news.regressions.append({
            "provider_label": PROVIDER_WORDS.get(row["provider"], row["provider"].title()),
            "check_id": row["check_id"], "title": one_line(row["title"], 160), "requirement": row["requirement"],
            "scope": _scope_words(row["scope_kind"], row["scope"]), "actual": one_line(row["actual"], 300),
            "expected": one_line(row["expected"], 300), "fix": one_line(row["fix"], 400), "since": row["checked_at"],
            "still_failing": row["result_now"] == "fail",
        })
    by_app: dict[str, dict[str, Any]] = {}
    requesters: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in db.query(
        f"""select consent_requests.id, consent_requests.client_id, consent_requests.provider, consent_requests.app_name,
              consent_requests.email, consent_requests.reason, consent_requests.requested_at, users.role,
              summary.status, summary.people
            from consent_requests
              join consent_request_summary as summary
                on summary.provider = consent_requests.provider and summary.client_id = consent_requests.client_id
              left join users on users.id = consent_requests.user_id
            where {_OPEN} and consent_requests.seen_scan_id = (
                select max(id) from scans where status = 'succeeded' and provider = consent_requests.provider)
              and not exists (select 1 from digest_reported where kind = '{REQUEST}' and item_id = consent_requests.id)
            order by summary.people desc, consent_requests.app_name, consent_requests.requested_at"""
    ):
        news.keys.append((REQUEST, row["id"]))
        app = by_app.setdefault(row["client_id"], {
            "name": one_line(row["app_name"], 120), "provider_label": PROVIDER_WORDS.get(row["provider"], row["provider"].title()),
            "status_words": STATUS_WORDS.get(row["status"], row["status"]), "waiting": row["people"], "new": 0, "more": 0,
        })
        app["new"] += 1
        if len(requesters[row["client_id"]]) < MAX_REQUESTERS_LISTED:
            requesters[row["client_id"]].append({"email": one_line(row["email"], 200), "role": row["role"] or "unknown",
                                                 "reason": one_line(row["reason"], 200)})
        else:
            app["more"] += 1
    news.requests = [{**app, "requesters": requesters[client_id]} for client_id, app in by_app.items()]
    news.plans = applied_plans(db, news.keys)
    news.dpa_reminders, keys = dpa_reminders(db, today or dt.date.today())
    news.keys += keys
    return news


def applied_plans(db: Database, keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Revoke plans (and restores) applied and not told yet: who planned, approved and applied
    each, and how its actions ended (the audit view has the detail)."""
    if not db["revoke_plans"].exists():
        return []
    plans = []
    for plan in db.query(
        f"""select revoke_plans.*, (select group_concat(name, ', ') from (
                  select distinct apps.name from revoke_actions join apps on apps.id = revoke_actions.app_id
                  where plan_id = revoke_plans.id order by apps.name)) as apps
            from revoke_plans where status = 'applied'
              and not exists (select 1 from digest_reported where kind = '{PLAN}' and item_id = cast(revoke_plans.id as text))
            order by id"""
    ):
        keys.append((PLAN, str(plan["id"])))
        outcomes = {state: n for state, n in db.execute(
            "select state, count(*) from revoke_actions where plan_id = ? group by state order by state", [plan["id"]])}
        plans.append({
            "id": plan["id"], "kind": plan["kind"], "planned_by": one_line(plan["created_by"], 80),
            "approved_by": one_line(plan["approved_by"], 80), "applied_by": one_line(plan["applied_by"], 80),
            "finished_at": plan["finished_at"], "apps": one_line(plan["apps"], 300),
            "outcomes": ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in outcomes.items()),
        })
    return plans


def mark_reported(db: Database, news: DigestNews, *, now: str, message_id: str | None) -> None:
    """Remember what a digest the mail server accepted told (inside the caller's transaction, if any)."""
    if news.keys:
        db["digest_reported"].insert_all(
            [{"kind": kind, "item_id": item_id, "reported_at": now, "message_id": message_id} for kind, item_id in news.keys],
            ignore=True,
        )


def _scope_words(kind: str, scope: str) -> str:
    if kind == "tenant" or not scope:
        return "the whole tenant"
    return f"org unit {scope}" if kind == "org_unit" else f"group {scope}"
