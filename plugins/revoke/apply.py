"""`revoke apply`: carry out a plan's actions, each exactly once, recording every outcome.

Each action moves pending -> in_flight -> done | already_gone | skipped_changed | failed
(or skipped, decided when planned). `in_flight` is committed before the request that writes
is sent, so a run that stops (a crash, a kill, a power cut) leaves the truth on disk: the
next run reads each in_flight grant again and learns from the provider whether the write
took effect (done) or not (written now, once). Before every write the grant is read again:
one that changed since it was planned is skipped, one already gone is recorded as such.
Writes are never repeated blindly: a pending action is claimed once, and every claim
re-reads first.

Outcomes are committed in small groups; one lost with the process only leaves its action
in_flight, which the next run settles by reading the grant, never by writing twice. That
is also why the connection runs with `synchronous = NORMAL`: a commit lost in a power cut
is recovered the same way.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from sqlite_utils import Database

from scanner import GrantGone, Revoker, WriteFailed, WriteUncertain, iso, utc_now

FINAL_STATES = ("done", "already_gone", "skipped_changed", "skipped", "failed")
COMMIT_EVERY = 64  # outcomes per transaction at most
COMMIT_SECONDS = 0.25  # and at least this often


class Pacer:
    """A token bucket: at most `rate` units a second, with bursts of `burst` seconds' worth; thread-safe."""

    def __init__(self, rate: float, burst_seconds: float = 1.0):
        self.rate = rate
        self.capacity = max(1.0, rate * burst_seconds)
        self._tokens = self.capacity
        self._updated = time.monotonic()
        self._lock = threading.Lock()

    def take(self, units: float = 1.0) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= min(units, self.capacity):
                    self._tokens -= units
                    return
                wait_for = (min(units, self.capacity) - self._tokens) / self.rate
            time.sleep(wait_for)


@dataclass
class ApplyReport:
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[tuple[int, str]] = field(default_factory=list)
    uncertain: list[tuple[int, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures and not self.uncertain


def decode(row: dict) -> dict:
    """An action row with its JSON columns read."""
    return {**row, "target": json.loads(row["target"]), "snapshot": json.loads(row["snapshot"]),
            "scopes_kept": json.loads(row["scopes_kept"]) if row.get("scopes_kept") else None}


def carry_out(revoker: Revoker, pacer: Pacer, action: dict, *, recovering: bool) -> tuple[str, str | None]:
    """Re-read, decide, write: one action's outcome (state, note). Runs on a worker thread."""
    try:
        pacer.take(revoker.cost("read"))
        current = revoker.read(action)
        if revoker.finished(action, current):
            if recovering:
                return "done", "confirmed after an interrupted run: the change had taken effect"
            if action["action"] == "revoke":
                return "already_gone", "gone before it was revoked (the person or another administrator removed it)"
            return "done", "already so when checked again; nothing written"
        if current is None:
            return "already_gone", "gone before it was changed"
        changed = revoker.changed(action, current)
        if changed:
            return "skipped_changed", f"changed since the plan: {changed}"
        pacer.take(revoker.cost("write"))
        revoker.write(action)
        return "done", None
    except GrantGone:
        return "already_gone", "gone when written (removed meanwhile)"
    except WriteUncertain as error:
        return "in_flight", f"outcome unknown ({error}); the next `revoke apply` checks it"
    except WriteFailed as error:
        return "failed", str(error)[:1000]
    except Exception as error:  # a bug or an unforeseen answer: recorded, and the rest goes on
        return "failed", f"{type(error).__name__}: {str(error)[:500]}"


def apply_actions(db: Database, plan_id: int, revokers: dict[str, Revoker], *, blocked_apps: Callable[[str], str | None],
                  progress: Callable[[int, int], None] | None = None) -> ApplyReport:
    """Carry out the plan's pending and in_flight actions (the caller holds the scan lock)."""
    started = time.monotonic()
    db.execute("PRAGMA synchronous = NORMAL")
    report = ApplyReport()
    rows = [decode(row) for row in db.query(
        "select * from revoke_actions where plan_id = ? and state in ('pending', 'in_flight') order by id", [plan_id])]
    pacers = {name: Pacer(revoker.units_per_second()) for name, revoker in revokers.items()}
    workers = sum(revoker.workers for name, revoker in revokers.items() if any(r["provider"] == name for r in rows)) or 1
    outcomes: list[tuple[int, str, str | None, str]] = []
    last_commit = time.monotonic()
    done = 0

    def flush(force: bool = False) -> None:
        nonlocal last_commit
        if outcomes and (force or len(outcomes) >= COMMIT_EVERY or time.monotonic() - last_commit >= COMMIT_SECONDS):
            with db.atomic():
                for action_id, state, note, at in outcomes:
                    db.execute(
                        """update revoke_actions set state = ?, error = ?, finished_at = case when ? = 'in_flight' then null else ? end
                           where id = ?""", [state, note, state, at, action_id])
            outcomes.clear()
            last_commit = time.monotonic()

    def settle(future: Future) -> None:
        nonlocal done
        action_id, state, note = future.result()
        outcomes.append((action_id, state, note, iso(utc_now())))
        report.counts[state] = report.counts.get(state, 0) + 1
        if state == "failed":
            report.failures.append((action_id, note or ""))
        elif state == "in_flight":
            report.uncertain.append((action_id, note or ""))
        done += 1
        if progress:
            progress(done, len(rows))

    def run(revoker: Revoker, pacer: Pacer, action: dict, recovering: bool) -> tuple[int, str, str | None]:
        state, note = carry_out(revoker, pacer, action, recovering=recovering)
        return action["id"], state, note

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="revoke") as pool:
        running: set[Future] = set()
        for action in rows:
            refusal = blocked_apps(action["app_id"]) if action["action"] in ("revoke", "block") else None
            if refusal:
                outcomes.append((action["id"], "skipped", refusal, iso(utc_now())))
                report.counts["skipped"] = report.counts.get("skipped", 0) + 1
                continue
            recovering = action["state"] == "in_flight"
            # The claim is on disk before the request that writes can be sent.
            with db.atomic():
                db.execute("update revoke_actions set state = 'in_flight', attempts = attempts + 1, started_at = ? where id = ?",
                           [iso(utc_now()), action["id"]])
            running.add(pool.submit(run, revokers[action["provider"]], pacers[action["provider"]], action, recovering))
            while len(running) >= workers * 2:
                finished, running = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    settle(future)
                flush()
        while running:
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                settle(future)
            flush()
    flush(force=True)
    report.seconds = time.monotonic() - started
    return report
