"""`migrate reattach --dc OLD`: the old primary site back as a standby cluster of the new primary.

The run is an ordinary migration of the engine (journal, step boundaries, `--resume` after a
crash), under the same service lock as `execute`, with the reattach plan
(migrator/planning/reattach.py). What it adds: the diverged ranges in the outcome, and a failure
message that says the old site keeps its standby_cluster (the safe state), not that it was undone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from migrator.errors import PreflightError, UsageError
from migrator.model.findings import first_blocking_line
from migrator.model.inventory import Inventory
from migrator.model.plan import Plan
from migrator.planning.reattach import diverged_summary, observe_and_plan_reattach
from migrator.run.commands import _automated, _lock, unfinished
from migrator.run.engine import Engine, LockWatch, Outcome, never_lost
from migrator.run.journal import Journal, state_dir_for

PLAYBOOK = "reattach"


def _diverged_lines(plan: Plan) -> list[str]:
    for step in plan.steps:
        if step.kind == "start_reattached_members":
            return diverged_summary(list(step.args.get("members") or []))
    return []


def _with_diverged(outcome: Outcome, plan: Plan) -> Outcome:
    lines = _diverged_lines(plan)
    message = outcome.message
    if outcome.outcome == "rolled-back":
        # Nothing of a reattach is undone: its changes are what keeps the old site a standby.
        message = (
            f"{message.split('; ')[0]}; nothing of a reattach is undone (once standby_cluster is in its DCS, "
            f"{plan.target} cannot start as a primary); fix the cause and run `migrate reattach --dc "
            f"{plan.target}` again (runbooks/reattach.md)"
        )
    if lines:
        message = f"{message}; " + "; ".join(lines)
    return replace(outcome, message=message)


def reattach(
    inventory: Inventory,
    old: str,
    state_base: Path,
    resume: bool,
    confirm: Callable[[Plan], bool],
    progress: Callable[[str], None],
    reclone: tuple[str, ...] = (),
) -> Outcome | str:
    """Run (or resume) the reattachment of `old`; a plain string is a no-op message."""
    state_dir = state_dir_for(state_base, inventory.service)
    if resume and reclone:
        raise UsageError("--reclone is decided when the plan is made, not on --resume; resume without it")
    if resume and unfinished(Journal(state_dir)) is None:  # refused early; decided again under the lock
        raise UsageError(f"nothing to resume: no unfinished reattach in {state_dir}")
    with _lock(inventory, state_dir) as lock:
        return _reattach_locked(inventory, old, state_dir, resume, confirm, progress, lock.lost, reclone)


def _reattach_locked(
    inventory: Inventory,
    old: str,
    state_dir: Path,
    resume: bool,
    confirm: Callable[[Plan], bool],
    progress: Callable[[str], None],
    lock_lost: LockWatch = never_lost,
    reclone: tuple[str, ...] = (),
) -> Outcome | str:
    journal = Journal(state_dir, inventory.secrets())
    pending = unfinished(journal)
    if resume:
        if pending is None:
            raise UsageError(f"nothing to resume: no unfinished reattach in {state_dir}")
        plan = pending.stored_plan()
        if plan.playbook != PLAYBOOK or plan.target != old:
            command = "failover" if plan.playbook == "failover" else "execute"
            raise UsageError(
                f"the unfinished migration in {state_dir} is a {plan.playbook} to {plan.target}, not a "
                f"reattach of {old}; finish it with `migrate {command} --resume --dc {plan.target}`"
            )
        _automated(plan)
        outcome = Engine(inventory, plan, state_dir, progress, lock_lost=lock_lost).resume(pending)
        return _with_diverged(outcome, plan)
    if pending is not None:
        stored = pending.stored_plan()
        command = stored.playbook if stored.playbook in (PLAYBOOK, "failover") else "execute"
        again = f"migrate {command} --resume --dc {stored.target}"
        raise UsageError(
            f"an unfinished migration to {pending.target} is recorded in {state_dir} ({pending.id}); "
            f"finish it with `{again}` first"
        )
    plan = observe_and_plan_reattach(inventory, old, reclone)
    if plan.noop_reason:
        return plan.noop_reason
    if not plan.executable:
        raise PreflightError(f"{first_blocking_line('reattach refused', plan.findings)}; see `migrate plan --reattach`")
    _automated(plan)
    if not confirm(plan):
        raise UsageError("not confirmed; nothing changed")
    outcome = Engine(inventory, plan, state_dir, progress, lock_lost=lock_lost).start()
    return _with_diverged(outcome, plan)
