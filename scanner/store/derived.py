"""What the store recomputes after a scan or a catalog change: per-app counts, catalog
matching (which makes each app's product), the unapproved_usage table, and retention;
people.py and products.py hold the rest.

After a scan, in this order (scanner.store.writer): refresh_people, refresh_app_stats,
apply_matching, refresh_unapproved_usage, refresh_products, then purge_history. After a
catalog change: apply_matching, refresh_unapproved_usage, refresh_products.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlite_utils import Database

from .. import matching, schema
from ..timestamps import iso
from .people import refresh_people
from .products import refresh_products

DEFAULT_HISTORY_DAYS = 400


def refresh_app_stats(db: Database, provider: str) -> None:
    """Keep per-app user counts, tenant-wide flag, risk and last use on `apps` (what app_summary reads)."""
    db.execute(
        """update apps set users = 0, students = 0, staff = 0, tenant_wide = 0 where provider = ?""", [provider]
    )
    # Grants are grouped by (account, app) first, so each account is counted once an app (a
    # Microsoft app holds a grant a resource), and its role is looked up once; grant_rows is
    # read in its own order (account, app), not through an index.
    db.execute(
        f"""update apps set users = stats.users, students = stats.students, staff = stats.staff,
             tenant_wide = stats.tenant_wide,
             risk = {schema.RISK_NAME_SQL.format("stats.risk_rank")},
             last_used = nullif(max(coalesce(apps.last_used, ''), coalesce({schema.iso_time("stats.last_used")}, '')), '')
           from (
             select app_key, count(nullif(user_key, 0)) as users,
               count(case when user_key in (select key from users where role = 'student') then 1 end) as students,
               count(case when user_key in (select key from users where role = 'staff') then 1 end) as staff,
               max(tenant_wide) as tenant_wide, max(risk_rank) as risk_rank, max(last_used) as last_used
             from (
               select app_key, user_key, max(user_key = 0) as tenant_wide, max(risk) as risk_rank, max(last_used) as last_used
               from grant_rows
               where app_key in (select key from apps where provider = ?) and revoked_at is null
               group by user_key, app_key
             )
             group by app_key
           ) as stats
           where apps.key = stats.app_key""",
        [provider],
    )


def refresh_unapproved_usage(db: Database, provider: str | None = None) -> None:
    """Rebuild the rows of `unapproved` (what the unapproved_usage view shows): one provider's,
    or all after a catalog change, from grants, accounts, apps and the catalog, inside the
    caller's transaction."""
    if provider is None:
        db.execute("delete from unapproved")
        db.execute(schema.refresh_unapproved_sql())
    else:
        db.execute("delete from unapproved where app_key in (select key from apps where provider = ?)", [provider])
        db.execute(schema.refresh_unapproved_sql("and apps.provider = ?"), [provider])


def apply_matching(db: Database) -> set[str]:
    """Match every app to the catalog by exact client id / app id, which also makes its
    product (the entry, or the app itself); suggest, never approve or merge: catalog entries
    with a similar name, and other providers' apps of the same name, homepage or publisher.
    Returns the products that gained or lost an app."""
    catalog = list(db["catalog"].rows)
    # Google client ids, Microsoft app ids (GUIDs) and Chrome extension ids cannot collide, so one index serves
    # every provider, including third-party ones that reuse either kind of id.
    by_client_id: dict[str, dict] = {}
    for row in catalog:
        for column in schema.CATALOG_ID_COLUMNS:
            for client_id in json.loads(row[column] or "[]"):
                by_client_id[client_id.lower()] = row
    names = {row["id"]: row["name"] for row in catalog}
    updates, suggestions, moved = [], [], set()
    apps = list(db.query(
        "select id, provider, client_id, name, publisher, homepage, ownership, catalog_id, status, product_id from apps"))
    for app in apps:
        row = by_client_id.get(app["client_id"].lower())
        catalog_id, status = (row["id"], row["status"]) if row else (None, "unreviewed")
        product_id = product_of(app["id"], catalog_id)
        if (catalog_id, status, product_id) != (app["catalog_id"], app["status"], app["product_id"]):
            updates.append((catalog_id, status, product_id, app["id"]))
        if product_id != app["product_id"]:
            moved |= {product_id, app["product_id"]} - {None}
        app["catalog_id"] = catalog_id
        if row is None:
            suggestion = matching.suggest_catalog_entry(app["name"], names)
            if suggestion:
                suggestions.append({"app_id": app["id"], "catalog_id": suggestion[0], "same_as_app_id": None,
                                    "reason": "name resembles the catalog entry", "score": suggestion[1]})
    third_party = [app for app in apps if app["ownership"] == "third_party"]
    suggestions += matching.same_product_candidates(third_party)
    with db.atomic():
        db.conn.executemany("update apps set catalog_id = ?, status = ?, product_id = ? where id = ?", updates)
        db.execute("delete from catalog_suggestions")
        if suggestions:
            db["catalog_suggestions"].insert_all(suggestions)
    return moved


def product_of(app_id: str, catalog_id: str | None) -> str:
    """A product's id: `catalog:<entry id>` for a catalog entry, else the app's own id."""
    return f"catalog:{catalog_id}" if catalog_id is not None else app_id


def refresh_derived(db: Database) -> None:
    """Recompute everything derived from scratch (after a schema upgrade), inside the caller's transaction."""
    refresh_people(db, full=True)
    for (provider,) in db.execute("select distinct provider from apps").fetchall():
        refresh_app_stats(db, provider)
    apply_matching(db)
    refresh_unapproved_usage(db)
    refresh_products(db)


def purge_history(db: Database, history_days: int, now: dt.datetime) -> int:
    """Retention ([retention] history_days): forget revoked grants, change records, old scans
    and accounts not seen for that long. The latest succeeded scan of each provider is kept.
    Returns how many accounts were forgotten."""
    cutoff = iso(now - dt.timedelta(days=history_days))
    db.execute(f"delete from change_rows where detected_at < {schema.unix_time('?')}", [cutoff])
    db.execute(f"delete from grant_rows where revoked_at is not null and revoked_at < {schema.unix_time('?')}", [cutoff])
    forgotten = db.execute(
        """delete from users where last_seen < ?
           and not exists (select 1 from grant_rows where grant_rows.user_key = users.key)""",
        [cutoff],
    ).rowcount
    db.execute(
        """delete from scans where coalesce(finished_at, started_at) < ?
           and status != 'running'
           and id not in (select max(id) from scans where status = 'succeeded' group by provider)
           and id not in (select scan_id from change_rows)""",
        [cutoff],
    )
    return forgotten
