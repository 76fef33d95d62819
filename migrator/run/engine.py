"""Run a Plan step by step, with a durable checkpoint after every step.

Before a step the journal gets `step-started`; after its change is sent, `step-applied`; after its
gate passed, `step-done` with the facts it learned (the token, who is primary now...). A resumed
run takes the facts of done steps from the journal and decides everything else from live
observation (each step's precheck), so a crash between `step-started` and the PATCH is harmless
and a demotion or promotion that already happened is never sent again.

A failure before the promotion PATCH was attempted (the journal's `promotion-attempted`,
written just before it) undoes what this run changed, in reverse: the source is primary again and
nothing was lost (exit 3 for a gate that timed out or a demotion undone, 1 otherwise). After the
attempt nothing is undone by a PATCH: the run stops in a state the message names (exit 4), and
`--resume` finishes it or `migrate rollback` moves back with the same protocol. Every exception
inside a run takes this one path, whatever its type: an unexpected one (a reply of the wrong
shape, a full disk) is a failed step like any other, never an "internal error" that skips the undo.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from migrator.adapters.live import Live
from migrator.errors import GateTimeout, LockLost, MigratorError, UnexpectedError, UnsafeStateError
from migrator.model.inventory import Inventory
from migrator.model.plan import Plan, PlanStep
from migrator.model.plan_file import store_plan
from migrator.run.crashpoint import crash_here
from migrator.run.dcs_hold import hold_before_step, source_after_undo
from migrator.run.hooks import HookFailed, migration_env, run_configured_hook
from migrator.run.journal import Journal
from migrator.run.migrations import Migration, latest_migration  # noqa: F401 - re-exported (commands, tests)
from migrator.steps.base import RunContext, Step
from migrator.steps.kinds import HOOK_KINDS, KINDS, declared, promotes
from migrator.steps.registry import STEP_CLASSES

SAMPLE_EVERY_SECONDS = 2.0
FAILOVER = "failover"  # the playbook name of `migrate failover`'s plans (migrator/planning/failover.py)
# The step kinds that may run at the same time as their neighbours of the same sort.
OVERLAPPING = frozenset(name for name, kind in KINDS.items() if kind.overlaps)

# Why the migration lock is lost (one line), or None while it is held: MigrationLock.lost.
LockWatch = Callable[[], "str | None"]


def never_lost() -> str | None:
    return None


def promotion_attempted(plan: Plan, migration: Migration) -> bool:
    """Whether a promotion PATCH of this migration may have landed: from then on a failure is
    not undone by a PATCH (that could leave two writable sites)."""
    return any(promotes(s.kind) and s.id in migration.attempted for s in plan.steps)


@dataclass
class Outcome:
    exit_code: int
    message: str
    migration: str
    outcome: str  # done | rolled-back | stopped-unsafe


class Engine:
    def __init__(
        self,
        inventory: Inventory,
        plan: Plan,
        state_dir: Path,
        progress: Callable[[str], None] = lambda text: None,
        until: str | None = None,
        lock_lost: LockWatch = never_lost,
        live: Live | None = None,
    ):
        self.inventory = inventory
        self.lock_lost = lock_lost
        self._lock_lost_reason: str | None = None  # once noticed; then never acted on again
        self._stopped_for_lock = False
        self.plan = plan
        self.until = until
        self.state_dir = state_dir
        self.journal = Journal(state_dir, inventory.secrets())
        self.progress = progress
        # The command's own connections when it observed through them (its SSH sessions are warm).
        self.live = live if live is not None else Live(inventory)
        self._last_sample = 0.0
        self.undo_warnings: list[str] = []  # from the on_undo hook, added to the outcome message

    # ---- entry points --------------------------------------------------------------------
    def start(self, reverse_of: str | None = None) -> Outcome:
        migration_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        plan_file = self.state_dir / f"plan-{migration_id}.json"
        # Masked (steps left whole) and durable before the journal points at it; resume checks it.
        digest = store_plan(plan_file, self.plan, self.inventory.secrets())
        self.journal.append(
            "migration-started",
            migration=migration_id,
            plan_file=str(plan_file),
            fingerprint=self.plan.fingerprint,
            plan_sha256=digest,
            source=self.plan.source,
            target=self.plan.target,
            steps=[s.id for s in self.plan.steps],
            reverse_of=reverse_of,
            until=self.until,
        )
        migration = Migration(migration_id, plan_file, self.plan.target, self.plan.source, until=self.until)
        return self._with_lock_note(self._run(migration), migration)

    def resume(self, migration: Migration) -> Outcome:
        self.until = migration.until
        return self._with_lock_note(self._run(migration), migration)

    def _steps(self) -> tuple[list[PlanStep], bool]:
        """The steps this run may take (up to the end of phase `until`), and whether the plan
        goes further than that."""
        if self.until is None:
            return list(self.plan.steps), False
        phases = list(dict.fromkeys(s.phase for s in self.plan.steps))
        last = phases.index(self.until) if self.until in phases else len(phases) - 1
        allowed = set(phases[: last + 1])
        steps = [s for s in self.plan.steps if s.phase in allowed]
        return steps, len(steps) < len(self.plan.steps)

    def _done_message(self, stopped_early: bool) -> str:
        if self.plan.playbook == FAILOVER:
            return f"{self.plan.target} is primary; {self.plan.source} is fenced (its Patroni and PostgreSQL stopped)"
        if any(promotes(s.kind) for s in self.plan.steps) and not stopped_early:
            return f"{self.plan.target} is primary; {self.plan.source} follows it"
        if self.plan.playbook == "reattach":  # its last phase is its end: nothing was stopped early
            return (
                f"{self.plan.target} is a standby cluster of {self.plan.source}, every member streaming; "
                f"`migrate execute --dc {self.plan.target}` moves the primary back when you are ready"
            )
        seeded = " seeded and" if self.plan.playbook == "seed" else ""
        return (
            f"{self.plan.target}{seeded} follows {self.plan.source} (phase "
            f"{self.until or self.plan.steps[-1].phase} passed, stopped there as planned); "
            f"`migrate execute --dc {self.plan.target}` cuts over when you are ready"
        )

    # ---- the loop ------------------------------------------------------------------------
    def _run(self, migration: Migration) -> Outcome:
        ctx = RunContext(
            self.inventory,
            self.plan,
            self.live,
            facts=dict(migration.done),
            resumed_steps=set(migration.started),
            progress=self.progress,
            journal_sample=self._sample(migration.id),
            check_lock=self._lock_watch(migration),
            record=self._recorder(migration),
        )
        self.journal.append("run-started", migration=migration.id, resume=bool(migration.started))
        current: Step | None = None
        steps, stopped_early = self._steps()
        try:
            for group in overlap_groups(steps):
                stop = threading.Event()  # set when a step of the group failed: the others stop
                group_ctx = replace(ctx, check_lock=self._group_check(ctx, stop)) if len(group) > 1 else ctx
                todo = []
                for spec in group:
                    step = STEP_CLASSES[spec.kind](spec, group_ctx)
                    if spec.id in migration.done:
                        self._still_holds(step, migration)
                        continue
                    todo.append(step)
                if len(todo) == 1:
                    current = todo[0]
                    self._run_step(todo[0], ctx, migration)
                elif todo:
                    current = todo[0]  # a Ctrl-C while the group runs is that group's failure
                    failure = self._run_together(todo, ctx, migration, stop)
                    if failure is not None:
                        current = failure[0]
                        raise failure[1]
            self.journal.append("migration-finished", migration=migration.id, outcome="done")
            warnings = [f["warning"] for f in ctx.facts.values() if f.get("warning")]
            done = self._done_message(stopped_early)
            # Facts a step wants in the outcome line (a failover's proof status, a lost range).
            notes = [f["note"] for f in ctx.facts.values() if f.get("note")]
            if notes:
                done = f"{done} ({'; '.join(notes)})"
            if warnings:
                return Outcome(1, f"{done}, but: {'; '.join(warnings)}", migration.id, "done")
            return Outcome(0, done, migration.id, "done")
        except (MigratorError, KeyboardInterrupt) as exc:
            return self._fail(exc, current, ctx, migration)
        except Exception as exc:  # noqa: BLE001 - any other exception is a failed step too (undo or exit 4)
            return self._fail(unexpected(exc, current), current, ctx, migration)
        finally:
            self.live.close()

    def _run_step(self, step: Step, ctx: RunContext, migration: Migration) -> None:
        spec = step.spec
        ctx.check_lock()
        self.progress(f"[{spec.phase}] {spec.title}")
        hold_before_step(spec, ctx, self.journal, migration.id)  # never start on a DCS that is down
        self.journal.append("step-started", migration=migration.id, step=spec.id, kind=spec.kind, phase=spec.phase)
        migration.started.add(spec.id)
        facts: dict[str, Any] = dict(migration.applied.get(spec.id, {}))
        if step.precheck():
            self.journal.append("step-in-place", migration=migration.id, step=spec.id)
        else:
            crash_here("before-patch", spec.id)  # test-only fault points: migrator/run/crashpoint.py
            facts.update(step.apply())
            crash_here("after-patch", spec.id)
            migration.applied[spec.id] = facts
            self.journal.append("step-applied", migration=migration.id, step=spec.id, facts=facts)
        ctx.facts[spec.id] = facts  # what apply learned, for this step's own gate
        facts.update(step.gate())
        migration.done[spec.id] = facts
        self.journal.append("step-done", migration=migration.id, step=spec.id, facts=facts)

    # ---- read-only steps at the same time -----------------------------------------------------
    def _group_check(self, ctx: RunContext, failed: threading.Event) -> Callable[[], None]:
        """The lock check of steps that run together, which also ends a step's wait once
        another step of its group failed (its own deadline could be minutes away)."""

        def check() -> None:
            ctx.check_lock()
            if failed.is_set():
                raise GroupStopped("stopped: another step running at the same time failed")

        return check

    def _run_together(
        self, steps: list[Step], ctx: RunContext, migration: Migration, failed: threading.Event
    ) -> tuple[Step, BaseException] | None:
        """Read-only steps whose kinds declare `overlaps` (access proofs, the cascade gate, the
        final verifies), run at the same time. Each is journalled as if alone: started and in
        place in plan order, done with its facts the moment it passes; the first failure in plan
        order is the failure of the group (the others are stopped and journalled as failed).
        Returns that step and its exception, for the failure path."""
        for step in steps:
            spec = step.spec
            ctx.check_lock()
            self.progress(f"[{spec.phase}] {spec.title}")
            hold_before_step(spec, ctx, self.journal, migration.id)
            self.journal.append("step-started", migration=migration.id, step=spec.id, kind=spec.kind, phase=spec.phase)
            migration.started.add(spec.id)
            self.journal.append("step-in-place", migration=migration.id, step=spec.id)
            ctx.facts[spec.id] = {}

        def run(step: Step) -> dict[str, Any]:
            try:
                return step.gate()
            except BaseException:  # any failure, Ctrl-C too: the group's other gates stop at their next poll
                failed.set()
                raise

        with ThreadPoolExecutor(max_workers=len(steps), thread_name_prefix="overlap") as pool:
            futures = {pool.submit(run, step): step for step in steps}
            try:
                # Each step's `done` is journalled when it passes (its own duration in the report
                # and the picture, and a test can wait for it), not when the slowest one does.
                for future in as_completed(futures):
                    if future.exception() is None:
                        step, facts = futures[future], future.result()
                        migration.done[step.spec.id] = facts
                        ctx.facts[step.spec.id] = facts
                        self.journal.append("step-done", migration=migration.id, step=step.spec.id, facts=facts)
            except BaseException:  # Ctrl-C: stop the others at their next poll, then go on failing
                failed.set()
                raise
        first: tuple[Step, BaseException] | None = None
        for future, step in futures.items():  # in plan order
            exc = future.exception()
            if exc is None:
                continue
            if first is None and not isinstance(exc, GroupStopped):
                first = (step, exc)
            else:
                self.journal.append("step-failed", migration=migration.id, step=step.spec.id, error=str(exc))
        return first

    def _still_holds(self, step: Step, migration: Migration) -> None:
        """A resumed run re-checks the changes it made against reality, not against the journal."""
        if step.changes_state and not step.precheck():
            raise UnsafeStateError(
                f"step {step.spec.id} was done, but its change no longer holds ({step.spec.title}); "
                "someone changed the sites meanwhile: look with `migrate status`, then decide by hand "
                "(runbooks/switchover.md)"
            )
        self.progress(f"[{step.spec.phase}] {step.spec.title}: done before, still holds")

    # ---- the migration lock ------------------------------------------------------------------
    def _write_unavailability_started(self, migration: Migration) -> bool:
        return any(s.write_unavailable and s.id in migration.started for s in self.plan.steps)

    def _lock_watch(self, migration: Migration) -> Callable[[], None]:
        """Called before each step and on every gate poll. A lock lost before the demotion stops
        the run (LockLost: what it changed is undone, exit 3), because another run may now take
        the lock and act too; once the demotion was sent, finishing the cut-over is the fastest
        way to a safe state, so the run goes on and its outcome says the lock was lost."""

        def check() -> None:
            if self._lock_lost_reason is not None:
                return  # acted on once already; the undo that follows must not be stopped by it
            reason = self.lock_lost()
            if reason is None:
                return
            self._lock_lost_reason = reason
            stop = not self._write_unavailability_started(migration)
            self.journal.append("lock-lost", migration=migration.id, reason=reason, stopped=stop)
            if stop:
                self._stopped_for_lock = True
                raise LockLost(
                    f"the migration lock was lost ({reason}) before {self.plan.source} was "
                    "demoted, so the run stopped: another run could take the lock and act at "
                    "the same time (runbooks/switchover.md, 'lock lost')"
                )
            self.progress(
                f"WARNING: the migration lock was lost ({reason}); the demotion was sent "
                "already, so the run goes on to a safe state"
            )

        return check

    def _with_lock_note(self, outcome: Outcome, migration: Migration) -> Outcome:
        """The outcome of a run that lost its lock past the demotion says so (the exit code stays
        the run's); a lock lost after the last check is noticed here too."""
        if self._stopped_for_lock:
            return outcome
        reason = self._lock_lost_reason or self.lock_lost()
        if reason is None:
            return outcome
        if self._lock_lost_reason is None:
            self._lock_lost_reason = reason
            self.journal.append("lock-lost", migration=migration.id, reason=reason, stopped=False)
        return replace(
            outcome,
            message=(
                f"{outcome.message}; the migration lock was lost during the run ({reason}): check that no "
                "other migrate run acted on this service meanwhile (runbooks/switchover.md, 'lock lost')"
            ),
        )

    # ---- failure ---------------------------------------------------------------------------
    def _recorder(self, migration: Migration) -> Callable[..., None]:
        def record(event: str, **fields: Any) -> None:
            self.journal.append(event, migration=migration.id, **fields)
            if event == "promotion-attempted":
                migration.attempted.add(fields["step"])
            elif event == "promotion-refused":
                migration.attempted.discard(fields["step"])

        return record

    def _note(self, event: str, **fields: Any) -> str:
        """Journal a record on the failure path; a journal that cannot be written (full disk)
        must not stop the undo, so the failure is returned for the message instead."""
        try:
            self.journal.append(event, **fields)
        except OSError as exc:
            return f" (the journal {self.journal.path} could not be written: {exc.strerror or exc})"
        return ""

    def _fail(self, exc: BaseException, step: Step | None, ctx: RunContext, migration: Migration) -> Outcome:
        error = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
        lost = self._note("step-failed", migration=migration.id, step=step.spec.id if step else None, error=error)
        # A run stopped in an unsafe state leaves its migration unfinished on purpose, so that
        # `--resume` (or `rollback`) can pick it up after the operator looked.
        if isinstance(exc, UnsafeStateError):
            lost += self._note("run-stopped", migration=migration.id, outcome="stopped-unsafe")
            return Outcome(4, error + lost, migration.id, "stopped-unsafe")
        if self.plan.playbook == FAILOVER and not promotion_attempted(self.plan, migration):
            # A failover undoes nothing: a fence stays (only `migrate reattach` brings the site
            # back), and the run is left unfinished so that --resume can go on from here.
            message = (
                f"{error}; nothing was promoted and no fence is undone; fix the cause and run "
                f"`migrate failover --dc {self.plan.target} --resume` (runbooks/failover.md)"
                if "--resume" not in error
                else error
            )
            lost += self._note("run-stopped", migration=migration.id, outcome="stopped-unsafe")
            return Outcome(4, message + lost, migration.id, "stopped-unsafe")
        if promotion_attempted(self.plan, migration):
            command = "failover" if self.plan.playbook == FAILOVER else "execute"
            message = (
                f"{error}; the promotion of {self.plan.target} was already sent, so nothing is undone: "
                f"run `migrate {command} --resume --dc {self.plan.target}` to finish"
            )
            lost += self._note("run-stopped", migration=migration.id, outcome="stopped-unsafe")
            return Outcome(4, message + lost, migration.id, "stopped-unsafe")
        try:
            undone = self.undo(ctx, migration)
        except (KeyboardInterrupt, Exception) as undo_exc:  # noqa: BLE001 - any failure of the undo ends in exit 4
            why = "interrupted" if isinstance(undo_exc, KeyboardInterrupt) else str(unexpected(undo_exc, None))
            message = (
                f"{error}; undoing failed too ({why}): {self.plan.source} may be demoted with "
                f"{self.plan.target} not promoted; see runbooks/switchover.md, 'undo failed', then "
                "`migrate rollback`"
            )
            lost += self._note("run-stopped", migration=migration.id, outcome="stopped-unsafe")
            return Outcome(4, message + lost, migration.id, "stopped-unsafe")
        lost += self._note("migration-finished", migration=migration.id, outcome="rolled-back")
        what = f"undone: {', '.join(undone)}" if undone else "nothing had changed"
        # A demotion undone means the source took no writes for a while: a rollback, exit 3.
        demotion_undone = any(s.id in undone and s.write_unavailable for s in self.plan.steps)
        code = 3 if isinstance(exc, GateTimeout) or demotion_undone else 1
        return Outcome(
            code,
            f"{error}; {what}; {source_after_undo(self.live, self.plan.source)}{self._undo_warnings_text()}{lost}",
            migration.id,
            "rolled-back",
        )

    def undo(self, ctx: RunContext, migration: Migration) -> list[str]:
        """Undo every step this migration changed, newest first; returns the ids undone."""
        undone = []
        for spec in reversed(self.plan.steps):
            if spec.id not in migration.applied and spec.id not in migration.done:
                continue
            step = STEP_CLASSES[spec.kind](spec, ctx)
            if not step.changes_state or spec.undo.kind == "none":
                continue
            facts = {**migration.applied.get(spec.id, {}), **migration.done.get(spec.id, {})}
            self.progress(f"undo: {spec.undo.description or spec.id}")
            # Best effort: a journal that cannot be written (full disk) must not stop the undo.
            self._note("undo-started", migration=migration.id, step=spec.id)
            changed = step.undo(facts)
            self._note("undo-done", migration=migration.id, step=spec.id, changed=changed)
            if changed:
                undone.append(spec.id)
                if spec.kind in HOOK_KINDS["on_undo"]:
                    self._run_on_undo(migration)  # the source takes writes again: traffic back
        return undone

    def _run_on_undo(self, migration: Migration) -> None:
        """A failing on_undo never changes the undo: it only adds a warning to the outcome."""
        env = migration_env(self.inventory.service, self.plan.source, self.plan.target)
        try:
            output = run_configured_hook(self.inventory.hooks, "on_undo", env)
        except HookFailed as exc:
            warning = f"{exc}; {self.plan.source} takes writes again, move the traffic back by hand"
            self.undo_warnings.append(warning)
            self.progress(f"WARNING: {warning}")
            self.journal.append("hook-failed", migration=migration.id, hook="on_undo", error=str(exc))
            return
        if output is not None:
            self.journal.append("hook-done", migration=migration.id, hook="on_undo", output=output)

    def _undo_warnings_text(self) -> str:
        return "".join(f"; WARNING: {w}" for w in self.undo_warnings)

    def rollback_before_promotion(self, migration: Migration) -> Outcome:
        ctx = RunContext(
            self.inventory,
            self.plan,
            self.live,
            facts=dict(migration.done),
            progress=self.progress,
            record=self._recorder(migration),
        )
        self.journal.append("rollback-started", migration=migration.id)
        try:
            undone = self.undo(ctx, migration)
        except (KeyboardInterrupt, Exception) as exc:  # noqa: BLE001 - any failure of the undo ends in exit 4
            why = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(unexpected(exc, None))
            lost = self._note("run-stopped", migration=migration.id, outcome="stopped-unsafe")
            return Outcome(
                4,
                f"rolling back failed ({why}): {self.plan.source} may still be demoted; see "
                "runbooks/switchover.md, 'undo failed', then run `migrate rollback` again" + lost,
                migration.id,
                "stopped-unsafe",
            )
        finally:
            self.live.close()
        self.journal.append("migration-finished", migration=migration.id, outcome="rolled-back")
        what = ", ".join(undone) if undone else "nothing had changed"
        return Outcome(
            0,
            f"rolled back ({what}); {self.plan.source} is primary{self._undo_warnings_text()}",
            migration.id,
            "rolled-back",
        )

    def _sample(self, migration_id: str) -> Callable[..., None]:
        def sample(**fields: Any) -> None:
            now = time.monotonic()
            if now - self._last_sample >= SAMPLE_EVERY_SECONDS:
                self._last_sample = now
                self.journal.append("gate-sample", migration=migration_id, **fields)

        return sample


class GroupStopped(MigratorError):
    """A step running at the same time as others stopped because one of them failed."""


def overlap_groups(steps: list[PlanStep]) -> list[list[PlanStep]]:
    """The plan's steps in order, consecutive steps whose kinds declare `overlaps` (read-only,
    independent: migrator/steps/kinds.py) together in one group, every other step alone."""
    groups: list[list[PlanStep]] = []
    for spec in steps:
        found = declared(spec.kind)
        if found is not None and found.overlaps and groups and groups[-1][-1].kind in OVERLAPPING:
            groups[-1].append(spec)
        else:
            groups.append([spec])
    return groups


def unexpected(exc: BaseException, step: Step | None) -> MigratorError:
    """Any exception as the one error tree: MigratorErrors as they are, others named by type."""
    if isinstance(exc, MigratorError):
        return exc
    where = f" in step {step.spec.id}" if step is not None else ""
    return UnexpectedError(f"unexpected {type(exc).__name__}{where}: {exc}")


def load_plan(path: Path) -> Plan:
    return Plan.from_json(path.read_text())


def summary(journal: Journal, migration_id: str) -> dict[str, Any]:
    """Per step start, end and duration, and the write-unavailability window, from the journal."""
    steps: dict[str, dict[str, Any]] = {}
    facts: dict[str, dict[str, Any]] = {}
    for record in journal.records():
        if record.get("migration") != migration_id or "step" not in record:
            continue
        entry = steps.setdefault(record["step"], {"step": record["step"]})
        if record["event"] == "step-started":
            entry.setdefault("started", record["ts"])
        elif record["event"] == "step-done":
            entry["done"] = record["ts"]
            facts[record["step"]] = record.get("facts", {})
    for entry in steps.values():
        if "started" in entry and "done" in entry:
            entry["seconds"] = round(_ts(entry["done"]) - _ts(entry["started"]), 3)
    read_only = next((f["source_read_only_at"] for f in facts.values() if "source_read_only_at" in f), None)
    writable = next((f["target_writable_at"] for f in facts.values() if "target_writable_at" in f), None)
    window = round(_ts(writable) - _ts(read_only), 3) if read_only and writable else None
    return {"steps": list(steps.values()), "facts": facts, "write_unavailable_seconds": window}


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()
