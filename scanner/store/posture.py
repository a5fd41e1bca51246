"""Writing one scan's posture findings and consent requests, and forgetting old ones.

`posture` (a view of posture_rows, and of posture_checks, which keeps each check's words
once) holds every scan's findings, one row per check and scope, so the history of a setting
can be read back and a check that went from pass to fail is one query away: each row
carries `previous_result`, the result of the same check and scope in the provider's
previous succeeded scan. `consent_requests` holds one row per person's request, updated
by every scan that still sees it.
"""

from __future__ import annotations

import datetime as dt
import json

from sqlite_utils import Database

from ..providers import POSTURE_RESULTS, POSTURE_SCOPES, ConsentRequest, PostureFinding
from ..timestamps import iso, normalize_timestamp
from .database import insert_rows

# A check's words, kept once for each wording (posture_checks); what a scan found (posture_rows).
CHECK_COLUMNS = ("provider", "check_id", "title", "requirement", "expected", "fix")
ROW_COLUMNS = ("scan_id", "check_key", "scope_kind", "scope", "actual", "result", "reason", "checked_at")
REQUEST_COLUMNS = ("id", "provider", "app_id", "client_id", "app_name", "scopes", "status", "user_id", "email", "user_name",
                   "reason", "requested_at", "completed_at", "first_seen", "last_seen", "seen_scan_id")
REQUIREMENTS = ("SHALL", "SHOULD")


class PostureWriter:
    """Collects a scan's PostureFinding and ConsentRequest records; finish() writes them
    inside the caller's transaction (a provider reports a few dozen of each)."""

    def __init__(self, db: Database, scan_id: int, provider: str, now: str):
        self.db, self.scan_id, self.provider, self.now = db, scan_id, provider, now
        self._findings: dict[tuple[str, str, str], list] = {}
        self._requests: dict[str, list] = {}

    def add(self, record: PostureFinding | ConsentRequest) -> None:
        if isinstance(record, PostureFinding):
            self._add_finding(record)
        else:
            self._add_request(record)

    def _add_finding(self, finding: PostureFinding) -> None:
        where = f"provider {self.provider}: posture check {finding.check_id!r}"
        if finding.result not in POSTURE_RESULTS:
            raise ValueError(f"{where}: result must be {', '.join(POSTURE_RESULTS)}, got {finding.result!r}")
        if finding.scope_kind not in POSTURE_SCOPES:
            raise ValueError(f"{where}: scope_kind must be {', '.join(POSTURE_SCOPES)}, got {finding.scope_kind!r}")
        if finding.requirement not in REQUIREMENTS:
            raise ValueError(f"{where}: requirement must be SHALL or SHOULD, got {finding.requirement!r}")
        if not finding.check_id or not finding.title:
            raise ValueError(f"{where}: a finding needs a check_id and a title")
        if finding.result == "unknown" and not finding.reason:
            raise ValueError(f"{where}: an unknown result needs a reason (what to add or check)")
        key = (finding.check_id, finding.scope_kind, finding.scope)
        if key in self._findings:
            raise ValueError(f"{where}: reported twice for {finding.scope_kind} {finding.scope!r} in one scan")
        self._findings[key] = (
            (self.provider, finding.check_id, finding.title, finding.requirement, finding.expected, finding.fix),
            [self.scan_id, None, finding.scope_kind, finding.scope, finding.actual, finding.result, finding.reason, self.now],
        )

    def _add_request(self, request: ConsentRequest) -> None:
        if not request.id or not request.app_id or not request.status:
            raise ValueError(f"provider {self.provider}: a consent request needs an id, an app_id and a status, got {request!r}")
        self._requests[request.id] = [
            f"{self.provider}:{request.id}", self.provider, f"{self.provider}:{request.app_id}", request.app_id,
            request.app_name or request.app_id, json.dumps([s for s in dict.fromkeys(s.strip() for s in request.scopes) if s]),
            request.status, None if request.user_id is None else f"{self.provider}:{request.user_id}", request.email,
            request.user_name, request.reason, normalize_timestamp(request.requested_at),
            normalize_timestamp(request.completed_at), self.now, self.now, self.scan_id,
        ]

    def finish(self) -> None:
        """Write what was collected."""
        checks = {tuple(row[1:]): row[0] for row in self.db.execute(
            f"select key, {', '.join(CHECK_COLUMNS)} from posture_checks where provider = ?", [self.provider])}
        rows = []
        for words, row in self._findings.values():
            if words not in checks:
                checks[words] = self.db.execute(
                    f"insert into posture_checks ({', '.join(CHECK_COLUMNS)}) values (?, ?, ?, ?, ?, ?)", words).lastrowid
            row[1] = checks[words]
            rows.append(row)
        insert_rows(self.db.conn, f"insert into posture_rows ({', '.join(ROW_COLUMNS)})", rows)
        # The same check and scope in this provider's previous succeeded scan (this one is still running),
        # whatever the check's wording then.
        self.db.execute(
            """update posture_rows set previous_result = (
                 select earlier.result from posture_rows as earlier
                   join posture_checks as earlier_check on earlier_check.key = earlier.check_key
                   join scans on scans.id = earlier.scan_id
                 where scans.status = 'succeeded' and earlier_check.provider = now.provider and earlier_check.check_id = now.check_id
                   and earlier.scope_kind = posture_rows.scope_kind and earlier.scope = posture_rows.scope
                   and earlier.scan_id < posture_rows.scan_id
                 order by earlier.scan_id desc limit 1)
               from posture_checks as now
               where now.key = posture_rows.check_key and posture_rows.scan_id = ?""",
            [self.scan_id],
        )
        insert_rows(
            self.db.conn, f"insert into consent_requests ({', '.join(REQUEST_COLUMNS)})", list(self._requests.values()),
            """on conflict(id) do update set app_name = excluded.app_name, scopes = excluded.scopes, status = excluded.status,
                 email = excluded.email, user_name = excluded.user_name, reason = excluded.reason,
                 requested_at = excluded.requested_at, completed_at = excluded.completed_at,
                 last_seen = excluded.last_seen, seen_scan_id = excluded.seen_scan_id""",
        )


def purge_posture(db: Database, history_days: int, now: dt.datetime) -> None:
    """Retention: posture rows of scans older than history_days (never of a provider's latest
    succeeded scan, which is what `posture_current` shows), and consent requests no scan has
    seen for that long. Runs before the scans themselves are purged."""
    cutoff = iso(now - dt.timedelta(days=history_days))
    db.execute(
        """delete from posture_rows where checked_at < ?
           and scan_id not in (select max(id) from scans where status = 'succeeded' group by provider)""",
        [cutoff],
    )
    db.execute("delete from posture_checks where key not in (select check_key from posture_rows)")
    db.execute("delete from consent_requests where last_seen < ?", [cutoff])
