"""Trivial in-memory steps for the engine's own unit tests (tests/unit/test_engine_*.py).

The real steps are proven on the testbed. These stand in for them where the point is the
engine's decisions (undo order, resume, exit codes) for a fault the testbed cannot aim at one
exact instruction: any exception at any point of any step, or a crash between two instructions
(a step raising SystemExit, which the engine does not catch, as with a kill).

`FakeSites` is what the fake steps changed; `install_fake_steps` puts one fake class per kind of
a plan in the engine's place, with no DCS hold and no site asked after an undo."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import migrator.run.engine as engine_module
from migrator.adapters.patroni import PatroniRefused
from migrator.model.plan import Plan
from migrator.steps.base import Step

# The kinds whose fakes change something (applied, undone); every other kind only waits.
CHANGING = frozenset({"ensure_permanent_slot", "demote_site", "promote_site"})


class FakeSites:
    """What the fake steps changed, the order they were applied, gated and undone in, and the
    fault to raise: `fault` = (step id, where, exception), where is "apply", "gate", or for the
    promotion "before-attempt" (before its PATCH is attempted) or "patch" (the PATCH itself)."""

    def __init__(self) -> None:
        self.changed: set[str] = set()  # ids of the steps whose change is in place
        self.kinds: dict[str, str] = {}
        self.log: list[tuple[str, str]] = []
        self.fault: tuple[str, str, BaseException] | None = None
        self.undo_fault: BaseException | None = None
        # What a step's gate learns (its facts, e.g. the token), made when the gate passes; the
        # gate samples it journals first; how long each gate takes (a picture needs durations).
        self.learned: dict[str, Callable[[], dict[str, Any]]] = {}
        self.samples: dict[str, list[dict[str, Any]]] = {}
        self.gate_seconds = 0.0

    def maybe_fail(self, step_id: str, where: str) -> None:
        if self.fault and self.fault[:2] == (step_id, where):
            raise self.fault[2]

    def _changed_kind(self, kind: str) -> bool:
        return any(self.kinds.get(step) == kind for step in self.changed)

    @property
    def demoted(self) -> bool:
        return self._changed_kind("demote_site")

    @property
    def promoted(self) -> bool:
        return self._changed_kind("promote_site")


def fake_step_classes(sites: FakeSites, kinds: set[str], changing: frozenset[str] = CHANGING) -> dict[str, type[Step]]:
    class Fake(Step):
        def precheck(self) -> bool:
            return self.spec.id in sites.changed or not self.changes_state

        def apply(self) -> dict[str, Any]:
            step = self.spec.id
            sites.log.append(("apply", step))
            if self.spec.kind == "promote_site":
                sites.maybe_fail(step, "before-attempt")
                self.ctx.record("promotion-attempted", step=step)
                try:
                    sites.maybe_fail(step, "patch")
                except PatroniRefused as exc:
                    self.ctx.record("promotion-refused", step=step, error=str(exc))
                    raise
            sites.changed.add(step)
            sites.kinds[step] = self.spec.kind
            sites.maybe_fail(step, "apply")  # the change is in place, then the step fails
            return {}

        def gate(self) -> dict[str, Any]:
            step = self.spec.id
            sites.log.append(("gate", step))
            for fields in sites.samples.get(step, []):
                self.ctx.journal_sample(step=step, **fields)
            time.sleep(sites.gate_seconds)
            sites.maybe_fail(step, "gate")
            return sites.learned[step]() if step in sites.learned else {}

        def undo(self, facts: dict[str, Any]) -> bool:
            sites.log.append(("undo", self.spec.id))
            if sites.undo_fault is not None:
                raise sites.undo_fault
            sites.changed.discard(self.spec.id)
            return True

    return {
        kind: type(f"Fake_{kind}", (Fake,), {"kind": kind, "changes_state": kind in changing}) for kind in kinds
    }


def install_fake_steps(
    monkeypatch: pytest.MonkeyPatch, plan: Plan, sites: FakeSites, changing: frozenset[str] = CHANGING
) -> None:
    monkeypatch.setattr(engine_module, "STEP_CLASSES", fake_step_classes(sites, {s.kind for s in plan.steps}, changing))
    # No DCS and no PostgreSQL here: the hold and the verdict after an undo ask the sites.
    monkeypatch.setattr(engine_module, "hold_before_step", lambda *args, **kwargs: 0.0)
    monkeypatch.setattr(
        engine_module, "source_after_undo", lambda live, source: f"{source} demoted: {sites.demoted}"
    )
