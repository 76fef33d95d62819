"""Observe, check and plan in one call: what `migrate plan` shows and `migrate execute` re-does
just before acting, so that both see the same thing."""

from __future__ import annotations

from migrator.checks import run_checks
from migrator.direction import direction
from migrator.errors import PreflightError
from migrator.findings import Verdict
from migrator.inventory import Inventory
from migrator.observe import observe
from migrator.plan import Plan
from migrator.planner import plan
from migrator.playbook import PLAYBOOK_DIR, load_playbook
from migrator.seed_checks import (
    needs_reseed, needs_seed, observe_seed, reseed_findings, seed_findings,
)
from migrator.seed_plan import seed_plan
from migrator.state import ServiceState


def plan_from_state(inventory: Inventory, state: ServiceState, target: str,
                    playbook_name: str = "switchover") -> Plan:
    source, target = direction(inventory, state, target)
    findings = run_checks(inventory, state, source, target)
    if source != target and needs_seed(state, target):
        # An empty target: plan its seeding; the cut-over is planned once it runs.
        facts = observe_seed(inventory, state, source, target)
        findings = seed_findings(inventory, state, facts, source, target, findings)
        return seed_plan(inventory, state, load_playbook(PLAYBOOK_DIR / "seed.yml"),
                         load_playbook(PLAYBOOK_DIR / f"{playbook_name}.yml"), source, target,
                         findings)
    if source != target and (reason := needs_reseed(findings)) is not None:
        # The target cannot stream again (the WAL it needs is gone): plan its re-seed.
        facts = observe_seed(inventory, state, source, target)
        findings = reseed_findings(inventory, state, facts, source, target, findings, reason)
        return seed_plan(inventory, state, load_playbook(PLAYBOOK_DIR / "seed.yml"),
                         load_playbook(PLAYBOOK_DIR / f"{playbook_name}.yml"), source, target,
                         findings, reseed=True)
    if state.primary_site is None:
        # No plan without a primary site; say why in the words of the first check that blocks
        # (a refused password, an unreachable member...) rather than only "no primary".
        first = next((f for f in findings if f.verdict is Verdict.BLOCK), None)
        if first is not None:
            raise PreflightError(f"cannot plan: {first.check}: {first.finding}"
                                 + (f"; {first.fix}" if first.fix else ""))
    return plan(inventory, state, load_playbook(PLAYBOOK_DIR / f"{playbook_name}.yml"), target, findings)


def observe_and_plan(inventory: Inventory, target: str, playbook_name: str = "switchover") -> Plan:
    return plan_from_state(inventory, observe(inventory), target, playbook_name)
