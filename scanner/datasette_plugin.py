"""The app inventory's own Datasette plugin: the public page, what visitors who are not IT
staff see, and the headers and CSV cells of every response.

scanner.serve registers this module with Datasette's plugin manager at start-up (never
through a plugins directory). Every hook is inert unless the metadata carries a
`plugins: app-inventory:` block, which scanner.serve adds:

- `/transparency`: the parent-facing list of apps, rendered from the `public_apps` view
  (the same suppressed rows as its JSON and CSV). Readable by whoever may read that view:
  anyone with --public, otherwise IT staff only (as a preview).
- Visitors who are not IT staff get one and the same 404 for every table, view, row, query
  and database they may not read, and for every one that does not exist, so nobody can
  learn which tables exist. Datasette's own pages (`/-/...`) and the front page answer
  with a sign-in prompt; with --public, the front page sends them to the public list.
- `/-/sql?sql=...`: IT staff's shortcut to custom SQL on the inventory.
- IT staff (actors with role "it") may open Datasette's permission debug pages, and only
  they may open `/-/allow-debug`.
- Every response carries a Content-Security-Policy, X-Frame-Options, Referrer-Policy and
  X-Content-Type-Options; every CSV export has its formula cells neutralised (csv_guard).
"""

from __future__ import annotations

from typing import Any

from datasette import Forbidden, NotFound, Response, hookimpl
from datasette.utils import actor_matches_allow
from datasette.views.special import AllowDebugView

from . import public_language
from .csv_guard import CsvFormulaGuard

PLUGIN_NAME = "app-inventory"
DATABASE_NAME = "inventory"
PUBLIC_VIEW = "public_apps"
PUBLIC_PAGE_PATH = "/transparency"
DASHBOARD_PATH = "/-/dashboards/overview"
IT_ROLE = "it"
IT_ONLY = {"role": IT_ROLE}

# Datasette's pages use inline scripts and styles (and Vega draws the dashboard charts with
# generated functions, hence 'unsafe-eval' on those pages only); nothing loads from elsewhere,
# no page may be framed, and forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'{eval}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    # Links out (a privacy agreement) carry no address: query strings can hold emails.
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
}

# The public page's sections, in the order a parent reads them (headings and explanations
# are in the language catalogs, scanner/locales: section_<status>, section_<status>_explanation).
SECTIONS = ("approved", "conditional", "pending", "denied")
AUDIENCES = ("all", "staff", "students")


def plugin_settings(datasette) -> dict[str, Any] | None:
    """This plugin's settings from the metadata, or None when the instance is not ours."""
    return datasette.plugin_config(PLUGIN_NAME)


def is_it_staff(actor: dict | None) -> bool:
    return bool(actor) and actor_matches_allow(actor, IT_ONLY)


def _path_in_instance(datasette, request) -> str:
    """The request path without the configured base_url, e.g. "/" or "/inventory/users"."""
    base_url = datasette.setting("base_url") or "/"
    path = request.path
    if base_url != "/" and path.startswith(base_url):
        path = "/" + path[len(base_url):]
    return path


@hookimpl
def register_routes(datasette):
    if plugin_settings(datasette) is None:
        return []
    return [
        (r"^/transparency$", transparency_page),
        (r"^/-/sql$", sql_shortcut),
        (r"^/-/allow-debug$", allow_debug),
    ]


async def allow_debug(request, datasette, send):
    """Datasette's allow-block tester, for IT staff only (it tells anyone how access is decided)."""
    if not await datasette.permission_allowed(request.actor, "permissions-debug"):
        raise Forbidden("permissions-debug")
    return await AllowDebugView.as_view(datasette)(request, send)


async def transparency_page(request, datasette):
    """The public list of apps; Forbidden (hence the sign-in prompt) for whoever may not read it."""
    settings = plugin_settings(datasette)
    # The same permission chain as the view's own table page, JSON and CSV.
    await datasette.ensure_permissions(
        request.actor,
        [("view-table", (DATABASE_NAME, PUBLIC_VIEW)), ("view-database", DATABASE_NAME), "view-instance"],
    )
    all_strings = public_language.catalogs(settings.get("public_languages_dir"))
    language = public_language.choose_language(
        request.args.get("lang"), request.headers.get("accept-language"), all_strings)
    strings = all_strings[language]
    db = datasette.get_database(DATABASE_NAME)
    rows = [dict(row) for row in (await db.execute(f"select * from {PUBLIC_VIEW} order by app collate nocase")).rows]
    for row in rows:
        row["agreement_expires_text"] = public_language.long_date(row["agreement_expires"], language)
        row["students_text"] = public_language.public_count(row["students"], strings, language)
        row["staff_text"] = public_language.public_count(row["staff"], strings, language)
    updated = (await db.execute("select max(finished_at) from scans where status = 'succeeded'")).single_value()
    sections = []
    for status in SECTIONS:
        section_rows = [row for row in rows if row["status"] == status]
        if section_rows:
            sections.append({"status": status, "heading": strings[f"section_{status}"],
                             "explanation": strings[f"section_{status}_explanation"], "rows": section_rows})
    table_url = datasette.urls.table(DATABASE_NAME, PUBLIC_VIEW)
    district = settings.get("district_name") or "Our district"
    context = {
        "district_name": district,
        "contact": settings.get("public_contact"),
        "is_public": bool(settings.get("public")),
        "sections": sections,
        "total": len(rows),
        "updated": public_language.long_date(updated, language),
        "audiences": {audience: strings[f"audience_{audience}"] for audience in AUDIENCES},
        "json_url": f"{table_url}.json?_shape=array&_size=max",
        "csv_url": f"{table_url}.csv?_size=max",
        # The page's words, its language (<html lang>) and the other languages it offers.
        "t": strings,
        "page_lang": language,
        "skip_link_text": strings["skip_link"],
        "languages": [(code, all_strings[code]["language_name"]) for code in sorted(all_strings) if code != language],
        "page_path": datasette.urls.path(PUBLIC_PAGE_PATH),
    }
    html = await datasette.render_template("app_inventory_transparency.html", context, request=request)
    # The page differs by Accept-Language: a cache in front must not give one visitor's language to another.
    return Response.html(html, headers={"vary": "Accept-Language", "content-language": language})


async def sql_shortcut(request, datasette):
    """/-/sql?sql=... -> the inventory's SQL page, for whoever may run SQL there (IT staff)."""
    await datasette.ensure_permissions(request.actor, [("execute-sql", DATABASE_NAME)])
    target = datasette.urls.database(DATABASE_NAME)
    if request.query_string:
        target += "?" + request.query_string
    return Response.redirect(target)


@hookimpl
def forbidden(datasette, request, message):
    settings = plugin_settings(datasette)
    if settings is None or is_it_staff(request.actor):
        return None

    async def not_found_or_sign_in_prompt():
        path = _path_in_instance(datasette, request)
        public = bool(settings.get("public"))
        if not (path == "/" or path == PUBLIC_PAGE_PATH or path.startswith("/-/")):
            # A database, table, view, row or query: the same answer as one that does not exist.
            return await not_found(datasette, request, settings)
        if public and path == "/":
            return Response.redirect(datasette.urls.path(PUBLIC_PAGE_PATH))
        if path.endswith(".json"):
            return Response.json(
                {"ok": False, "status": 403, "error": "This is for district IT staff: sign in at /-/login."}, status=403
            )
        context = {
            "district_name": settings.get("district_name") or "Our district",
            "is_public": public,
            "public_page": datasette.urls.path(PUBLIC_PAGE_PATH),
        }
        return Response.html(
            await datasette.render_template("app_inventory_sign_in.html", context, request=request), status=403
        )

    return not_found_or_sign_in_prompt


@hookimpl(tryfirst=True)
def handle_exception(datasette, request, exception):
    settings = plugin_settings(datasette)
    if settings is None or not isinstance(exception, NotFound) or is_it_staff(request.actor):
        return None
    return not_found(datasette, request, settings)


async def not_found(datasette, request, settings: dict[str, Any]) -> Response:
    """The one 404 that visitors who are not IT staff get, whatever is or is not there."""
    if request.path.endswith(".json"):
        return Response.json({"ok": False, "status": 404, "error": "Not found", "title": None}, status=404)
    context = {
        "district_name": settings.get("district_name") or "Our district",
        "is_public": bool(settings.get("public")),
        "public_page": datasette.urls.path(PUBLIC_PAGE_PATH),
    }
    return Response.html(
        await datasette.render_template("app_inventory_not_found.html", context, request=request), status=404
    )


@hookimpl
def permission_allowed(datasette, actor, action):
    # Datasette keeps its debug pages for the "root" actor; IT staff are this instance's admins.
    if action in ("permissions-debug", "debug-menu") and is_it_staff(actor) and plugin_settings(datasette) is not None:
        return True
    return None


@hookimpl
def menu_links(datasette, actor):
    settings = plugin_settings(datasette)
    if settings is None or not is_it_staff(actor):
        return None
    public_label = "Public page" if settings.get("public") else "Public page (preview: not published)"
    return [
        {"href": datasette.urls.path(DASHBOARD_PATH), "label": "Overview dashboard"},
        {"href": datasette.urls.path(PUBLIC_PAGE_PATH), "label": public_label},
    ]


@hookimpl
def asgi_wrapper(datasette):
    def wrap(app):
        async def with_headers_and_safe_csv(scope, receive, send):
            if scope["type"] != "http" or plugin_settings(datasette) is None:
                return await app(scope, receive, send)
            path = scope.get("path", "")
            headers_to_set = {
                **SECURITY_HEADERS,
                "content-security-policy": CONTENT_SECURITY_POLICY.format(
                    eval=" 'unsafe-eval'" if path.startswith(datasette.urls.path("/-/dashboards")) else ""
                ),
            }
            guard: CsvFormulaGuard | None = None

            async def send_with_headers(message):
                nonlocal guard
                if message["type"] == "http.response.start":
                    headers = [(k, v) for k, v in message.get("headers", []) if k.lower().decode("latin-1") not in headers_to_set]
                    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers_to_set.items()]
                    content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                    if path.endswith(".csv") and not content_type.startswith(b"text/html"):
                        guard = CsvFormulaGuard()
                        headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
                    message = {**message, "headers": headers}
                elif message["type"] == "http.response.body" and guard is not None:
                    final = not message.get("more_body", False)
                    message = {**message, "body": guard.feed(message.get("body", b""), final=final)}
                await send(message)

            await app(scope, receive, send_with_headers)

        return with_headers_and_safe_csv

    return wrap
