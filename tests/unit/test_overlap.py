"""Read-only steps at the same time: which kinds may, how the plan is grouped, and what the
engine does with a group (in-memory fake steps, as in test_engine_failures.py: the point is the
engine's decision; the real steps running together are proven by tests/e2e/test_execute.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import migrator.run.engine as engine_module
from migrator.run.engine import Engine, latest_migration, overlap_groups
from migrator.steps.base import Step
from migrator.steps.kinds import KINDS
from tests.helpers.fake_steps import FakeSites, install_fake_steps
from tests.helpers.snapshots import example_inventory
from tests.unit.test_planner import make_plan

CASCADE_GROUP = [
    "replication-access-target-from-source",
    "replication-access-source-from-target",
    "validate-standby-cluster-for-source",
    "wait-cascade",
]
VERIFY_GROUP = ["verify-single-writer", "verify-slots-active", "verify-write-visible"]


def test_only_kinds_that_change_nothing_and_have_no_undo_may_overlap():
    overlapping = {name for name, kind in KINDS.items() if kind.overlaps}
    assert {"prove_replication_access", "wait_cascade", "verify_write_visible"} <= overlapping
    for name in overlapping:
        kind = KINDS[name]
        assert not kind.changes_state and not kind.undo and not kind.demotes and not kind.promotes, name


def test_the_switchover_plan_overlaps_the_access_proofs_with_the_cascade_gate_and_the_verifies():
    groups = [[s.id for s in group] for group in overlap_groups(make_plan().steps)]
    assert CASCADE_GROUP in groups and VERIFY_GROUP in groups
    # Every step that changes something, and the window's steps, stay alone and in order.
    flat = [step for group in groups for step in group]
    assert flat == [s.id for s in make_plan().steps]
    for group in groups:
        if len(group) > 1:
            assert all(KINDS[s.kind].overlaps for s in make_plan().steps if s.id in group)
    assert ["demote-source"] in groups and ["promote-target"] in groups and ["wait-repoint"] in groups


@pytest.fixture
def world(monkeypatch):
    sites = FakeSites()
    plan = make_plan()
    install_fake_steps(monkeypatch, plan, sites, frozenset({"demote_site", "promote_site"}))
    return sites, plan


def test_a_group_runs_its_steps_at_the_same_time_and_journals_each_as_done(world, tmp_path):
    sites, plan = world
    # Each gate of the group waits for all the others: run one after another, the barrier breaks.
    barrier = threading.Barrier(len(CASCADE_GROUP), timeout=5)
    for step in CASCADE_GROUP:
        sites.learned[step] = lambda step=step: {"met_at": barrier.wait(), "step": step}
    engine = Engine(example_inventory(), plan, tmp_path)
    outcome = engine.start()
    assert outcome.exit_code == 0, outcome.message
    migration = latest_migration(engine.journal)
    assert {step: migration.done[step]["step"] for step in CASCADE_GROUP} == {s: s for s in CASCADE_GROUP}
    started = [r["step"] for r in engine.journal.records() if r["event"] == "step-started"]
    done = [r["step"] for r in engine.journal.records() if r["event"] == "step-done"]
    assert started == [s.id for s in plan.steps], "started in plan order"
    assert sorted(done) == sorted(started), "each done once, in the order they passed"
    first = min(done.index(step) for step in CASCADE_GROUP)
    assert set(done[first:first + len(CASCADE_GROUP)]) == set(CASCADE_GROUP)


def test_a_quick_step_of_a_group_is_journalled_done_before_the_slow_one_passes(world, tmp_path):
    sites, plan = world
    release = threading.Event()

    def slow() -> dict:
        assert release.wait(5), "the quick step's done never came"
        return {}

    sites.learned["wait-cascade"] = slow
    engine = Engine(example_inventory(), plan, tmp_path)

    real_append = engine.journal.append

    def append(event, **fields):
        record = real_append(event, **fields)
        if event == "step-done" and fields.get("step") == "replication-access-target-from-source":
            release.set()  # the cascade gate passes only once the access proof's done is written
        return record

    engine.journal.append = append  # type: ignore[method-assign]
    assert engine.start().exit_code == 0
    done = [r["step"] for r in engine.journal.records() if r["event"] == "step-done"]
    assert done.index("replication-access-target-from-source") < done.index("wait-cascade")


class _NeverStreams(Step):
    """A cascade gate that never passes before its (long) deadline."""

    def gate(self) -> dict[str, Any]:
        self.wait(lambda: False, "a stream that never comes", timeout=60)
        return {}


def test_a_failing_step_stops_the_others_of_its_group_and_is_the_one_reported(world, tmp_path, monkeypatch):
    sites, plan = world
    classes = dict(engine_module.STEP_CLASSES)
    classes["wait_cascade"] = type("NeverStreams", (_NeverStreams,), {"kind": "wait_cascade"})
    monkeypatch.setattr(engine_module, "STEP_CLASSES", classes)
    sites.fault = ("replication-access-source-from-target", "gate", OSError("pg_hba refuses"))
    started = time.monotonic()
    engine = Engine(example_inventory(), plan, tmp_path)
    outcome = engine.start()
    assert time.monotonic() - started < 20, "the cascade gate must stop with its group, not at its deadline"
    assert outcome.exit_code == 1 and not sites.demoted, outcome.message
    assert "in step replication-access-source-from-target" in outcome.message
    records = engine.journal.records()
    failed = {r["step"]: r["error"] for r in records if r["event"] == "step-failed"}
    assert "stopped: another step running at the same time failed" in failed["wait-cascade"]
    assert "pg_hba refuses" in failed["replication-access-source-from-target"]
    assert not any(r["event"] == "step-started" and r["step"] == "demote-source" for r in records)
