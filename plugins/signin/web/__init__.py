"""The sign-in plugin's Datasette side (given to `app-inventory serve` through `datasette_plugins`).

In the shape of datasette-auth-github: routes that sign people in and out, an actor that
`permission_allowed` (here: the metadata's `allow: {role: it}`) decides from. Unlike it, the
cookie holds no actor, only a random session id, signed: the session lives in the access
log's file, so it can expire, be ended by "Log out", and be re-checked at every request.

    /-/login    GET: the sign-in page: a button for each identity provider configured, and
                the password form when password accounts exist. POST: the password form,
                CSRF-checked (even without cookies), throttled per account and per address,
                the password checked off the event loop with the same work for unknown
                usernames; a new session id at every sign-in
    /-/sign-in/google, /-/sign-in/microsoft
                the buttons: the sign-in is kept as under way (plugins/signin/sso.py), the
                browser gets a cookie naming it and goes to the identity provider
    /-/sign-in/google/callback, /-/sign-in/microsoft/callback
                the identity provider's answer: it must belong to the sign-in under way in this
                browser (cookie, then state), once; the code is exchanged and the ID token
                verified off the event loop (google_signin.py, microsoft_signin.py); then the
                same IT check and session as for a password
    /-/logout   GET: Datasette's confirmation page. POST: ends the session server-side

Every request: the Authorization header is dropped (no HTTP Basic anywhere), a ds_actor
cookie that is not one of our sessions is dropped, the session is looked up, expired ones
end, and who is IT is decided again from the configuration as it is now
(membership.is_it_staff). A signed-in request that reads per-person data is written to the
access log before it is answered; if the log cannot be written, the request is refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import secrets
import weakref
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from datasette import NotFound, Response, hookimpl
from datasette.database import Database
from itsdangerous import BadSignature

from scanner import ConfigError, ServedInventory, iso, parse_iso, served_inventory, utc_now

from .. import google_signin, microsoft_signin
from .. import settings as signin_settings
from ..accesslog import AccessLog
from ..membership import Identity, actor_for
from ..passwords import PasswordChecker, decoy_hash
from ..sso import PendingSignIn, PendingSignIns, SignInRefused

log = logging.getLogger(__name__)

COOKIE = "ds_actor"  # Datasette's own name: its "Log out" button then shows for our sessions
COOKIE_NAMESPACE = "app-inventory-session"  # not Datasette's "actor": an old signed actor is no session
CSRF_COOKIE = "ds_csrftoken"
ACCESS_DATABASE = "access_log"
SCOPE_KEY = "app_inventory.session"
LOGIN_PATH = "/-/login"
LOGOUT_PATH = "/-/logout"
SIGN_IN_PATH = "/-/sign-in/{provider}"
CALLBACK_PATH = "/-/sign-in/{provider}/callback"
FLOW_COOKIE = "ds_sign_in"  # names the sign-in under way in this browser (plugins/signin/sso.py)
FLOW_NAMESPACE = "app-inventory-sign-in"
# The identity providers, in the order of their buttons.
PROVIDERS = {google_signin.NAME: google_signin, microsoft_signin.NAME: microsoft_signin}
PURGE_EVERY = dt.timedelta(hours=24)
STAFF_HOME = "/-/requests"
# Pages outside the databases that show per-person rows (plugins/review): logged like table pages.
PERSONAL_PAGES = ("/-/dashboards", "/-/review", "/-/requests")


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
    pending: PendingSignIns = field(default_factory=PendingSignIns)
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
    where = f"{config.where}: [signin]"
    hashes = signin_settings.password_hashes(settings, where, strict=True)
    providers = [provider for provider in PROVIDERS.values() if provider.configured(settings)]
    for provider in providers:  # a missing secret stops serve now (exit 2), not at someone's first sign-in
        signin_settings.client_secret(settings, f"{provider.NAME}_client_secret_env", where)
    if settings.get("google_groups_key_file") and not Path(settings["google_groups_key_file"]).is_file():
        raise ConfigError(f"{where} google_groups_key_file {settings['google_groups_key_file']}: file not found")
    path = signin_settings.access_log_path(settings, served.db_path)
    access_log = AccessLog(path)
    access_log.run(access_log._setup)
    state = SignIn(served=served, access_log=access_log, passwords=PasswordChecker())
    _states[datasette] = state
    _purge_now(state)
    datasette.add_database(Database(datasette, path=str(path.resolve()), is_mutable=True), name=ACCESS_DATABASE)
    ways = [provider.describe(settings) for provider in providers]
    if hashes:
        ways.append(f"password accounts: {', '.join(sorted(hashes))}")
    if ways:
        served.announce(f"IT staff:     sign in at {{base}}{LOGIN_PATH} ({'; '.join(ways)})")
        for provider in providers:
            redirect = (settings.get("site_url") or "{base}").rstrip("/")
            served.announce(f"              redirect URI to register with {provider.LABEL}: "
                            f"{redirect}{CALLBACK_PATH.format(provider=provider.NAME)}")
    else:
        served.announce(
            "IT staff:     no way to sign in is configured, so nobody can sign in. Configure Sign in with "
            "Google or Microsoft ([signin] google_client_id / microsoft_client_id and it_emails), or run "
            "`app-inventory hash-password --username NAME` for a password account (docs/publishing.md)."
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
    if path.startswith(PERSONAL_PAGES):
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
    return [(r"^/-/login$", login), (r"^/-/logout$", logout),
            (r"^/-/sign-in/(?P<provider>google|microsoft)$", sign_in_start),
            (r"^/-/sign-in/(?P<provider>google|microsoft)/callback$", sign_in_callback)]


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
    return await _start_session(datasette, state, request, identity, settings, record)


async def _start_session(datasette, state: SignIn, request, identity: Identity, settings: dict[str, Any],
                         record: dict[str, Any]) -> Response:
    """A new session for someone who is IT staff, recorded in the access log; the response
    that sets its cookie and goes to the front page."""
    now = utc_now()
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
    # IT go to the inventory; staff (staff_sign_in) to their own apps and requests (plugins/review).
    is_it = actor_for(identity, settings)["role"] == "it"
    response = Response.redirect(datasette.urls.instance() if is_it else datasette.urls.path(STAFF_HOME))
    response.set_cookie(COOKIE, datasette.sign({"s": token}, COOKIE_NAMESPACE), max_age=int(lifetime.total_seconds()),
                        httponly=True, samesite="lax", secure=_is_https(request.scope))
    return response


# -- Sign in with Google / Microsoft ----------------------------------------------------------

async def sign_in_start(request, datasette):
    """The button: keep the sign-in as under way, name it in a cookie, go to the identity provider."""
    state = _state_or_not_found(datasette)
    provider = PROVIDERS[request.url_vars["provider"]]
    settings = state.settings()
    if settings is None or not provider.configured(settings):
        return await _login_page(datasette, request, error=f"Sign in with {provider.LABEL} is not configured here.", status=404)
    redirect_uri = _redirect_uri(datasette, request, settings, provider.NAME)
    try:
        url, flow_state, kept = await asyncio.to_thread(provider.start, settings, redirect_uri)
    except (SignInRefused, ConfigError) as error:
        reason = error.reason if isinstance(error, SignInRefused) else str(error)
        await state.access_log.call(state.access_log._record_sign_in, at=iso(utc_now()), event="sign_in", outcome="refused",
                                    auth=provider.NAME, username=None, client_ip=_client_ip(request.scope),
                                    user_agent=request.headers.get("user-agent"), reason=reason[:500])
        message = error.message if isinstance(error, SignInRefused) else "Sign-in is not available right now."
        return await _login_page(datasette, request, error=message, status=503)
    key = state.pending.add(PendingSignIn(provider.NAME, flow_state, redirect_uri, kept))
    response = Response.redirect(url)
    response.set_cookie(FLOW_COOKIE, datasette.sign({"p": key}, FLOW_NAMESPACE), max_age=int(state.pending.lifetime.total_seconds()),
                        httponly=True, samesite="lax", secure=_is_https(request.scope))
    return response


async def sign_in_callback(request, datasette):
    """The identity provider's answer: only for the sign-in under way in this browser, once."""
    state = _state_or_not_found(datasette)
    provider = PROVIDERS[request.url_vars["provider"]]
    answer = {key: request.args.get(key) for key in request.args.keys()}
    record = {"event": "sign_in", "auth": provider.NAME, "client_ip": _client_ip(request.scope),
              "user_agent": request.headers.get("user-agent")}

    async def refuse(reason: str, message: str, *, username: str | None = None, outcome: str = "refused",
                     status: int = 403) -> Response:
        await state.access_log.call(state.access_log._record_sign_in, at=iso(utc_now()), outcome=outcome,
                                    username=username, reason=reason[:500], **record)
        response = await _login_page(datasette, request, error=message, status=status)
        response.set_cookie(FLOW_COOKIE, "", max_age=0, httponly=True, samesite="lax", secure=_is_https(request.scope))
        return response

    again = "Please sign in again."
    try:
        key = datasette.unsign(request.cookies.get(FLOW_COOKIE, ""), FLOW_NAMESPACE)["p"]
    except (BadSignature, KeyError, TypeError):
        return await refuse("no sign-in under way in this browser (no valid sign-in cookie)",
                            f"This sign-in did not start in this browser, or it expired. {again}")
    pending = state.pending.take(key)
    if pending is None or pending.provider != provider.NAME:
        return await refuse("the sign-in is unknown, already finished or expired (a replayed state?)",
                            f"This sign-in link was already used or has expired. {again}")
    if not answer.get("state"):
        return await refuse("the answer carries no state", f"The sign-in answer is incomplete. {again}")
    if not secrets.compare_digest(answer["state"], pending.state):
        return await refuse("the answer's state is not the sign-in's under way", f"The sign-in answer does not match. {again}")
    settings = state.settings()
    if settings is None or not provider.configured(settings):
        return await refuse("the configuration does not load, or no longer configures this sign-in",
                            "Sign-in is not available right now.", status=503)
    try:
        identity, note = await asyncio.to_thread(provider.finish, settings, pending.secrets, pending.redirect_uri, answer)
    except SignInRefused as error:
        return await refuse(error.reason, error.message, username=error.username)
    except ConfigError as error:
        return await refuse(str(error), "Sign-in is not available right now.", status=503)
    if actor_for(identity, settings) is None:
        reason = "not IT staff in [signin] it_emails or it_groups" + (f"; {note}" if note else "")
        return await refuse(reason, f"You signed in as {identity.actor_id}, who is not IT staff on this server.",
                            username=identity.actor_id, outcome="failed")
    response = await _start_session(datasette, state, request, identity, settings, {**record, "username": identity.actor_id})
    response.set_cookie(FLOW_COOKIE, "", max_age=0, httponly=True, samesite="lax", secure=_is_https(request.scope))
    return response


def _redirect_uri(datasette, request, settings: dict[str, Any], provider: str) -> str:
    """Where the identity provider sends the browser back: [signin] site_url, or this request's own address."""
    base = (settings.get("site_url") or f"{request.scheme}://{request.host}").rstrip("/")
    return base + datasette.urls.path(CALLBACK_PATH.format(provider=provider))


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
    broken = settings is None
    if broken and error is None:
        error = "Sign-in is not available right now: this server's configuration does not load."
    settings = settings or {}
    buttons = [{"label": provider.LABEL, "name": provider.NAME,
                "url": datasette.urls.path(SIGN_IN_PATH.format(provider=provider.NAME))}
               for provider in PROVIDERS.values() if provider.configured(settings)]
    passwords = bool(settings.get("password_accounts"))
    context = {"error": error, "username": username, "signed_in": request.actor is not None, "buttons": buttons,
               "passwords": passwords, "nothing_configured": not broken and not buttons and not passwords}
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

