"""The one place that knows the inventory's shape: migrations, indexes and views.

Tables are created by numbered sqlite-utils Migrations. An applied migration is
frozen: it holds its own SQL and calls nothing defined below it, so editing a view
later cannot change what an old migration did (tests/test_schema.py upgrades a
database made by the first one). Views and indexes are applied from constants by
`ensure_db_shape()`, which is idempotent and runs every time the store opens.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("app_inventory")

STATUSES_NEEDING_REVIEW = ("unreviewed", "pending", "denied")


@migrations(name="0001_initial")
def m0001_initial(db: Database) -> None:
    db["scans"].create(
        {
            "id": int, "provider": str, "tenant": str, "mode": str,
            "started_at": str, "finished_at": str, "status": str,
            "users_seen": int, "apps_seen": int, "grants_seen": int,
            "api_calls": int, "retries": int, "error": str,
            "baseline": int, "state": str,
        },
        pk="id",
        not_null={"provider", "mode", "started_at", "status"},
        defaults={"status": "running", "users_seen": 0, "apps_seen": 0, "grants_seen": 0, "api_calls": 0, "retries": 0, "baseline": 0},
    )
    db["users"].create(
        {
            "id": str, "provider": str, "email": str, "name": str, "role": str,
            "org_unit": str, "suspended": int, "first_seen": str, "last_seen": str,
        },
        pk="id",
        not_null={"provider", "email", "role", "first_seen", "last_seen"},
    )
    db["catalog"].create(
        {
            "id": str, "name": str, "vendor": str, "status": str, "status_original": str,
            "google_client_ids": str, "microsoft_app_ids": str, "approved_scopes": str,
            "audience": str, "dpa_url": str, "dpa_expires": str, "alternative": str, "notes": str,
        },
        pk="id",
        not_null={"name", "status", "audience"},
    )
    db["apps"].create(
        {
            "id": str, "provider": str, "client_id": str, "name": str, "publisher": str,
            "verified_publisher": str, "ownership": str, "homepage": str, "details": str,
            "first_seen": str, "last_seen": str, "last_used": str,
            "catalog_id": str, "status": str, "risk": str,
            "users": int, "students": int, "staff": int, "tenant_wide": int,
        },
        pk="id",
        not_null={"provider", "client_id", "name", "ownership", "first_seen", "last_seen", "status", "risk"},
        defaults={"status": "unreviewed", "risk": "low", "ownership": "third_party", "users": 0, "students": 0, "staff": 0, "tenant_wide": 0},
        foreign_keys=[("catalog_id", "catalog", "id")],
    )
    db["grants"].create(
        {
            "id": str, "provider": str, "user_id": str, "app_id": str, "scopes": str,
            "grant_type": str, "resource": str, "tenant_wide": int, "risk": str,
            "first_seen": str, "last_seen": str, "last_used": str, "revoked_at": str,
            "seen_scan_id": int,
        },
        pk="id",
        not_null={"provider", "app_id", "scopes", "grant_type", "tenant_wide", "risk", "first_seen", "last_seen"},
        defaults={"grant_type": "delegated", "resource": "", "tenant_wide": 0},
        foreign_keys=[("user_id", "users", "id"), ("app_id", "apps", "id"), ("seen_scan_id", "scans", "id")],
    )
    db["scopes"].create(
        {"provider": str, "scope": str, "label": str, "risk": str, "data_category": str},
        pk=("provider", "scope"),
        not_null={"label", "risk", "data_category"},
    )
    db["catalog_suggestions"].create(
        {"app_id": str, "catalog_id": str, "score": float},
        pk="app_id",
        foreign_keys=[("app_id", "apps", "id"), ("catalog_id", "catalog", "id")],
    )
    db["changes"].create(
        {
            "id": int, "scan_id": int, "provider": str, "kind": str,
            "app_id": str, "user_id": str, "grant_id": str, "scopes": str, "detected_at": str,
        },
        pk="id",
        not_null={"scan_id", "provider", "kind", "app_id", "detected_at"},
        foreign_keys=[("scan_id", "scans", "id"), ("app_id", "apps", "id"), ("user_id", "users", "id")],
    )



@migrations(name="0002_users_is_admin")
def m0002_users_is_admin(db: Database) -> None:
    db["users"].add_column("is_admin", int)


@migrations(name="0003_unapproved_usage_table")
def m0003_unapproved_usage_table(db: Database) -> None:
    """unapproved_usage was a view; Datasette re-ran its joins over every grant for the row
    count and again for each facet (seconds in a large district). Now it is a table the
    store refreshes whenever grants, accounts or the catalog change (see UNAPPROVED_USAGE)."""
    db.execute("drop view if exists unapproved_usage")
    # A rowid table: a text primary key would double the cost of each refresh.
    columns = (
        "grant_id", "app_id", "app", "provider", "status", "risk", "reason", "user_id", "email", "user_name", "role",
        "org_unit", "scopes", "first_seen", "last_used", "alternative",
    )
    db["unapproved_usage"].create({column: str for column in columns})
    db.execute(
        """insert into unapproved_usage
           select grants.id, apps.id, apps.name, apps.provider, apps.status, apps.risk,
             case when apps.status in ('unreviewed', 'pending', 'denied') then apps.status else 'outside audience' end,
             users.id, users.email, users.name, users.role, users.org_unit,
             grants.scopes, grants.first_seen, grants.last_used, catalog.alternative
           from grants
             join apps on apps.id = grants.app_id
             join users on users.id = grants.user_id
             left join catalog on catalog.id = apps.catalog_id
           where grants.revoked_at is null and apps.ownership = 'third_party'
             and (apps.status in ('unreviewed', 'pending', 'denied')
                  or (apps.status = 'conditional' and catalog.audience = 'staff' and users.role = 'student'))"""
    )


@migrations(name="0004_people_and_products")
def m0004_people_and_products(db: Database) -> None:
    """People and products (docs/people-and-products.md). A person is the accounts that share
    an address (users.aliases, users.person_id, the people table); a product is a catalog
    entry, or an app no entry names (apps.product_id, the products table). The store fills
    them after every scan and catalog change, and right after this upgrade (open_db)."""
    db["users"].add_column("aliases", str)
    db["users"].add_column("person_id", str)
    db["apps"].add_column("product_id", str)
    db["unapproved_usage"].add_column("person_id", str)
    db["unapproved_usage"].add_column("product_id", str)
    db["people"].create(
        {
            "id": str, "email": str, "name": str, "role": str, "accounts": int, "providers": str,
            "account_ids": str, "addresses": str, "suspended": int,
        },
        pk="id",
        not_null={"email", "role", "accounts"},
    )
    db["products"].create(
        {
            "id": str, "catalog_id": str, "app_id": str, "ownership": str, "risk": str,
            "people": int, "students": int, "staff": int, "providers": str, "clients": int,
            "tenant_wide": int, "last_used": str,
        },
        pk="id",
        not_null={"ownership", "risk", "people", "students", "staff", "clients", "tenant_wide"},
        foreign_keys=[("catalog_id", "catalog", "id"), ("app_id", "apps", "id")],
    )
    # What the accounts of people with several accounts add to each product (scanner.store.products).
    db["multi_account_usage"].create(
        {"product_id": str, "person_id": str, "person_role": str, "accounts": int, "student_accounts": int,
         "staff_accounts": int},
        pk=("product_id", "person_id"),
        not_null={"accounts", "student_accounts", "staff_accounts"},
    )
    # An app may now have several suggestions: a catalog entry, and apps of other providers
    # that look like the same product. The table is derived (refilled by the store), so it is
    # made again rather than altered.
    db["catalog_suggestions"].drop()
    db["catalog_suggestions"].create(
        {"app_id": str, "catalog_id": str, "same_as_app_id": str, "reason": str, "score": float},
        not_null={"app_id", "reason", "score"},
        foreign_keys=[("app_id", "apps", "id"), ("catalog_id", "catalog", "id"), ("same_as_app_id", "apps", "id")],
    )


@migrations(name="0005_posture")
def m0005_posture(db: Database) -> None:
    """The tenant settings that decide whether people can connect apps at all, one row per check
    and scope for every scan (history), and people's requests for admin consent."""
    db["posture"].create(
        {
            "id": int, "scan_id": int, "provider": str, "check_id": str, "title": str,
            "scope_kind": str, "scope": str, "requirement": str, "expected": str, "actual": str,
            "result": str, "previous_result": str, "reason": str, "fix": str, "checked_at": str,
        },
        pk="id",
        not_null={"scan_id", "provider", "check_id", "title", "scope_kind", "scope", "result", "checked_at"},
        defaults={"scope": ""},
        foreign_keys=[("scan_id", "scans", "id")],
    )
    db["consent_requests"].create(
        {
            "id": str, "provider": str, "app_id": str, "client_id": str, "app_name": str, "scopes": str,
            "status": str, "user_id": str, "email": str, "user_name": str, "reason": str,
            "requested_at": str, "completed_at": str, "first_seen": str, "last_seen": str, "seen_scan_id": int,
        },
        pk="id",
        not_null={"provider", "app_id", "client_id", "scopes", "status", "first_seen", "last_seen"},
        foreign_keys=[("seen_scan_id", "scans", "id")],
    )


@migrations(name="0006_chrome")
def m0006_chrome(db: Database) -> None:
    """Chrome extensions (the chrome provider): the catalog lists their ids like client ids."""
    db["catalog"].add_column("chrome_extension_ids", str)


@migrations(name="0007_revoke")
def m0007_revoke(db: Database) -> None:
    """Revocation (docs/revoke.md): a plan IT reads and approves, one action per grant the
    provider holds (with the grant as the API returned it, which restore and the audit need),
    and each action's outcome. The only writes to a tenant are recorded here, before and after."""
    db["revoke_plans"].create(
        {
            "id": int, "created_at": str, "created_by": str, "selection": str, "kind": str,
            "approved_at": str, "approved_by": str, "applied_at": str, "applied_by": str,
            "finished_at": str, "status": str, "actions": int, "note": str,
        },
        pk="id",
        not_null={"created_at", "created_by", "selection", "kind", "status", "actions"},
        defaults={"status": "planned", "kind": "revoke", "actions": 0},
    )
    db["revoke_actions"].create(
        {
            "id": int, "plan_id": int, "provider": str, "action": str, "grant_id": str, "app_id": str,
            "user_id": str, "target": str, "snapshot": str, "scopes_removed": str, "scopes_kept": str,
            "state": str, "attempts": int, "error": str, "restores_action_id": int,
            "planned_at": str, "started_at": str, "finished_at": str, "notified": int,
        },
        pk="id",
        not_null={"plan_id", "provider", "action", "app_id", "target", "snapshot", "state", "attempts", "planned_at"},
        defaults={"state": "pending", "attempts": 0, "notified": 0},
        foreign_keys=[("plan_id", "revoke_plans", "id"), ("restores_action_id", "revoke_actions", "id")],
    )
    db["revoke_actions"].create_index(["plan_id", "state"])
    db["revoke_actions"].create_index(["grant_id"])
    # A grant the next scan finds gone because the district removed it: which plan did it.
    db["changes"].add_column("revoked_by_plan", int)


@migrations(name="0008_review")
def m0008_review(db: Database) -> None:
    """Review in the browser (docs/review.md): every catalog change with who, when and the entry
    before and after; requests for a review filed in the tool (kind and source say what and
    where from, so other request sources fit the same table); and when the catalog was last
    exported, so an import never silently overwrites a decision made in the browser since."""
    db["catalog_history"].create(
        {
            "id": int, "catalog_id": str, "changed_at": str, "changed_by": str, "source": str, "action": str,
            "before": str, "after": str,
        },
        pk="id",
        not_null={"catalog_id", "changed_at", "changed_by", "source", "action"},
    )
    db["review_requests"].create(
        {
            "id": int, "kind": str, "source": str, "product_id": str, "app_id": str, "app_name": str,
            "email": str, "person_id": str, "reason": str, "use": str, "status": str,
            "requested_at": str, "decided_at": str, "decided_by": str, "decision": str,
        },
        pk="id",
        not_null={"kind", "source", "product_id", "email", "status", "requested_at"},
        defaults={"status": "open"},
    )
    db["catalog_exports"].create(
        {"id": int, "exported_at": str, "exported_by": str, "path": str, "entries": int, "last_history_id": int},
        pk="id",
        not_null={"exported_at", "entries"},
    )


INDEXES = [
    ("scans", ["provider", "status", "id"]),
    ("users", ["email"]),
    ("users", ["person_id"]),
    ("multi_account_usage", ["person_id"]),
    ("apps", ["provider", "status"]),
    ("apps", ["catalog_id"]),
    ("apps", ["product_id"]),
    ("catalog_suggestions", ["app_id"]),
    ("grant_rows", ["app_key", "user_key"]),
    ("change_rows", ["scan_id", "kind"]),
    # A check's history (the previous result of each check and scope), and each scan's rows.
    ("posture_rows", ["check_key", "scope_kind", "scope", "scan_id"]),
    ("posture_rows", ["scan_id"]),
    ("consent_requests", ["seen_scan_id", "status"]),
    ("consent_requests", ["client_id"]),
    ("catalog_history", ["catalog_id", "id"]),
    ("review_requests", ["product_id", "status"]),
    ("review_requests", ["email"]),
]

def iso_time(column: str) -> str:
    """SQL for a stored Unix time as the inventory's timestamp text (null stays null)."""
    return f"strftime('%Y-%m-%dT%H:%M:%SZ', {column}, 'unixepoch')"


def unix_time(value: str) -> str:
    """SQL for an inventory timestamp (text) as a Unix time."""
    return f"cast(strftime('%s', {value}) as integer)"


RISK_NAME_SQL = "case {0} when 2 then 'high' when 1 then 'medium' else 'low' end"
RISK_RANK_SQL = "case {0} when 'high' then 2 when 'medium' then 1 else 0 end"

# A change record's kind as change_rows stores it (migration 0014), and back to its word.
CHANGE_KIND_CODES = {"new_app": 1, "new_grant": 2, "new_scopes": 3, "revoked_grant": 4}


def change_kind_word(column: str) -> str:
    """SQL for a stored change kind (CHANGE_KIND_CODES) as its word."""
    return "case " + column + "".join(f" when {code} then '{kind}'" for kind, code in CHANGE_KIND_CODES.items()) + " end"


# A grant's id, provider:account:client[:resource][:application], as scanner.store.grant_id makes
# it, from the account's id (null: tenant-wide, "*") and the app's client id.
GRANT_ID = ("{provider} || ':' || coalesce(substr({user}, length({provider}) + 2), '*') || ':' || {client}"
            " || case when {resource} != '' then ':' || {resource} else '' end"
            " || case when {application} then ':application' else '' end")

# Grants as people read them (migration 0010 stores them by keys in grant_rows).
GRANTS = f"""
select
  {GRANT_ID.format(provider="apps.provider", user="users.id", client="apps.client_id", resource="g.resource",
                   application="g.application")} as id,
  apps.provider, users.id as user_id, apps.id as app_id, scope_sets.scopes,
  case when g.application then 'application' else 'delegated' end as grant_type, g.resource,
  g.user_key = 0 as tenant_wide, {RISK_NAME_SQL.format("g.risk")} as risk,
  {iso_time("g.first_seen")} as first_seen, {iso_time("g.last_seen")} as last_seen,
  {iso_time("g.last_used")} as last_used, {iso_time("g.revoked_at")} as revoked_at, g.seen_scan_id
from grant_rows as g
  join apps on apps.key = g.app_key
  join scope_sets on scope_sets.key = g.scope_set
  left join users on users.key = g.user_key
"""

# One row an app, counts kept on `apps` by the store after every scan.
# What person_rows leave empty, because most people have one account: their id's account's
# address and name (the view looks them up), its id alone as their accounts, its address
# alone as their addresses. The `people` view fills them in; the store keeps a value only
# where it differs (scanner.store.people). Stored, these were a sixth of the inventory.
PERSON_EMAIL = "(select users.email from users where users.id = {id})"
PERSON_NAME = "(select coalesce(users.name, '') from users where users.id = {id})"
PERSON_ACCOUNT_IDS = "json_array({row}.id)"
PERSON_ADDRESSES = ("case when trim(coalesce({row}.email, '')) != '' then json_array(lower(trim({row}.email)))"
                    " else json_array() end")
PEOPLE = f"""
select id, email, name, role, accounts, providers,
  coalesce(account_ids, {PERSON_ACCOUNT_IDS.format(row="p")}) as account_ids,
  coalesce(addresses, {PERSON_ADDRESSES.format(row="p")}) as addresses,
  suspended
from (
  select person_rows.id, coalesce(person_rows.email, {PERSON_EMAIL.format(id="person_rows.id")}) as email,
    coalesce(person_rows.name, {PERSON_NAME.format(id="person_rows.id")}) as name, person_rows.role, person_rows.accounts,
    person_rows.providers, person_rows.account_ids, person_rows.addresses, person_rows.suspended
  from person_rows
) as p
"""

APP_SUMMARY = """
select
  apps.id, apps.name, apps.provider, apps.publisher, apps.verified_publisher,
  apps.ownership, apps.status, apps.risk,
  apps.users, apps.students, apps.staff, apps.tenant_wide,
  catalog.name as catalog_name, catalog.audience, catalog.alternative,
  catalog.dpa_url, catalog.dpa_expires,
  apps.last_used, apps.first_seen, apps.last_seen, apps.client_id, apps.product_id
from apps left join catalog on catalog.id = apps.catalog_id
"""

# One row a product (a catalog entry, or an app no entry names), across providers; the
# counts are distinct people, kept on `products` by the store after every scan and catalog change.
PRODUCT_SUMMARY = """
select
  products.id, coalesce(catalog.name, apps.name) as name, coalesce(catalog.vendor, apps.publisher) as vendor,
  products.catalog_id, coalesce(catalog.status, apps.status, 'unreviewed') as status, products.ownership,
  products.risk, products.people, products.students, products.staff, products.tenant_wide,
  products.providers, products.clients, catalog.audience, catalog.alternative,
  catalog.dpa_url, catalog.dpa_expires, products.last_used, products.app_id
from products
  left join catalog on catalog.id = products.catalog_id
  left join apps on apps.id = products.app_id
"""

# The one rule for "not approved": an active grant of a third-party app that nobody may
# use (unreviewed, pending, denied), or of a conditional staff-only app on a student's
# account. The unapproved_grants view applies it to every grant, tenant-wide consents
# included (no user, so never "outside audience"); the `unapproved` table, which the store
# refreshes, keeps its per-account rows (UNAPPROVED_ROWS), and the unapproved_usage view
# shows them with what IT reads.
_NEEDS_REVIEW = ", ".join(f"'{status}'" for status in STATUSES_NEEDING_REVIEW)
UNAPPROVED_RULE = f"""
  apps.ownership = 'third_party'
  and (
    apps.status in ({_NEEDS_REVIEW})
    or (apps.status = 'conditional' and catalog.audience = 'staff' and users.role = 'student')
  )
"""
UNAPPROVED_REASON = f"case when apps.status in ({_NEEDS_REVIEW}) then apps.status else 'outside audience' end"

UNAPPROVED_GRANTS = f"""
select grants.id as grant_id, grants.app_id, grants.user_id, apps.status, {UNAPPROVED_REASON} as reason
from grants
  join apps on apps.id = grants.app_id
  left join users on users.id = grants.user_id
  left join catalog on catalog.id = apps.catalog_id
where grants.revoked_at is null and {UNAPPROVED_RULE}
"""

# What `unapproved` holds: each account's active unapproved grants by key (the store
# appends "and ..." to refresh some accounts or apps only). Why (UNAPPROVED_REASON) follows
# from the app's status, so the views read it there.
UNAPPROVED_ROWS = f"""
select g.user_key, g.app_key, g.resource, g.application
from grant_rows as g
  join apps on apps.key = g.app_key
  join users on users.key = g.user_key
  left join catalog on catalog.id = apps.catalog_id
where g.revoked_at is null and {UNAPPROVED_RULE}
"""


def refresh_unapproved_sql(where: str = "") -> str:
    """Insert into `unapproved` the rows UNAPPROVED_ROWS gives, those `where` selects ("and ...") only."""
    return f"insert into unapproved (user_key, app_key, resource, application) {UNAPPROVED_ROWS} {where}"


# The unapproved_usage page: one row a person's unapproved grant, readable. Each column is a
# lookup by key rather than a join, so counting the rows (Datasette does on every page view)
# reads `unapproved` alone, a few milliseconds a million rows, and a page looks up its 100.
def _lookup(table: str, key: str, column: str) -> str:
    return f"(select {column} from {table} where {table}.key = u.{key})"


_GRANT_OF_ROW = ("from grant_rows as g where g.user_key = u.user_key and g.app_key = u.app_key"
                 " and g.resource = u.resource and g.application = u.application")
UNAPPROVED_USAGE = f"""
select
  (select {GRANT_ID.format(provider="apps.provider", user="users.id", client="apps.client_id", resource="u.resource",
                           application="u.application")}
   from apps, users where apps.key = u.app_key and users.key = u.user_key) as grant_id,
  {_lookup("apps", "app_key", "id")} as app_id, {_lookup("apps", "app_key", "name")} as app,
  {_lookup("apps", "app_key", "provider")} as provider, {_lookup("apps", "app_key", "status")} as status,
  {_lookup("apps", "app_key", "risk")} as risk, (select {UNAPPROVED_REASON} from apps where apps.key = u.app_key) as reason,
  {_lookup("users", "user_key", "id")} as user_id, {_lookup("users", "user_key", "email")} as email,
  {_lookup("users", "user_key", "name")} as user_name, {_lookup("users", "user_key", "role")} as role,
  {_lookup("users", "user_key", "org_unit")} as org_unit,
  (select scope_sets.scopes from scope_sets where scope_sets.key = (select g.scope_set {_GRANT_OF_ROW})) as scopes,
  (select {iso_time("g.first_seen")} {_GRANT_OF_ROW}) as first_seen,
  (select {iso_time("g.last_used")} {_GRANT_OF_ROW}) as last_used,
  (select catalog.alternative from apps join catalog on catalog.id = apps.catalog_id where apps.key = u.app_key)
    as alternative,
  {_lookup("users", "user_key", "person_id")} as person_id, {_lookup("apps", "app_key", "product_id")} as product_id
from unapproved as u
"""

# The same rows' ids, by joins: what the alerts plugin reads, filtered by account or app id
# through their indexes (a filter on the view's lookups would compute them for every row).
UNAPPROVED_IDS = f"""
select apps.id as app_id, users.id as user_id,
  {GRANT_ID.format(provider="apps.provider", user="users.id", client="apps.client_id", resource="u.resource",
                   application="u.application")} as grant_id,
  {UNAPPROVED_REASON} as reason, apps.status
from unapproved as u
  join apps on apps.key = u.app_key
  join users on users.key = u.user_key
"""

# Every active unapproved grant by key, for plugins that keep rows of their own by key (the
# alerts plugin): each account's from `unapproved` (filter it by user_key or app_key, which
# its indexes find), and the tenant-wide consents (no account) by the same rule.
UNAPPROVED_KEYS = f"""
select u.app_key, u.user_key, u.resource, u.application, {UNAPPROVED_REASON} as reason, apps.status
from unapproved as u join apps on apps.key = u.app_key
"""
TENANT_WIDE_UNAPPROVED_KEYS = f"""
select g.app_key, g.user_key, g.resource, g.application, {UNAPPROVED_REASON} as reason, apps.status
from grant_rows as g
  join apps on apps.key = g.app_key
  left join users on users.key = g.user_key
  left join catalog on catalog.id = apps.catalog_id
where g.user_key = 0 and g.revoked_at is null and {UNAPPROVED_RULE}
"""


# Active grants holding scopes the catalog did not approve (an empty approved list means "not
# reviewed"), by key: `{where}` is a condition on the grant (g) and its app (apps), which
# finds the grants of some accounts through grant_rows' own order (the alerts plugin; "1"
# for all). The approved (entry, scope) pairs are read once, not once a grant.
_UNAPPROVED_SCOPES = """json_each(scope_sets.scopes) as granted
  where not exists (select 1 from approved where approved.catalog_id = catalog.id and approved.scope = granted.value)"""
SCOPE_CREEP_KEYS = f"""
with approved as materialized (
  select catalog.id as catalog_id, approved.value as scope
  from catalog, json_each(catalog.approved_scopes) as approved
)
select g.app_key, g.user_key, g.resource, g.application, g.scope_set, g.first_seen,
  (select json_group_array(granted.value) from {_UNAPPROVED_SCOPES}) as extra_scopes
from grant_rows as g
  join apps on apps.key = g.app_key
  join catalog on catalog.id = apps.catalog_id
  join scope_sets on scope_sets.key = g.scope_set
where g.revoked_at is null and json_array_length(catalog.approved_scopes) > 0
  and exists (select 1 from {_UNAPPROVED_SCOPES}) and {{where}}
"""

SCOPE_CREEP = f"""
select
  {GRANT_ID.format(provider="apps.provider", user="users.id", client="apps.client_id", resource="c.resource",
                   application="c.application")} as grant_id,
  apps.id as app_id, apps.name as app, apps.provider, apps.status,
  users.id as user_id, users.email, users.role, users.org_unit, c.user_key = 0 as tenant_wide,
  c.extra_scopes, catalog.approved_scopes, scope_sets.scopes, {iso_time("c.first_seen")} as first_seen
from ({SCOPE_CREEP_KEYS.format(where="1")}) as c
  join apps on apps.key = c.app_key
  join catalog on catalog.id = apps.catalog_id
  join scope_sets on scope_sets.key = c.scope_set
  left join users on users.key = c.user_key
"""

DPA_EXPIRING = """
select
  catalog.id, catalog.name, catalog.vendor, catalog.status, catalog.dpa_url, catalog.dpa_expires,
  cast(julianday(catalog.dpa_expires) - julianday('now') as integer) as days_left,
  coalesce((select products.people from products where products.catalog_id = catalog.id), 0) as users
from catalog
where catalog.dpa_expires is not null and catalog.dpa_expires != ''
order by catalog.dpa_expires
"""

# The history of what scans found (migration 0011 stores it by keys in change_rows).
CHANGES = f"""
select
  c.id, c.scan_id, apps.provider, {change_kind_word("c.kind")} as kind, apps.id as app_id, users.id as user_id,
  case when c.resource is not null then {GRANT_ID.format(provider="apps.provider", user="users.id", client="apps.client_id",
                                                         resource="c.resource", application="c.application")} end as grant_id,
  scope_sets.scopes, {iso_time("c.detected_at")} as detected_at, c.revoked_by_plan
from change_rows as c
  join apps on apps.key = c.app_key
  left join users on users.key = c.user_key
  left join scope_sets on scope_sets.key = c.scope_set
"""

CHANGES_SINCE_LAST_SCAN = f"""
select
  c.id, apps.provider, {change_kind_word("c.kind")} as kind, {iso_time("c.detected_at")} as detected_at,
  apps.name as app, apps.status, apps.risk, apps.id as app_id,
  users.email, users.role, users.id as user_id, scope_sets.scopes, c.scan_id
from change_rows as c
  join (select provider, max(id) as id from scans where status = 'succeeded' group by provider) as latest
    on latest.id = c.scan_id
  join apps on apps.key = c.app_key
  left join users on users.key = c.user_key
  left join scope_sets on scope_sets.key = c.scope_set
"""

# Scopes seen in active grants that the shipped scope knowledge does not describe (rated medium).
UNKNOWN_SCOPES = """
select grants.provider, granted.value as scope, count(distinct grants.app_id) as apps, count(*) as grants
from grants, json_each(grants.scopes) as granted
where grants.revoked_at is null
  and not exists (select 1 from scopes where scopes.scope = granted.value)
group by grants.provider, granted.value
order by apps desc, grants desc
"""

# Small-number protection for everything anonymous visitors can read. A count under the
# threshold would single out a few people; and an exact count above it, set next to another
# (two roles of one app, or one app before and after a catalog change: 18, then 14), would
# reveal the hidden difference (4). So no count is ever published exactly: each is shown as
# its band of SUPPRESSION_THRESHOLD ("<10", "10 to 19", "20 to 29", ...). The difference or
# sum of any published numbers then spans at least as many possible values as "<10" itself.
SUPPRESSION_THRESHOLD = 10


def published_count(column: str) -> str:
    """SQL for how a count is published: "<10", or its band of ten ("10 to 19", "1,230 to 1,239")."""
    low = f"(cast(coalesce({column}, 0) / {SUPPRESSION_THRESHOLD} as integer) * {SUPPRESSION_THRESHOLD})"
    return (
        f"case when coalesce({column}, 0) < {SUPPRESSION_THRESHOLD} then '<{SUPPRESSION_THRESHOLD}' "
        f"else printf('%,d to %,d', {low}, {low} + {SUPPRESSION_THRESHOLD - 1}) end"
    )


# The public transparency list (the only thing anonymous visitors may read): one row per
# catalog entry, the district's own wording, no free-text notes, and the people using it by
# role (distinct people across providers: see the people view), each count published as a
# band (published_count), so the page, JSON and CSV are all protected. Per-role counts only.
PUBLIC_APPS = f"""
select
  catalog.id, catalog.name as app, catalog.vendor, catalog.status,
  catalog.status_original as status_detail, catalog.audience,
  nullif(catalog.dpa_url, '') as agreement_url,
  nullif(catalog.dpa_expires, '') as agreement_expires,
  case
    when coalesce(catalog.dpa_expires, '') = '' then null
    when catalog.dpa_expires < date('now') then 'expired'
    else 'current'
  end as agreement_status,
  nullif(catalog.alternative, '') as use_instead,
  {published_count("products.students")} as students,
  {published_count("products.staff")} as staff
from catalog
  left join products on products.catalog_id = catalog.id
"""

# Each provider's latest succeeded scan: what "now" means for posture and consent requests.
LATEST_SCANS = "(select provider, max(id) as id from scans where status = 'succeeded' group by provider)"

# Every scan's posture findings, each row with its check's words (posture_checks).
POSTURE = """
select
  posture_rows.id, posture_rows.scan_id, checks.provider, checks.check_id, checks.title, posture_rows.scope_kind,
  posture_rows.scope, checks.requirement, checks.expected, posture_rows.actual, posture_rows.result,
  posture_rows.previous_result, posture_rows.reason, checks.fix, posture_rows.checked_at
from posture_rows
  join posture_checks as checks on checks.key = posture_rows.check_key
"""

# The posture each provider's latest scan found: one row per check and scope.
POSTURE_CURRENT = f"""
select
  posture.provider, posture.check_id, posture.title, posture.scope_kind, posture.scope, posture.requirement,
  posture.result, posture.expected, posture.actual, posture.reason, posture.fix, posture.previous_result,
  posture.checked_at, posture.scan_id
from posture
  join {LATEST_SCANS} as latest on latest.id = posture.scan_id
"""

# Requests that wait for an administrator's decision (Microsoft: Initializing or InProgress).
OPEN_CONSENT_STATUSES = ("inprogress", "initializing")
OPEN_CONSENT_REQUEST = "lower(consent_requests.status) in (" + ", ".join(f"'{s}'" for s in OPEN_CONSENT_STATUSES) + ")"

# The catalog's columns that list a provider's ids (JSON arrays): apps and requests match an
# entry by exact id in any of them. A new id kind is a new column here and in a migration.
CATALOG_ID_COLUMNS = ("google_client_ids", "microsoft_app_ids", "chrome_extension_ids")
_CATALOG_ID_MATCH = "\n       or ".join(
    f"exists (select 1 from json_each(coalesce(candidate.{column}, '[]')) where lower(value) = lower(consent_requests.client_id))"
    for column in CATALOG_ID_COLUMNS)
# The id of the catalog entry a consent request's app belongs to (null when none names it).
CATALOG_ENTRY_OF_REQUEST = f"(select candidate.id from catalog as candidate where {_CATALOG_ID_MATCH} limit 1)"

# One row per app people asked an administrator to consent to, with the catalog's decision,
# as the latest scan saw the requests: "12 people asked for this app; it is denied". The
# catalog is matched by exact client or app id, as apps are.
CONSENT_REQUEST_SUMMARY = f"""
select
  consent_requests.provider, consent_requests.client_id, max(consent_requests.app_name) as app,
  coalesce(catalog.status, 'unreviewed') as status, catalog.name as catalog_name, catalog.alternative,
  count(*) as requests, count(distinct consent_requests.user_id) as people,
  count(distinct case when users.role = 'student' then consent_requests.user_id end) as students,
  count(distinct case when users.role = 'staff' then consent_requests.user_id end) as staff,
  min(consent_requests.requested_at) as first_requested, max(consent_requests.requested_at) as last_requested,
  consent_requests.app_id, catalog.id as catalog_id
from consent_requests
  join {LATEST_SCANS} as latest on latest.id = consent_requests.seen_scan_id
  left join users on users.id = consent_requests.user_id
  left join catalog on catalog.id = {CATALOG_ENTRY_OF_REQUEST}
where {OPEN_CONSENT_REQUEST}
group by consent_requests.provider, consent_requests.client_id
"""

# Who planned, approved and applied what, when, and each action's outcome (revoke_plans and
# revoke_actions, written by `app-inventory revoke`; per-person rows, signed-in IT only).
AUDIT = """
select
  revoke_actions.id as action_id, revoke_plans.id as plan_id, revoke_plans.kind as plan_kind,
  revoke_plans.created_by as planned_by, revoke_plans.created_at as planned_at,
  revoke_plans.approved_by, revoke_plans.approved_at, revoke_plans.applied_by, revoke_plans.applied_at,
  revoke_actions.provider, revoke_actions.action, revoke_actions.app_id, apps.name as app,
  revoke_actions.user_id, users.email, revoke_actions.scopes_removed, revoke_actions.state as outcome,
  revoke_actions.error, revoke_actions.attempts, revoke_actions.finished_at, revoke_actions.restores_action_id
from revoke_actions
  join revoke_plans on revoke_plans.id = revoke_actions.plan_id
  left join apps on apps.id = revoke_actions.app_id
  left join users on users.id = revoke_actions.user_id
"""

# Every request for a review, whatever its source: those filed in the tool (review_requests:
# staff asking from their alert) and the requests providers keep (consent_requests as each
# provider's latest scan saw them: Microsoft's admin-consent workflow, Chrome extension
# requests), each with the product it is about. status: open, decided (in the tool) or the
# provider's own word once it is no longer open.
REQUESTS_FOR_REVIEW = f"""
select 'review:' || review_requests.id as id, review_requests.kind, review_requests.source,
  review_requests.product_id, review_requests.app_id, review_requests.app_name, review_requests.email,
  review_requests.person_id, review_requests.reason, review_requests.use, review_requests.status,
  review_requests.requested_at, review_requests.decided_at, review_requests.decision
from review_requests
union all
select consent_requests.id, 'consent', consent_requests.provider,
  coalesce(apps.product_id, consent_requests.app_id), consent_requests.app_id, consent_requests.app_name,
  consent_requests.email, users.person_id, consent_requests.reason, null,
  case when {OPEN_CONSENT_REQUEST} then 'open' else lower(consent_requests.status) end,
  consent_requests.requested_at, consent_requests.completed_at, null
from consent_requests
  join {LATEST_SCANS} as latest on latest.id = consent_requests.seen_scan_id
  left join apps on apps.id = consent_requests.app_id
  left join users on users.id = consent_requests.user_id
"""

# The review queue (IT): unreviewed and pending products, products with open requests, and apps
# people asked for that nobody uses yet, most students first, then most people, then the riskiest; each with its evidence.
# schools: the last part of the org units of the people using it; scopes: what is granted
# today, in plain words with the risk (the scopes table); suggested_*: the catalog entry whose
# name resembles it (an entry that may only lack this client id).
_RISK_ORDER = "case risk when 'high' then 0 when 'medium' then 1 else 2 end"
REVIEW_QUEUE = f"""
with queue as (
  select products.id as product_id, coalesce(catalog.name, apps.name) as name,
    coalesce(catalog.vendor, apps.publisher) as vendor, coalesce(catalog.status, apps.status, 'unreviewed') as status,
    products.risk, products.people, products.students, products.staff, products.providers, products.last_used,
    products.catalog_id
  from products
    left join catalog on catalog.id = products.catalog_id
    left join apps on apps.id = products.app_id
  where products.ownership = 'third_party'
  union all
  select requested.product_id, max(requested.app_name), null, 'unreviewed', 'low', 0, 0, 0,
    group_concat(distinct requested.source), null, null
  from requests_for_review as requested
  where requested.status = 'open' and not exists (select 1 from products where products.id = requested.product_id)
  group by requested.product_id
)
select queue.product_id, queue.name, queue.vendor, queue.status, queue.risk, queue.people, queue.students,
  queue.staff, queue.providers,
  (select json_group_array(school) from (
     select distinct replace(users.org_unit, rtrim(users.org_unit, replace(users.org_unit, '/', '')), '') as school
     from apps join grants on grants.app_id = apps.id and grants.revoked_at is null
       join users on users.id = grants.user_id
     where apps.product_id = queue.product_id and coalesce(users.org_unit, '') not in ('', '/')
     order by 1)) as schools,
  (select json_group_array(json_object('scope', scope, 'label', label, 'risk', risk)) from (
     select * from (
       select granted.value as scope, coalesce(max(case when scopes.provider = apps.provider then scopes.label end), max(scopes.label), granted.value) as label,
         coalesce(max(case when scopes.provider = apps.provider then scopes.risk end), max(scopes.risk), 'medium') as risk
       from apps join grants on grants.app_id = apps.id and grants.revoked_at is null, json_each(grants.scopes) as granted
         left join scopes on scopes.scope = granted.value
       where apps.product_id = queue.product_id
       group by granted.value)
     order by {_RISK_ORDER}, scope)) as scopes,
  (select min(apps.first_seen) from apps where apps.product_id = queue.product_id) as first_seen,
  queue.last_used,
  (select catalog_suggestions.catalog_id from catalog_suggestions join apps on apps.id = catalog_suggestions.app_id
   where apps.product_id = queue.product_id and catalog_suggestions.catalog_id is not null
   order by catalog_suggestions.score desc limit 1) as suggested_catalog_id,
  (select count(*) from requests_for_review as requested
   where requested.product_id = queue.product_id and requested.status = 'open') as open_requests
from queue
where queue.status in ('unreviewed', 'pending')
  or exists (select 1 from requests_for_review as requested
             where requested.product_id = queue.product_id and requested.status = 'open')
order by queue.students desc, queue.people desc, {_RISK_ORDER.replace("risk", "queue.risk", 1)}, queue.name
"""

# Every change to the catalog, newest first: who, when, from where (the browser, an import).
CATALOG_CHANGES = """
select catalog_history.id, catalog_history.changed_at, catalog_history.changed_by, catalog_history.source,
  catalog_history.action, catalog_history.catalog_id, coalesce(json_extract(catalog_history.after, '$.name'),
  json_extract(catalog_history.before, '$.name')) as name,
  json_extract(catalog_history.before, '$.status') as status_before,
  json_extract(catalog_history.after, '$.status') as status_after,
  catalog_history.before, catalog_history.after
from catalog_history
order by catalog_history.id desc
"""

@migrations(name="0009_incremental")
def m0009_incremental(db: Database) -> None:
    """users.listed_digest: what the provider last said of the account, digested (User.digest), so
    an incremental scan that lists the whole directory rewrites only the accounts that changed."""
    db["users"].add_column("listed_digest", int)


@migrations(name="0010_integer_keys")
def m0010_integer_keys(db: Database) -> None:
    """Grants stored by integer keys (docs/scale.md: an inventory of a million accounts).

    Every grant repeated its account's and app's text ids (an app id is up to 80 characters),
    its own id made of both, its scope list and four timestamps, in the row and again in two
    indexes: about 740 bytes a grant. Accounts and apps get an integer `key` (their rowid,
    so it stays put), each distinct scope list is stored once (scope_sets), and a grant is a
    row of `grant_rows`: keys, flags and Unix times, keyed by (account, app, resource, type)
    without a rowid. The `grants` view (schema.GRANTS) shows them as before: the same
    columns, readable ids, scope lists and timestamps. The unapproved_usage table copied
    every unapproved grant with its account's and app's details: `unapproved` keeps the
    grant's key and the reason, and the unapproved_usage view shows the rest (the store
    fills it on opening, as after 0004)."""
    for view in db.view_names():
        db.execute(f"drop view {view}")
    for table in ("users", "apps"):
        db[table].add_column("key", int)
        db.execute(f"update {table} set key = rowid")
        db[table].transform(pk="key", column_order=["key"], not_null={"id"})
        db.execute(f"create unique index {table}_id on {table} (id)")
    # A grant names its account by key, so an account the provider never listed gets a row (as the scan's writer does).
    db.execute(
        """insert into users (id, provider, email, role, first_seen, last_seen)
           select user_id, max(provider), '', 'unknown', min(first_seen), max(last_seen) from grants
           where user_id is not null and user_id not in (select id from users) group by user_id"""
    )
    db.execute("create table scope_sets (key integer primary key, scopes text not null unique)")
    db.execute(
        """create table grant_rows (
             user_key integer not null,  -- users.key, 0 for a tenant-wide grant
             app_key integer not null,   -- apps.key
             resource text not null default '',
             application integer not null default 0,  -- grant_type: 1 application, 0 delegated
             scope_set integer not null,  -- scope_sets.key
             risk integer not null,  -- 0 low, 1 medium, 2 high
             first_seen integer not null, last_seen integer not null, last_used integer, revoked_at integer,
             seen_scan_id integer,
             primary key (user_key, app_key, resource, application)
           ) without rowid"""
    )
    db.execute("insert or ignore into scope_sets (scopes) select distinct scopes from grants")

    def unix(column: str) -> str:
        return f"cast(strftime('%s', grants.{column}) as integer)"

    db.execute(
        f"""insert or replace into grant_rows (user_key, app_key, resource, application, scope_set, risk,
              first_seen, last_seen, last_used, revoked_at, seen_scan_id)
            select coalesce(users.key, 0), apps.key, coalesce(grants.resource, ''), grants.grant_type = 'application',
              scope_sets.key, case grants.risk when 'high' then 2 when 'medium' then 1 else 0 end,
              {unix('first_seen')}, {unix('last_seen')}, {unix('last_used')}, {unix('revoked_at')}, grants.seen_scan_id
            from grants
              join apps on apps.id = grants.app_id
              join scope_sets on scope_sets.scopes = grants.scopes
              left join users on users.id = grants.user_id
            order by grants.revoked_at is null, grants.last_seen"""
    )
    db["grants"].drop()
    db["unapproved_usage"].drop()
    db.execute(
        """create table unapproved (
             user_key integer not null, app_key integer not null, resource text not null, application integer not null,
             reason text not null,
             primary key (user_key, app_key, resource, application)
           ) without rowid"""
    )


@migrations(name="0011_change_rows")
def m0011_change_rows(db: Database) -> None:
    """Change records stored by integer keys, as grants since 0010 (docs/scale.md: on disk).

    A change repeated its account's and app's text ids, the grant's id made of both, its
    scope list and its time as text: about 340 bytes, the most of what a year of weekly
    scans adds. A change is now a row of `change_rows`: the keys of its app and account (0
    for none), the grant's resource and type (a null resource: not about a grant, a new
    app), its scope list in scope_sets and a Unix time. The `changes` view (schema.CHANGES)
    shows the same columns as before. The grant's resource and type are read back from its
    id, which GRANT_ID makes again from them, the same text."""
    for view in db.view_names():
        db.execute(f"drop view {view}")
    # Every account a change names has a row since 0010 (retention forgets an account only
    # after its changes); one that has none anyway gets one, as 0010 did for grants.
    db.execute(
        """insert into users (id, provider, email, role, first_seen, last_seen)
           select user_id, max(provider), '', 'unknown', min(detected_at), max(detected_at) from changes
           where user_id is not null and user_id not in (select id from users) group by user_id"""
    )
    db.execute("insert or ignore into scope_sets (scopes) select distinct scopes from changes where scopes is not null")
    db.execute(
        """create table change_rows (
             id integer primary key,
             scan_id integer not null,
             kind text not null,          -- new_app, new_grant, new_scopes, revoked_grant
             app_key integer not null,    -- apps.key
             user_key integer not null,   -- users.key, 0 for none
             resource text,               -- the grant's; null for a change about no grant (new_app)
             application integer,         -- the grant's type: 1 application, 0 delegated
             scope_set integer,           -- scope_sets.key: the scopes involved
             detected_at integer not null,  -- Unix time
             revoked_by_plan integer
           )"""
    )
    # What follows the grant id's account and client: '', ':<resource>', ':<resource>:application' or ':application'.
    prefix_length = ("length(changes.provider || ':' || coalesce(substr(changes.user_id, length(changes.provider) + 2), '*')"
                     " || ':' || apps.client_id)")
    db.execute(
        f"""insert into change_rows (id, scan_id, kind, app_key, user_key, resource, application, scope_set, detected_at,
              revoked_by_plan)
            select changes.id, changes.scan_id, changes.kind, apps.key, coalesce(users.key, 0),
              case when changes.grant_id is not null then
                substr(case when substr(rest, -12) = ':application' then substr(rest, 1, length(rest) - 12) else rest end, 2) end,
              case when changes.grant_id is not null then substr(rest, -12) = ':application' end,
              scope_sets.key, cast(strftime('%s', changes.detected_at) as integer), changes.revoked_by_plan
            from (select changes.*, substr(changes.grant_id, {prefix_length} + 1) as rest
                  from changes join apps on apps.id = changes.app_id) as changes
              join apps on apps.id = changes.app_id
              left join users on users.id = changes.user_id
              left join scope_sets on scope_sets.scopes = changes.scopes"""
    )
    db["changes"].drop()


@migrations(name="0012_compact_people")
def m0012_compact_people(db: Database) -> None:
    """People and accounts in less room (docs/scale.md: on disk).

    A person repeated their id's account's address and name, and their account ids and
    addresses as JSON lists, though most people have one account: `person_rows` keeps each
    only where it differs from what that one account gives (schema.PEOPLE, the `people`
    view, shows them all), keyed by the person's id without a rowid and with no index of
    addresses (a person is found by an address through their accounts, users.email). An
    unapproved row kept its reason, which follows from the app's status (the views read it
    there), and an index by app that a pass over the rows replaces. Four indexes of `users`
    go: by provider, role and organizational unit (read by nothing but whole-table passes),
    and (person_id, id), which one on person_id alone replaces."""
    for view in db.view_names():
        db.execute(f"drop view {view}")
    for index in ("idx_users_provider", "idx_users_role", "idx_users_org_unit", "idx_users_person_id_id", "idx_people_email",
                  "idx_unapproved_app_key"):
        db.execute(f"drop index if exists {index}")
    db.execute(
        """create table person_rows (
             id text primary key,
             email text,        -- null: that of the account whose id is the person's
             name text,         -- null: that account's (or '')
             role text not null, accounts integer not null, providers text,
             account_ids text,  -- JSON; null: [id]
             addresses text,    -- JSON; null: [lower(trim(email))], or [] for no address
             suspended integer
           ) without rowid"""
    )
    db.execute(
        """insert into person_rows (id, email, name, role, accounts, providers, account_ids, addresses, suspended)
           select people.id, nullif(people.email, own.email), nullif(people.name, coalesce(own.name, '')), people.role,
             people.accounts, people.providers, nullif(people.account_ids, json_array(people.id)),
             nullif(people.addresses, case when trim(coalesce(people.email, '')) != ''
                                           then json_array(lower(trim(people.email))) else json_array() end),
             people.suspended
           from people left join users as own on own.id = people.id"""
    )
    db["people"].drop()
    db.execute("alter table unapproved drop column reason")


@migrations(name="0013_compact_posture")
def m0013_compact_posture(db: Database) -> None:
    """Posture findings in less room (docs/scale.md: a school year of weekly scans).

    Every scan wrote each check's title, requirement, expected value and fix again, about
    600 bytes a row and a few dozen rows a scan whatever the district's size: a fifth of a
    small district's growth in a school year. `posture_checks` keeps those words once for
    each wording of a check; `posture_rows` keeps what each scan found (the `posture` view
    shows both as the table did)."""
    for view in db.view_names():
        db.execute(f"drop view {view}")
    db.execute(
        """create table posture_checks (
             key integer primary key,
             provider text not null, check_id text not null, title text not null,
             requirement text, expected text, fix text
           )"""
    )
    db.execute(
        """create table posture_rows (
             id integer primary key,
             scan_id integer not null references scans(id),
             check_key integer not null,  -- posture_checks.key
             scope_kind text not null, scope text not null default '',
             actual text, result text not null, previous_result text, reason text,
             checked_at text not null
           )"""
    )
    db.execute(
        """insert into posture_checks (provider, check_id, title, requirement, expected, fix)
           select distinct provider, check_id, title, requirement, expected, fix from posture"""
    )
    db.execute(
        """insert into posture_rows (id, scan_id, check_key, scope_kind, scope, actual, result, previous_result, reason,
             checked_at)
           select posture.id, posture.scan_id, checks.key, posture.scope_kind, posture.scope, posture.actual, posture.result,
             posture.previous_result, posture.reason, posture.checked_at
           from posture join posture_checks as checks
             on checks.provider = posture.provider and checks.check_id = posture.check_id and checks.title = posture.title
               and checks.requirement is posture.requirement and checks.expected is posture.expected
               and checks.fix is posture.fix"""
    )
    db["posture"].drop()


@migrations(name="0014_compact_change_rows")
def m0014_compact_change_rows(db: Database) -> None:
    """Change records in less room (docs/scale.md: a school year of weekly scans): a record's
    kind as a number (CHANGE_KIND_CODES; the `changes` view shows the word), in the table
    and in its index by scan, and no index by time, which only retention read, once a scan."""
    for view in db.view_names():
        db.execute(f"drop view {view}")
    db.execute("drop index if exists idx_change_rows_detected_at")
    db.execute("drop index if exists idx_change_rows_scan_id_kind")
    db.execute(
        """create table change_rows_by_code (
             id integer primary key,
             scan_id integer not null,
             kind integer not null,       -- 1 new_app, 2 new_grant, 3 new_scopes, 4 revoked_grant
             app_key integer not null,    -- apps.key
             user_key integer not null,   -- users.key, 0 for none
             resource text,               -- the grant's; null for a change about no grant (new_app)
             application integer,         -- the grant's type: 1 application, 0 delegated
             scope_set integer,           -- scope_sets.key: the scopes involved
             detected_at integer not null,  -- Unix time
             revoked_by_plan integer
           )"""
    )
    db.execute(
        """insert into change_rows_by_code
           select id, scan_id, case kind when 'new_app' then 1 when 'new_grant' then 2 when 'new_scopes' then 3
                                         when 'revoked_grant' then 4 end,
             app_key, user_key, resource, application, scope_set, detected_at, revoked_by_plan
           from change_rows"""
    )
    db.execute("drop table change_rows")
    db.execute("alter table change_rows_by_code rename to change_rows")


VIEWS = {
    "people": PEOPLE,
    "grants": GRANTS,
    "changes": CHANGES,
    "app_summary": APP_SUMMARY,
    "product_summary": PRODUCT_SUMMARY,
    "unapproved_grants": UNAPPROVED_GRANTS,
    "unapproved_usage": UNAPPROVED_USAGE,
    "scope_creep": SCOPE_CREEP,
    "dpa_expiring": DPA_EXPIRING,
    "changes_since_last_scan": CHANGES_SINCE_LAST_SCAN,
    "unknown_scopes": UNKNOWN_SCOPES,
    "public_apps": PUBLIC_APPS,
    "posture": POSTURE,
    "posture_current": POSTURE_CURRENT,
    "consent_request_summary": CONSENT_REQUEST_SUMMARY,
    "audit": AUDIT,
    "requests_for_review": REQUESTS_FOR_REVIEW,
    "review_queue": REVIEW_QUEUE,
    "catalog_changes": CATALOG_CHANGES,
}


def ensure_db_shape(db: Database) -> list[str]:
    """Apply pending migrations, WAL mode, indexes and views. Safe to run any number of times.
    Returns the names of the migrations it applied (none when the database was up to date)."""
    db.enable_wal()
    pending = [migration.name for migration in migrations.pending(db)]
    migrations.apply(db)
    for table, columns in INDEXES:
        db[table].create_index(columns, if_not_exists=True)
    for name, sql in VIEWS.items():
        db.create_view(name, sql.strip(), replace=True)
    return pending
