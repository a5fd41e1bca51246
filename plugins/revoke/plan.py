"""`revoke plan`: choose active grants from the inventory, read each from the provider (never
writing), and store a plan with one action per API object.

What a plan never holds: grants of first-party or internal apps, and grants of apps the
district approved (approved or conditional), except the scopes beyond the approved ones
(`--kind scope_creep`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from sqlite_utils import Database

from scanner import GrantGone, PlannedGrant, Revoker, WriteFailed, iso, parse_iso

STATUSES = ("denied", "unreviewed", "pending")
APPROVED = ("approved", "conditional")


class PlanRefused(Exception):
    """The selection cannot become a plan (nothing selected, too large, an app that may not be blocked)."""


@dataclass
class Selection:
    """What `revoke plan` was asked for (stored with the plan as JSON)."""

    apps: list[str] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    kind: str | None = None  # "scope_creep"
    users: list[str] = field(default_factory=list)
    providers: list[str] = field(default_factory=list)
    after_warning_days: int | None = None
    block: list[str] = field(default_factory=list)
    whole_token: bool = False
    max_actions: int = 500

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in self.__dict__.items() if v not in (None, [], False)}, sort_keys=True)

    def empty(self) -> bool:
        return not (self.apps or self.statuses or self.kind or self.users or self.block or self.after_warning_days is not None)


def _in(values) -> str:
    return ",".join("?" * len(values))


def select_grants(db: Database, selection: Selection, now: str) -> list[dict]:
    """The inventory's active grants the selection names (block actions aside)."""
    where = ["grants.revoked_at is null", "apps.ownership = 'third_party'"]
    params: list = []
    if selection.kind == "scope_creep":
        where.append(f"apps.status in ({_in(APPROVED)})")
        params += APPROVED
        where.append("grants.id in (select grant_id from scope_creep)")
    else:
        statuses = selection.statuses or STATUSES
        where.append(f"apps.status in ({_in(statuses)})")
        params += statuses
    if selection.apps:
        where.append(f"(apps.id in ({_in(selection.apps)}) or apps.client_id in ({_in(selection.apps)}) "
                     f"or apps.catalog_id in ({_in(selection.apps)}))")
        params += selection.apps * 3
    if selection.providers:
        where.append(f"apps.provider in ({_in(selection.providers)})")
        params += selection.providers
    if selection.users:
        emails = [email.lower() for email in selection.users]
        where.append(f"(lower(users.email) in ({_in(emails)}) or users.person_id in "
                     f"(select id from people where lower(email) in ({_in(emails)})))")
        params += emails * 2
    if selection.after_warning_days is not None:
        if not db["alert_rows"].exists():
            raise PlanRefused("--after-warning-days: no alert was ever sent from this inventory (run `app-inventory alerts send` first)")
        cutoff = iso(parse_iso(now) - dt.timedelta(days=selection.after_warning_days))
        # The alerts plugin's rows, by the keys of the grant's account (0: none) and app.
        where.append("""exists (select 1 from alert_rows where alert_rows.app_key = apps.key
                          and alert_rows.user_key = coalesce(users.key, 0)
                          and alert_rows.status = 1 and alert_rows.sent_at <= ?)""")  # 1: sent (plugins.alerts.queue)
        params.append(cutoff)
    extra = "(select extra_scopes from scope_creep where scope_creep.grant_id = grants.id)" if selection.kind else "null"
    sql = f"""select grants.id as grant_id, grants.app_id, apps.client_id, apps.name as app, apps.provider, apps.status,
                grants.user_id, users.email, grants.scopes, grants.grant_type, grants.resource, grants.tenant_wide,
                {extra} as extra_scopes
              from grants join apps on apps.id = grants.app_id left join users on users.id = grants.user_id
              where {' and '.join(where)}
              order by apps.provider, apps.name, users.email, grants.id"""
    return list(db.query(sql, params))


def planned_grant(row: dict) -> PlannedGrant:
    user_id = row["user_id"]
    return PlannedGrant(
        grant_id=row["grant_id"], app_id=row["app_id"], client_id=row["client_id"], user_id=user_id,
        user_key=user_id.split(":", 1)[1] if user_id else None, email=row["email"], scopes=json.loads(row["scopes"]),
        grant_type=row["grant_type"], resource=row["resource"] or "", tenant_wide=bool(row["tenant_wide"]),
    )


@dataclass
class Draft:
    """A plan before it is stored: its actions, and what was left out and why."""

    actions: list[dict] = field(default_factory=list)
    gone: int = 0  # selected grants the provider no longer has
    notes: list[str] = field(default_factory=list)


def draft_plan(db: Database, selection: Selection, revokers: dict[str, Revoker], now: str) -> Draft:
    """Read each selected grant from its provider and turn it into actions (nothing is written)."""
    draft = Draft()
    selects_grants = selection.apps or selection.statuses or selection.kind or selection.users or selection.after_warning_days is not None
    rows = select_grants(db, selection, now) if selects_grants else []  # --block alone blocks, and removes no grant
    missing = sorted({row["provider"] for row in rows} - set(revokers))
    if missing:
        raise PlanRefused(f"cannot read the {', '.join(missing)} grants it selects ([{missing[0]}] is not configured, or no "
                          "installed plugin revokes them); add --provider to leave them out")
    for row in rows:
        revoker = revokers[row["provider"]]
        grant = planned_grant(row)
        extra = set(json.loads(row["extra_scopes"])) if row["extra_scopes"] else None
        targets = revoker.resolve(grant)
        if not targets:
            draft.gone += 1
            continue
        for target in targets:
            base = {"provider": row["provider"], "grant_id": grant.grant_id, "app_id": grant.app_id, "user_id": grant.user_id,
                    "target": json.dumps(target.target, sort_keys=True), "snapshot": json.dumps(target.snapshot, sort_keys=True),
                    "state": "pending", "planned_at": now, "attempts": 0}
            if extra is None:
                draft.actions.append({**base, "action": "revoke", "scopes_removed": json.dumps(target.scopes)})
                continue
            removed = [scope for scope in target.scopes if scope in extra]
            kept = [scope for scope in target.scopes if scope not in extra]
            if not removed:
                continue
            if not kept or selection.whole_token:
                draft.actions.append({**base, "action": "revoke", "scopes_removed": json.dumps(target.scopes)})
            elif revoker.can_narrow:
                draft.actions.append({**base, "action": "narrow", "scopes_removed": json.dumps(removed), "scopes_kept": json.dumps(kept)})
            else:
                draft.actions.append({**base, "action": "narrow", "scopes_removed": json.dumps(removed), "scopes_kept": json.dumps(kept),
                                      "state": "skipped", "finished_at": now,
                                      "error": f"{row['provider']} cannot remove some scopes of a grant and keep the others; "
                                               "plan again with --whole-token to revoke the whole grant"})
    for app in selection.block:
        draft.actions.append(_block_action(db, app, revokers, now))
    return draft


def _block_action(db: Database, app: str, revokers: dict[str, Revoker], now: str) -> dict:
    row = next(iter(db.query("select * from apps where id = ? or client_id = ? order by id limit 1", [app, app])), None)
    if row is None:
        raise PlanRefused(f"--block {app}: no such app in the inventory (give its id, like microsoft:<app id>, or its client id)")
    if row["ownership"] != "third_party" or row["status"] in APPROVED:
        raise PlanRefused(f"--block {app}: {row['name']} is {row['ownership'].replace('_', '-')} and {row['status']}; "
                          "only third-party apps the district has not approved can be blocked")
    revoker = revokers.get(row["provider"])
    if revoker is None or not revoker.can_block:
        raise PlanRefused(f"--block {app}: {row['provider']} has no API to block an app for everyone"
                          + ("; use App access control in the Google Admin console (see docs/revoke.md)" if row["provider"] == "google" else ""))
    try:
        target = revoker.resolve_app(row["client_id"])
    except GrantGone:
        raise PlanRefused(f"--block {app}: {row['provider']} no longer has this app in the tenant") from None
    except WriteFailed as error:
        raise PlanRefused(f"--block {app}: {error}") from None
    return {"provider": row["provider"], "grant_id": None, "app_id": row["id"], "user_id": None, "action": "block",
            "target": json.dumps(target.target, sort_keys=True), "snapshot": json.dumps(target.snapshot, sort_keys=True),
            "scopes_removed": "[]", "state": "pending", "planned_at": now, "attempts": 0}


def store_plan(db: Database, selection: Selection, draft: Draft, *, actor: str, now: str, kind: str = "revoke",
               note: str | None = None) -> int:
    """Write the plan and its actions in one transaction; returns the plan id."""
    with db.atomic():
        plan_id = db["revoke_plans"].insert({
            "created_at": now, "created_by": actor, "selection": selection.to_json(), "kind": kind,
            "status": "planned", "actions": len(draft.actions), "note": note,
        }).last_pk
        db["revoke_actions"].insert_all([{**action, "plan_id": plan_id} for action in draft.actions])
    return plan_id
