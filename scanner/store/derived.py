"""What the store recomputes after a scan or a catalog change: people (accounts that share
an address), per-app counts, catalog matching, the unapproved_usage table, products
(counts of distinct people across providers), and retention.

After a scan, in this order (scanner.store.writer): purge_history, refresh_people,
refresh_app_stats, apply_matching, refresh_unapproved_usage, refresh_products. After a
catalog change: apply_matching, refresh_unapproved_usage, refresh_products. The rules
are in docs/people-and-products.md.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlite_utils import Database

from .. import matching, schema
from ..timestamps import iso

DEFAULT_HISTORY_DAYS = 400


def refresh_app_stats(db: Database, provider: str) -> None:
    """Keep per-app user counts, tenant-wide flag, risk and last use on `apps` (what app_summary reads)."""
    db.execute(
        """update apps set users = 0, students = 0, staff = 0, tenant_wide = 0 where provider = ?""", [provider]
    )
    # Grants are grouped by (app, user) first, so each account is counted once an app (a Microsoft
    # app holds a grant a resource), and its role is looked up once; the table is read in order,
    # not through an index: 3 s for 800,000 grants, against 5 s joining users to every grant.
    db.execute(
        """update apps set users = stats.users, students = stats.students, staff = stats.staff,
             tenant_wide = stats.tenant_wide,
             risk = case stats.risk_rank when 2 then 'high' when 1 then 'medium' else 'low' end,
             last_used = nullif(max(coalesce(apps.last_used, ''), coalesce(stats.last_used, '')), '')
           from (
             select app_id, count(user_id) as users,
               count(case when user_id in (select id from users where role = 'student') then 1 end) as students,
               count(case when user_id in (select id from users where role = 'staff') then 1 end) as staff,
               max(tenant_wide) as tenant_wide, max(risk_rank) as risk_rank, max(last_used) as last_used
             from (
               select app_id, user_id, max(tenant_wide) as tenant_wide,
                 max(case risk when 'high' then 2 when 'medium' then 1 else 0 end) as risk_rank, max(last_used) as last_used
               from grants not indexed
               where provider = ? and revoked_at is null
               group by app_id, user_id
             )
             group by app_id
           ) as stats
           where apps.id = stats.app_id""",
        [provider],
    )


def refresh_unapproved_usage(db: Database, provider: str | None = None) -> None:
    """Rebuild the unapproved_usage table (one provider's rows, or all after a catalog change)
    from grants, users, apps and the catalog, inside the caller's transaction."""
    if provider is None:
        db.execute("delete from unapproved_usage")
        db.execute(schema.refresh_unapproved_usage_sql())
    else:
        db.execute("delete from unapproved_usage where provider = ?", [provider])
        db.execute(schema.refresh_unapproved_usage_sql(provider=True), [provider])


def apply_matching(db: Database) -> None:
    """Match every app to the catalog by exact client id / app id, which also makes its
    product (the entry, or the app itself); suggest, never approve or merge: catalog entries
    with a similar name, and other providers' apps of the same name, homepage or publisher."""
    catalog = list(db["catalog"].rows)
    # Google client ids and Microsoft app ids (GUIDs) cannot collide, so one index serves
    # every provider, including third-party ones that reuse either kind of id.
    by_client_id: dict[str, dict] = {}
    for row in catalog:
        for column in ("google_client_ids", "microsoft_app_ids"):
            for client_id in json.loads(row[column] or "[]"):
                by_client_id[client_id.lower()] = row
    names = {row["id"]: row["name"] for row in catalog}
    updates, suggestions = [], []
    apps = list(db.query(
        "select id, provider, client_id, name, publisher, homepage, ownership, catalog_id, status, product_id from apps"))
    for app in apps:
        row = by_client_id.get(app["client_id"].lower())
        catalog_id, status = (row["id"], row["status"]) if row else (None, "unreviewed")
        product_id = product_of(app["id"], catalog_id)
        if (catalog_id, status, product_id) != (app["catalog_id"], app["status"], app["product_id"]):
            updates.append((catalog_id, status, product_id, app["id"]))
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


def product_of(app_id: str, catalog_id: str | None) -> str:
    """A product's id: `catalog:<entry id>` for a catalog entry, else the app's own id."""
    return f"catalog:{catalog_id}" if catalog_id is not None else app_id


def refresh_people(db: Database) -> int:
    """Group accounts into people: accounts that share an address (primary or alias, compared
    case-insensitively), directly or through other accounts, are one person, whatever
    provider reports them. Sets users.person_id (the lowest account id of the person) and
    rebuilds `people`; returns how many accounts changed person.

    All in SQL: each round gives every account the lowest person id among the accounts it
    shares an address with, until a round changes nothing (two rounds when accounts pair
    directly, one more for each link of a longer chain)."""
    db.execute("create temp table if not exists _addresses (user_id text not null, address text not null)")
    db.execute("create temp table if not exists _person (user_id text primary key, person_id text not null) without rowid")
    db.execute("create temp table if not exists _person_changed (user_id text primary key, person_id text not null) without rowid")
    for table in ("_addresses", "_person", "_person_changed"):
        db.execute(f"delete from temp.{table}")
    db.execute("drop index if exists temp._addresses_by_address")
    db.execute(
        """insert into temp._addresses (user_id, address)
           select id, lower(trim(email)) from users where trim(coalesce(email, '')) != ''
           union
           select users.id, lower(trim(alias.value)) from users, json_each(users.aliases) as alias
           where users.aliases is not null and alias.type = 'text' and trim(alias.value) != ''"""
    )
    db.execute("create index temp._addresses_by_address on _addresses (address, user_id)")
    db.execute("insert into temp._person (user_id, person_id) select id, id from users")
    while db.execute(
        """update temp._person set person_id = lowest.person_id
           from (
             select mine.user_id, min(theirs_person.person_id) as person_id
             from temp._addresses as mine
               join temp._addresses as theirs on theirs.address = mine.address and theirs.user_id != mine.user_id
               join temp._person as theirs_person on theirs_person.user_id = theirs.user_id
             group by mine.user_id
           ) as lowest
           where _person.user_id = lowest.user_id and lowest.person_id < _person.person_id"""
    ).rowcount:
        pass
    db.execute(
        """insert into temp._person_changed (user_id, person_id)
           select users.id, p.person_id from users join temp._person as p on p.user_id = users.id
           where users.person_id is not p.person_id"""
    )
    changed = db.execute("select count(*) from temp._person_changed").fetchone()[0]
    if changed:
        db.execute("update users set person_id = c.person_id from temp._person_changed as c where users.id = c.user_id")
        # Rows of the other providers are not rebuilt by this scan: keep their person current.
        db.execute(
            """update unapproved_usage set person_id = c.person_id from temp._person_changed as c
               where unapproved_usage.user_id = c.user_id"""
        )
    db.execute("delete from people")
    db.execute(f"insert into people ({', '.join(PEOPLE_COLUMNS)}) {PEOPLE_ROWS}")
    return changed


PEOPLE_COLUMNS = ("id", "email", "name", "role", "accounts", "providers", "account_ids", "addresses", "suspended",
                  "first_seen", "last_seen")

# One row a person. Role: student when any of their accounts is a student's, else staff when
# any is staff's, else unknown. Primary address (the `To:` of their alert): the `email` of
# their first account in this order: active before suspended, of the person's role before
# others, then the lowest account id.
PEOPLE_ROWS = """
with persons as (
  select person_id,
    case when max(role = 'student') then 'student' when max(role = 'staff') then 'staff' else 'unknown' end as role,
    count(*) as accounts, group_concat(distinct provider) as providers, json_group_array(id) as account_ids,
    min(coalesce(suspended, 0)) as suspended, min(first_seen) as first_seen, max(last_seen) as last_seen,
    max(name) as any_name
  from (select * from users order by person_id, id)
  group by person_id
),
primary_account as (
  select users.person_id, users.email, users.name,
    row_number() over (
      partition by users.person_id order by coalesce(users.suspended, 0), users.role != persons.role, users.id
    ) as rank
  from users join persons on persons.person_id = users.person_id
),
addresses as (
  select person_id, json_group_array(address) as addresses
  from (select distinct p.person_id, a.address from temp._addresses as a join temp._person as p on p.user_id = a.user_id
        order by p.person_id, a.address)
  group by person_id
)
select persons.person_id, primary_account.email, coalesce(nullif(primary_account.name, ''), persons.any_name, ''),
  persons.role, persons.accounts, persons.providers, persons.account_ids, addresses.addresses,
  persons.suspended, persons.first_seen, persons.last_seen
from persons
  join primary_account on primary_account.person_id = persons.person_id and primary_account.rank = 1
  left join addresses on addresses.person_id = persons.person_id
"""


def refresh_products(db: Database) -> None:
    """Rebuild `products`: one row a catalog entry (with or without apps) and one a third-party
    or internal app no entry names, counting distinct people across all its clients and
    providers (a person's role is the one in `people`)."""
    db.execute("delete from products")
    db.execute(
        """insert into products (id, catalog_id, app_id, ownership, risk, people, students, staff, providers, clients,
             tenant_wide, last_used)
           with usage as (
             select apps.product_id, count(distinct users.person_id) as people,
               count(distinct case when people.role = 'student' then users.person_id end) as students,
               count(distinct case when people.role = 'staff' then users.person_id end) as staff
             from (select distinct app_id, user_id from grants where revoked_at is null and user_id is not null) as used
               join apps on apps.id = used.app_id
               join users on users.id = used.user_id
               join people on people.id = users.person_id
             group by apps.product_id
           ),
           clients as (
             select product_id, max(catalog_id) as catalog_id, case when max(catalog_id) is null then max(id) end as app_id,
               case when max(ownership = 'third_party') then 'third_party' else min(ownership) end as ownership,
               max(case risk when 'high' then 2 when 'medium' then 1 else 0 end) as risk_rank,
               group_concat(distinct case when users > 0 or tenant_wide > 0 then provider end) as providers,
               count(*) as clients, max(tenant_wide) as tenant_wide, max(last_used) as last_used
             from (select * from apps order by product_id, provider)
             group by product_id
           )
           select clients.product_id, clients.catalog_id, clients.app_id, clients.ownership,
             case clients.risk_rank when 2 then 'high' when 1 then 'medium' else 'low' end,
             coalesce(usage.people, 0), coalesce(usage.students, 0), coalesce(usage.staff, 0),
             coalesce(clients.providers, ''), clients.clients, clients.tenant_wide, clients.last_used
           from clients left join usage on usage.product_id = clients.product_id
           union all
           select 'catalog:' || catalog.id, catalog.id, null, 'third_party', 'low', 0, 0, 0, '', 0, 0, null
           from catalog where not exists (select 1 from apps where apps.catalog_id = catalog.id)"""
    )


def refresh_derived(db: Database) -> None:
    """Recompute everything derived from scratch (after a schema upgrade), inside the caller's transaction."""
    refresh_people(db)
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
    db.execute("delete from changes where detected_at < ?", [cutoff])
    db.execute("delete from grants where revoked_at is not null and revoked_at < ?", [cutoff])
    forgotten = db.execute(
        """delete from users where last_seen < ?
           and not exists (select 1 from grants where grants.user_id = users.id)""",
        [cutoff],
    ).rowcount
    db.execute(
        """delete from scans where coalesce(finished_at, started_at) < ?
           and status != 'running'
           and id not in (select max(id) from scans where status = 'succeeded' group by provider)
           and id not in (select scan_id from changes)""",
        [cutoff],
    )
    return forgotten
