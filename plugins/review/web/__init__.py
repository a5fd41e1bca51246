"""The review plugin's Datasette side: plugin routes, Datasette's own CSRF protection (every
POST carries the form's csrftoken, checked by Datasette before a route runs), templates here.

    /-/review                    IT: the queue (unreviewed and pending products and those with
                                 open requests, most students first), agreements expiring,
                                 the latest decisions
    /-/review/decide?product=ID  IT: the evidence for one product and the decision form; POST
                                 records the decision (scanner.decide)
    /-/requests                  anyone signed in: their own apps (by the address they signed in
                                 with) and their requests; POST files a request (scanner.request_review)

Who may do what is decided from the actor the sign-in plugin makes: role "it" for IT, role
"staff" for a district member signed in with [signin] staff_sign_in.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs, quote

from datasette import Forbidden, NotFound, Response, hookimpl
from sqlite_utils import Database

from scanner import (
    AUDIENCES, STATUSES, ReviewError, client_id_columns, decide, find_person, products_of_person, request_review,
    served_inventory,
)

DATABASE = "inventory"
QUEUE_PATH = "/-/review"
DECIDE_PATH = "/-/review/decide"
REQUESTS_PATH = "/-/requests"
STATUS_WORDS = {"approved": "Approved", "conditional": "Approved with conditions", "denied": "Not approved",
                "pending": "Under review", "unreviewed": "Not reviewed"}
AUDIENCE_WORDS = {"all": "Students and staff", "staff": "Staff only", "students": "Students only"}
RISK_ORDER = {"high": 0, "medium": 1, "low": 2}
DPA_REMINDER_DAYS = 90


def _is_it(actor: dict | None) -> bool:
    return bool(actor) and actor.get("role") == "it"


def _served(datasette):
    served = served_inventory(datasette)
    if served is None:
        raise NotFound("Not found")
    return served


@hookimpl
def register_routes(datasette):
    return [(r"^/-/review$", queue_page), (r"^/-/review/decide$", decide_page), (r"^/-/requests$", requests_page)]


@hookimpl
def menu_links(datasette, actor):
    if served_inventory(datasette) is None or not actor:
        return None
    links = [{"href": datasette.urls.path(REQUESTS_PATH), "label": "My apps and requests"}]
    if _is_it(actor):
        links.insert(0, {"href": datasette.urls.path(QUEUE_PATH), "label": "Review queue"})
    return links


async def _rows(datasette, sql: str, params=None) -> list[dict[str, Any]]:
    result = await datasette.get_database(DATABASE).execute(sql, params or [])
    return [dict(row) for row in result.rows]


def _scope_list(value: str | None) -> list[dict[str, Any]]:
    return json.loads(value) if value else []


# -- the queue ----------------------------------------------------------------------------

async def queue_page(request, datasette):
    """The review queue, for IT staff only."""
    _served(datasette)
    if not _is_it(request.actor):
        raise Forbidden("The review queue is for IT staff")
    queue = await _rows(datasette, "select * from review_queue")
    requests = await _rows(datasette, "select * from requests_for_review where status = 'open' order by requested_at")
    by_product: dict[str, list] = {}
    for row in requests:
        by_product.setdefault(row["product_id"], []).append(row)
    for row in queue:
        row["schools"] = json.loads(row["schools"] or "[]")
        row["scopes"] = _scope_list(row["scopes"])
        row["requests"] = by_product.get(row["product_id"], [])
        row["decide_url"] = datasette.urls.path(f"{DECIDE_PATH}?product={quote(row['product_id'], safe='')}")
    expiring = await _rows(
        datasette, "select * from dpa_expiring where days_left <= ? order by dpa_expires", [DPA_REMINDER_DAYS])
    decisions = await _rows(datasette, "select * from catalog_changes limit 10")
    context = {"queue": queue, "expiring": expiring, "decisions": decisions, "status_words": STATUS_WORDS,
               "decide_path": datasette.urls.path(DECIDE_PATH)}
    return Response.html(await datasette.render_template("review_queue.html", context, request=request))


# -- one product: the evidence and the decision --------------------------------------------

async def _product(datasette, product_id: str) -> dict[str, Any]:
    rows = await _rows(datasette, "select * from product_summary where id = ?", [product_id])
    if not rows:
        # An app people asked for that nobody uses yet: known only from the requests.
        rows = await _rows(
            datasette,
            """select product_id as id, max(app_name) as name, null as vendor, null as catalog_id, 'unreviewed' as status,
                 0 as people, 0 as students, 0 as staff from requests_for_review where product_id = ? group by product_id""",
            [product_id])
    if not rows:
        raise NotFound("No such product")
    return rows[0]


async def _evidence(datasette, product_id: str) -> dict[str, Any]:
    scopes = await _rows(
        datasette,
        """select granted.value as scope, coalesce(max(case when scopes.provider = apps.provider then scopes.label end), max(scopes.label), granted.value) as label,
             coalesce(max(case when scopes.provider = apps.provider then scopes.risk end), max(scopes.risk), 'medium') as risk, count(distinct grants.user_id) as accounts
           from apps join grants on grants.app_id = apps.id and grants.revoked_at is null, json_each(grants.scopes) as granted
             left join scopes on scopes.scope = granted.value
           where apps.product_id = ? group by granted.value""", [product_id])
    scopes.sort(key=lambda s: (RISK_ORDER.get(s["risk"], 1), s["scope"]))
    apps = await _rows(datasette, "select id, name, provider, client_id, publisher, verified_publisher, first_seen, last_used, "
                                  "users, students, staff from apps where product_id = ? order by provider, name", [product_id])
    queue = await _rows(datasette, "select schools, first_seen, suggested_catalog_id from review_queue where product_id = ?", [product_id])
    requests = await _rows(datasette, "select * from requests_for_review where product_id = ? order by requested_at desc", [product_id])
    unapproved = (await datasette.get_database(DATABASE).execute(
        "select count(*) from unapproved_usage where product_id = ?", [product_id])).single_value()
    return {"scopes": scopes, "apps": apps, "requests": requests, "unapproved": unapproved,
            "schools": json.loads(queue[0]["schools"] or "[]") if queue else [],
            "suggested": queue[0]["suggested_catalog_id"] if queue else None}


async def _entry(datasette, catalog_id: str | None) -> dict[str, Any] | None:
    if catalog_id is None:
        return None
    rows = await _rows(datasette, "select * from catalog where id = ?", [catalog_id])
    if not rows:
        return None
    entry = rows[0]
    entry["approved_scopes"] = json.loads(entry["approved_scopes"] or "[]")
    return entry


async def decide_page(request, datasette):
    """GET: the evidence and the form, pre-filled; POST: record the decision."""
    served = _served(datasette)
    if not _is_it(request.actor):
        raise Forbidden("Decisions are for IT staff")
    product_id = request.args.get("product") or ""
    error, values = None, None
    if request.method == "POST":
        form = parse_qs((await request.post_body()).decode("utf-8"), keep_blank_values=True)
        product_id = (form.get("product") or [""])[0]
        values = {name: (form.get(name) or [""])[0].strip() for name in
                  ("status", "audience", "dpa_url", "dpa_expires", "alternative", "notes")}
        values["approved_scopes"] = [scope for scope in form.get("approved_scopes", []) if scope.strip()]
        try:
            row = await asyncio.to_thread(decide, str(served.db_path), product_id, values,
                                          changed_by=request.actor["id"], config=served.config.current())
        except ReviewError as problem:
            error = str(problem)
        else:
            datasette.add_message(request, f"Decision recorded: {row['name']} is {STATUS_WORDS[row['status']].lower()}.",
                                  datasette.INFO)
            return Response.redirect(datasette.urls.path(f"{DECIDE_PATH}?product={quote('catalog:' + row['id'], safe='')}"))
    product = await _product(datasette, product_id)
    evidence = await _evidence(datasette, product_id)
    entry = await _entry(datasette, product["catalog_id"])
    granted = [s["scope"] for s in evidence["scopes"]]
    if values is None:
        # Pre-filled: the entry as it is; for an app not yet reviewed, what is granted today.
        values = {
            "status": entry["status"] if entry else "approved",
            "audience": entry["audience"] if entry else "all",
            "approved_scopes": (entry["approved_scopes"] or granted) if entry else granted,
            "dpa_url": (entry or {}).get("dpa_url") or "", "dpa_expires": (entry or {}).get("dpa_expires") or "",
            "alternative": (entry or {}).get("alternative") or "", "notes": (entry or {}).get("notes") or "",
        }
    extra = [{"scope": s, "label": s, "risk": "", "accounts": 0} for s in values["approved_scopes"] if s not in granted]
    history = []
    if product["catalog_id"]:
        history = await _rows(datasette, "select * from catalog_changes where catalog_id = ? limit 20", [product["catalog_id"]])
    context = {
        "product": product, "entry": entry, "evidence": evidence, "values": values, "error": error,
        "scope_choices": evidence["scopes"] + extra, "statuses": STATUSES, "audiences": AUDIENCES,
        "status_words": STATUS_WORDS, "audience_words": AUDIENCE_WORDS, "history": history,
        "id_columns": client_id_columns(), "queue_path": datasette.urls.path(QUEUE_PATH),
    }
    return Response.html(await datasette.render_template("review_decide.html", context, request=request),
                         status=400 if error else 200)


# -- staff: their own apps and requests ----------------------------------------------------

async def _person_and_products(datasette, email: str):
    def read(conn):
        db = Database(conn)
        person = find_person(db, email)
        return person, (products_of_person(db, person["id"]) if person else [])

    return await datasette.get_database(DATABASE).execute_fn(read)


async def requests_page(request, datasette):
    """A signed-in person's own apps and requests; POST files a request for one of them."""
    served = _served(datasette)
    actor = request.actor
    if not actor:
        raise Forbidden("Sign in to ask for a review")
    email = actor.get("email") or actor["id"]
    person, product_ids = await _person_and_products(datasette, email)
    error = None
    if request.method == "POST":
        form = await request.post_vars()
        product_id = form.get("product") or ""
        try:
            if product_id not in product_ids:
                raise ReviewError("you can ask for a review only of an app one of your accounts uses")
            await asyncio.to_thread(request_review, str(served.db_path), product_id, email=email,
                                    reason=form.get("reason") or "", use=form.get("use") or "")
        except ReviewError as problem:
            error = str(problem)
        else:
            datasette.add_message(request, "Your request was sent to IT. You will get an email when they decide.", datasette.INFO)
            return Response.redirect(datasette.urls.path(REQUESTS_PATH))
    apps, mine = [], []
    if person:
        placeholders = ",".join("?" * len(product_ids))
        apps = await _rows(
            datasette,
            f"""select id, name, vendor, status, audience, alternative, dpa_url from product_summary
                where id in ({placeholders}) order by name collate nocase""", product_ids) if product_ids else []
        mine = await _rows(datasette,
                           "select * from requests_for_review where person_id = ? or email = ? order by requested_at desc",
                           [person["id"], person["email"]])
    context = {"person": person, "apps": apps, "requests": mine, "error": error, "status_words": STATUS_WORDS,
               "audience_words": AUDIENCE_WORDS, "selected": request.args.get("product"), "email": email}
    return Response.html(await datasette.render_template("review_requests.html", context, request=request),
                         status=400 if error else 200)
