"""The access log and the sessions: a SQLite file of their own, beside the inventory.

    sign_ins   every sign-in (succeeded, failed or refused), sign-out and ended session:
               when, who (as typed), how, from which address, why
    requests   every request by a signed-in person that reads per-person data:
               who, when, from where, method, path and query
    sessions   who is signed in: a hash of each session's random token, never the token

Why a file of its own: Datasette serves it read-only to IT staff (Datasette 0.65 runs
every query, theirs included, on a read-only connection, and this file has no write
queries), and no plugin or write query meant for the inventory can reach it. Only this
plugin's own connection writes to it, and triggers make the log append-only: no entry can
be changed, and none deleted before it is a day old, so retention can purge old entries
but nobody can remove a fresh trace. The file is the service account's alone (0600).

All the work happens on one thread of its own, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from scanner import create_private_file

from .membership import Identity

SCHEMA = """
create table if not exists sign_ins (
    id integer primary key,
    at text not null,
    event text not null,
    outcome text not null,
    auth text not null,
    username text,
    client_ip text,
    user_agent text,
    reason text,
    session text
);
create index if not exists sign_ins_by_username on sign_ins (username collate nocase, at);
create index if not exists sign_ins_by_address on sign_ins (client_ip, at);
create table if not exists requests (
    id integer primary key,
    at text not null,
    actor_id text not null,
    auth text not null,
    client_ip text,
    method text not null,
    path text not null,
    query text,
    session text
);
create index if not exists requests_by_at on requests (at);
create table if not exists sessions (
    id text primary key,
    actor_id text not null,
    auth text not null,
    identity text not null,
    client_ip text,
    started_at text not null,
    expires_at text not null,
    ended_at text,
    end_reason text
);
"""
# The log is append-only: see the module docstring.
APPEND_ONLY = """
create trigger if not exists {table}_never_changed before update on {table}
begin select raise(abort, 'the access log is append-only'); end;
create trigger if not exists {table}_kept_a_day before delete on {table}
when old.at > strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-1 day')
begin select raise(abort, 'access log entries are kept at least a day'); end;
"""
LOG_TABLES = ("sign_ins", "requests")
TEXT_LIMIT = 2000  # a path or query longer than this is cut (and says so)


def _cut(value: str | None, limit: int = TEXT_LIMIT) -> str | None:
    if value is None or len(value) <= limit:
        return value
    return value[:limit] + "…(cut)"


class AccessLog:
    """The access log file; every method with a leading underscore runs on its thread."""

    def __init__(self, path: Path):
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="access-log")
        self._connection: sqlite3.Connection | None = None

    async def call(self, _function, /, *args, **kwargs):
        """Run one of the underscore methods on the log's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, lambda: _function(*args, **kwargs))

    def run(self, _function, /, *args, **kwargs):
        """The same, from code that is not on the event loop (start-up)."""
        return self._executor.submit(_function, *args, **kwargs).result()

    def close(self) -> None:
        def close_connection():
            if self._connection is not None:
                self._connection.close()
                self._connection = None

        self._executor.submit(close_connection).result()
        self._executor.shutdown()

    # -- on the log's thread -------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            create_private_file(self.path)
            connection = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            connection.row_factory = sqlite3.Row
            connection.execute("pragma journal_mode = wal")
            connection.execute("pragma synchronous = normal")
            self._connection = connection
        return self._connection

    def _setup(self) -> None:
        self._db.executescript(SCHEMA + "".join(APPEND_ONLY.format(table=table) for table in LOG_TABLES))

    def _record_sign_in(self, *, at: str, event: str, outcome: str, auth: str, username: str | None,
                        client_ip: str | None, user_agent: str | None = None, reason: str | None = None,
                        session: str | None = None) -> None:
        self._db.execute(
            "insert into sign_ins (at, event, outcome, auth, username, client_ip, user_agent, reason, session) "
            "values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [at, event, outcome, auth, _cut(username, 100), client_ip, _cut(user_agent, 300), reason, session],
        )

    def _record_request(self, *, at: str, actor_id: str, auth: str, client_ip: str | None, method: str,
                        path: str, query: str | None, session: str | None) -> None:
        self._db.execute(
            "insert into requests (at, actor_id, auth, client_ip, method, path, query, session) values (?, ?, ?, ?, ?, ?, ?, ?)",
            [at, actor_id, auth, client_ip, method, _cut(path), _cut(query), session],
        )

    def _failures_for_account(self, username: str, since: str) -> int:
        """Failed password sign-ins for a username since `since`, after its last success (Google and
        Microsoft sign-ins cannot be guessed at here, so they count for nothing)."""
        return self._db.execute(
            """select count(*) from sign_ins
               where event = 'sign_in' and auth = 'password' and outcome = 'failed' and username = ? collate nocase
                 and at >= ?
                 and at >= coalesce((select max(at) from sign_ins where event = 'sign_in' and auth = 'password'
                                     and outcome = 'succeeded' and username = ? collate nocase), '')""",
            [username, since, username],
        ).fetchone()[0]

    def _failures_from_address(self, client_ip: str | None, since: str) -> int:
        return self._db.execute(
            "select count(*) from sign_ins where event = 'sign_in' and auth = 'password' and outcome = 'failed' "
            "and client_ip is ? and at >= ?",
            [client_ip, since],
        ).fetchone()[0]

    def _start_session(self, *, session_id: str, identity: Identity, client_ip: str | None, started_at: str,
                       expires_at: str) -> None:
        self._db.execute(
            "insert into sessions (id, actor_id, auth, identity, client_ip, started_at, expires_at) values (?, ?, ?, ?, ?, ?, ?)",
            [session_id, identity.actor_id, identity.auth, json.dumps(identity.to_dict()), client_ip, started_at, expires_at],
        )

    def _session(self, session_id: str) -> dict[str, Any] | None:
        row = self._db.execute("select * from sessions where id = ?", [session_id]).fetchone()
        return dict(row) if row else None

    def _end_session(self, session_id: str, *, at: str, reason: str) -> bool:
        """End a live session; False when it had already ended."""
        cursor = self._db.execute(
            "update sessions set ended_at = ?, end_reason = ? where id = ? and ended_at is null", [at, reason, session_id]
        )
        return cursor.rowcount == 1

    def _purge(self, cutoff: str) -> dict[str, int]:
        """Retention: forget log entries, and sessions that ended, before cutoff."""
        counts = {}
        with self._db:  # one transaction
            self._db.execute("begin")
            for table in LOG_TABLES:
                counts[table] = self._db.execute(f"delete from {table} where at < ?", [cutoff]).rowcount
            counts["sessions"] = self._db.execute(
                "delete from sessions where coalesce(ended_at, expires_at) < ?", [cutoff]
            ).rowcount
        return counts
