"""Running scans: one lock per inventory, one transaction per provider.

    with ScanLock(db_path):          # a second scan refuses at once
        start_scan()                 # `running` row, committed
        with db.atomic():            # the provider's whole result, or nothing
            for record in provider.scan(run): writer.add(record)
            writer.finish(run)       # changes, revocations, matching, retention, `succeeded`
        scan_finished hooks          # after commit, one plugin at a time

A provider that raises (or a Ctrl-C, or SIGKILL) rolls everything back: the previous
inventory stays, nothing is revoked and no alert is queued. The failure is recorded in
`scans` (a killed scan is marked failed by the next run).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import filelock
from sqlite_utils import Database

from . import store
from .config import Config, ConfigError
from .memory import return_large_blocks
from .plugin_manager import call_each, load_plugins
from .progress import Progress, StepTimer
from .providers import Provider, ProviderError, ScanRun
from .timestamps import utc_now

log = logging.getLogger(__name__)


class ScanLocked(Exception):
    """Another scan holds the inventory's lock."""


class ScanLock:
    """An exclusive lock beside the database; the OS releases it if the process dies."""

    def __init__(self, db_path: str | Path):
        self.path = f"{db_path}.lock"
        self._lock = filelock.FileLock(self.path, timeout=0, mode=store.PRIVATE_FILE_MODE)

    def __enter__(self) -> ScanLock:
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise ScanLocked(
                f"another scan is already running on this inventory (lock {self.path} is held); "
                "wait for it to finish, then run this one"
            ) from None
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()


def registered_providers() -> dict[str, type[Provider]]:
    """Provider classes registered by plugins, by name."""
    providers: dict[str, type[Provider]] = {}

    def register(provider_class: type[Provider]) -> None:
        name = getattr(provider_class, "name", None)
        if not name or not isinstance(name, str):
            raise TypeError(f"{provider_class!r} must set a `name` to be registered as a provider")
        providers[name] = provider_class

    load_plugins().hook.register_providers(register=register)
    return providers


@dataclass
class ScanOutcome:
    scans: list[dict] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def run_scans(
    db_path: str | Path,
    config: Config,
    *,
    only: Sequence[str] = (),
    force_full: bool = False,
    show_progress: bool = True,
) -> ScanOutcome:
    """Scan each configured provider (or `only` these) into the inventory at db_path."""
    available = registered_providers()
    for name in only:
        if name not in available:
            raise ConfigError(f"--provider {name}: no such provider; installed providers: {', '.join(sorted(available)) or 'none'}")
        if not available[name].is_configured(config):
            raise ConfigError(f"{config.where}: provider {name!r} is not configured; add a [{name}] section (see app-inventory.example.toml)")
    names = list(only) or sorted(name for name, cls in available.items() if cls.is_configured(config))
    if not names:
        raise ConfigError(
            f"{config.where}: no provider is configured; add a [google] or [microsoft] section "
            "(see app-inventory.example.toml), or try `app-inventory demo`"
        )
    # A missing secret or key file is bad configuration: say so before anything is written.
    for name in names:
        if name in config.schema:
            config.check_ready(name)
    return_large_blocks()  # a scan's pages of answers go back to the system once read
    outcome = ScanOutcome()
    history_days = config.section("retention")["history_days"]
    with ScanLock(db_path):
        db = store.open_db(str(db_path))
        db.execute("pragma wal_autocheckpoint = 0")  # checkpoints run beside the plugins (store.checkpoint_alongside)
        if store.mark_interrupted_scans(db, utc_now()):
            log.warning("an earlier scan was interrupted; it is marked failed and changed nothing")
        for name in names:
            scan = _scan_one(db, available[name], config, force_full=force_full, show_progress=show_progress, history_days=history_days)
            outcome.scans.append(scan)
            if scan["status"] != "succeeded":
                outcome.failures.append(f"{name}: {scan['error']}")
    return outcome


def _scan_one(db: Database, provider_class: type[Provider], config: Config, *, force_full: bool, show_progress: bool, history_days: int) -> dict:
    name = provider_class.name
    now = utc_now()
    previous_full = store.last_succeeded_scan(db, name, full_only=True)
    previous = store.last_succeeded_scan(db, name)
    progress = Progress(name, enabled=show_progress)
    run = ScanRun(
        provider=name,
        force_full=force_full,
        previous=previous,
        previous_full=previous_full,
        state=json.loads(previous["state"]) if previous and previous["state"] else {},
        progress=progress,
        user_digests=lambda service_ids: store.user_digests(db, name, service_ids),
        now=now,
    )
    scan_id = store.start_scan(db, name, now)
    log.info("%s: scan %d started", name, scan_id)
    try:
        provider = provider_class(config)
        with db.atomic():
            writer = store.ScanWriter(db, scan_id, name, now, baseline=previous_full is None, run=run)
            run.users_not_seen = writer.users_not_seen
            for record in provider.scan(run):
                writer.add(record)
            scan = writer.finish(run, history_days=history_days)
            committing = time.perf_counter()
        log.debug("%s: finishing: commit %.2f s", name, time.perf_counter() - committing)
    except BaseException as error:
        progress.close()
        message = _describe_failure(error)
        store.fail_scan(db, scan_id, message, utc_now())
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: record, then stop
            raise
        log.error("%s: scan failed, the previous inventory is unchanged: %s", name, message, exc_info=log.isEnabledFor(logging.DEBUG) and not isinstance(error, ProviderError))
        return db["scans"].get(scan_id)
    progress.close()
    changes = store.ScanChanges(db, scan_id, dict(writer.changes), affected=writer.affected)
    log.debug(
        "%s: %s scan succeeded: %d users, %d apps, %d grants, %d API calls; changes: %s",
        name, scan["mode"], scan["users_seen"], scan["apps_seen"], scan["grants_seen"], scan["api_calls"],
        ", ".join(f"{count} {kind}" for kind, count in sorted(changes.counts.items())) or "none",
    )
    with store.checkpoint_alongside(db), StepTimer(f"{name}: after the scan")("plugins"):
        call_each("scan_finished", db=db, scan=scan, changes=changes, config=config)
    return scan


def _describe_failure(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(error, ProviderError):
        return str(error)
    return f"{type(error).__name__}: {error}"
