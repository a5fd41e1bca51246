"""The sign-in plugin's Datasette side (given to `app-inventory serve` through `datasette_plugins`).

In the shape of datasette-auth-github: routes that sign people in and out, an actor that
`permission_allowed` (here: the metadata's `allow: {role: it}`) decides from. Unlike it, the
cookie holds no actor, only a random session id, signed: the session lives in the access
log's file, so it can expire, be ended by "Log out", and be re-checked at every request.

    /-/login    GET: the form. POST: CSRF-checked (even without cookies), throttled per
                account and per address, the password checked off the event loop with the
                same work for unknown usernames; a new session id at every sign-in
    /-/logout   GET: Datasette's confirmation page. POST: ends the session server-side

Every request: the Authorization header is dropped (no HTTP Basic anywhere), a ds_actor
cookie that is not one of our sessions is dropped, the session is looked up, expired ones
end, and who is IT is decided again from the configuration as it is now
(membership.is_it_staff). A signed-in request that reads per-person data is written to the
access log before it is answered; if the log cannot be written, the request is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import secrets
import weakref
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import unquote

from datasette import NotFound, Response, hookimpl
from datasette.database import Database
from itsdangerous import BadSignature

from scanner import ConfigError, ServedInventory, iso, parse_iso, served_inventory, utc_now

from .. import settings as signin_settings
from ..accesslog import AccessLog
from ..membership import Identity, actor_for
from ..passwords import PasswordChecker, decoy_hash

log = logging.getLogger(__name__)

COOKIE = "ds_actor"  # Datasette's own name: its "Log out" button then shows for our sessions
COOKIE_NAMESPACE = "app-inventory-session"  # not Datasette's "actor": an old signed actor is no session
CSRF_COOKIE = "ds_csrftoken"
ACCESS_DATABASE = "access_log"
SCOPE_KEY = "app_inventory.session"
LOGIN_PATH = "/-/login"
LOGOUT_PATH = "/-/logout"
PURGE_EVERY = dt.timedelta(hours=24)


@dataclass
class Session:
    id: str
    identity: Identity
    actor: dict[str, Any]


@dataclass
class SignIn:
    """The plugin's state for one Datasette instance (made at start-up)."""

    served: ServedInventory
    access_log: AccessLog
    passwords: PasswordChecker
    last_purge: dt.datetime | None = None
    config_error_logged: bool = False
    decoys: dict[tuple, str] = field(default_factory=dict)

    def settings(self) -> dict[str, Any] | None:
        """[signin] as the configuration file says now; None (nobody is IT) while it does not load."""
        try:
            config = self.served.config.current()
        except ConfigError as error:
            if not self.config_error_logged:
                log.error("signin: the configuration no longer loads, so nobody is signed in as IT staff until it is fixed: %s", error)
                self.config_error_logged = True
            return None
        self.config_error_logged = False
        return config.section("signin")

    def history_days(self) -> int:
        try:
            return self.served.config.current().section("retention")["history_days"]
        except ConfigError:
            return 400  # purge with the default while the file is broken: never keep less

    def decoy_for(self, hashes: dict[str, str]) -> str:
        key = tuple(sorted(hashes.values()))
        if key not in self.decoys:
            self.decoys.clear()
            self.decoys[key] = decoy_hash(list(hashes.values()))
        return self.decoys[key]


_states: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def state_of(datasette) -> SignIn | None:
    """The plugin's state for an instance, once it has started."""
    return _states.get(datasette)


# -- start-up ---------------------------------------------------------------------------------

@hookimpl
def startup(datasette):
    served = served_inventory(datasette)
    if served is None or state_of(datasette) is not None:
        return
    config = served.config.current()
    settings = config.section("signin")
    hashes = signin_settings.password_hashes(settings, f"{config.where}: [signin]", strict=True)
    path = signin_settings.access_log_path(settings, served.db_path)
    access_log = AccessLog(path)
    access_log.run(access_log._setup)
    state = SignIn(served=served, access_log=access_log, passwords=PasswordChecker())
    _states[datasette] = state
    _purge_now(state)
    datasette.add_database(Database(datasette, path=str(path.resolve()), is_mutable=True), name=ACCESS_DATABASE)
    if hashes:
        served.announce(f"IT staff:     sign in at {{base}}{LOGIN_PATH} (password accounts: {', '.join(sorted(hashes))})")
    else:
        served.announce(
            "IT staff:     no account is configured, so nobody can sign in. To add one, run "
            "`app-inventory hash-password --username NAME`, export the hash, and name its variable "
            "in [signin] password_accounts (see app-inventory.example.toml)."
        )
    served.announce(f"Access log:   {path} (IT staff read it at {{base}}/{ACCESS_DATABASE})")


def _purge_now(state: SignIn) -> None:
    now = utc_now()
    cutoff = iso(now - dt.timedelta(days=state.history_days()))
    counts = state.access_log.run(state.access_log._purge, cutoff)
    state.last_purge = now
    if any(counts.values()):
        log.info("signin: retention removed %s from the access log", counts)


async def _purge_if_due(state: SignIn) -> None:
    now = utc_now()
    if state.last_purge is None or now - state.last_purge >= PURGE_EVERY:
        state.last_purge = now
        cutoff = iso(now - dt.timedelta(days=state.history_days()))
        await state.access_log.call(state.access_log._purge, cutoff)


@hookimpl
def get_metadata(datasette, key, database, table):
    if served_inventory(datasette) is None:
        return None
    return {"databases": {ACCESS_DATABASE: signin_settings.ACCESS_LOG_METADATA}}


# -- every request ----------------------------------------------------------------------------

@hookimpl
def actor_from_request(datasette, request):
    session = request.scope.get(SCOPE_KEY)
    return session.actor if session else None


@hookimpl
def asgi_wrapper(datasette):
    def wrap(app):
        async def signed_in_or_not(scope, receive, send):
            if scope["type"] != "http" or served_inventory(datasette) is None:
                return await app(scope, receive, send)
            await datasette.invoke_startup()  # our state is made there; Datasette makes it idempotent
            state = state_of(datasette)
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"authorization"]
            cookies = _cookies(headers)
            session, clear_cookie = None, False
            if COOKIE in cookies:
                session = await _session_from_cookie(datasette, state, scope, cookies[COOKIE])
                if session is None:
                    # Not one of our live sessions (an old signed actor, an ended session): gone.
                    headers = _without_cookie(headers, COOKIE)
                    clear_cookie = True
            scope = {**scope, "headers": headers, SCOPE_KEY: session}
            if session is not None and _reads_personal_data(datasette, scope):
                try:
                    await _record_request(state, scope, session)
                except Exception as error:  # the log is the condition for reading personal data
                    log.error("signin: cannot write the access log %s: %s", state.access_log.path, error)
                    response = Response.text("The access log cannot be written, so personal data is not shown. "
                                             "Tell whoever runs app-inventory serve.", status=503)
                    return await response.asgi_send(send)
            if not clear_cookie:
                return await app(scope, receive, send)

            async def send_clearing_cookie(message):
                if message["type"] == "http.response.start":
                    headers = list(message.get("headers", []))
                    # Unless the response sets a new session itself (signing in again).
                    if not any(k.lower() == b"set-cookie" and v.startswith(COOKIE.encode() + b"=") for k, v in headers):
                        headers.append((b"set-cookie", _clear_cookie_header(scope).encode("latin-1")))
                    message = {**message, "headers": headers}
                await send(message)

            await app(scope, receive, send_clearing_cookie)

        return signed_in_or_not

    return wrap


async def _session_from_cookie(datasette, state: SignIn, scope, value: str) -> Session | None:
    """The live session a cookie names, with IT membership decided again; ends it when it expired
    or its person is no longer IT staff."""
    try:
        token = datasette.unsign(value, COOKIE_NAMESPACE)["s"]
    except (BadSignature, KeyError, TypeError):
        return None
    session_id = _session_id(token)
    row = await state.access_log.call(state.access_log._session, session_id)
    if row is None or row["ended_at"] is not None:
        return None
    identity = Identity.from_dict(json.loads(row["identity"]))
    now = utc_now()
    if parse_iso(row["expires_at"]) <= now:
        await _end_session(state, scope, session_id, identity, "expired")
        return None
    settings = state.settings()
    if settings is None:
        return None  # the configuration is broken: nobody is IT until it is fixed (the session stays)
    actor = actor_for(identity, settings)
    if actor is None:
        await _end_session(state, scope, session_id, identity, "no longer IT staff in the configuration")
        return None
    return Session(id=session_id, identity=identity, actor=actor)


async def _end_session(state: SignIn, scope, session_id: str, identity: Identity, reason: str) -> None:
    at = iso(utc_now())
    if await state.access_log.call(state.access_log._end_session, session_id, at=at, reason=reason):
        await state.access_log.call(
            state.access_log._record_sign_in, at=at, event="session_ended", outcome="succeeded", auth=identity.auth,
            username=identity.actor_id, client_ip=_client_ip(scope), reason=reason, session=session_id)


def _reads_personal_data(datasette, scope) -> bool:
    """A database page (tables, views, rows, queries, SQL, exports) or a dashboard: every one of
    them can show per-person rows. Datasette's own /-/ pages, static files and the public
    page cannot."""
    path = _path_in_instance(datasette, scope["path"])
    if path.startswith("/-/dashboards"):
        return True
    first = path.lstrip("/").split("/", 1)[0]
    name = first.rsplit(".", 1)[0] if "." in first else first
    return bool(first) and not first.startswith("-") and name in datasette.databases


async def _record_request(state: SignIn, scope, session: Session) -> None:
    await _purge_if_due(state)
    query = scope.get("query_string", b"").decode("latin-1")
    await state.access_log.call(
        state.access_log._record_request, at=iso(utc_now()), actor_id=session.actor["id"], auth=session.identity.auth,
        client_ip=_client_ip(scope), method=scope.get("method", "GET"), path=scope["path"],
        query=unquote(query.replace("+", " ")) or None, session=session.id)


# -- signing in and out -----------------------------------------------------------------------

@hookimpl
def register_routes(datasette):
    # Routes are fixed when Datasette is made, before it is known to serve an inventory:
    # the views answer 404 for an instance that does not.
    return [(r"^/-/login$", login), (r"^/-/logout$", logout)]


def _state_or_not_found(datasette) -> SignIn:
    state = state_of(datasette)
    if state is None:
        raise NotFound("Not found")
    return state


async def login(request, datasette):
    state = _state_or_not_found(datasette)
    if request.method == "GET":
        return await _login_page(datasette, request)
    form = await request.post_vars()
    username = (form.get("username") or "").strip()[:100]
    password = form.get("password") or ""
    now = utc_now()
    record = {"event": "sign_in", "auth": "password", "username": username or None, "client_ip": _client_ip(request.scope),
              "user_agent": request.headers.get("user-agent")}

    async def refuse(reason: str, message: str, status: int) -> Response:
        await state.access_log.call(state.access_log._record_sign_in, at=iso(now), outcome="refused", reason=reason, **record)
        return await _login_page(datasette, request, error=message, status=status, username=username)

    if not _csrf_ok(datasette, request, form):
        # asgi-csrf lets a POST without any cookie through; a sign-in form must still come from us.
        return await refuse("no valid CSRF token", "This sign-in form has expired. Please try again.", 403)
    settings = state.settings()
    if settings is None:
        return await refuse("the configuration does not load", "Sign-in is not available right now.", 503)
    window = iso(now - dt.timedelta(minutes=settings["lockout_minutes"]))
    if await state.access_log.call(state.access_log._failures_from_address, record["client_ip"], window) >= settings["max_failures_per_address"]:
        return await refuse("too many failures from this address",
                            f"Too many failed sign-ins from your address. Try again in {settings['lockout_minutes']} minutes.", 429)
    # Counted by the name typed, known or not: a lockout says nothing about whether an account exists.
    if username and await state.access_log.call(state.access_log._failures_for_account, username, window) >= settings["max_failures"]:
        return await refuse("account locked after failed sign-ins",
                            f"Too many failed sign-ins for this account. Try again in {settings['lockout_minutes']} minutes.", 429)
    hashes = signin_settings.password_hashes(settings, "[signin]", strict=False)
    known = username in hashes
    # An unknown username costs the same work as a known one: its time tells nothing.
    matched = await state.passwords.check(password, hashes[username] if known else state.decoy_for(hashes))
    if matched is None:
        return await refuse("too many sign-ins at once", "The server is busy. Please try again in a moment.", 429)
    identity = Identity(auth="password", subject=username)
    actor = actor_for(identity, settings) if matched and known else None
    if actor is None:
        await state.access_log.call(state.access_log._record_sign_in, at=iso(now), outcome="failed",
                                    reason="wrong username or password", **record)
        return await _login_page(datasette, request, error="Invalid username or password", status=200, username=username)
    # A new session every time: a session id someone else planted is never taken over.
    old = request.scope.get(SCOPE_KEY)
    if old is not None:
        await _end_session(state, request.scope, old.id, old.identity, "replaced by a new sign-in")
    token = secrets.token_urlsafe(32)
    session_id = _session_id(token)
    lifetime = dt.timedelta(hours=settings["session_hours"])
    await state.access_log.call(state.access_log._start_session, session_id=session_id, identity=identity,
                                client_ip=record["client_ip"], started_at=iso(now), expires_at=iso(now + lifetime))
    await state.access_log.call(state.access_log._record_sign_in, at=iso(now), outcome="succeeded",
                                session=session_id, **record)
    response = Response.redirect(datasette.urls.instance())
    response.set_cookie(COOKIE, datasette.sign({"s": token}, COOKIE_NAMESPACE), max_age=int(lifetime.total_seconds()),
                        httponly=True, samesite="lax", secure=_is_https(request.scope))
    return response


async def logout(request, datasette):
    state = _state_or_not_found(datasette)
    session: Session | None = request.scope.get(SCOPE_KEY)
    if request.method == "GET":
        if session is None:
            return Response.redirect(datasette.urls.instance())
        return Response.html(await datasette.render_template("logout.html", {"actor": request.actor}, request=request))
    if session is not None:
        at = iso(utc_now())
        await state.access_log.call(state.access_log._end_session, session.id, at=at, reason="signed out")
        await state.access_log.call(state.access_log._record_sign_in, at=at, event="sign_out", outcome="succeeded",
                                    auth=session.identity.auth, username=session.actor["id"],
                                    client_ip=_client_ip(request.scope), session=session.id)
    response = Response.redirect(datasette.urls.instance())
    response.set_cookie(COOKIE, "", max_age=0, httponly=True, samesite="lax", secure=_is_https(request.scope))
    datasette.add_message(request, "You are now signed out.", datasette.INFO)
    return response


async def _login_page(datasette, request, *, error: str | None = None, status: int = 200, username: str = "") -> Response:
    state = state_of(datasette)
    settings = state.settings() if state else None
    context = {"error": error, "username": username, "signed_in": request.actor is not None,
               "no_accounts": not (settings or {}).get("password_accounts")}
    return Response.html(await datasette.render_template("signin_login.html", context, request=request), status=status)


def _csrf_ok(datasette, request, form: dict) -> bool:
    """The form's token equals a CSRF cookie this server signed (double submit)."""
    cookie = request.cookies.get(CSRF_COOKIE) or ""
    submitted = form.get("csrftoken") or ""
    if not cookie or not secrets.compare_digest(cookie, submitted):
        return False
    try:
        datasette.unsign(cookie, "csrftoken")
    except BadSignature:
        return False
    return True


# -- small helpers ----------------------------------------------------------------------------

def _session_id(token: str) -> str:
    """What the session table keeps: a hash of the cookie's token, never the token."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _client_ip(scope) -> str | None:
    """The client's address; behind a trusted proxy uvicorn has already put X-Forwarded-For here."""
    client = scope.get("client")
    return client[0] if client else None


def _is_https(scope) -> bool:
    """True when the request came over HTTPS (behind [serve] trusted_proxies, uvicorn reads
    X-Forwarded-Proto from them and from nobody else)."""
    return scope.get("scheme") == "https"


def _cookies(headers) -> dict[str, str]:
    cookie = SimpleCookie()
    for key, value in headers:
        if key.lower() == b"cookie":
            try:
                cookie.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is ignored, as browsers do
                continue
    return {name: morsel.value for name, morsel in cookie.items()}


def _without_cookie(headers, name: str):
    kept = []
    for key, value in headers:
        if key.lower() == b"cookie":
            parts = [part for part in value.decode("latin-1").split(";") if part.strip().split("=", 1)[0] != name]
            if not parts:
                continue
            value = ";".join(parts).strip().encode("latin-1")
        kept.append((key, value))
    return kept


def _clear_cookie_header(scope) -> str:
    """Set-Cookie that makes the browser forget a cookie that is no (longer a) session."""
    cookie = SimpleCookie()
    cookie[COOKIE] = ""
    cookie[COOKIE].update({"max-age": 0, "path": "/", "samesite": "lax", "httponly": True, "secure": _is_https(scope)})
    return cookie.output(header="").strip()


def _path_in_instance(datasette, path: str) -> str:
    base_url = datasette.setting("base_url") or "/"
    if base_url != "/" and path.startswith(base_url):
        path = "/" + path[len(base_url):]
    return path

