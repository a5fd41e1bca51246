"""The `app-inventory revoke` command group."""

from __future__ import annotations

import datetime as dt
import getpass
import json
from pathlib import Path

import click

from scanner import (
    ConfigError, ScanLock, WriteFailed, WriteNotConfigured, iso, parse_iso, registered_revokers, utc_now,
)

from .apply import FINAL_STATES, apply_actions, decode
from .plan import STATUSES, PlanRefused, Selection, draft_plan, store_plan

ACTOR_ENV = "APP_INVENTORY_ACTOR"


class Refused(click.ClickException):
    """A refusal (bad plan, missing approval, missing write credentials): exit code 2, nothing written."""

    exit_code = 2


class ActionsFailed(click.ClickException):
    exit_code = 1


def actor_option(function):
    return click.option(
        "--by", "actor", envvar=ACTOR_ENV, default=lambda: getpass.getuser(), show_default="your login name",
        help=f"Who you are, for the audit trail [env {ACTOR_ENV}].",
    )(function)


def open_inventory(app):
    if not Path(app.db_path).exists():
        raise Refused(f"{app.db_path}: no inventory here; run `app-inventory scan` first (or pass --db)")
    return app.open_db()


def make_revokers(config, providers) -> dict:
    """A revoker for each named provider that is configured (its scan section is there)."""
    classes = registered_revokers()
    made = {}
    for name in sorted(set(providers)):
        if name not in classes:
            raise Refused(f"no installed plugin can revoke {name} grants")
        if not config.has(name):
            raise Refused(f"{config.where}: [{name}] is not configured; revoking reads each grant from {name} first")
        made[name] = classes[name](config)
    return made


def close_all(revokers: dict) -> None:
    for revoker in revokers.values():
        revoker.close()


def load_plan(db, plan_id: int) -> dict:
    plan = db["revoke_plans"].get(plan_id) if db["revoke_plans"].count_where("id = ?", [plan_id]) else None
    if plan is None:
        raise Refused(f"no plan {plan_id} in this inventory (see the revoke_plans table)")
    return plan


@click.group()
def revoke():
    """Remove apps' access at Google and Microsoft: plan, review, approve, apply (docs/revoke.md).

    The only commands that change a district's tenant. `plan` changes nothing there."""


@revoke.command()
@click.option("--app", "apps", multiple=True, help="An app (id, client id or catalog id); repeatable.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES), help="Apps with this catalog status; repeatable. Default: all three.")
@click.option("--kind", type=click.Choice(["scope_creep"]), help="scope_creep: remove only the scopes beyond those approved, for approved apps.")
@click.option("--whole-token", is_flag=True, help="With --kind scope_creep: revoke whole grants where the provider cannot remove some scopes (Google).")
@click.option("--user", "users", multiple=True, help="Only this person's grants (an email address, any of their accounts); repeatable.")
@click.option("--provider", "providers", multiple=True, help="Only this provider (google, microsoft); repeatable.")
@click.option("--after-warning-days", type=click.IntRange(min=0), help="Only grants whose alert was sent at least N days ago, and still there.")
@click.option("--max", "max_actions", type=click.IntRange(min=1), default=500, show_default=True, help="Refuse a plan with more actions.")
@click.option("--block", "block", multiple=True, help="Block APP for everyone (Microsoft: no new sign-in or token); repeatable.")
@actor_option
@click.pass_obj
def plan(app, apps, statuses, kind, whole_token, users, providers, after_warning_days, max_actions, block, actor):
    """Choose grants, read each from its provider and store a plan. Changes nothing in the tenant."""
    selection = Selection(apps=list(apps), statuses=list(statuses), kind=kind, users=list(users), providers=list(providers),
                          after_warning_days=after_warning_days, block=list(block), whole_token=whole_token, max_actions=max_actions)
    if selection.empty():
        raise Refused("say what to revoke: --app, --status, --kind scope_creep, --user, --after-warning-days or --block")
    db = open_inventory(app)
    now = iso(utc_now())
    wanted = providers or [row["provider"] for row in db.query("select distinct provider from apps")]
    revokers = make_revokers(app.config, [p for p in wanted if app.config.has(p)] or wanted)
    try:
        draft = draft_plan(db, selection, revokers, now)
    except PlanRefused as error:
        raise Refused(str(error)) from None
    except WriteFailed as error:
        raise ActionsFailed(f"reading the grants failed; no plan was stored: {error}") from None
    finally:
        close_all(revokers)
    if not draft.actions:
        raise Refused("nothing to revoke: no active grant matches" + (f" ({draft.gone} are already gone)" if draft.gone else ""))
    if len(draft.actions) > max_actions:
        raise Refused(f"the plan would hold {len(draft.actions)} actions, more than --max {max_actions}; narrow the selection or raise --max")
    plan_id = store_plan(db, selection, draft, actor=actor, now=now)
    click.echo(describe_plan(db, plan_id))
    if draft.gone:
        click.echo(f"{draft.gone} selected grant(s) were already gone at the provider; the next scan marks them revoked.")
    config = app.config.section("revoke")
    step = "a second person approves it with `app-inventory revoke approve {id}`, then " if config["require_approval"] else ""
    click.echo(f"Nothing has changed in the tenant. Review it; {step.format(id=plan_id)}apply it with "
               f"`app-inventory revoke apply {plan_id}` within {config['plan_max_age_hours']} hours.")


def describe_plan(db, plan_id: int) -> str:
    plan = db["revoke_plans"].get(plan_id)
    lines = [f"Plan {plan_id} ({plan['kind']}, {plan['status']}): planned by {plan['created_by']} at {plan['created_at']}"]
    if plan["approved_by"]:
        lines.append(f"  approved by {plan['approved_by']} at {plan['approved_at']}")
    if plan["applied_by"]:
        lines.append(f"  applied by {plan['applied_by']} from {plan['applied_at']}" + (f" to {plan['finished_at']}" if plan["finished_at"] else ""))
    lines.append(f"  selection: {plan['selection']}")
    rows = list(db.query(
        """select revoke_actions.*, apps.name as app, users.email from revoke_actions
           left join apps on apps.id = revoke_actions.app_id left join users on users.id = revoke_actions.user_id
           where plan_id = ? order by revoke_actions.id""", [plan_id]))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
        scopes = ", ".join(json.loads(row["scopes_removed"] or "[]"))
        who = row["email"] or ("(the app, for everyone)" if row["action"] == "block" else "(tenant-wide)")
        note = f"  [{row['error']}]" if row["error"] else ""
        lines.append(f"  #{row['id']:<6} {row['state']:<15} {row['action']:<7} {row['provider']:<9} {row['app'] or row['app_id']} | {who}"
                     + (f" | {scopes}" if scopes else "") + note)
    lines.append("  " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) + f" ({len(rows)} actions)")
    return "\n".join(lines)


@revoke.command()
@click.argument("plan_id", metavar="PLAN", type=int)
@click.pass_obj
def show(app, plan_id):
    """Show a plan: who planned, approved and applied it, and each action's state."""
    db = open_inventory(app)
    load_plan(db, plan_id)
    click.echo(describe_plan(db, plan_id))


@revoke.command()
@click.argument("plan_id", metavar="PLAN", type=int)
@actor_option
@click.pass_obj
def approve(app, plan_id, actor):
    """Approve a plan: by someone other than the person who planned it."""
    db = open_inventory(app)
    plan = load_plan(db, plan_id)
    if plan["status"] != "planned":
        raise Refused(f"plan {plan_id} is {plan['status']}; only a planned plan can be approved")
    if actor.strip().lower() == plan["created_by"].strip().lower():
        raise Refused(f"plan {plan_id} was planned by {plan['created_by']}: a different person must approve it")
    check_age(plan, app.config)
    with db.atomic():
        db.execute("update revoke_plans set status = 'approved', approved_by = ?, approved_at = ? where id = ?",
                   [actor, iso(utc_now()), plan_id])
    click.echo(f"Plan {plan_id} approved by {actor}; apply it with `app-inventory revoke apply {plan_id}`.")


def check_age(plan: dict, config) -> None:
    hours = config.section("revoke")["plan_max_age_hours"]
    if utc_now() - parse_iso(plan["created_at"]) > dt.timedelta(hours=hours):
        raise Refused(f"plan {plan['id']} was made at {plan['created_at']}, more than [revoke] plan_max_age_hours = {hours} "
                      "hours ago; the inventory has moved on: make a new plan")


@revoke.command()
@click.argument("plan_id", metavar="PLAN", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--max", "max_actions", type=click.IntRange(min=1), default=500, show_default=True, help="Refuse a plan with more actions.")
@actor_option
@click.pass_obj
def apply(app, plan_id, yes, max_actions, actor):
    """Carry out a plan: re-check each grant, then remove it, each exactly once, every outcome recorded.

    Resumable: run it again after an interruption and it finishes what is left."""
    db = open_inventory(app)
    plan = load_plan(db, plan_id)
    config = app.config
    if plan["kind"] != "revoke":
        raise Refused(f"plan {plan_id} is a {plan['kind']} record, not a plan to apply")
    if plan["status"] == "applied":
        click.echo(f"Plan {plan_id} was already applied (see `app-inventory revoke show {plan_id}`); nothing to do.")
        return
    resuming = plan["status"] == "applying"
    if not resuming:
        if config.section("revoke")["require_approval"] and not plan["approved_by"]:
            raise Refused(f"plan {plan_id} is not approved; [revoke] require_approval = true asks a second person to run "
                          f"`app-inventory revoke approve {plan_id}` first")
        check_age(plan, config)
    if plan["actions"] > max_actions:
        raise Refused(f"plan {plan_id} holds {plan['actions']} actions, more than --max {max_actions}")
    providers = [row["provider"] for row in db.query(
        "select distinct provider from revoke_actions where plan_id = ? and state in ('pending', 'in_flight')", [plan_id])]
    revokers = make_revokers(config, providers)
    try:
        for revoker in revokers.values():
            try:
                revoker.check_write_access()
            except (WriteNotConfigured, ConfigError) as error:
                raise Refused(f"nothing was changed: {error}") from None
        if not yes and not resuming:
            click.echo(describe_plan(db, plan_id))
            click.confirm(f"Apply plan {plan_id} to the tenant now?", abort=True)
        with ScanLock(app.db_path):
            now = iso(utc_now())
            with db.atomic():
                db.execute("""update revoke_plans set status = 'applying', applied_by = coalesce(applied_by, ?),
                              applied_at = coalesce(applied_at, ?) where id = ?""", [actor, now, plan_id])
            apps = {row["id"]: row for row in db.query("select id, name, ownership, status from apps")}
            scope_creep = json.loads(plan["selection"]).get("kind") == "scope_creep"

            def blocked(app_id: str) -> str | None:
                # Checked again now: the catalog may have approved the app since the plan.
                row = apps.get(app_id)
                if row and (row["ownership"] != "third_party" or (row["status"] in ("approved", "conditional") and not scope_creep)):
                    return f"not removed: {row['name']} is now {row['status']} ({row['ownership']}) in the inventory"
                return None

            report = apply_actions(db, plan_id, revokers, blocked_apps=blocked)
            left = db.execute("select count(*) from revoke_actions where plan_id = ? and state not in ("
                              + ",".join("?" * len(FINAL_STATES)) + ")", [plan_id, *FINAL_STATES]).fetchone()[0]
            if not left:
                with db.atomic():
                    db.execute("update revoke_plans set status = 'applied', finished_at = ? where id = ?", [iso(utc_now()), plan_id])
    finally:
        close_all(revokers)
    summary = ", ".join(f"{n} {state}" for state, n in sorted(report.counts.items())) or "nothing left to do"
    click.echo(f"Plan {plan_id}: {summary} in {report.seconds:.1f} s.")
    for action_id, note in report.failures:
        click.echo(f"  #{action_id} failed: {note}")
    for action_id, note in report.uncertain:
        click.echo(f"  #{action_id} {note}")
    if not report.ok:
        raise ActionsFailed(f"some actions did not succeed; see `app-inventory revoke show {plan_id}` (failed actions are not retried)"
                            if report.failures else f"some outcomes are unknown; run `app-inventory revoke apply {plan_id}` again")


@revoke.command()
@click.argument("action_ids", metavar="ACTION...", nargs=-1, type=int, required=True)
@actor_option
@click.pass_obj
def restore(app, action_ids, actor):
    """Recreate grants that done actions removed, from their snapshots (Microsoft only:
    Google cannot restore a token; the person signs in to the app again)."""
    db = open_inventory(app)
    originals = []
    for action_id in action_ids:
        row = next(iter(db.query("select * from revoke_actions where id = ?", [action_id])), None)
        if row is None:
            raise Refused(f"no action {action_id} (see the audit table)")
        if row["action"] == "restore" or row["state"] != "done":
            raise Refused(f"action {action_id} is a {row['action']} that is {row['state']}; only a done revoke, narrow or block can be restored")
        earlier = next(iter(db.query("select id, state from revoke_actions where restores_action_id = ? and state in ('done', 'in_flight', 'pending')",
                                     [action_id])), None)
        if earlier and earlier["state"] == "done":
            raise Refused(f"action {action_id} was already restored by action {earlier['id']}")
        originals.append((row, earlier))
    revokers = make_revokers(app.config, [row["provider"] for row, _ in originals])
    try:
        for name, revoker in revokers.items():
            if not revoker.can_restore:
                raise Refused(f"{name} cannot restore what was revoked: a Google token comes back only when the person "
                              "signs in to the app again and consents (docs/revoke.md)")
            try:
                revoker.check_write_access()
            except (WriteNotConfigured, ConfigError) as error:
                raise Refused(f"nothing was changed: {error}") from None
        with ScanLock(app.db_path):
            now = iso(utc_now())
            failed = []
            with db.atomic():
                plan_id = db["revoke_plans"].insert({
                    "created_at": now, "created_by": actor, "applied_at": now, "applied_by": actor, "kind": "restore",
                    "selection": json.dumps({"restore": list(action_ids)}), "status": "applying", "actions": len(originals),
                    "note": f"restores actions {', '.join(map(str, action_ids))}",
                }).last_pk
            for row, earlier in originals:
                if earlier is not None:  # an interrupted restore: settle it, never recreate twice
                    restore_id = earlier["id"]
                else:
                    restore_id = db["revoke_actions"].insert({
                        "plan_id": plan_id, "provider": row["provider"], "action": "restore", "grant_id": row["grant_id"],
                        "app_id": row["app_id"], "user_id": row["user_id"], "target": row["target"], "snapshot": row["snapshot"],
                        "scopes_removed": "[]", "state": "pending", "attempts": 0, "planned_at": now, "restores_action_id": row["id"],
                    }).last_pk
                state, note, target = restore_one(db, revokers[row["provider"]], decode(row), restore_id, recovering=earlier is not None)
                with db.atomic():
                    db.execute("update revoke_actions set state = ?, error = ?, target = coalesce(?, target), finished_at = ? where id = ?",
                               [state, note, target, iso(utc_now()), restore_id])
                click.echo(f"#{row['id']}: {state}" + (f" ({note})" if note else "") + f" (action {restore_id})")
                if state != "done":
                    failed.append(row["id"])
            with db.atomic():
                db.execute("update revoke_plans set status = 'applied', finished_at = ? where id = ?", [iso(utc_now()), plan_id])
    finally:
        close_all(revokers)
    if failed:
        raise ActionsFailed(f"{len(failed)} restore(s) did not succeed")


def restore_one(db, revoker, original: dict, restore_id: int, *, recovering: bool) -> tuple[str, str | None, str | None]:
    with db.atomic():
        db.execute("update revoke_actions set state = 'in_flight', attempts = attempts + 1, started_at = ? where id = ?",
                   [iso(utc_now()), restore_id])
    try:
        if recovering or original["action"] == "revoke":
            current = revoker.read(original)
            if current is not None and original["action"] == "revoke":
                return "done", "already there when checked" if not recovering else "confirmed after an interrupted run", json.dumps(current)
        made = revoker.restore(original)
        return "done", None, json.dumps(made, sort_keys=True)
    except WriteFailed as error:
        return "failed", str(error)[:1000], None
    except Exception as error:
        return "failed", f"{type(error).__name__}: {str(error)[:500]}", None
