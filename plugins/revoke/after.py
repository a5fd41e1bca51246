"""After a plan: what the next scan records, and whom to tell."""

from __future__ import annotations

from sqlite_utils import Database


def mark_revoked_by_plans(db: Database, scan: dict) -> int:
    """The scan's `revoked_grant` changes whose grant a plan removed (a done revoke action):
    `changes.revoked_by_plan` names the plan, so the history says the district removed it."""
    if not db["revoke_actions"].exists():
        return 0
    with db.atomic():
        return db.execute(
            """update changes set revoked_by_plan = (
                   select max(revoke_actions.plan_id) from revoke_actions
                   where revoke_actions.grant_id = changes.grant_id and revoke_actions.action = 'revoke'
                     and revoke_actions.state = 'done')
               where scan_id = ? and kind = 'revoked_grant' and revoked_by_plan is null
                 and exists (select 1 from revoke_actions where revoke_actions.grant_id = changes.grant_id
                             and revoke_actions.action = 'revoke' and revoke_actions.state = 'done')""",
            [scan["id"]],
        ).rowcount
