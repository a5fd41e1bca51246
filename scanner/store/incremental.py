"""After an incremental scan: per-app counts and unapproved_usage for what changed only.

A weekly scan re-reads a few percent of the accounts, yet recomputing the derived tables
reads every grant (at 100,000 accounts: counts 3 s, unapproved_usage 5 s, the alert queue
more). Instead, while an incremental scan writes, temp triggers (on the scan's connection
only, inside its transaction) note what it touched, with the state before:

    _touched_grants  each grant written, revoked or given a new last use: was it active, its risk
    _touched_users   accounts whose address, name, role, unit, suspension or person changed: the role before
    _touched_apps    apps whose name, ownership, status, risk, catalog entry or product changed

and finish() then:

- adds to each app's counts the difference the touched (account, app) pairs make (active
  before and after, the account's role before and after); an account whose role changed
  counts again in every app it holds. Risk and the tenant-wide flag are a maximum over
  the app's active grants: probed again only when a touched grant could have held it.
- rebuilds the unapproved_usage rows of the affected accounts (touched grants or account)
  and of the touched apps, and leaves the rest.
- hands the alerts plugin the same scope (AffectedFindings), so its queue re-reads only
  those findings.

A full scan, a first scan and a catalog change still recompute everything
(scanner.store.derived). tests/test_incremental_refresh.py checks that both ways give
the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_utils import Database

from .. import schema
from .temp import temp_table

_RANK = schema.RISK_RANK_SQL
_RISKS = {2: "high", 1: "medium", 0: "low"}
_TRIGGERS = ("_derived_grant_written", "_derived_grant_changed", "_derived_user_changed", "_derived_app_changed")


@dataclass(frozen=True)
class AffectedFindings:
    """What an incremental scan may have changed, for plugins (`ScanChanges.affected`): the
    findings of these accounts and of these apps. Each is a subquery on the scan's
    connection, valid during `scan_finished`."""

    users_sql: str = "select user_id from temp._scope_users"
    apps_sql: str = "select app_id from temp._scope_apps"

    def counts(self, db: Database) -> tuple[int, int]:
        """How many accounts and apps are in scope."""
        return (db.execute(f"select count(*) from ({self.users_sql})").fetchone()[0],
                db.execute(f"select count(*) from ({self.apps_sql})").fetchone()[0])


# The same grant in two tables (grant_rows' primary key).
_SAME_GRANT = ("{0}.user_key = {1}.user_key and {0}.app_key = {1}.app_key and {0}.resource = {1}.resource"
               " and {0}.application = {1}.application")


def track_derived_changes(db: Database) -> None:
    """From now on, on this connection, note the grants, accounts and apps written (see the module docstring)."""
    temp_table(db, "_touched_grants", "user_key integer not null, app_key integer not null, resource text not null, "
                                      "application integer not null, user_id text, app_id text not null, "
                                      "was_active integer not null, was_rank integer, was_wide integer, "
                                      "primary key (user_key, app_key, resource, application)", rowid=False)
    temp_table(db, "_touched_users", "user_id text primary key, old_role text", rowid=False)
    temp_table(db, "_touched_apps", "app_id text primary key", rowid=False)
    # An upsert fires the insert trigger whether it inserts or updates: it reads the row as it was.
    # The first note of a row is the one kept: `where not exists`, not `or ignore`, since a
    # trigger takes the conflict handling of the statement that fired it (an upsert's).
    db.execute(
        f"""create temp trigger if not exists _derived_grant_written before insert on grant_rows
            begin
              insert into _touched_grants (user_key, app_key, resource, application, user_id, app_id, was_active,
                                           was_rank, was_wide)
              select new.user_key, new.app_key, new.resource, new.application,
                (select id from main.users where key = new.user_key), (select id from main.apps where key = new.app_key),
                prior.app_key is not null and prior.revoked_at is null, prior.risk, prior.user_key = 0
              from (select 1) left join main.grant_rows as prior on {_SAME_GRANT.format("prior", "new")}
              where not exists (select 1 from _touched_grants as t where {_SAME_GRANT.format("t", "new")});
            end"""
    )
    db.execute(
        f"""create temp trigger if not exists _derived_grant_changed before update on grant_rows
            when old.revoked_at is not new.revoked_at or old.scope_set is not new.scope_set or old.risk is not new.risk
              or old.last_used is not new.last_used or old.first_seen is not new.first_seen
            begin
              insert into _touched_grants (user_key, app_key, resource, application, user_id, app_id, was_active,
                                           was_rank, was_wide)
              select old.user_key, old.app_key, old.resource, old.application,
                (select id from main.users where key = old.user_key), (select id from main.apps where key = old.app_key),
                old.revoked_at is null, old.risk, old.user_key = 0
              where not exists (select 1 from _touched_grants as t where {_SAME_GRANT.format("t", "old")});
            end"""
    )
    db.execute(
        """create temp trigger if not exists _derived_user_changed before update on users
           when old.email is not new.email or old.name is not new.name or old.role is not new.role
             or old.org_unit is not new.org_unit or old.suspended is not new.suspended or old.person_id is not new.person_id
           begin
             insert into _touched_users (user_id, old_role) select old.id, old.role
             where not exists (select 1 from _touched_users where user_id = old.id);
           end"""
    )
    db.execute(
        """create temp trigger if not exists _derived_app_changed after update on apps
           when old.name is not new.name or old.ownership is not new.ownership or old.status is not new.status
             or old.risk is not new.risk or old.catalog_id is not new.catalog_id or old.product_id is not new.product_id
           begin
             insert into _touched_apps (app_id) select old.id where not exists (select 1 from _touched_apps where app_id = old.id);
           end"""
    )


def stop_tracking(db: Database) -> None:
    """Drop the triggers (the notes stay, for the alerts plugin's scope, until the next scan)."""
    for trigger in _TRIGGERS:
        db.execute(f"drop trigger if exists temp.{trigger}")


def refresh_changed_app_stats(db: Database) -> None:
    """refresh_app_stats for what the scan touched: see the module docstring."""
    temp_table(db, "_role_changed", "user_id text primary key, old_role text", rowid=False)
    db.execute(
        """insert into temp._role_changed (user_id, old_role)
           select touched.user_id, touched.old_role from temp._touched_users as touched
             join users on users.id = touched.user_id
           where users.role is not touched.old_role"""
    )
    temp_table(db, "_pairs", "user_key integer not null, app_key integer not null, before_active integer, "
                             "after_active integer, primary key (user_key, app_key)", rowid=False)
    # From the few changed accounts to their grants: `cross join` keeps that order, where SQLite
    # chose to walk every grant and look its account up (4 s at a million accounts).
    db.execute(
        """insert or ignore into temp._pairs (user_key, app_key)
           select user_key, app_key from temp._touched_grants where user_key != 0
           union
           select g.user_key, g.app_key from temp._role_changed as changed
             cross join users on users.id = changed.user_id
             cross join grant_rows as g on g.user_key = users.key"""
    )
    # Active before: one of the pair's grants was, as the trigger saw it (touched) or as it is (not touched).
    db.execute(
        f"""update temp._pairs set
             after_active = exists (select 1 from grant_rows as g where g.user_key = _pairs.user_key
                                      and g.app_key = _pairs.app_key and g.revoked_at is null),
             before_active = exists (select 1 from grant_rows as g
                                       left join temp._touched_grants as touched on {_SAME_GRANT.format("touched", "g")}
                                       where g.user_key = _pairs.user_key and g.app_key = _pairs.app_key
                                         and coalesce(touched.was_active, g.revoked_at is null))"""
    )
    db.execute(
        """update apps set users = apps.users + delta.users, students = apps.students + delta.students,
             staff = apps.staff + delta.staff
           from (
             select app_key, sum(after_active - before_active) as users,
               sum(after_active * (after_role = 'student') - before_active * (before_role = 'student')) as students,
               sum(after_active * (after_role = 'staff') - before_active * (before_role = 'staff')) as staff
             from (
               select pairs.app_key, pairs.after_active, pairs.before_active,
                 coalesce(users.role, '') as after_role,
                 coalesce(changed.old_role, users.role, '') as before_role
               from temp._pairs as pairs
                 left join users on users.key = pairs.user_key
                 left join temp._role_changed as changed on changed.user_id = users.id
             )
             group by app_key
           ) as delta
           where apps.key = delta.app_key and (delta.users or delta.students or delta.staff)"""
    )
    apps = [row[0] for row in db.execute("select distinct app_key from temp._touched_grants")]
    for app_key in apps:
        _refresh_maxima(db, app_key)


def _refresh_maxima(db: Database, app_key: int) -> None:
    """An app's risk, tenant-wide flag and last use: maxima over its active grants, as
    refresh_app_stats keeps them (unchanged, but tenant_wide 0, for an app without one)."""
    app = db.execute(f"select {_RANK.format('risk')}, tenant_wide, last_used from apps where key = ?", [app_key]).fetchone()
    if app is None:
        return
    stored_rank, stored_wide, stored_used = app
    if not db.execute("select 1 from grant_rows where app_key = ? and revoked_at is null limit 1", [app_key]).fetchone():
        db.execute("update apps set tenant_wide = 0 where key = ?", [app_key])
        return
    # The touched grants, then each one's row: `cross join` keeps that order, where SQLite chose
    # to walk every grant of the app and look each up among the touched ones (6 s at a million).
    touched = db.execute(
        f"""select max(case when g.revoked_at is null then g.risk end),
              max(case when g.revoked_at is null then g.user_key = 0 end),
              {schema.iso_time("max(case when g.revoked_at is null then g.last_used end)")}
            from temp._touched_grants as touched cross join grant_rows as g on {_SAME_GRANT.format("g", "touched")}
            where touched.app_key = ?""",
        [app_key],
    ).fetchone()
    untouched_active = db.execute(
        f"""select 1 from grant_rows as g where g.app_key = ? and g.revoked_at is null
              and not exists (select 1 from temp._touched_grants as touched where {_SAME_GRANT.format("touched", "g")})
            limit 1""",
        [app_key],
    ).fetchone() is not None
    had_active = untouched_active or db.execute(
        "select 1 from temp._touched_grants where app_key = ? and was_active limit 1", [app_key]).fetchone() is not None
    rank = _maximum(db, app_key, "risk", stored_rank if had_active else None, touched[0])
    wide = _maximum(db, app_key, "tenant_wide", stored_wide if had_active else None, touched[1])
    used = max((value for value in (stored_used, touched[2]) if value), default=None)
    db.execute("update apps set risk = ?, tenant_wide = ?, last_used = ? where key = ?", [_RISKS[rank], wide, used, app_key])


def _maximum(db: Database, app_key: int, column: str, stored: int | None, touched_now: int | None) -> int:
    """The app's maximum of `column` (risk as a rank, or tenant_wide) over its active grants now.

    `stored` is the maximum the last refresh kept (None when the app had no active grant, so
    every active grant now is a touched one), `touched_now` the maximum over the touched
    grants active now. Untouched grants are as they were, so only when a touched grant held
    the stored maximum and no longer does must the untouched ones be looked at.
    """
    now = -1 if touched_now is None else touched_now
    if stored is None or now >= stored:
        return max(now, 0)
    value = "risk" if column == "risk" else "(user_key = 0)"
    held_it = db.execute(
        f"""select 1 from temp._touched_grants as touched
            where touched.app_key = ? and touched.was_active and touched.was_{'rank' if column == 'risk' else 'wide'} >= ?
            limit 1""",
        [app_key, stored],
    ).fetchone()
    if not held_it:
        return stored
    for level in range(stored, now, -1):
        if db.execute(f"select 1 from grant_rows where app_key = ? and revoked_at is null and {value} = ? limit 1",
                      [app_key, level]).fetchone():
            return level
    return max(now, 0)


def affected_scope(db: Database) -> AffectedFindings:
    """The accounts and apps whose derived rows and findings may have changed (temp._scope_users, temp._scope_apps)."""
    temp_table(db, "_scope_users", "user_id text primary key", rowid=False)
    temp_table(db, "_scope_apps", "app_id text primary key", rowid=False)
    db.execute(
        """insert or ignore into temp._scope_users (user_id)
           select user_id from temp._touched_grants where user_id is not null
           union select user_id from temp._touched_users"""
    )
    db.execute("insert or ignore into temp._scope_apps (app_id) select app_id from temp._touched_apps")
    return AffectedFindings()


def refresh_changed_unapproved_usage(db: Database, scope: AffectedFindings) -> None:
    """Rebuild the `unapproved` rows (unapproved_usage) of the accounts and apps in scope, and only those."""
    users, apps = scope.counts(db)
    # Apps first: the accounts' rows (some of them of these apps too) are then rebuilt last.
    for count, table, column, sql in ((apps, "apps", "app_key", scope.apps_sql), (users, "users", "user_key", scope.users_sql)):
        if count:
            db.execute(f"delete from unapproved where {column} in (select key from {table} where id in ({sql}))")
            db.execute(schema.refresh_unapproved_sql(f"and {table}.id in ({sql})"))
