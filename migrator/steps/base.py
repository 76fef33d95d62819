"""What every step is made of.

A step has four parts (ansible's check mode, made explicit): `precheck` says whether the change is
already in place (so applying it again changes nothing, and a resumed run never repeats a
demotion or a promotion), `apply` makes the change, `gate` waits with a deadline until the change
took effect and returns the facts it learned, `undo` reverses it where that is possible.

Steps reach the members through `Live` (migrator/adapters/live.py): connections kept open for the
whole run, so the write-unavailability window pays for no handshake.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from migrator.adapters.bounded import PollTimedOut, poll_until
from migrator.adapters.live import Live, Progress, controldata_wait_command
from migrator.errors import GateTimeout
from migrator.model.inventory import Inventory
from migrator.model.plan import Plan, PlanStep, deadline_seconds
from migrator.render.wait_line import WaitLine
from migrator.steps.kinds import KINDS, StepKind, declared

# Every step class, by kind, as `@step_kind` registered it (migrator/steps/registry.py imports
# every step family, so that this is complete there).
REGISTERED: dict[str, type[Step]] = {}
StepClass = TypeVar("StepClass", bound="type[Step]")


def step_kind(name: str) -> Callable[[StepClass], StepClass]:
    """Binds a step class to its declaration in migrator/steps/kinds.py (refusing an undeclared
    kind or a second class for one kind) and registers it for the engine."""
    if name not in KINDS:
        raise ValueError(f"step kind {name!r} has no declaration in migrator/steps/kinds.py")

    def register(cls: StepClass) -> StepClass:
        if name in REGISTERED:
            raise ValueError(f"step kind {name!r} has two classes: {REGISTERED[name].__name__}, {cls.__name__}")
        cls.kind = name
        cls.declaration = KINDS[name]
        cls.changes_state = KINDS[name].changes_state
        REGISTERED[name] = cls
        return cls

    return register


@dataclass
class RunContext:
    inventory: Inventory
    plan: Plan
    live: Live
    facts: dict[str, Any] = field(default_factory=dict)  # learned by earlier steps, by step id
    resumed_steps: set[str] = field(default_factory=set)  # started by an earlier run of this migration
    progress: Progress = lambda text: None
    journal_sample: Callable[..., None] = lambda **fields: None
    # A journal record of this migration, written now (e.g. `promotion-attempted`).
    record: Callable[..., None] = lambda event, **fields: None
    # Raises LockLost when the migration lock was lost before the demotion (see Engine._lock_watch).
    check_lock: Callable[[], None] = lambda: None


class Step:
    kind: ClassVar[str]
    declaration: ClassVar[StepKind]
    # The change happens in `apply`; a step without a change only waits (gate). Set from the
    # declaration by @step_kind.
    changes_state: ClassVar[bool] = False

    def __init__(self, spec: PlanStep, ctx: RunContext):
        self.spec = spec
        self.args = spec.args
        self.ctx = ctx
        self.live = ctx.live

    @property
    def timeout(self) -> float:
        return deadline_seconds(self.spec, self.ctx.inventory.gates.connect_timeout_seconds)

    def precheck(self) -> bool:
        """True when the change is already in place: apply is skipped, the gate still runs."""
        return not self.changes_state

    def apply(self) -> dict[str, Any]:
        return {}

    def gate(self) -> dict[str, Any]:
        return {}

    def undo(self, facts: dict[str, Any]) -> bool:
        """Reverse this step's change; True when something was changed back."""
        return False

    # ---- helpers -----------------------------------------------------------------------------
    def warm_up_switchover_connections(self) -> None:
        """Open now what the steps inside the write-unavailability window poll (SSH to the old
        primary for its pg_control, PostgreSQL on the target's standby leader), so the window
        does not pay for a handshake or a login."""
        for spec in self.ctx.plan.steps:
            found = declared(spec.kind)
            warm_up = found.warm_up if found else None
            if warm_up == "token_wait_command":
                # Waits on the host for pg_control to leave "in production"; read by the token step.
                assert spec.gate is not None  # the playbook gives the token step a gate (its timeout)
                args, seconds = spec.args, spec.gate.timeout_seconds
                command = controldata_wait_command(
                    self.live, args["member"], args["bin_dir"], args["data_dir"], seconds
                )
                self.live.start_remote(spec.id, args["member"], command, timeout=seconds)
            elif warm_up == "replay_connection":
                self.live.in_recovery(spec.args["member"])

    def wait(
        self,
        probe: Callable[[], Any],
        what: str,
        interval: float = 0.05,
        timeout: float | None = None,
        describe: Callable[[], str] | None = None,
        sample_fields: Callable[[], dict[str, Any]] | None = None,
    ) -> Any:
        """Poll `probe` until truthy; GateTimeout naming `what` (and the last reason) at the deadline.

        The deadline holds even while a probe hangs on a black-holed host: probes run in a
        worker thread (migrator/adapters/bounded.py) and one still running at the deadline is abandoned,
        its connections dropped from `Live`. `sample_fields` adds numbers to each journal sample
        (the streaming gates' `lag_bytes` and `replay_lsn`: the lag as data, not only as text)."""
        limit = self.timeout if timeout is None else timeout

        def report(last_error: str, hung: float | None, seconds_left: float) -> None:
            detail = describe() if describe else last_error
            if hung is not None:
                detail = f"no answer for {hung:.0f}s" + (f"; {detail}" if detail else "")
            line.show(f"{what} ({seconds_left:.0f}s left){': ' + detail if detail else ''}")
            numbers = sample_fields() if sample_fields else {}
            self.ctx.journal_sample(
                step=self.spec.id, waiting_for=what, detail=detail, seconds_left=round(seconds_left, 1), **numbers
            )

        # Test doubles of Live may lack `abandon`: then an abandoned probe just keeps its connection.
        on_abandon = getattr(self.live, "abandon", lambda thread: None)
        # One line rewritten in place on a terminal, a line every few seconds otherwise; the
        # journal still gets a sample a second.
        line = WaitLine(self.ctx.progress)
        try:
            return poll_until(probe, time.monotonic() + limit, interval, report, on_abandon, check=self.ctx.check_lock)
        except PollTimedOut as timed_out:
            last_error = timed_out.last_error
            if timed_out.hung_seconds is not None:
                last_error = f"a probe got no answer for {timed_out.hung_seconds:.0f}s" + (
                    f" (before it: {last_error})" if last_error else ""
                )
            reason = f"; last: {last_error}" if last_error else ""
            if not reason and describe is not None:
                reason = f"; last seen: {describe()}"  # the operator's next step starts here
            raise GateTimeout(f"step {self.spec.id}: gave up after {limit:.0f}s waiting for {what}{reason}") from None
        finally:
            line.clear()
