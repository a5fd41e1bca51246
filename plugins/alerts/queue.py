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

Since migration 0002 the rows are stored in `alert_rows` by the integer keys of their
account (users.key, 0 for none) and app (apps.key), with Unix times, and the `alerts`
view shows them as before (ids, the grant's id, timestamps as text): about a fifth of the
bytes a row took, which matters where every grant of a large district is a finding.
Since 0003 a kind and a status are small integers (KIND_CODES, plus REMINDER for a
reminder; STATUS_CODES), and a scope creep's extra scopes a list of the core's
`scope_sets` (`extra_scope_set`); the view shows the words, and makes a scope creep's
details ({"extra_scopes": [...]}) from its list.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlite_utils import Database, Migrations

from scanner import (
    GRANT_ID, SCOPE_CREEP_KEYS, TENANT_WIDE_UNAPPROVED_KEYS, UNAPPROVED_KEYS, AffectedFindings, iso, iso_time, parse_iso,
)

migrations = Migrations("alerts_email")

KINDS = ("denied", "unapproved", "outside_audience", "scope_creep", "access_removed")
REMINDER_SUFFIX = "_reminder"
IT_DIGEST = "it-digest"  # `recipient` of findings reported to IT instead of a person
STATUSES = ("pending", "sent", "failed", "suppressed")
REMINDED = tuple(kind for kind in KINDS if kind != "access_removed")  # the kinds [alerts] reminder_days follows up
# How alert_rows stores them: small integers (0 and 1, the commonest, take no bytes in a row).
KIND_CODES = {"unapproved": 0, "scope_creep": 1, "denied": 2, "outside_audience": 3, "access_removed": 4, "decision": 5}
REMINDER = 8  # added to its finding's kind: a reminder's
STATUS_CODES = {status: code for code, status in enumerate(STATUSES)}
PENDING, SENT, FAILED, SUPPRESSED = (STATUS_CODES[status] for status in STATUSES)


def kind_code(kind: str) -> int:
    """How alert_rows stores a kind ("denied", "scope_creep_reminder")."""
    finding = kind.removesuffix(REMINDER_SUFFIX)
    return KIND_CODES[finding] + (REMINDER if finding != kind else 0)


def _kind_words(column: str) -> str:
    words = " ".join(f"when {code} then '{kind}'" for kind, code in KIND_CODES.items())
    return f"(case {column} % {REMINDER} {words} end || case when {column} >= {REMINDER} then '{REMINDER_SUFFIX}' else '' end)"


def _status_words(column: str) -> str:
    return f"(case {column} {' '.join(f'when {code} then {status!r}' for status, code in STATUS_CODES.items())} end)"


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


@migrations(name="0002_alert_rows")
def m0002_alert_rows(db: Database) -> None:
    """The rows by integer keys (see the module's docstring), converted in place.

    A row of an account the inventory has since forgotten (`[retention]`) is forgotten too:
    it could never be sent, and no finding of that account can come back. A decision about
    an app the inventory has not seen keeps the app's id in `app_ref`."""
    db.execute(
        """create table alert_rows (
             id integer primary key,
             user_key integer not null,  -- users.key, 0 for a tenant-wide finding
             app_key integer,            -- apps.key; null for a decision about an app not in the inventory
             app_ref text,               -- that app's id, then
             kind text not null,
             status text not null default 'pending',
             details text,               -- JSON; null for none
             first_detected integer not null, last_detected integer not null,  -- Unix times
             sent_at text, attempts integer not null default 0, message_id text, last_error text,
             sending_since text, unconfirmed integer not null default 0, recipient text,
             suppressed_at text, note text
           )"""
    )
    db.execute(
        """insert into alert_rows (id, user_key, app_key, app_ref, kind, status, details, first_detected, last_detected,
              sent_at, attempts, message_id, last_error, sending_since, unconfirmed, recipient, suppressed_at, note)
            select alerts.id, coalesce(users.key, 0), apps.key, case when apps.key is null then alerts.app_id end,
              alerts.kind, alerts.status, nullif(alerts.details, '{}'),
              cast(strftime('%s', alerts.first_detected) as integer), cast(strftime('%s', alerts.last_detected) as integer),
              alerts.sent_at, alerts.attempts, alerts.message_id, alerts.last_error, alerts.sending_since,
              alerts.unconfirmed, alerts.recipient, alerts.suppressed_at, alerts.note
            from alerts
              left join apps on apps.id = alerts.app_id
              left join users on users.id = alerts.user_id
            where alerts.user_id is null or users.key is not null"""
    )
    db["alerts"].drop()
    # One row per (account, app, kind), which also finds an account's rows; a decision about an
    # app not in the inventory by its id. Nothing else: what reads by status or by app alone
    # (a send, the digest, retention) reads every row once, and an index would cost a third
    # of the rows' own size again.
    db.execute("create unique index alert_rows_finding on alert_rows (user_key, app_key, kind)")
    db.execute("create unique index alert_rows_finding_ref on alert_rows (app_ref, user_key, kind) where app_key is null")


@migrations(name="0003_compact_rows")
def m0003_compact_rows(db: Database) -> None:
    """Kinds and statuses as small integers (KIND_CODES, STATUS_CODES), and a scope creep's
    extra scopes by the key of their list in scope_sets, converted in place: as text they
    were a third of a row and half its index entry, and a scope creep's details repeated
    the same few lists (docs/scale.md: on disk). The alerts view shows the words."""
    db.execute("drop view if exists alerts")
    db.execute("drop index alert_rows_finding")
    db.execute("drop index alert_rows_finding_ref")
    db.execute("alter table alert_rows rename to alert_rows_before")
    db.execute(
        """create table alert_rows (
             id integer primary key,
             user_key integer not null,  -- users.key, 0 for a tenant-wide finding
             app_key integer,            -- apps.key; null for a decision about an app not in the inventory
             app_ref text,               -- that app's id, then
             kind integer not null,      -- KIND_CODES, plus REMINDER for a reminder
             status integer not null default 0,  -- STATUS_CODES
             details text,               -- JSON; null for none
             extra_scope_set integer,    -- a scope creep's extra scopes: scope_sets.key
             first_detected integer not null, last_detected integer not null,  -- Unix times
             sent_at text, attempts integer not null default 0, message_id text, last_error text,
             sending_since text, unconfirmed integer not null default 0, recipient text,
             suppressed_at text, note text
           )"""
    )
    creep = ("kind in ('scope_creep', 'scope_creep_reminder') and json_valid(details)"
             " and details = json_object('extra_scopes', json(json_extract(details, '$.extra_scopes')))")
    db.execute("insert or ignore into scope_sets (scopes)"
               f" select distinct json_extract(details, '$.extra_scopes') from alert_rows_before where {creep}")
    db.execute(
        f"""insert into alert_rows (id, user_key, app_key, app_ref, kind, status, details, extra_scope_set, first_detected,
              last_detected, sent_at, attempts, message_id, last_error, sending_since, unconfirmed, recipient, suppressed_at, note)
            select id, user_key, app_key, app_ref,
              case replace(kind, '_reminder', '') when 'unapproved' then 0 when 'scope_creep' then 1 when 'denied' then 2
                when 'outside_audience' then 3 when 'access_removed' then 4 when 'decision' then 5 end
                + case when substr(kind, -9) = '_reminder' then 8 else 0 end,
              case status when 'pending' then 0 when 'sent' then 1 when 'failed' then 2 when 'suppressed' then 3 end,
              case when {creep} then null else details end,
              case when {creep} then (select key from scope_sets where scopes = json_extract(details, '$.extra_scopes')) end,
              first_detected, last_detected, sent_at, attempts, message_id, last_error, sending_since, unconfirmed, recipient,
              suppressed_at, note
            from alert_rows_before"""
    )
    db.execute("drop table alert_rows_before")
    db.execute("create unique index alert_rows_finding on alert_rows (user_key, app_key, kind)")
    db.execute("create unique index alert_rows_finding_ref on alert_rows (app_ref, user_key, kind) where app_key is null")


def unix(moment: str) -> int:
    """A timestamp in the inventory's format as the Unix time `alert_rows` stores."""
    return int(parse_iso(moment).timestamp())


# The grant a row is about: of its account and app, an active one first (several are
# Microsoft resources or permission types of one finding). A decision is about no grant.
_ITS_GRANT = f"""from grant_rows as g where g.user_key = a.user_key and g.app_key = a.app_key and a.kind != {KIND_CODES['decision']}
  order by g.revoked_at is not null, g.resource, g.application limit 1"""

# The alerts view: a row of alert_rows as people read it (the columns docs/tables.md lists).
ALERT_COLUMNS = f"""
  a.id, users.id as user_id, coalesce(apps.id, a.app_ref) as app_id, {_kind_words("a.kind")} as kind,
  {_status_words("a.status")} as status,
  (select {GRANT_ID.format(provider="apps.provider", user="users.id", client="apps.client_id", resource="g.resource",
                           application="g.application")} {_ITS_GRANT}) as grant_id,
  case when a.extra_scope_set is null then coalesce(a.details, '{{}}') else json_object('extra_scopes',
    json((select scope_sets.scopes from scope_sets where scope_sets.key = a.extra_scope_set))) end as details,
  {iso_time("a.first_detected")} as first_detected, {iso_time("a.last_detected")} as last_detected,
  a.sent_at, a.attempts, a.message_id, a.last_error, a.sending_since, a.unconfirmed, a.recipient,
  a.suppressed_at, a.note"""
_ALERT_JOINS = """from alert_rows as a
  left join apps on apps.key = a.app_key
  left join users on users.key = a.user_key"""
ALERTS_VIEW = f"select{ALERT_COLUMNS}\n{_ALERT_JOINS}"


def ensure_alerts_tables(db: Database) -> None:
    """Create or upgrade the plugin's tables and its view (idempotent; run whenever the plugin opens the db)."""
    from .digest_news import migrations as digest_migrations  # here: digest_news needs compose, which needs this module

    migrations.apply(db)
    digest_migrations.apply(db)  # what the IT digest has told (a set of its own, numbered on its own)
    # Made again only when it differs (a new version, or the core's migrations dropped it):
    # every other opening reads, so a send and a scan never wait on each other for it.
    current = db.execute("select sql from sqlite_master where type = 'view' and name = 'alerts'").fetchone()
    if current is None or not current[0].endswith(ALERTS_VIEW):
        db.create_view("alerts", ALERTS_VIEW, replace=True)


def stage_findings(db: Database, kinds: Sequence[str], scope: AffectedFindings | None = None) -> None:
    """Fill temp._alert_findings with the findings the inventory shows right now, for these
    kinds: one row per (account, app, kind), by key; with a scope, only the findings of its
    accounts and apps. Done in SQL, so a district of any size costs no memory."""
    codes = [KIND_CODES[kind] for kind in kinds]
    usage, in_scope, creep_scopes = _finding_sources(db, scope)
    # The core holds the rule (third-party, status, audience) and applies it to the accounts'
    # grants and the tenant-wide consents alike. Several grants of one account and app
    # (Microsoft resources) are one finding.
    db.execute(
        f"""insert into temp._alert_findings (app_key, user_key, kind, details)
            select app_key, user_key, kind, null from (
              select app_key, user_key,
                case when reason = 'outside audience' then {KIND_CODES['outside_audience']}
                     when status = 'denied' then {KIND_CODES['denied']} else {KIND_CODES['unapproved']} end as kind
              from ({usage})
            )
            where kind in ({_in(codes)})
            group by app_key, user_key, kind""",
        codes,
    )
    if "access_removed" in kinds and db["revoke_actions"].exists():
        # What `revoke apply` removed from a person's account: one finding per account and app,
        # however many grants (Microsoft resources) or plans it took.
        db.execute(
            f"""insert into temp._alert_findings (app_key, user_key, kind, details)
               select apps.key, users.key, {KIND_CODES['access_removed']},
                 json_object('plan_id', max(revoke_actions.plan_id), 'removed_at', max(revoke_actions.finished_at))
               from revoke_actions
                 join apps on apps.id = revoke_actions.app_id
                 join users on users.id = revoke_actions.user_id
               where revoke_actions.action = 'revoke' and revoke_actions.state = 'done'"""
            + in_scope("revoke_actions.") + """
               group by apps.key, users.key"""
        )
    if "scope_creep" in kinds:
        # Scope creep is only news for an app the district approved: an unapproved one is
        # already a finding on its own. The core's rule does not filter ownership; alerts do.
        approved = "apps.ownership = 'third_party' and apps.status in ('approved', 'conditional')"
        for where in creep_scopes:
            db.execute(
                f"""insert into temp._alert_findings (app_key, user_key, kind, extra_scopes)
                    select creep.app_key, creep.user_key, {KIND_CODES['scope_creep']}, json_group_array(distinct extra.value)
                    from ({SCOPE_CREEP_KEYS.format(where=f"{approved} and {where}")}) as creep,
                      json_each(creep.extra_scopes) as extra
                    group by creep.app_key, creep.user_key"""
            )


_NO_FINDINGS = "select null as app_key, null as user_key, null as reason, null as status where 0"


def _keys(table: str, ids_sql: str) -> str:
    """SQL for the keys of the users or apps whose ids a subquery gives (a scope's)."""
    return f"select key from {table} where id in ({ids_sql})"


def _finding_sources(db: Database, scope: AffectedFindings | None):
    """What stage_findings reads: (the unapproved grants by key, a function giving the
    condition that keeps a table's rows in scope by their ids, the conditions on a grant (g)
    that give the scope creep findings). Without a scope, everything; with one, the rows of
    its accounts and of its apps, tenant-wide consents included (through the account and app
    key indexes), each part a query of its own and only when it has any: one condition on
    both, or an empty `in`, would read the whole table."""
    usage, tenant_wide = (f"select app_key, user_key, reason, status from ({sql})"
                          for sql in (UNAPPROVED_KEYS, TENANT_WIDE_UNAPPROVED_KEYS))
    if scope is None:
        return f"{usage} union all {tenant_wide}", lambda table="": "", ["1"]
    accounts, apps = scope.counts(db)
    user_keys, app_keys = _keys("users", scope.users_sql), _keys("apps", scope.apps_sql)
    parts = (([f"{usage} where user_key in ({user_keys})"] if accounts else [])
             + ([f"{usage} where app_key in ({app_keys}) and user_key not in ({user_keys})",
                 f"{tenant_wide} where app_key in ({app_keys})"] if apps else []))
    creep = (([f"g.user_key in ({user_keys})"] if accounts else [])
             + ([f"g.app_key in ({app_keys}) and g.user_key not in ({user_keys})"] if apps else []))

    def in_scope(table: str = "") -> str:
        users_in, apps_in = f"{table}user_id in ({scope.users_sql})", f"{table}app_id in ({scope.apps_sql})"
        return f" and ({users_in} or {apps_in})" if apps else f" and {users_in}"

    return " union all ".join(parts) or _NO_FINDINGS, in_scope, creep


# A row matches a finding on (app, account, base kind): a reminder follows its finding.
_MATCHES_FINDING = f"""
    select 1 from temp._alert_findings as f
    where f.app_key = alert_rows.app_key and f.user_key = alert_rows.user_key and f.kind = alert_rows.kind % {REMINDER}
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
    codes = [KIND_CODES[kind] for kind in kinds]
    detected = unix(now)
    # The rows in scope: an account's through the (user_key, ...) index, and an app's (rare: its
    # name, status, risk or product changed) by reading the rows once. An update filtered on
    # both at once would read every row for any scope.
    in_scope = "" if scope is None else (
        f" and alert_rows.id in (select id from alert_rows where user_key in ({_keys('users', scope.users_sql)})"
        f" union select id from alert_rows where app_key in ({_keys('apps', scope.apps_sql)}))")
    with db.atomic():
        db.execute("create temp table if not exists _alert_findings (app_key integer, user_key integer, kind integer, details text,"
                   " extra_scopes text, extra_scope_set integer)")
        db.execute("create index if not exists temp._alert_findings_key on _alert_findings (app_key, user_key, kind)")
        db.execute("delete from temp._alert_findings")
        stage_findings(db, kinds, scope)
        # A scope creep's extra scopes: the key of their list, stored once (scope_sets).
        db.execute("insert or ignore into scope_sets (scopes) select distinct extra_scopes from temp._alert_findings"
                   " where extra_scopes is not null")
        db.execute("update temp._alert_findings set extra_scope_set = (select key from scope_sets where scopes = extra_scopes)"
                   " where extra_scopes is not null")
        # Existing rows first, so the new ones (already current) are not written twice.
        db.execute(
            f"""update alert_rows set last_detected = ?, details = f.details, extra_scope_set = f.extra_scope_set
               from temp._alert_findings as f
               where f.app_key = alert_rows.app_key and f.user_key = alert_rows.user_key
                 and f.kind = alert_rows.kind % {REMINDER}{in_scope}""",
            [detected],
        )
        queued = db.execute(
            f"""insert or ignore into alert_rows (user_key, app_key, kind, status, details, extra_scope_set, first_detected,
                 last_detected)
               select user_key, app_key, kind, {PENDING}, details, extra_scope_set, ?, ? from temp._alert_findings""",
            [detected, detected],
        ).rowcount
        suppressed = db.execute(
            f"""update alert_rows set status = {SUPPRESSED}, suppressed_at = ?,
                  note = case when exists (
                      select 1 from grant_rows as g where g.user_key = alert_rows.user_key and g.app_key = alert_rows.app_key
                        and g.revoked_at is null)
                    then 'no longer a finding before it was sent: the app''s catalog status changed'
                    else 'the app''s access was removed before the alert was sent' end
                where status = {PENDING} and sending_since is null
                  and kind % {REMINDER} in ({_in(codes)})
                  and not exists ({_MATCHES_FINDING}){in_scope}""",
            [now, *codes],
        ).rowcount
        revived = db.execute(
            f"""update alert_rows set status = {PENDING}, suppressed_at = null, note = null
                where status = {SUPPRESSED} and kind % {REMINDER} in ({_in(codes)})
                  and exists ({_MATCHES_FINDING}){in_scope}""",
            codes,
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
            f"""update alert_rows set status = {SUPPRESSED}, suppressed_at = ?, note = ?
               where status = {PENDING} and sending_since is null and kind % {REMINDER} = ?""",
            [now, note, KIND_CODES[kind]],
        ).rowcount


def queue_reminders(db: Database, now: str, reminder_days: int) -> int:
    """Queue one reminder for each finding emailed to a person at least reminder_days ago
    that the latest sync still saw (its last_detected is `now`)."""
    if reminder_days <= 0:
        return 0
    cutoff = _iso_days_before(now, reminder_days)
    detected = unix(now)
    with db.atomic():
        return db.execute(
            f"""insert or ignore into alert_rows (user_key, app_key, kind, status, details, extra_scope_set, first_detected,
                 last_detected)
               select user_key, app_key, kind + {REMINDER}, {PENDING}, details, extra_scope_set, ?, ? from alert_rows
               where status = {SENT} and kind in ({_in(REMINDED)}) and user_key != 0
                 and recipient != ? and sent_at <= ? and last_detected = ?""",
            [detected, detected, *(KIND_CODES[kind] for kind in REMINDED), IT_DIGEST, cutoff, detected],
        ).rowcount


def purge_alerts(db: Database, now: str, history_days: int) -> int:
    """Retention: forget finished alerts whose finding has not been seen for history_days, and
    those of accounts the inventory has forgotten (their findings cannot come back).

    A finding still seen is kept, sent or not, so it is never emailed twice."""
    cutoff = _iso_days_before(now, history_days)
    with db.atomic():
        db.execute("delete from alert_runs where started_at < ?", [cutoff])
        return db.execute(
            f"""delete from alert_rows where status != {PENDING}
                 and (last_detected < ? or (user_key != 0 and user_key not in (select key from users)))""",
            [unix(cutoff)],
        ).rowcount


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
                f"""update alert_rows set sending_since = ?, message_id = ?, recipient = ?, attempts = attempts + 1
                    where id in ({_in(ids)}) and status = {PENDING} and sending_since is null""",
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
            f"""update alert_rows set status = {SENT}, sent_at = ?, sending_since = null, last_error = null
                where id in ({_in(ids)})""",
            [now, *ids],
        )


def mark_attempt_failed(db: Database, ids: Sequence[int], *, error: str, max_attempts: int) -> int:
    """The send failed: back to pending for the next run, or failed once max_attempts is reached.
    Returns how many rows gave up."""
    with db.atomic():
        db.execute(
            f"""update alert_rows set sending_since = null, last_error = ?,
                  status = case when attempts >= ? then {FAILED} else {PENDING} end
                where id in ({_in(ids)})""",
            [error[:500], max_attempts, *ids],
        )
        return db.execute(f"select count(*) from alert_rows where id in ({_in(ids)}) and status = {FAILED}", list(ids)).fetchone()[0]


def mark_undeliverable(db: Database, ids: Sequence[int], *, error: str, recipient: str | None) -> None:
    """Retrying cannot help (the address is not an address): failed at once."""
    with db.atomic():
        db.execute(
            f"update alert_rows set status = {FAILED}, last_error = ?, recipient = ? where id in ({_in(ids)})",
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
                f"""update alert_rows set status = {FAILED}, unconfirmed = 1,
                     last_error = 'unconfirmed: the run stopped while this was being sent (at ' || sending_since ||
                       '); it may have been delivered; check the mail server log for its Message-ID',
                     sending_since = null
                   where status = {PENDING} and sending_since is not null
                   returning id, message_id, recipient"""
            )
        ]


def requeue(db: Database, ids: Sequence[int]) -> int:
    """Put failed rows (gave up, or unconfirmed) back in the queue with a fresh attempt count."""
    with db.atomic():
        return db.execute(
            f"""update alert_rows set status = {PENDING}, attempts = 0, unconfirmed = 0, last_error = null,
                  note = 'requeued by IT'
                where id in ({_in(ids)}) and status = {FAILED}""",
            list(ids),
        ).rowcount


# -- reading ----------------------------------------------------------------------------------

# A row per alert, with its account (users) and the person the account belongs to (people):
# the person is who gets the email, at their primary address, with their role.
# Every row has its app, but a decision on an app people asked for that nobody uses yet (a
# provider's request: plugins.alerts.decisions) has only its catalog entry, named in the details.
ALERT_ROWS = f"""
select{ALERT_COLUMNS}, a.app_key, a.user_key,
  apps.name as app_name, apps.provider, apps.status as app_status, apps.publisher,
  apps.verified_publisher, apps.homepage, apps.risk as app_risk, apps.client_id,
  users.email, users.name as user_name, users.role, users.suspended,
  coalesce(users.person_id, users.id) as person_id, coalesce(people.email, users.email) as person_email,
  coalesce(nullif(people.name, ''), users.name) as person_name, coalesce(people.role, users.role) as person_role,
  catalog.alternative, catalog.audience, catalog.notes as catalog_notes, catalog.dpa_url,
  catalog.status_original, catalog.name as catalog_name,
  scope_sets.scopes as grant_scopes, {iso_time("its_grant.first_seen")} as grant_first_seen,
  {iso_time("its_grant.last_used")} as grant_last_used, its_grant.user_key = 0 as tenant_wide
{_ALERT_JOINS}
  left join people on people.id = users.person_id
  left join catalog on catalog.id = coalesce(apps.catalog_id, json_extract(a.details, '$.catalog_id'))
  left join grant_rows as its_grant
    on (its_grant.user_key, its_grant.app_key, its_grant.resource, its_grant.application)
       = (select g.user_key, g.app_key, g.resource, g.application {_ITS_GRANT})
  left join scope_sets on scope_sets.key = its_grant.scope_set
"""


def pending_rows(db: Database) -> list[dict]:
    """Pending rows, not being sent, with what composing a message needs."""
    return list(db.query(ALERT_ROWS + f" where a.status = {PENDING} and a.sending_since is null order by a.id"))


def first_sent_at(db: Database, row: dict) -> str | None:
    """For a reminder row: when the finding it follows was emailed."""
    base = db.execute(
        "select sent_at from alert_rows where app_key = ? and user_key = ? and kind = ?",
        [row["app_key"], row["user_key"], kind_code(row["kind"].removesuffix(REMINDER_SUFFIX))],
    ).fetchone()
    return base[0] if base else None
