"""Which of the inventory's traffic hooks a plan runs: each configured hook whose step kinds
(the hook table in migrator/steps/kinds.py) the plan has, in the order they would run. Pure;
migrator/run/hooks.py runs them."""

from __future__ import annotations

from collections.abc import Iterable

from migrator.model.inventory import Hooks
from migrator.model.plan import PlanHook, PlanStep
from migrator.steps.kinds import HOOK_POINTS


def plan_hooks(hooks: Hooks, steps: Iterable[PlanStep]) -> tuple[PlanHook, ...]:
    """The configured hooks this plan's steps will run, in the order they would run."""
    kinds = {step.kind for step in steps}
    return tuple(
        PlanHook(name=name, command=command, timeout_seconds=hooks.timeout_seconds, when=when)
        for name, hook_kinds, when in HOOK_POINTS
        if (command := getattr(hooks, name)) and kinds.intersection(hook_kinds)
    )
