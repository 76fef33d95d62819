"""`migrate execute` and `migrate rollback`: the decisions around the engine.

Execute re-observes and re-plans right before acting and refuses a reviewed plan whose
fingerprint no longer matches reality; it holds the service's migration lock for the whole run.
Rollback reads the journal: before the promotion was sent it undoes in reverse, after it it runs
the same zero-loss protocol towards the original site.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from migrator.adapters.dcs import Etcd3Dcs, site_dcs
from migrator.adapters.live import Live
from migrator.errors import MigratorError, PreflightError, StalePlan, UnreachableError, UsageError
from migrator.model.failover import is_failover_document
from migrator.model.findings import first_blocking_line
from migrator.model.inventory import Inventory
from migrator.model.plan import Plan
from migrator.model.playbook import SWITCHOVER_PHASES, UNTIL_STOPS
from migrator.planning.hooks import plan_hooks
from migrator.planning.preflight import observe_and_plan
from migrator.run.engine import (
    Engine,
    LockWatch,
    Migration,
    Outcome,
    latest_migration,
    load_plan,
    never_lost,
    promotion_attempted,
)
from migrator.run.journal import Journal, state_dir_for
from migrator.run.lock import MigrationLock
from migrator.steps.registry import STEP_CLASSES

# Playbooks whose runs are resumed by their own command, never by `execute --resume`.
OWN_COMMANDS = ("failover", "reattach")


def _lock(inventory: Inventory, state_dir: Path) -> MigrationLock:
    """One lock per service, whichever way it moves: in the DCS of the inventory's first site."""
    name, site = next(iter(inventory.sites.items()))
    dcs: Etcd3Dcs = site_dcs(site, inventory.gates.connect_timeout_seconds, name)
    try:
        dcs.client()
    except UnreachableError as exc:
        raise UnreachableError(
            f"cannot take the migration lock: {exc}; the lock keeps two "
            "operators from running at once, so nothing was changed"
        ) from None
    return MigrationLock(state_dir, dcs, inventory.service, f"{name}'s etcd", inventory.gates.lock_ttl_seconds)


def _automated(plan: Plan) -> None:
    manual = [s.id for s in plan.steps if s.kind not in STEP_CLASSES]
    if manual:
        # Every kind of the shipped playbooks has a step class; this guards a plan file or playbook
        # that names one this version of migrate does not know.
        raise PreflightError(
            f"this plan has steps `migrate execute` cannot run ({', '.join(manual)}); follow "
            "`migrate plan --format runbook` by hand, or use the migrate version that wrote the plan"
        )


def _check_reviewed(plan: Plan, reviewed_file: Path | None) -> None:
    if reviewed_file is None:
        return
    try:
        reviewed = load_plan(reviewed_file)
    except (OSError, ValueError) as exc:
        if _is_failover_plan(reviewed_file):
            raise UsageError(
                f"--plan {reviewed_file} is a failover plan (`plan --failover`), not a switchover plan; "
                "`migrate failover --dc DC` plans and runs a failover itself, `migrate show` renders this file"
            ) from None
        raise UsageError(
            f"--plan {reviewed_file}: not a readable plan file ({str(exc).splitlines()[0]}); "
            "write one with `migrate plan --format json --out FILE`"
        ) from None
    if reviewed.fingerprint != plan.fingerprint:
        raise StalePlan(
            f"the reviewed plan {reviewed_file} (fingerprint {reviewed.fingerprint[:12]}) no longer matches "
            f"the sites (now {plan.fingerprint[:12]}): the topology changed since it was reviewed; "
            "run `migrate plan` again and review the new plan"
        )


def _is_failover_plan(path: Path) -> bool:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return False
    return is_failover_document(data)


def _hooks_as_planned(inventory: Inventory, plan: Plan, plan_file: Path) -> None:
    """The hooks a resumed run runs come from the inventory: they must still be the reviewed ones."""
    now = plan_hooks(inventory.hooks, plan.steps)
    if now != plan.hooks:
        changed = sorted({h.name for h in set(now) ^ set(plan.hooks)})
        raise UsageError(
            f"the inventory's hooks changed since this migration started ({', '.join(changed)}); "
            f"put them back as the stored plan {plan_file} shows to resume, or `migrate rollback`"
        )


def unfinished(journal: Journal) -> Migration | None:
    migration = latest_migration(journal)
    return migration if migration is not None and migration.finished is None else None


def execute(
    inventory: Inventory,
    target: str,
    state_base: Path,
    reviewed_plan: Path | None,
    resume: bool,
    confirm: Callable[[Plan], bool],
    progress: Callable[[str], None],
    until: str | None = None,
) -> Outcome | str:
    """Run (or resume) the move to `target`; a plain string is a no-op message. With `until`,
    only the phases up to and including that one run (e.g. seed and cascade days before)."""
    _check_until_name(until)
    state_dir = state_dir_for(state_base, inventory.service)
    if resume and unfinished(Journal(state_dir)) is None:  # refused early; decided again under the lock
        raise UsageError(f"nothing to resume: no unfinished migration in {state_dir}")
    with _lock(inventory, state_dir) as lock:
        return _execute_locked(inventory, target, state_dir, reviewed_plan, resume, confirm, progress, until, lock.lost)


def _check_until_name(until: str | None) -> None:
    if until is None or until in UNTIL_STOPS:
        return
    stops = ", ".join(UNTIL_STOPS)
    if until in SWITCHOVER_PHASES:
        raise UsageError(
            f"--until {until}: not a safe place to stop (it would leave the service inside or "
            f"after the write-unavailability window); --until takes {stops}; to cut over, "
            "run `migrate execute` without --until"
        )
    raise UsageError(f"--until {until}: not a phase; --until takes {stops}")


def _execute_locked(
    inventory: Inventory,
    target: str,
    state_dir: Path,
    reviewed_plan: Path | None,
    resume: bool,
    confirm: Callable[[Plan], bool],
    progress: Callable[[str], None],
    until: str | None = None,
    lock_lost: LockWatch = never_lost,
) -> Outcome | str:
    journal = Journal(state_dir, inventory.secrets())
    pending = unfinished(journal)
    if resume:
        if pending is None:
            raise UsageError(f"nothing to resume: no unfinished migration in {state_dir}")
        if pending.target != target:
            raise UsageError(f"the unfinished migration in {state_dir} moves to {pending.target}, not {target}")
        plan = pending.stored_plan()
        if plan.playbook in OWN_COMMANDS:
            # Its own command holds its own lock and knows its own decisions (--fenced, a loss accepted).
            raise UsageError(
                f"the unfinished migration in {state_dir} ({pending.id}) is a {plan.playbook}; finish it with "
                f"`migrate {plan.playbook} --resume --dc {pending.target}`"
            )
        _hooks_as_planned(inventory, plan, pending.plan_file)
        _automated(plan)
        return Engine(inventory, plan, state_dir, progress, lock_lost=lock_lost).resume(pending)
    if pending is not None:
        playbook = pending.stored_plan().playbook
        command = playbook if playbook in OWN_COMMANDS else "execute"
        undo = "" if playbook in OWN_COMMANDS else " or undo it with `migrate rollback`"
        raise UsageError(
            f"an unfinished migration to {pending.target} is recorded in {state_dir} "
            f"({pending.id}); finish it with `migrate {command} --resume --dc {pending.target}`{undo}"
        )
    # The observation's SSH sessions are the run's: its steps (the preflight's observation again,
    # the access proofs, the token read) pay no handshake. Closed by the run, or here without one.
    live = Live(inventory)
    try:
        plan = observe_and_plan(inventory, target, run_ssh=live.ssh_read)
        if plan.noop_reason:
            return plan.noop_reason
        _check_reviewed(plan, reviewed_plan)
        if not plan.executable:
            raise PreflightError(f"{first_blocking_line('the plan is blocked', plan.findings)}; see `migrate check`")
        _automated(plan)
        if not confirm(plan):
            raise UsageError("not confirmed; nothing changed")
        return Engine(inventory, plan, state_dir, progress, until=until, lock_lost=lock_lost, live=live).start()
    finally:
        live.close()


def rollback(
    inventory: Inventory, state_base: Path, confirm: Callable[[Plan], bool], progress: Callable[[str], None]
) -> Outcome:
    state_dir = state_dir_for(state_base, inventory.service)
    if latest_migration(Journal(state_dir)) is None:  # refused early; decided again under the lock
        raise UsageError(f"no migration is recorded in {state_dir}; to move the primary, use `migrate execute --dc`")
    with _lock(inventory, state_dir) as lock:
        return _rollback_locked(inventory, state_dir, confirm, progress, lock.lost)


def _rollback_locked(
    inventory: Inventory,
    state_dir: Path,
    confirm: Callable[[Plan], bool],
    progress: Callable[[str], None],
    lock_lost: LockWatch = never_lost,
) -> Outcome:
    journal = Journal(state_dir, inventory.secrets())
    migration = latest_migration(journal)
    if migration is None:
        raise UsageError(f"no migration is recorded in {state_dir}; to move the primary, use `migrate execute --dc`")
    plan = migration.stored_plan()
    if plan.playbook == "failover":
        # Fences are never undone by the tool: the old site comes back as a standby (reattach).
        raise UsageError(
            f"the latest migration ({migration.id}) is a failover to {plan.target}, which is not rolled back: "
            f"finish it with `migrate failover --resume --dc {plan.target}`, bring {plan.source} back with "
            f"`migrate reattach --dc {plan.source}`, then move with `migrate execute --dc {plan.source}`"
        )
    if plan.playbook == "reattach":
        # A reattach only makes the old site a standby: there is nothing to move back.
        raise UsageError(
            f"the latest migration ({migration.id}) is a reattach of {plan.target}, which is not rolled back "
            f"(standby_cluster in its DCS is the safe state); finish it with `migrate reattach --resume --dc "
            f"{plan.target}`, then move with `migrate execute --dc {plan.target}`"
        )
    promotion_sent = promotion_attempted(plan, migration)
    if migration.reverse_of is not None and migration.finished == "done":
        raise UsageError(
            f"the latest migration ({migration.id}) was itself a rollback to {plan.target}; "
            f"to move again, use `migrate execute --dc {plan.source}`"
        )
    if migration.finished == "rolled-back":
        raise UsageError(f"the latest migration ({migration.id}) was already rolled back; {plan.source} is primary")
    if not promotion_sent:
        return Engine(inventory, plan, state_dir, progress).rollback_before_promotion(migration)
    # Past the promotion, moving back is a switchover of its own, with every gate of the first.
    if migration.finished is None:
        raise UsageError(
            f"the migration to {plan.target} was promoted but not finished; finish it with "
            f"`migrate execute --resume --dc {plan.target}`, then roll back"
        )
    live = Live(inventory)  # as in execute: the observation's SSH sessions are the run's
    try:
        back = observe_and_plan(inventory, plan.source, run_ssh=live.ssh_read)
        if back.noop_reason:
            raise UsageError(f"{plan.source} is primary already; nothing to roll back")
        if not back.executable:
            raise PreflightError(str(first_blocking_line(f"moving back to {plan.source} is blocked", back.findings)))
        _automated(back)
        if not confirm(back):
            raise UsageError("not confirmed; nothing changed")
        journal.append("rollback-started", migration=migration.id, reverse_to=plan.source)
        outcome = Engine(inventory, back, state_dir, progress, lock_lost=lock_lost, live=live).start(
            reverse_of=migration.id
        )
    finally:
        live.close()
    if outcome.exit_code == 0:
        journal.append("migration-finished", migration=migration.id, outcome="rolled-back")
    return outcome


__all__ = ["execute", "rollback", "MigratorError"]
