"""The revoke plugin: remove apps' access at Google and Microsoft, carefully (docs/revoke.md).

    app-inventory revoke plan ...       choose grants, read them from the provider, store a plan
    app-inventory revoke show PLAN      the plan, its actions and their outcomes
    app-inventory revoke approve PLAN   a second person approves ([revoke] require_approval)
    app-inventory revoke apply PLAN     carry it out, each action exactly once, recorded
    app-inventory revoke restore ACTION recreate what an action removed (Microsoft)

The parts:

    plan.py     selection (SQL over the inventory) -> actions, with each grant's snapshot
    apply.py    the state machine of each action, pacing, threads
    commands.py the command group
    after.py    after a scan: the changes a plan caused; the "access removed" notices

Providers implement scanner.Revoker and register it through `register_revokers`; only
`revoke apply` and `revoke restore` ever write, with the provider's own write credentials.
"""

from __future__ import annotations

from scanner import ConfigKey, hookimpl

SETTINGS = {
    # A second IT person must approve a plan before it can be applied.
    "require_approval": ConfigKey("bool", False),
    # A plan older than this is refused: the inventory it was made from is too old to trust.
    "plan_max_age_hours": ConfigKey("int", 24, minimum=1, maximum=24 * 30),
}


@hookimpl
def register_config_sections(register):
    """The [revoke] section: approval and the age of plans."""
    register("revoke", SETTINGS)


@hookimpl
def register_commands(cli):
    """Add the `revoke` command group."""
    from .commands import revoke

    cli.add_command(revoke)


@hookimpl
def scan_finished(db, scan, changes):
    """Mark the grants the scan found gone that a plan removed: revoked by the district."""
    from .after import mark_revoked_by_plans

    mark_revoked_by_plans(db, scan)
