"""Observe, check and plan in one call: what `migrate plan` shows, `migrate check` decides from
and `migrate execute` re-does just before acting, so that all three see the same thing.

`preflight` is the one decision: which way the move goes, the findings, and which plan they lead
to (a switchover, the seeding of an empty target, or the re-seed of a target whose WAL is gone).
`plan_from_preflight` builds that plan. `check_outcome` is `migrate check`: the same preflight and
the same plan, so a check never refuses what `plan` would propose, nor the other way round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from migrator.checks import run_checks
from migrator.checks.seed import needs_reseed, needs_seed, reseed_findings, seed_findings
from migrator.errors import PreflightError
from migrator.model.findings import Finding, blocking, first_blocking_line
from migrator.model.inventory import Inventory
from migrator.model.plan import Plan
from migrator.model.playbook import PLAYBOOK_DIR, load_playbook
from migrator.model.state import SeedFacts, ServiceState
from migrator.observe.observer import RunSsh, observe
from migrator.observe.seed_facts import observe_seed
from migrator.planning.seed import seed_plan
from migrator.planning.switchover import plan
from migrator.rules.direction import direction

Proposal = Literal["switchover", "seed", "reseed"]
# How the seeding checks learn what the snapshot does not hold (SSH to the target hosts, the
# source's WAL size): observe_seed unless given; unit tests pass the facts in instead.
SeedObserver = Callable[[Inventory, ServiceState, str, str], SeedFacts]


@dataclass(frozen=True)
class Preflight:
    source: str
    target: str
    proposal: Proposal
    findings: tuple[Finding, ...]


def preflight(
    inventory: Inventory, state: ServiceState, target: str | None, observe_seed_facts: SeedObserver | None = None
) -> Preflight:
    """The direction, the findings and the kind of plan they lead to (`target` None: the site
    that is not primary, for `migrate check` without --dc)."""
    source, target = direction(inventory, state, target)
    findings = run_checks(inventory, state, source, target)
    proposal: Proposal = "switchover"
    if source != target and needs_seed(state, target):
        proposal = "seed"  # an empty target: plan its seeding; the cut-over is planned once it runs
    elif source != target and needs_reseed(findings) is not None:
        proposal = "reseed"  # the target cannot stream again (the WAL it needs is gone)
    return Preflight(
        source,
        target,
        proposal,
        tuple(findings_of(inventory, state, source, target, proposal, findings, observe_seed_facts)),
    )


def findings_of(
    inventory: Inventory,
    state: ServiceState,
    source: str,
    target: str,
    proposal: Proposal,
    checked: list[Finding] | None = None,
    observe_seed_facts: SeedObserver | None = None,
) -> list[Finding]:
    """The findings of one kind of plan: the switchover checks, with the seeding checks in the
    place of those about the target's cluster when the target is (re-)seeded. `checked`: the
    switchover checks when already run on this snapshot."""
    findings = run_checks(inventory, state, source, target) if checked is None else checked
    if proposal == "switchover":
        return findings
    facts = (observe_seed_facts or observe_seed)(inventory, state, source, target)
    if proposal == "seed":
        return seed_findings(inventory, state, facts, source, target, findings)
    reason = needs_reseed(findings)
    if reason is None:  # the WAL came back since: nothing to re-seed for, the checks say the rest
        return findings
    return reseed_findings(inventory, state, facts, source, target, findings, reason)


def refuse_if_blocked(
    inventory: Inventory,
    source: str,
    target: str,
    proposal: Proposal,
    refusal: str,
    state: ServiceState | None = None,
    run_ssh: RunSsh | None = None,
) -> None:
    """The preflight of a run, right before it acts: observe (unless `state` is that fresh
    observation; over the run's kept-open SSH sessions when `run_ssh` is given) and check again
    for the kind of plan being run; the first blocking finding stops it with PreflightError,
    `<refusal>: <check>: ...`."""
    state = observe(inventory, run_ssh=run_ssh) if state is None else state
    line = first_blocking_line(refusal, findings_of(inventory, state, source, target, proposal))
    if line is not None:
        raise PreflightError(line)


def plan_from_preflight(
    inventory: Inventory, state: ServiceState, checked: Preflight, playbook_name: str = "switchover"
) -> Plan:
    findings = list(checked.findings)
    switchover = load_playbook(PLAYBOOK_DIR / f"{playbook_name}.yml")
    if checked.proposal != "switchover":
        return seed_plan(
            inventory,
            state,
            load_playbook(PLAYBOOK_DIR / "seed.yml"),
            switchover,
            checked.source,
            checked.target,
            findings,
            reseed=checked.proposal == "reseed",
        )
    if state.primary_site is None:
        # No plan without a primary site; say why in the words of the first check that blocks
        # (a refused password, an unreachable member...) rather than only "no primary".
        line = first_blocking_line("cannot plan", findings)
        if line is not None:
            raise PreflightError(line)
    return plan(inventory, state, switchover, checked.target, findings)


def plan_from_state(
    inventory: Inventory,
    state: ServiceState,
    target: str,
    playbook_name: str = "switchover",
    observe_seed_facts: SeedObserver | None = None,
) -> Plan:
    checked = preflight(inventory, state, target, observe_seed_facts)
    return plan_from_preflight(inventory, state, checked, playbook_name)


def observe_and_plan(
    inventory: Inventory, target: str, playbook_name: str = "switchover", run_ssh: RunSsh | None = None
) -> Plan:
    """Observe (over `run_ssh`'s sessions when given: a run's, kept for its steps) and plan."""
    return plan_from_state(inventory, observe(inventory, run_ssh=run_ssh), target, playbook_name)


# --- `migrate check` ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckOutcome:
    """What `migrate check` reports: the plan `migrate plan` would write for the same direction
    (None when none can be made, with the reason), and its findings."""

    source: str
    target: str
    proposal: Proposal
    findings: tuple[Finding, ...]
    plan: Plan | None
    plan_error: str | None = None

    @property
    def executable(self) -> bool:
        return self.plan is not None and self.plan.executable

    @property
    def exit_code(self) -> int:
        # The same as `migrate plan`: 0 for an executable plan, 1 for a blocked one or none.
        return 0 if self.executable else 1

    @property
    def blocking(self) -> list[Finding]:
        return blocking(list(self.findings))

    def summary(self) -> str:
        """One line: which plan `migrate plan --dc <target>` proposes, and whether it can run."""
        if self.plan is None:
            return f"plan: none for {self.source} -> {self.target}: {self.plan_error}"
        verdict = "executable" if self.plan.executable else (f"BLOCKED: {len(self.blocking)} blocking finding(s)")
        steps = len(self.plan.steps)
        return (
            f"plan: {proposal_text(self.plan, self.proposal)} ({verdict}, {steps} "
            f"step{'s' if steps != 1 else ''}); see migrate plan --dc {self.target}"
        )

    def as_json(self) -> dict[str, object]:
        """The `plan` entry of `migrate check --json`; its fingerprint is the one `migrate plan`
        prints for the same observation."""
        if self.plan is None:
            return {"proposal": None, "executable": False, "error": self.plan_error, "summary": self.summary()}
        return {
            "proposal": "noop" if self.plan.noop_reason is not None else self.proposal,
            "playbook": self.plan.playbook,
            "executable": self.plan.executable,
            "fingerprint": self.plan.fingerprint,
            "steps": [s.id for s in self.plan.steps],
            "summary": self.summary(),
        }


def proposal_text(the_plan: Plan, proposal: Proposal) -> str:
    source, target = the_plan.source, the_plan.target
    if the_plan.noop_reason is not None:
        return f"nothing to do: {the_plan.noop_reason}"
    if proposal == "reseed":
        return f"re-seed of {target} from {source}"
    if proposal == "seed":
        return f"seeding of {target} from {source}"
    return f"switchover {source} -> {target}"


def check_outcome(
    inventory: Inventory, state: ServiceState, target: str | None, observe_seed_facts: SeedObserver | None = None
) -> CheckOutcome:
    checked = preflight(inventory, state, target, observe_seed_facts)
    try:
        the_plan = plan_from_preflight(inventory, state, checked)
    except PreflightError as exc:  # `migrate plan` stops with this line; check shows why
        return CheckOutcome(checked.source, checked.target, checked.proposal, checked.findings, None, str(exc))
    return CheckOutcome(checked.source, checked.target, checked.proposal, the_plan.findings, the_plan)
