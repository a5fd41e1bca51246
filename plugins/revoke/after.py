"""After a plan: what the next scan records, and whom to tell."""

from __future__ import annotations

from sqlite_utils import Database


def mark_revoked_by_plans(db: Database, scan: dict) -> int:
    """The scan's `revoked_grant` changes whose grant a plan removed (a done revoke action):
    `changes.revoked_by_plan` names the plan, so the history says the district removed it."""
    if not db["revoke_actions"].exists():
        return 0
    with db.atomic():
        # The changes view gives each change its grant's id; its rows are stored by key (change_rows).
        return db.execute(
            """update change_rows set revoked_by_plan = done.plan_id
               from (select changes.id, max(revoke_actions.plan_id) as plan_id
                     from changes join revoke_actions on revoke_actions.grant_id = changes.grant_id
                     where changes.scan_id = ? and changes.kind = 'revoked_grant' and changes.revoked_by_plan is null
                       and revoke_actions.action = 'revoke' and revoke_actions.state = 'done'
                     group by changes.id) as done
               where change_rows.id = done.id""",
            [scan["id"]],
        ).rowcount
