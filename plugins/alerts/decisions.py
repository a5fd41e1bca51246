"""Telling people what IT decided about the app they asked for, and reminding IT of agreements.

A request that IT decided becomes one `alerts` row of kind "decision" for the requester's
account and the app: the same rows, claim, Message-ID and states as every alert (queue.py),
so each requester gets their decision email exactly once across crashes and reruns. Requests
come from two places: filed in the tool (the core's review_requests, plugins/review), and kept
by a provider (Microsoft's admin-consent workflow, Chrome extension requests: consent_requests,
decided when the catalog entry naming their app changes after the inventory saw them). The
row's details name the request; a later request by the same person for the same app, once
decided, puts the row back to pending with the new decision.

The IT digest lists the requests still open, and reminds IT of each data privacy agreement
90, 30 and 0 days before it expires, once each (digest_reported, as digest_news does).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlite_utils import Database

from scanner import decided_provider_requests

from .compose import STATUS_WORDS, one_line
from .queue import FAILED, KIND_CODES, PENDING, SENT, SUPPRESSED, unix


DECISION = "decision"
DPA_REMINDER = "dpa_reminder"
DPA_REMINDER_DAYS = (90, 30, 0)
MAX_OPEN_REQUESTS_LISTED = 25


def queue_decisions(db: Database, now: str, *, notify_students: bool = False) -> int:
    """A pending `decision` alert for every decided request not yet queued; returns how many.
    A student who asked through a provider is told only with [alerts] notify_students, as
    for every other email (staff alone can ask in the tool)."""
    rows = db.execute(
        f"""select review_requests.id, review_requests.app_id, review_requests.decision, review_requests.decided_at,
             review_requests.person_id
           from review_requests
           where review_requests.status = 'decided' and review_requests.app_id is not null
             and not exists (select 1 from alert_rows where alert_rows.kind = {KIND_CODES[DECISION]}
                             and json_extract(alert_rows.details, '$.request_id') = review_requests.id)
           order by review_requests.id""").fetchall()
    # The requester's account that holds the app (else any of theirs): the alert row's user.
    rows = [(request_id, app_id, decision, decided_at, db.execute(
        """select users.id from users where users.person_id = ?
           order by exists (select 1 from grants where grants.user_id = users.id and grants.app_id = ?) desc, users.id
           limit 1""", [person_id, app_id]).fetchone()) for request_id, app_id, decision, decided_at, person_id in rows]
    decided = [(user[0] if user else None, app_id, {"request_id": request_id, "decision": decision, "decided_at": decided_at})
               for request_id, app_id, decision, decided_at, user in rows]
    told = {request_id for (request_id,) in db.execute(
        f"select json_extract(details, '$.consent_request_id') from alert_rows where kind = {KIND_CODES[DECISION]}")}
    decided += [(request["user_id"], request["app_id"], {
        "consent_request_id": request["id"], "catalog_id": request["catalog_id"], "decision": request["decision"],
        "decided_at": request["decided_at"],
        "app_name": request["app_name"], "reason": request["reason"], "requested_at": request["requested_at"]})
        for request in decided_provider_requests(db)
        if request["id"] not in told and (notify_students or not _is_student(db, request["user_id"]))]
    queued, detected = 0, unix(now)
    with db.atomic():
        for user_id, app_id, details in decided:
            if user_id is None:
                continue
            # By key (plugins.alerts.queue); an app the inventory has not seen, by its id.
            cursor = db.execute(
                f"""insert into alert_rows (user_key, app_key, app_ref, kind, status, details, first_detected, last_detected)
                   select users.key, apps.key, case when apps.key is null then ? end, {KIND_CODES[DECISION]}, {PENDING}, ?, ?, ?
                   from users left join apps on apps.id = ? where users.id = ?
                   on conflict do update set status = {PENDING}, details = excluded.details, last_detected = excluded.last_detected,
                     attempts = 0, unconfirmed = 0, last_error = null, sent_at = null, message_id = null
                   where alert_rows.status in ({SENT}, {FAILED}, {SUPPRESSED}) and alert_rows.sending_since is null""",
                [app_id, json.dumps(details), detected, detected, app_id, user_id])
            queued += cursor.rowcount
    return queued


def _is_student(db: Database, user_id: str | None) -> bool:
    row = db.execute("""select coalesce(people.role, users.role) from users left join people on people.id = users.person_id
                        where users.id = ?""", [user_id]).fetchone()
    return row is not None and row[0] == "student"


def decision_context(db: Database, row: dict[str, Any]) -> dict[str, Any]:
    """What decision.*.j2 receive for one decided request (an alert row of kind decision)."""
    details = json.loads(row["details"] or "{}")
    decision = details.get("decision") or row["app_status"]
    if "consent_request_id" in details:  # a provider's request: what it said was kept in the details
        reason, use, requested_at = details.get("reason"), None, details.get("requested_at")
    else:
        found = db.execute("select reason, use, requested_at from review_requests where id = ?", [details.get("request_id")]).fetchone()
        reason, use, requested_at = found or (None, None, None)
    return {
        "id": row["id"],
        "app": one_line(row["catalog_name"] or row["app_name"] or details.get("app_name"), 120),
        "decision": decision,
        "decision_words": STATUS_WORDS.get(decision, decision),
        "audience": row["audience"] or "all",
        "alternative": one_line(row["alternative"], 200),
        "reason": one_line(reason, 300),
        "use": one_line(use, 200),
        "requested_at": requested_at,
    }


def open_requests(db: Database) -> list[dict[str, Any]]:
    """Requests for a review that wait for IT (filed in the tool or kept by a provider), a line each product."""
    rows = db.execute(
        f"""select product_id, max(app_name), count(*), group_concat(distinct source), min(requested_at)
            from requests_for_review where status = 'open'
            group by product_id order by count(*) desc, min(requested_at) limit {MAX_OPEN_REQUESTS_LISTED}""").fetchall()
    return [{"name": one_line(name, 120), "requests": count, "sources": sources, "since": since}
            for _, name, count, sources, since in rows]


def dpa_reminders(db: Database, today: dt.date) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Agreements at or past a reminder day (90, 30, 0 days left) not yet told at that day:
    (the reminders, the digest_reported keys to mark). An agreement first seen at 20 days left
    is told once, as the 30-day reminder; its 90-day one is marked told with it."""
    reminders, keys = [], []
    for entry_id, name, expires, people in db.execute(
        """select id, name, dpa_expires, users from dpa_expiring where dpa_expires >= ? order by dpa_expires""",
        [(today - dt.timedelta(days=30)).isoformat()]):
        try:
            days_left = (dt.date.fromisoformat(expires) - today).days
        except ValueError:
            continue
        due = [days for days in DPA_REMINDER_DAYS if days_left <= days]
        if not due:
            continue
        item_keys = [(DPA_REMINDER, f"{entry_id}:{expires}:{days}") for days in due]
        told = {item for (item,) in db.execute(
            f"select item_id from digest_reported where kind = ? and item_id in ({','.join('?' * len(item_keys))})",
            [DPA_REMINDER, *[item for _, item in item_keys]])}
        if all(item in told for _, item in item_keys):
            continue
        keys += [key for key in item_keys if key[1] not in told]
        reminders.append({"name": one_line(name, 120), "expires": expires, "days_left": days_left, "people": people,
                          "threshold": min(due)})
    return reminders, keys
