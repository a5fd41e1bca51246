"""Review in the browser: a decision on a product (a catalog entry, or an app no entry names)
and a staff member's request for a review. Both write through the same paths as an import
(scanner.store.catalog), so everything that follows from the catalog follows at once.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlite_utils import Database

from .. import schema
from ..catalog import AUDIENCES, STATUSES, CatalogError, client_id_columns, export_entry, validate_entry
from .catalog import BROWSER, import_catalog

# What IT may set in the decision form (the rest of an entry stays as it is).
DECISION_FIELDS = ("status", "audience", "approved_scopes", "dpa_url", "dpa_expires", "alternative", "notes")
MAX_TEXT = 4000


class ReviewError(Exception):
    """A decision or request that cannot be recorded: one line saying why."""


def find_person(db: Database, email: str) -> dict[str, Any] | None:
    """The person (people row) an address belongs to: their primary address, an account's or an alias."""
    address = (email or "").strip().lower()
    if not address:
        return None
    # An account's address as given (users.email's index finds it), else in another case.
    row = db.execute(
        """select people.id, people.email, people.name, people.role from users join people on people.id = users.person_id
           where users.email = ?1
           union all
           select people.id, people.email, people.name, people.role from users join people on people.id = users.person_id
           where lower(users.email) = ?1
           limit 1""", [address]).fetchone()
    if row is None:
        row = db.execute(
            """select id, email, name, role from people
               where exists (select 1 from json_each(people.addresses) where value = ?) limit 1""", [address]).fetchone()
    return None if row is None else dict(zip(("id", "email", "name", "role"), row))


def product_entry(db: Database, product_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(the product's row with its name, provider and client, its catalog entry in the import format or None)."""
    row = db.execute(
        """select products.id, products.catalog_id, products.app_id, coalesce(catalog.name, apps.name) as name,
             apps.provider, apps.client_id, apps.publisher
           from products left join catalog on catalog.id = products.catalog_id left join apps on apps.id = products.app_id
           where products.id = ?""", [product_id]).fetchone()
    if row is None:
        # An app people asked for (a provider's consent request) that nobody uses yet.
        row = db.execute(
            """select app_id, null, app_id, max(app_name), provider, client_id, null from consent_requests
               where app_id = ? group by app_id""", [product_id]).fetchone()
    if row is None:
        raise ReviewError(f"no product {product_id!r} in the inventory")
    product = dict(zip(("id", "catalog_id", "app_id", "name", "provider", "client_id", "publisher"), row))
    if product["catalog_id"] is None:
        return product, None
    entry = db["catalog"].get(product["catalog_id"])
    return product, export_entry(entry)


def _new_entry_id(db: Database, name: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "app"
    candidate, n = base, 1
    while db.execute("select 1 from catalog where id = ?", [candidate]).fetchone():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _id_column(provider: str | None, client_id: str) -> str:
    """The catalog column for an app's client id: its provider's, or (a provider that reuses
    another's kind of id) the first column whose rules accept the id."""
    columns = client_id_columns()
    if provider in columns:
        return columns[provider]
    for column in columns.values():
        try:
            validate_entry({"name": "x", "status": "pending", column: [client_id]}, "")
        except CatalogError:
            continue
        return column
    raise ReviewError(f"the catalog has no column for {provider} apps")


def record_decision(db: Database, product_id: str, fields: dict[str, Any], *, changed_by: str, now: str) -> dict[str, Any]:
    """IT's decision on a product: its catalog entry updated (or made, for an app no entry names)
    with the fields of DECISION_FIELDS, checked by the import's rules, kept in catalog_history,
    and the product's open requests marked decided (unless the decision is `pending`). Matching,
    unapproved_usage and the products follow in the same transaction. Returns the entry's row."""
    product, entry = product_entry(db, product_id)
    if entry is None:
        columns = client_id_columns()
        column = _id_column(product["provider"], product["client_id"])
        entry = {"id": _new_entry_id(db, product["name"]), "name": product["name"], "vendor": product["publisher"] or "",
                 **{c: [] for c in columns.values()}, column: [product["client_id"]], "approved_scopes": [],
                 "audience": "all", "dpa_url": "", "dpa_expires": "", "alternative": "", "notes": ""}
    unknown = set(fields) - set(DECISION_FIELDS)
    if unknown:
        raise ReviewError(f"not a field of a decision: {', '.join(sorted(unknown))}")
    if fields.get("status") not in STATUSES:
        raise ReviewError(f"status must be one of {', '.join(STATUSES)}")
    if fields.get("audience", entry["audience"] or "all") not in AUDIENCES:
        raise ReviewError(f"audience must be one of {', '.join(AUDIENCES)}")
    for name, value in fields.items():
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise ReviewError(f"{name} is longer than {MAX_TEXT} characters")
    try:
        row = validate_entry({**entry, **fields}, f"decision on {product['name']}")
    except CatalogError as error:
        raise ReviewError("; ".join(error.problems)) from None
    with db.atomic():
        import_catalog(db, [row], changed_by=changed_by, source=BROWSER, now=now)
        if row["status"] != "pending":
            db.execute(
                """update review_requests set status = 'decided', decided_at = ?, decided_by = ?, decision = ?, product_id = ?
                   where status = 'open' and product_id in (?, ?)""",
                [now, changed_by, row["status"], f"catalog:{row['id']}", product_id, f"catalog:{row['id']}"])
    return row


def products_of_person(db: Database, person_id: str) -> list[dict[str, Any]]:
    """The products a person's accounts hold active grants for (what a staff member may see and ask about)."""
    rows = db.execute(
        """select distinct apps.product_id from users join grants on grants.user_id = users.id and grants.revoked_at is null
             join apps on apps.id = grants.app_id
           where users.person_id = ? and apps.ownership = 'third_party'""", [person_id]).fetchall()
    return [row[0] for row in rows]


def file_request(db: Database, product_id: str, *, email: str, reason: str, use: str, now: str) -> int:
    """A staff member's request for a review of a product they use; returns its id. Refused for
    a product none of their accounts uses, or without a reason."""
    person = find_person(db, email)
    if person is None:
        raise ReviewError(f"{email} is not an account in the inventory")
    if person["role"] == "student":
        raise ReviewError("students ask their teacher, who can ask IT for a review")
    if product_id not in products_of_person(db, person["id"]):
        raise ReviewError("you can ask for a review only of an app one of your accounts uses")
    reason, use = (reason or "").strip(), (use or "").strip()
    if not reason:
        raise ReviewError("say why you need the app (the reason)")
    if len(reason) > MAX_TEXT or len(use) > MAX_TEXT:
        raise ReviewError(f"the reason and the class or use may each hold up to {MAX_TEXT} characters")
    name = db.execute(
        """select coalesce(catalog.name, apps.name), products.app_id from products left join catalog on catalog.id = products.catalog_id
           left join apps on apps.id = products.app_id where products.id = ?""", [product_id]).fetchone()
    app_id = name[1] or db.execute("select min(id) from apps where product_id = ?", [product_id]).fetchone()[0]
    with db.atomic():
        return db["review_requests"].insert({
            "kind": "review", "source": "staff", "product_id": product_id, "app_id": app_id, "app_name": name[0],
            "email": person["email"], "person_id": person["id"], "reason": reason, "use": use or None,
            "status": "open", "requested_at": now,
        }).last_pk


def decided_provider_requests(db: Database) -> list[dict[str, Any]]:
    """Requests people made through a provider (Microsoft's admin-consent workflow, Chrome
    extension requests) that IT has since decided in the catalog: still open in the provider's
    latest scan (once the provider's own admin approves or denies it, the provider tells the
    requester), their app named by a catalog entry whose status is a decision, set (an entry
    added, or its status changed) after the inventory first saw the request. Each with the requester's account (the request's, or
    the account with the request's address) and the decision."""
    return list(db.query(
        f"""select consent_requests.id, consent_requests.app_id, consent_requests.app_name, consent_requests.reason,
              consent_requests.requested_at, catalog.id as catalog_id, catalog.status as decision, decided.changed_at as decided_at,
              coalesce((select users.id from users where users.id = consent_requests.user_id),
                       (select users.id from users where lower(users.email) = lower(consent_requests.email)
                        order by users.id limit 1)) as user_id
            from consent_requests
              join {schema.LATEST_SCANS} as latest on latest.id = consent_requests.seen_scan_id
              join catalog on catalog.id = {schema.CATALOG_ENTRY_OF_REQUEST}
              join (select catalog_id, max(changed_at) as changed_at from catalog_history
                    where json_extract(after, '$.status') is not json_extract(before, '$.status')
                    group by catalog_id) as decided
                on decided.catalog_id = catalog.id
            where {schema.OPEN_CONSENT_REQUEST} and catalog.status != 'pending'
              and decided.changed_at >= consent_requests.first_seen
            order by consent_requests.id"""))


def history_row(row: dict[str, Any]) -> dict[str, Any]:
    """A catalog_history row with its before and after read back as mappings."""
    return {**row, "before": json.loads(row["before"]) if row.get("before") else None,
            "after": json.loads(row["after"]) if row.get("after") else None}
