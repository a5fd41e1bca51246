"""The `alerts` table: which findings are waiting, sent, failed or suppressed.

One row per (account, app, kind): exactly-once holds per finding, while a person with
several accounts gets their findings in one email (plugins.alerts.send groups the
pending rows by person). The plugin is the only writer. Rows come from the
inventory's own `unapproved_usage` table and `scope_creep` view, so the alerts follow
exactly the rules IT sees in Datasette:

    unapproved        an unreviewed or pending third-party app
    denied            an app the district reviewed and did not approve
    outside_audience  a conditional app used outside its audience (a staff-only app
                      on a student account); [alerts] alert_outside_audience
    scope_creep       an approved app holding scopes the review did not approve
    access_removed    the district removed the app's access (`revoke apply`: a done
                      revoke action of the person's account; never reminded)
    <kind>_reminder   the optional reminder ([alerts] reminder_days) for a sent finding

Tenant-wide Microsoft consents (no user) are rows with user_id NULL: nobody to
email, so they go to the IT digest.

Status moves: pending -> sent (the server accepted the message), pending -> failed
(max_attempts reached, an address that is not an address, or an unconfirmed send),
pending -> suppressed (the finding went away before it was sent; it comes back to
pending if the finding does). `sending_since` is set, and committed, just before a
message goes to the SMTP server and cleared right after: a row still carrying it
when the next run starts is a send whose outcome nobody recorded (see
`mark_unconfirmed`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlite_utils import Database, Migrations

from scanner import UNAPPROVED_IDS, AffectedFindings, iso, parse_iso

migrations = Migrations("alerts_email")

KINDS = ("denied", "unapproved", "outside_audience", "scope_creep", "access_removed")
REMINDER_SUFFIX = "_reminder"
IT_DIGEST = "it-digest"  # `recipient` of findings reported to IT instead of a person
STATUSES = ("pending", "sent", "failed", "suppressed")


@migrations(name="0001_alerts")
def m0001_alerts(db: Database) -> None:
    db["alerts"].create(
        {
            "id": int, "user_id": str, "app_id": str, "kind": str, "status": str,
            "grant_id": str, "details": str,
            "first_detected": str, "last_detected": str, "sent_at": str,
            "attempts": int, "message_id": str, "last_error": str,
            "sending_since": str, "unconfirmed": int, "recipient": str,
            "suppressed_at": str, "note": str,
        },
        pk="id",
        not_null={"app_id", "kind", "status", "first_detected", "last_detected", "attempts", "unconfirmed"},
        defaults={"status": "pending", "attempts": 0, "unconfirmed": 0},
        foreign_keys=[("user_id", "users", "id"), ("app_id", "apps", "id")],
    )
    # One row per (user, app, kind); a tenant-wide finding has no user, hence ifnull().
    db.execute("create unique index alerts_finding on alerts (app_id, ifnull(user_id, ''), kind)")
    db["alerts"].create_index(["status"])
    db["alerts"].create_index(["user_id"])
    db["alert_runs"].create(
        {
            "id": int, "started_at": str, "finished_at": str,
            "people_emailed": int, "findings_emailed": int, "findings_to_it": int,
            "send_failures": int, "unconfirmed": int,
            "digest_message_id": str, "digest_status": str, "digest_error": str,
        },
        pk="id",
        not_null={"started_at"},
    )


def ensure_alerts_tables(db: Database) -> None:
    """Create or upgrade the plugin's tables (idempotent; run whenever the plugin opens the db)."""
    from .digest_news import migrations as digest_migrations  # here: digest_news needs compose, which needs this module

    migrations.apply(db)
    digest_migrations.apply(db)  # what the IT digest has told (a set of its own, numbered on its own)


def stage_findings(db: Database, kinds: Sequence[str], scope: AffectedFindings | None = None) -> None:
    """Fill temp._alert_findings with the findings the inventory shows right now, for these
    kinds: one row per (user, app, kind); with a scope, only the findings of its accounts and
    apps. Done in SQL, so a district of any size costs no memory."""
    kind_list = ",".join("?" * len(kinds))
    usage, tenant_wide, in_scope = _finding_sources(db, scope)
    # The core holds the rule (third-party, status, audience): unapproved_usage has the
    # per-account rows, unapproved_grants the tenant-wide consents (no user) by the same
    # rule. Several grants of one user and app (Microsoft resources) are one finding.
    db.execute(
        f"""insert into temp._alert_findings (app_id, user_key, kind, user_id, grant_id, details)
            select app_id, ifnull(user_id, ''), kind, user_id, min(grant_id), '{{}}' from (
              select app_id, user_id, grant_id,
                case when reason = 'outside audience' then 'outside_audience'
                     when status = 'denied' then 'denied' else 'unapproved' end as kind
              from (
                {usage}
                union all
                {tenant_wide}
              )
            )
            where kind in ({kind_list})
            group by app_id, user_id, kind""",
        kinds,
    )
    if "access_removed" in kinds and db["revoke_actions"].exists():
        # What `revoke apply` removed from a person's account: one finding per account and app,
        # however many grants (Microsoft resources) or plans it took.
        db.execute(
            """insert into temp._alert_findings (app_id, user_key, kind, user_id, grant_id, details)
               select app_id, user_id, 'access_removed', user_id, min(grant_id),
                 json_object('plan_id', max(plan_id), 'removed_at', max(finished_at))
               from revoke_actions
               where action = 'revoke' and state = 'done' and user_id is not null""" + in_scope() + """
               group by app_id, user_id"""
        )
    if "scope_creep" in kinds:
        # Scope creep is only news for an app the district approved: an unapproved one is
        # already a finding on its own. The view does not filter ownership; alerts do.
        db.execute(
            """insert into temp._alert_findings (app_id, user_key, kind, user_id, grant_id, details)
               select scope_creep.app_id, ifnull(scope_creep.user_id, ''), 'scope_creep', scope_creep.user_id,
                 min(scope_creep.grant_id), json_object('extra_scopes', json_group_array(distinct extra.value))
               from scope_creep join apps on apps.id = scope_creep.app_id, json_each(scope_creep.extra_scopes) as extra
               where apps.ownership = 'third_party' and apps.status in ('approved', 'conditional')"""
            + in_scope("scope_creep.") + """
               group by scope_creep.app_id, scope_creep.user_id"""
        )


_FINDING_COLUMNS = "select app_id, user_id, grant_id, reason, status from"
_NO_FINDINGS = "select null, null, null, null, null where 0"


def _finding_sources(db: Database, scope: AffectedFindings | None):
    """What stage_findings reads: (the unapproved_usage rows, the tenant-wide consents, a
    function giving the condition that keeps a table's rows in scope). Without a scope,
    everything; with one, the rows of its accounts and of its apps (through the account and
    app id indexes), each part only when it has any: an empty `in` would still read the
    whole table."""
    usage = f"{_FINDING_COLUMNS} ({UNAPPROVED_IDS})"
    tenant_wide = f"{_FINDING_COLUMNS} unapproved_grants where user_id is null"
    if scope is None:
        return usage, tenant_wide, lambda table="": ""
    accounts, apps = scope.counts(db)
    users_in, apps_in = f"user_id in ({scope.users_sql})", f"app_id in ({scope.apps_sql})"
    parts = ([f"{usage} where {users_in}"] if accounts else []) + ([f"{usage} where {apps_in} and not {users_in}"] if apps else [])

    def in_scope(table: str = "") -> str:
        if apps:
            return f" and ({table}{users_in} or {table}{apps_in})"
        return f" and {table}{users_in}"

    return (" union all ".join(parts) or _NO_FINDINGS, f"{tenant_wide} and {apps_in}" if apps else _NO_FINDINGS, in_scope)


# A row matches a finding on (app, user, base kind): a reminder follows its finding.
_MATCHES_FINDING = """
    select 1 from temp._alert_findings as f
    where f.app_id = alerts.app_id and f.user_key = ifnull(alerts.user_id, '')
      and f.kind = replace(alerts.kind, '_reminder', '')
"""


def sync_alerts(db: Database, now: str, kinds: Sequence[str], scope: AffectedFindings | None = None) -> dict[str, int]:
    """Bring the `alerts` rows of these kinds in line with the inventory, in one transaction.

    New findings become pending rows; pending rows whose finding went away (grant
    revoked, app approved) become suppressed; suppressed rows whose finding is back
    become pending again. Rows being sent right now, sent and failed rows are never
    touched. Returns counts of queued, suppressed and revived rows.

    With a scope (an incremental scan's ScanChanges.affected), only the rows of its
    accounts and apps: nothing else can have changed. Their last_detected is then the
    only one moved to `now`; `alerts send` syncs everything first, so reminders, the
    digest and retention (which read last_detected) see every finding current.
    """
    ensure_alerts_tables(db)
    kind_list = ",".join("?" * len(kinds))
    # The rows in scope, found through the user_id and (app_id, ...) indexes: an update
    # filtered on both columns at once would read every row.
    in_scope = "" if scope is None else (
        f" and alerts.id in (select id from alerts where user_id in ({scope.users_sql})"
        f" union select id from alerts where app_id in ({scope.apps_sql}))")
    with db.atomic():
        db.execute(
            "create temp table if not exists _alert_findings "
            "(app_id text, user_key text, kind text, user_id text, grant_id text, details text)"
        )
        db.execute("create index if not exists temp._alert_findings_key on _alert_findings (app_id, user_key, kind)")
        db.execute("delete from temp._alert_findings")
        stage_findings(db, kinds, scope)
        # Existing rows first, so the new ones (already current) are not written twice.
        db.execute(
            f"""update alerts set last_detected = ?, grant_id = f.grant_id, details = f.details
               from temp._alert_findings as f
               where f.app_id = alerts.app_id and f.user_key = ifnull(alerts.user_id, '')
                 and f.kind = replace(alerts.kind, '_reminder', ''){in_scope}""",
            [now],
        )
        queued = db.execute(
            """insert or ignore into alerts (user_id, app_id, kind, status, grant_id, details, first_detected, last_detected, attempts, unconfirmed)
               select user_id, app_id, kind, 'pending', grant_id, details, ?, ?, 0, 0 from temp._alert_findings""",
            [now, now],
        ).rowcount
        suppressed = db.execute(
            f"""update alerts set status = 'suppressed', suppressed_at = ?,
                  note = case when exists (
                      select 1 from grants where grants.app_id = alerts.app_id and grants.user_id is alerts.user_id
                        and grants.revoked_at is null)
                    then 'no longer a finding before it was sent: the app''s catalog status changed'
                    else 'the app''s access was removed before the alert was sent' end
                where status = 'pending' and sending_since is null
                  and replace(kind, '_reminder', '') in ({kind_list})
                  and not exists ({_MATCHES_FINDING}){in_scope}""",
            [now, *kinds],
        ).rowcount
        revived = db.execute(
            f"""update alerts set status = 'pending', suppressed_at = null, note = null
                where status = 'suppressed' and replace(kind, '_reminder', '') in ({kind_list})
                  and exists ({_MATCHES_FINDING}){in_scope}""",
            list(kinds),
        ).rowcount
    return {"queued": queued, "suppressed": suppressed, "revived": revived}


def sync_configured(db: Database, now: str, settings: dict, scope: AffectedFindings | None = None) -> dict[str, int]:
    """sync_alerts for the kinds the [alerts] settings turn on (after a scan, only the scan's
    scope if it has one, and before a send); pending rows of a kind turned off are suppressed."""
    outside_audience = settings["alert_outside_audience"]
    counts = sync_alerts(db, now, [k for k in KINDS if k != "outside_audience" or outside_audience], scope)
    if not outside_audience:
        hold_kind(db, "outside_audience", now, "not sent: [alerts] alert_outside_audience = false")
    return counts


def hold_kind(db: Database, kind: str, now: str, note: str) -> int:
    """Suppress the pending rows of a kind the configuration turned off."""
    with db.atomic():
        return db.execute(
            """update alerts set status = 'suppressed', suppressed_at = ?, note = ?
               where status = 'pending' and sending_since is null and replace(kind, '_reminder', '') = ?""",
            [now, note, kind],
        ).rowcount


def queue_reminders(db: Database, now: str, reminder_days: int) -> int:
    """Queue one reminder for each finding emailed to a person at least reminder_days ago
    that the latest sync still saw (its last_detected is `now`)."""
    if reminder_days <= 0:
        return 0
    cutoff = _iso_days_before(now, reminder_days)
    with db.atomic():
        return db.execute(
            """insert or ignore into alerts (user_id, app_id, kind, status, grant_id, details, first_detected, last_detected, attempts, unconfirmed)
               select user_id, app_id, kind || '_reminder', 'pending', grant_id, details, ?, ?, 0, 0 from alerts
               where status = 'sent' and substr(kind, -9) != '_reminder' and user_id is not null
                 and kind != 'access_removed' and recipient != ? and sent_at <= ? and last_detected = ?""",
            [now, now, IT_DIGEST, cutoff, now],
        ).rowcount


def purge_alerts(db: Database, now: str, history_days: int) -> int:
    """Retention: forget finished alerts whose finding has not been seen for history_days.

    A finding still seen is kept, sent or not, so it is never emailed twice."""
    cutoff = _iso_days_before(now, history_days)
    with db.atomic():
        db.execute("delete from alert_runs where started_at < ?", [cutoff])
        return db.execute("delete from alerts where status != 'pending' and last_detected < ?", [cutoff]).rowcount


def _iso_days_before(now: str, days: int) -> str:
    return iso(parse_iso(now) - dt.timedelta(days=days))


# -- the send protocol: claim, then sent or failed ------------------------------------------

def _in(ids: Sequence[int]) -> str:
    return ",".join("?" * len(ids))


class _Changed(Exception):
    pass


def claim(db: Database, ids: Sequence[int], *, message_id: str, recipient: str, now: str) -> bool:
    """Record, and commit, that these rows are about to be handed to the SMTP server.

    False (and nothing recorded) when one of them changed since it was read, e.g. a
    scan finishing meanwhile suppressed it: that message is left for the next run."""
    try:
        with db.atomic():
            cursor = db.execute(
                f"""update alerts set sending_since = ?, message_id = ?, recipient = ?, attempts = attempts + 1
                    where id in ({_in(ids)}) and status = 'pending' and sending_since is null""",
                [now, message_id, recipient, *ids],
            )
            if cursor.rowcount != len(ids):
                raise _Changed
    except _Changed:
        return False
    return True


def mark_sent(db: Database, ids: Sequence[int], *, now: str) -> None:
    """The server accepted the message: these rows are done."""
    with db.atomic():
        db.execute(
            f"""update alerts set status = 'sent', sent_at = ?, sending_since = null, last_error = null
                where id in ({_in(ids)})""",
            [now, *ids],
        )


def mark_attempt_failed(db: Database, ids: Sequence[int], *, error: str, max_attempts: int) -> int:
    """The send failed: back to pending for the next run, or failed once max_attempts is reached.
    Returns how many rows gave up."""
    with db.atomic():
        db.execute(
            f"""update alerts set sending_since = null, last_error = ?,
                  status = case when attempts >= ? then 'failed' else 'pending' end
                where id in ({_in(ids)})""",
            [error[:500], max_attempts, *ids],
        )
        return db.execute(f"select count(*) from alerts where id in ({_in(ids)}) and status = 'failed'", list(ids)).fetchone()[0]


def mark_undeliverable(db: Database, ids: Sequence[int], *, error: str, recipient: str | None) -> None:
    """Retrying cannot help (the address is not an address): failed at once."""
    with db.atomic():
        db.execute(
            f"update alerts set status = 'failed', last_error = ?, recipient = ? where id in ({_in(ids)})",
            [error[:500], recipient, *ids],
        )


def mark_unconfirmed(db: Database, now: str) -> list[dict]:
    """Rows left claimed by a run that stopped between handing a message to the server
    and recording the answer (a crash, a kill, a power cut).

    Nobody knows whether the server accepted that message. The requirement is
    at most once, so these are never sent again automatically: they become
    `failed` with `unconfirmed = 1`, stay visible in `alerts list` and the IT
    digest with their Message-ID (to look up in the mail server's log), and
    `alerts retry` puts them back in the queue when IT finds they were not
    delivered. Call only while holding the send lock, so a running send is
    never mistaken for a stopped one.
    """
    with db.atomic():
        return [
            dict(zip(("id", "message_id", "recipient"), row))
            for row in db.execute(
                """update alerts set status = 'failed', unconfirmed = 1,
                     last_error = 'unconfirmed: the run stopped while this was being sent (at ' || sending_since ||
                       '); it may have been delivered; check the mail server log for its Message-ID',
                     sending_since = null
                   where status = 'pending' and sending_since is not null
                   returning id, message_id, recipient"""
            )
        ]


def requeue(db: Database, ids: Sequence[int]) -> int:
    """Put failed rows (gave up, or unconfirmed) back in the queue with a fresh attempt count."""
    with db.atomic():
        return db.execute(
            f"""update alerts set status = 'pending', attempts = 0, unconfirmed = 0, last_error = null,
                  note = 'requeued by IT'
                where id in ({_in(ids)}) and status = 'failed'""",
            list(ids),
        ).rowcount


# -- reading ----------------------------------------------------------------------------------

# A row per alert, with its account (users) and the person the account belongs to (people):
# the person is who gets the email, at their primary address, with their role.
# Every row has its app, but a decision on an app people asked for that nobody uses yet (a
# provider's request: plugins.alerts.decisions) has only its catalog entry, named in the details.
ALERT_ROWS = """
select alerts.*, apps.name as app_name, apps.provider, apps.status as app_status, apps.publisher,
  apps.verified_publisher, apps.homepage, apps.risk as app_risk, apps.client_id,
  users.email, users.name as user_name, users.role, users.suspended,
  coalesce(users.person_id, users.id) as person_id, coalesce(people.email, users.email) as person_email,
  coalesce(nullif(people.name, ''), users.name) as person_name, coalesce(people.role, users.role) as person_role,
  catalog.alternative, catalog.audience, catalog.notes as catalog_notes, catalog.dpa_url,
  catalog.status_original, catalog.name as catalog_name,
  grants.scopes as grant_scopes, grants.first_seen as grant_first_seen, grants.last_used as grant_last_used,
  grants.tenant_wide
from alerts
  left join apps on apps.id = alerts.app_id
  left join users on users.id = alerts.user_id
  left join people on people.id = users.person_id
  left join catalog on catalog.id = coalesce(apps.catalog_id, json_extract(alerts.details, '$.catalog_id'))
  left join grants on grants.id = alerts.grant_id
"""


def pending_rows(db: Database) -> list[dict]:
    """Pending rows, not being sent, with what composing a message needs."""
    return list(db.query(ALERT_ROWS + " where alerts.status = 'pending' and alerts.sending_since is null order by alerts.id"))


def first_sent_at(db: Database, row: dict) -> str | None:
    """For a reminder row: when the finding it follows was emailed."""
    base = db.execute(
        "select sent_at from alerts where app_id = ? and ifnull(user_id, '') = ? and kind = ?",
        [row["app_id"], row["user_id"] or "", row["kind"].removesuffix(REMINDER_SUFFIX)],
    ).fetchone()
    return base[0] if base else None
