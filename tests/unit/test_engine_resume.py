"""The engine's own decisions, with in-memory steps: the order of an undo (newest first), what a
resumed run repeats (nothing that was done) and what it refuses (a done change that no longer
holds). The real steps are proven on the testbed; a crash between two exact instructions is
simulated here by a step raising SystemExit, which the engine does not catch (as with a kill)."""

from __future__ import annotations

import pytest

from migrator.errors import GateTimeout
from migrator.run.engine import Engine, latest_migration
from tests.helpers.fake_steps import CHANGING, FakeSites, install_fake_steps
from tests.helpers.snapshots import example_inventory
from tests.unit.test_planner import make_plan


@pytest.fixture
def engine_for(monkeypatch, tmp_path):
    sites = FakeSites()
    plan = make_plan()
    install_fake_steps(monkeypatch, plan, sites)
    return lambda: Engine(example_inventory(), plan, tmp_path), sites, plan


def _changing_ids(plan) -> list[str]:
    return [s.id for s in plan.steps if s.kind in CHANGING]


def test_an_undo_reverses_every_change_newest_first(engine_for):
    new_engine, sites, plan = engine_for
    sites.fault = ("catch-up", "gate", GateTimeout("gave up"))
    outcome = new_engine().start()
    assert outcome.exit_code == 3, outcome.message
    applied = [step for event, step in sites.log if event == "apply"]
    undone = [step for event, step in sites.log if event == "undo"]
    assert applied and undone == list(reversed(applied))
    assert sites.changed == set()


def test_a_resumed_run_repeats_no_done_step_and_finishes(engine_for):
    new_engine, sites, plan = engine_for
    sites.fault = ("catch-up", "gate", SystemExit(137))  # the process dies inside the catch-up gate
    with pytest.raises(SystemExit):
        new_engine().start()
    before = list(sites.log)
    sites.fault = None
    engine = new_engine()
    outcome = engine.resume(latest_migration(engine.journal))
    assert outcome.exit_code == 0, outcome.message
    resumed = sites.log[len(before):]
    # Nothing applied before the crash is applied again; the interrupted gate runs again.
    assert not {s for e, s in resumed if e == "apply"} & {s for e, s in before if e == "apply"}
    assert resumed[0] == ("gate", "catch-up")
    assert set(_changing_ids(plan)) <= sites.changed
    assert latest_migration(engine.journal).finished == "done"


def test_a_resumed_run_stops_when_a_done_change_no_longer_holds(engine_for):
    new_engine, sites, _ = engine_for
    sites.fault = ("catch-up", "gate", SystemExit(137))
    with pytest.raises(SystemExit):
        new_engine().start()
    sites.changed.discard("demote-source")  # someone made the source primary again by hand
    sites.fault = None
    engine = new_engine()
    outcome = engine.resume(latest_migration(engine.journal))
    assert outcome.exit_code == 4, outcome.message
    assert "step demote-source was done, but its change no longer holds" in outcome.message
    assert ("apply", "promote-target") not in sites.log
