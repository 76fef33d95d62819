"""`migrate failover` and `migrate plan --failover`: the decisions around the engine when the
source site is failing.

The lock is taken in the target's etcd (the source's may be gone), and also where `execute` and
`rollback` take it, the first site's etcd, whenever that one answers: a failover never runs beside
a planned move of the same service. The plan is made from what
answers (migrator/planning/failover.py) and refused while any source member may still take
writes unfenced, or while a gap is not accepted. The engine then runs it with a durable journal:
`--resume` after a crash goes on from the last done step, re-checking each done fence against the
host and never sending the promotion twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from migrator.adapters.dcs import Etcd3Dcs, site_dcs
from migrator.adapters.net_errors import what_happened
from migrator.errors import LockBusy, PreflightError, UnreachableError, UsageError
from migrator.model.failover import FailoverPlan
from migrator.model.inventory import Inventory
from migrator.model.plan import Plan
from migrator.observe.observer import observe
from migrator.planning.failover import PLAYBOOK, plan_failover, source_of
from migrator.run.commands import unfinished
from migrator.run.engine import Engine, LockWatch, Migration, Outcome, never_lost, promotion_attempted
from migrator.run.journal import Journal, state_dir_for
from migrator.run.lock import EtcdLease, MigrationLock


def observe_and_plan_failover(
    inventory: Inventory, target: str, fenced: Iterable[str] = (), accept_data_loss: bool = False
) -> FailoverPlan:
    source_of(inventory, target)  # a bad --dc is refused before anything is contacted
    return plan_failover(inventory, observe(inventory), target, fenced, accept_data_loss)


def _target_lock(inventory: Inventory, target: str, state_dir: Path) -> MigrationLock:
    """The lock in the target's etcd: the one site that must answer for a failover."""
    site = inventory.site(target)
    dcs: Etcd3Dcs = site_dcs(site, inventory.gates.connect_timeout_seconds, target)
    try:
        dcs.client()
    except UnreachableError as exc:
        raise UnreachableError(
            f"cannot take the migration lock in {target}'s etcd: {exc}; a failover needs {target}'s etcd (the "
            "lock and the promotion go through it), so nothing was changed"
        ) from None
    return MigrationLock(state_dir, dcs, inventory.service, f"{target}'s etcd", inventory.gates.lock_ttl_seconds)


def failover(
    inventory: Inventory,
    target: str,
    state_base: Path,
    fenced: Iterable[str],
    accept_data_loss: bool,
    resume: bool,
    confirm: Callable[[Plan], bool],
    progress: Callable[[str], None],
) -> Outcome:
    source_of(inventory, target)
    state_dir = state_dir_for(state_base, inventory.service)
    if resume and unfinished(Journal(state_dir)) is None:
        raise UsageError(f"nothing to resume: no unfinished migration in {state_dir}")
    with (
        _target_lock(inventory, target, state_dir) as lock,
        _first_site_lock_if_it_answers(inventory, target, lock, progress),
    ):
        return _failover_locked(
            inventory, target, state_dir, list(fenced), accept_data_loss, resume, confirm, progress, lock.lost
        )


@contextmanager
def _first_site_lock_if_it_answers(
    inventory: Inventory, target: str, lock: MigrationLock, progress: Callable[[str], None]
) -> Iterator[None]:
    """The lock `execute` and `rollback` take, in the first site's etcd, held as well when that etcd
    answers: a planned move running there makes the failover exit 5 before anything is observed.
    Its loss during the run is not watched (the failing site's etcd may go at any moment; the
    target's lock is the one the run depends on). Nothing to do when the first site is the target."""
    name, site = next(iter(inventory.sites.items()))
    if name == target:
        yield
        return
    dcs: Etcd3Dcs = site_dcs(site, inventory.gates.connect_timeout_seconds, name)
    lease = EtcdLease(dcs, f"/migrator/{inventory.service}/lock", f"{name}'s etcd", inventory.gates.lock_ttl_seconds)
    held = False
    try:
        lease.acquire(inventory.service, lock.holder)
        held = True
    except LockBusy:
        raise
    except UnreachableError as exc:
        progress(f"{name}'s etcd does not answer ({exc}): the lock is held in {target}'s etcd only")
    except Exception as exc:  # noqa: BLE001 - a failing site's etcd may fail in any way mid-call
        progress(f"{name}'s etcd {what_happened(exc)}: the lock is held in {target}'s etcd only")
    try:
        yield
    finally:
        if held:
            lease.release()


def _failover_locked(
    inventory: Inventory,
    target: str,
    state_dir: Path,
    fenced: list[str],
    accept_data_loss: bool,
    resume: bool,
    confirm: Callable[[Plan], bool],
    progress: Callable[[str], None],
    lock_lost: LockWatch = never_lost,
) -> Outcome:
    journal = Journal(state_dir, inventory.secrets())
    pending = unfinished(journal)
    if resume:
        if pending is None:
            raise UsageError(f"nothing to resume: no unfinished migration in {state_dir}")
        plan = pending.stored_plan()
        if plan.playbook != PLAYBOOK or pending.target != target:
            raise UsageError(
                f"the unfinished migration in {state_dir} is a {plan.playbook} to {pending.target}, not a failover "
                f"to {target}; finish it with `migrate execute --resume --dc {pending.target}`"
            )
        if accept_data_loss:
            # The operator's decision, taken now: recorded, and given to the prove step.
            journal.append("data-loss-decision", migration=pending.id, accepted=True)
            plan = _accepting(plan)
        return Engine(inventory, plan, state_dir, progress, lock_lost=lock_lost).resume(pending)
    if pending is not None and _supersedable(pending):
        # A failover stopped before its promotion (a fence that failed, a gap refused) is replaced
        # by a new one planned from what answers now (e.g. with --fenced): its fences stay.
        journal.append("migration-finished", migration=pending.id, outcome="superseded")
        progress(f"the unfinished failover {pending.id} (nothing promoted) is replaced by a new plan")
    elif pending is not None:
        command = "failover" if pending.stored_plan().playbook == PLAYBOOK else "execute"
        raise UsageError(
            f"an unfinished migration to {pending.target} is recorded in {state_dir} ({pending.id}); finish it "
            f"with `migrate {command} --resume --dc {pending.target}`"
        )
    found = observe_and_plan_failover(inventory, target, fenced, accept_data_loss)
    if found.blocked:
        more = f" (and {len(found.blocked) - 1} more: see `migrate plan --failover --dc {target}`)"
        raise PreflightError(
            f"failover to {target} refused, nothing was changed: {found.blocked[0]}"
            + (more if len(found.blocked) > 1 else "")
        )
    if not confirm(found.plan):
        raise UsageError("not confirmed; nothing changed")
    if accept_data_loss:
        progress(f"data loss accepted by the operator (--accept-data-loss); proof now: {found.proof.summary}")
    return Engine(inventory, found.plan, state_dir, progress, lock_lost=lock_lost).start()


def _supersedable(pending: Migration) -> bool:
    try:
        plan = pending.stored_plan()
    except Exception:  # noqa: BLE001 - a stored plan that cannot be read is never replaced silently
        return False
    return plan.playbook == PLAYBOOK and not promotion_attempted(plan, pending)


def _accepting(plan: Plan) -> Plan:
    steps = tuple(
        s.model_copy(update={"args": {**s.args, "accept_data_loss": True}}) if s.kind == "prove_failover" else s
        for s in plan.steps
    )
    return plan.model_copy(update={"steps": steps})
