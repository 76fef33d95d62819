"""The engine's one failure path, with in-memory steps standing in for the real ones.

The real steps are proven on the testbed; here the steps are trivial fakes because the point is
the engine's decisions for a fault the testbed cannot aim at one exact instruction: an exception
of any type (OSError, ValueError, KeyboardInterrupt) at any point of any step. Before the promotion
PATCH is attempted every failure undoes the demotion (exit 3); after it nothing is undone (exit 4)
and the journal says what `--resume` and `rollback` need."""

from __future__ import annotations

import pytest

from migrator.adapters.patroni import PatroniRefused
from migrator.run.engine import Engine, latest_migration, promotion_attempted
from migrator.errors import GateTimeout
from tests.helpers.fake_steps import FakeSites, install_fake_steps
from tests.helpers.snapshots import example_inventory
from tests.unit.test_planner import make_plan

# Only the demotion and the promotion change something here: the undo that matters is the
# demotion's.
CHANGING = frozenset({"demote_site", "promote_site"})


@pytest.fixture
def run(monkeypatch, tmp_path):
    world = FakeSites()
    plan = make_plan()
    install_fake_steps(monkeypatch, plan, world, CHANGING)

    def go(fault: tuple[str, str, BaseException] | None = None, undo_fault: BaseException | None = None):
        world.fault, world.undo_fault = fault, undo_fault
        engine = Engine(example_inventory(), plan, tmp_path)
        outcome = engine.start()
        return outcome, world, latest_migration(engine.journal), plan

    return go


def test_a_clean_run_promotes_and_exits_0(run):
    outcome, world, migration, _ = run()
    assert outcome.exit_code == 0 and world.promoted and world.demoted
    assert migration.finished == "done"


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), ValueError("not JSON"),
                                 AttributeError("'list' object has no attribute 'get'"),
                                 KeyboardInterrupt(), GateTimeout("gave up")],
                         ids=["oserror", "valueerror", "attributeerror", "ctrl-c", "gatetimeout"])
def test_any_exception_in_the_catch_up_gate_undoes_the_demotion_and_exits_3(run, exc):
    outcome, world, migration, _ = run(("catch-up", "gate", exc))
    assert outcome.exit_code == 3, outcome.message
    assert not world.demoted and not world.promoted
    assert "undone: demote-source" in outcome.message
    assert migration.finished == "rolled-back"
    if not isinstance(exc, (KeyboardInterrupt, GateTimeout)):
        assert f"unexpected {type(exc).__name__} in step catch-up" in outcome.message


def test_a_failure_before_the_promotion_patch_is_attempted_undoes_the_demotion(run):
    outcome, world, migration, plan = run(("promote-target", "before-attempt", RuntimeError("hook died")))
    assert outcome.exit_code == 3 and not world.demoted and not world.promoted, outcome.message
    assert not promotion_attempted(plan, migration)


def test_a_failure_once_the_promotion_patch_was_attempted_is_never_undone(run):
    outcome, world, migration, plan = run(("promote-target", "patch", OSError("connection reset")))
    assert outcome.exit_code == 4, outcome.message
    assert world.demoted, "the demotion must stay: the promotion may have landed"
    assert "was already sent" in outcome.message and "--resume" in outcome.message
    assert promotion_attempted(plan, migration) and migration.finished is None


def test_a_promotion_patch_every_member_refused_is_undone_like_one_never_sent(run):
    outcome, world, migration, plan = run(("promote-target", "patch", PatroniRefused("dc2-a: HTTP 409")))
    assert outcome.exit_code == 3 and not world.demoted, outcome.message
    assert not promotion_attempted(plan, migration) and migration.finished == "rolled-back"


def test_an_undo_that_raises_anything_ends_in_exit_4_naming_both(run):
    outcome, world, migration, _ = run(("catch-up", "gate", GateTimeout("gave up")),
                                       undo_fault=OSError(13, "Permission denied"))
    assert outcome.exit_code == 4 and world.demoted, outcome.message
    assert "gave up; undoing failed too (unexpected PermissionError" in outcome.message
    assert "`migrate rollback`" in outcome.message and migration.finished is None


def test_an_unexpected_exception_before_the_demotion_exits_1_with_nothing_left_changed(run):
    outcome, world, migration, _ = run(("wait-cascade", "gate", KeyError("lag")))
    assert outcome.exit_code == 1 and not world.demoted, outcome.message
    assert "unexpected KeyError in step wait-cascade" in outcome.message
    assert migration.finished == "rolled-back"


def test_a_full_disk_on_the_failure_path_still_undoes(run, monkeypatch):
    """The journal cannot be written once the fault is there: the undo happens anyway and the
    message says the journal could not be written."""
    from migrator.run.journal import Journal

    real_append = Journal.append
    state = {"full": False}

    def append(self, event, **fields):
        if event == "step-failed":
            state["full"] = True
        if state["full"]:
            raise OSError(28, "No space left on device")
        return real_append(self, event, **fields)

    monkeypatch.setattr(Journal, "append", append)
    outcome, world, _, _ = run(("catch-up", "gate", GateTimeout("gave up")))
    assert outcome.exit_code == 3 and not world.demoted, outcome.message
    assert "undone: demote-source" in outcome.message
    assert "could not be written: No space left on device" in outcome.message
