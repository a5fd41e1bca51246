"""Products: a catalog entry with all its clients, or an app no entry names; the counts of
distinct people using each (docs/people-and-products.md)."""

from __future__ import annotations

from sqlite_utils import Database

from .temp import temp_table


def refresh_products(db: Database) -> None:
    """Rebuild `products`: one row a catalog entry (with or without apps) and one an app no
    entry names, counting distinct people across all its clients and providers, each with
    the role in `people`.

    Most of the count is already on `apps` (accounts an app, by the account's role, kept by
    refresh_app_stats): each account of a person with one account is one person. Only the
    grants of people with several accounts are read again, to count each such person once
    with their own role; and, for the rare product with two clients in use on one provider
    (where one account may hold both), every grant of its clients. (CROSS JOIN keeps SQLite
    from reading every grant to find the few a small temp table names.)"""
    temp_table(db, "_shared_accounts", "user_id text primary key, person integer not null, account_role text, person_role text",
                rowid=False)
    temp_table(db, "_exact_products", "product_id text primary key", rowid=False)
    temp_table(db, "_product_of", "app_id text primary key, product_id text not null, product_number integer not null",
                rowid=False)
    # The person as an integer (people.rowid, for this query only): sorting by it is cheaper.
    shared = db.execute(
        """insert into temp._shared_accounts (user_id, person, account_role, person_role)
           select users.id, people.rowid, users.role, people.role
           from people join users on users.person_id = people.id where people.accounts > 1"""
    ).rowcount
    db.execute(
        """insert or ignore into temp._exact_products (product_id)
           select product_id from apps where users > 0 group by product_id, provider having count(*) > 1"""
    )
    # Each app's product, numbered (grouping by a number is cheaper), but for the exact products.
    db.execute(
        """insert into temp._product_of (app_id, product_id, product_number)
           select id, product_id, dense_rank() over (order by product_id) from apps
           where product_id not in (select product_id from temp._exact_products)"""
    )
    # Few shared accounts: read their grants through the index on user_id. Many (every person
    # has a Google and a Microsoft account): read every grant once, in index order, instead.
    if shared * 10 < db.execute("select count(*) from users").fetchone()[0]:
        shared_grants = """temp._shared_accounts as x
                 cross join grants on grants.user_id = x.user_id and grants.revoked_at is null"""
    else:
        shared_grants = """grants indexed by idx_grants_app_id_revoked_at_user_id
                 cross join temp._shared_accounts as x on x.user_id = grants.user_id and grants.revoked_at is null"""
    db.execute("delete from products")
    db.execute(
        f"""insert into products (id, catalog_id, app_id, ownership, risk, people, students, staff, providers, clients,
             tenant_wide, last_used)
           with clients as (
             select product_id, max(catalog_id) as catalog_id, case when max(catalog_id) is null then max(id) end as app_id,
               case when max(ownership = 'third_party') then 'third_party' else min(ownership) end as ownership,
               max(case risk when 'high' then 2 when 'medium' then 1 else 0 end) as risk_rank,
               group_concat(distinct case when users > 0 or tenant_wide > 0 then provider end) as providers,
               count(*) as clients, max(tenant_wide) as tenant_wide, max(last_used) as last_used,
               sum(users) as accounts, sum(students) as student_accounts, sum(staff) as staff_accounts
             from (select * from apps order by product_id, provider)
             group by product_id
           ),
           shared as (
             select product_id, sum(accounts) as accounts, sum(student_accounts) as student_accounts,
               sum(staff_accounts) as staff_accounts, count(*) as people,
               count(case when person_role = 'student' then 1 end) as students,
               count(case when person_role = 'staff' then 1 end) as staff
             from (
               -- one row a (product, person); distinct accounts, as a Microsoft account holds a grant a resource
               select product.product_id, x.person, max(x.person_role) as person_role,
                 count(distinct grants.user_id) as accounts,
                 count(distinct case when x.account_role = 'student' then grants.user_id end) as student_accounts,
                 count(distinct case when x.account_role = 'staff' then grants.user_id end) as staff_accounts
               from {shared_grants}
                 cross join temp._product_of as product on product.app_id = grants.app_id
               group by product.product_number, x.person
             )
             group by product_id
           ),
           exact as (
             select pairs.product_id, count(distinct coalesce(x.person, pairs.user_id)) as people,
               count(distinct case when coalesce(x.person_role, users.role) = 'student'
                 then coalesce(x.person, pairs.user_id) end) as students,
               count(distinct case when coalesce(x.person_role, users.role) = 'staff'
                 then coalesce(x.person, pairs.user_id) end) as staff
             from (
               select distinct apps.product_id, grants.user_id
               from temp._exact_products as e
                 cross join apps on apps.product_id = e.product_id
                 cross join grants on grants.app_id = apps.id and grants.revoked_at is null and grants.user_id is not null
             ) as pairs
               left join temp._shared_accounts as x on x.user_id = pairs.user_id
               left join users on users.id = pairs.user_id
             group by pairs.product_id
           )
           select clients.product_id, clients.catalog_id, clients.app_id, clients.ownership,
             case clients.risk_rank when 2 then 'high' when 1 then 'medium' else 'low' end,
             coalesce(exact.people, clients.accounts - coalesce(shared.accounts, 0) + coalesce(shared.people, 0)),
             coalesce(exact.students, clients.student_accounts - coalesce(shared.student_accounts, 0) + coalesce(shared.students, 0)),
             coalesce(exact.staff, clients.staff_accounts - coalesce(shared.staff_accounts, 0) + coalesce(shared.staff, 0)),
             coalesce(clients.providers, ''), clients.clients, clients.tenant_wide, clients.last_used
           from clients
             left join shared on shared.product_id = clients.product_id
             left join exact on exact.product_id = clients.product_id
           union all
           select 'catalog:' || catalog.id, catalog.id, null, 'third_party', 'low', 0, 0, 0, '', 0, 0, null
           from catalog where not exists (select 1 from apps where apps.catalog_id = catalog.id)"""
    )
