"""Products: a catalog entry with all its clients, or an app no entry names; the counts of
distinct people using each (docs/people-and-products.md).

Most of a product's count is already on `apps` (accounts an app, by the account's role,
kept by refresh_app_stats), and each account of a person with one account is one person.
What the accounts of people with several accounts add is kept apart, in
`multi_account_usage` (a row a product and such a person): a scan redoes the rows of the
people whose grants or accounts it changed, a catalog import those of the products that
gained or lost an app, not all of them. So a product counts

    people   = its apps' accounts - those people's accounts + those people
    students = its apps' student accounts - theirs + those of them who are students

and so on for staff. A person whose one account using the product has the person's own
role adds nothing (minus one account, plus one person, both of that role) and has no row:
most people with an account on each provider use most products from one of them. A
product with two clients in use on one provider (an app and its add-on: one account may
hold both) is counted from its grants instead, person by person.
"""

from __future__ import annotations

from sqlite_utils import Database

from ..schema import CHANGE_KIND_CODES
from .temp import temp_table


def refresh_products(db: Database, *, after_scan: int | None = None, moved_products: set[str] | None = None) -> None:
    """Bring `products` (and `multi_account_usage`) up to date.

    after_scan: the id of a scan that was not a provider's first, after refresh_people
    regrouped only some people (its temp._people_affected): only the people whose accounts
    that scan's grant changes touched, or whose person changed, are read again.
    moved_products: after a catalog change, the products that gained or lost an app (what
    apply_matching returns): only their grants are read again. Neither: everything."""
    if moved_products is not None:
        _redo_moved_products(db, moved_products)
    else:
        _redo_multi_account_usage(db, after_scan)
    db.execute("delete from products")
    db.execute(
        """insert into products (id, catalog_id, app_id, ownership, risk, people, students, staff, providers, clients,
             tenant_wide, last_used)
           with clients as (
             select product_id, max(catalog_id) as catalog_id, case when max(catalog_id) is null then max(id) end as app_id,
               case when max(ownership = 'third_party') then 'third_party' else min(ownership) end as ownership,
               max(case risk when 'high' then 2 when 'medium' then 1 else 0 end) as risk_rank,
               group_concat(distinct case when users > 0 or tenant_wide > 0 then provider end) as providers,
               count(*) as clients, max(tenant_wide) as tenant_wide, max(last_used) as last_used,
               sum(users) as accounts, sum(students) as student_accounts, sum(staff) as staff_accounts,
               max(in_use_here) as exact
             from (
               select *, count(case when users > 0 then 1 end) over (partition by product_id, provider) > 1 as in_use_here
               from apps order by product_id, provider
             )
             group by product_id
           ),
           multi as (
             select product_id, sum(accounts) as accounts, sum(student_accounts) as student_accounts,
               sum(staff_accounts) as staff_accounts, count(*) as people,
               count(case when person_role = 'student' then 1 end) as students,
               count(case when person_role = 'staff' then 1 end) as staff
             from multi_account_usage
             group by product_id
           ),
           exact as (
             select pairs.product_id, count(distinct coalesce(users.person_id, pairs.user_id)) as people,
               count(distinct case when coalesce(people.role, users.role) = 'student'
                 then coalesce(users.person_id, pairs.user_id) end) as students,
               count(distinct case when coalesce(people.role, users.role) = 'staff'
                 then coalesce(users.person_id, pairs.user_id) end) as staff
             from (
               select distinct apps.product_id, users.id as user_id
               from clients
                 cross join apps on apps.product_id = clients.product_id
                 cross join grant_rows as g on g.app_key = apps.key and g.revoked_at is null and g.user_key != 0
                 cross join users on users.key = g.user_key
               where clients.exact
             ) as pairs
               left join users on users.id = pairs.user_id
               left join people on people.id = users.person_id
             group by pairs.product_id
           )
           select clients.product_id, clients.catalog_id, clients.app_id, clients.ownership,
             case clients.risk_rank when 2 then 'high' when 1 then 'medium' else 'low' end,
             coalesce(exact.people, clients.accounts - coalesce(multi.accounts, 0) + coalesce(multi.people, 0)),
             coalesce(exact.students, clients.student_accounts - coalesce(multi.student_accounts, 0) + coalesce(multi.students, 0)),
             coalesce(exact.staff, clients.staff_accounts - coalesce(multi.staff_accounts, 0) + coalesce(multi.staff, 0)),
             coalesce(clients.providers, ''), clients.clients, clients.tenant_wide, clients.last_used
           from clients
             left join multi on multi.product_id = clients.product_id
             left join exact on exact.product_id = clients.product_id
           union all
           select 'catalog:' || catalog.id, catalog.id, null, 'third_party', 'low', 0, 0, 0, '', 0, 0, null
           from catalog where not exists (select 1 from apps where apps.catalog_id = catalog.id)"""
    )


def _redo_moved_products(db: Database, moved: set[str]) -> None:
    """Rows of multi_account_usage for the products a catalog change gave or took an app."""
    temp_table(db, "_moved_products", "product_id text primary key", rowid=False)
    db.conn.executemany("insert into temp._moved_products (product_id) values (?)", [(product,) for product in moved])
    db.execute("delete from multi_account_usage where product_id in (select product_id from temp._moved_products)")
    db.execute(
        """insert into multi_account_usage (product_id, person_id, person_role, accounts, student_accounts, staff_accounts)
           select apps.product_id, users.person_id, max(people.role), count(distinct g.user_key),
             count(distinct case when users.role = 'student' then g.user_key end),
             count(distinct case when users.role = 'staff' then g.user_key end)
           from temp._moved_products as moved
             cross join apps on apps.product_id = moved.product_id
             cross join grant_rows as g on g.app_key = apps.key and g.revoked_at is null and g.user_key != 0
             cross join users on users.key = g.user_key
             cross join people on people.id = users.person_id
           where people.accounts > 1
           group by apps.product_id, users.person_id
           having count(distinct g.user_key) > 1 or max(users.role) is not max(people.role)"""
    )


def _redo_multi_account_usage(db: Database, after_scan: int | None) -> None:
    """Rows of multi_account_usage for everyone, or for the people a scan touched."""
    temp_table(db, "_usage_redo", "person_id text primary key", rowid=False)
    temp_table(db, "_multi_accounts", "user_key integer primary key, person_id text not null, account_role text, "
                                      "person_role text")
    if after_scan is None:
        db.execute("delete from multi_account_usage")
        accounts = db.execute(
            """insert into temp._multi_accounts (user_key, person_id, account_role, person_role)
               select users.key, users.person_id, users.role, people.role
               from people cross join users on users.person_id = people.id where people.accounts > 1"""
        ).rowcount
    else:
        db.execute(
            f"""insert or ignore into temp._usage_redo (person_id)
               select person_id from temp._people_affected
               union
               select users.person_id from change_rows join users on users.key = change_rows.user_key
               where change_rows.scan_id = ? and change_rows.kind in ({CHANGE_KIND_CODES['new_grant']}, {CHANGE_KIND_CODES['revoked_grant']})""",
            [after_scan],
        )
        db.execute("delete from multi_account_usage where person_id in (select person_id from temp._usage_redo)")
        accounts = db.execute(
            """insert into temp._multi_accounts (user_key, person_id, account_role, person_role)
               select users.key, users.person_id, users.role, people.role
               from temp._usage_redo as redo
                 cross join people on people.id = redo.person_id
                 cross join users on users.person_id = people.id
               where people.accounts > 1"""
        ).rowcount
    # Few accounts: read their grants by account (grant_rows' own order). Many (every person has
    # a Google and a Microsoft account, at the first scan): read every grant once, in order.
    # (CROSS JOIN keeps SQLite from reading every grant to find the few a temp table names.)
    if accounts * 10 < db.execute("select count(*) from users").fetchone()[0]:
        their_grants = """temp._multi_accounts as x
             cross join grant_rows as g on g.user_key = x.user_key and g.revoked_at is null"""
    else:
        their_grants = """grant_rows as g
             cross join temp._multi_accounts as x on x.user_key = g.user_key and g.revoked_at is null"""
    # Distinct accounts: a Microsoft account holds a grant a resource.
    db.execute(
        f"""insert into multi_account_usage (product_id, person_id, person_role, accounts, student_accounts, staff_accounts)
            select apps.product_id, x.person_id, max(x.person_role), count(distinct g.user_key),
              count(distinct case when x.account_role = 'student' then g.user_key end),
              count(distinct case when x.account_role = 'staff' then g.user_key end)
            from {their_grants}
              cross join apps on apps.key = g.app_key
            group by apps.product_id, x.person_id
            having count(distinct g.user_key) > 1 or max(x.account_role) is not max(x.person_role)"""
    )
