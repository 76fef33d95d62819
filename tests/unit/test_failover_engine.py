"""The engine's decisions for a failover plan, with in-memory steps standing in for the real ones
(proven on the testbed, tests/e2e/test_failover.py): a failure anywhere before the promotion
undoes no fence and leaves the migration for `--resume` (exit 4 naming it); a clean run says the
target is primary, the source fenced, and the proof status."""

from __future__ import annotations

from typing import Any

import pytest

import migrator.run.engine as engine_module
from migrator.errors import UnreachableError
from migrator.planning.failover import plan_failover
from migrator.run.engine import Engine, latest_migration, promotion_attempted
from migrator.steps.base import Step
from tests.helpers.snapshots import example_inventory, load_baseline, with_site


class World:
    def __init__(self) -> None:
        self.fenced: list[str] = []
        self.promoted = False
        self.fail_at: str | None = None


def _classes(world: World) -> dict[str, type[Step]]:
    class Fence(Step):
        changes_state = True

        def precheck(self) -> bool:
            return self.args["member"] in world.fenced

        def apply(self) -> dict[str, Any]:
            if world.fail_at == self.spec.id:
                raise UnreachableError(f"{self.args['member']}: SSH refused the connection")
            world.fenced.append(self.args["member"])
            return {}

        def gate(self) -> dict[str, Any]:
            return {"checkpoint": 100, "checkpoint_timeline": 1}

    class Prove(Step):
        def gate(self) -> dict[str, Any]:
            return {"status": "lossless", "proven_point": 100, "note": "lossless: dc2-a replayed 0/65, past 0/64"}

    class Promote(Step):
        changes_state = True

        def precheck(self) -> bool:
            return world.promoted

        def apply(self) -> dict[str, Any]:
            self.ctx.record("promotion-attempted", step=self.spec.id)
            world.promoted = True
            return {}

    class Verify(Step):
        pass

    return {"fence_member": Fence, "prove_failover": Prove, "promote_failover": Promote, "verify_failover": Verify}


@pytest.fixture
def run(monkeypatch, tmp_path):
    world = World()
    state = with_site(load_baseline(), "dc1", dcs={"healthy": False, "error": "refused"})
    plan = plan_failover(example_inventory(), state, "dc2").plan
    monkeypatch.setattr(engine_module, "STEP_CLASSES", _classes(world))
    monkeypatch.setattr(engine_module, "hold_before_step", lambda *args, **kwargs: 0.0)

    def go(fail_at: str | None = None):
        world.fail_at = fail_at
        engine = Engine(example_inventory(), plan, tmp_path)
        outcome = engine.start()
        return outcome, world, latest_migration(engine.journal), plan, engine

    return go


def test_a_clean_failover_says_the_target_is_primary_the_source_fenced_and_the_proof(run):
    outcome, world, migration, _, _ = run()
    assert outcome.exit_code == 0, outcome.message
    assert outcome.message.startswith("dc2 is primary; dc1 is fenced")
    assert "lossless: dc2-a replayed" in outcome.message
    assert world.fenced == ["dc1-b", "dc1-a"] and world.promoted and migration.finished == "done"


def test_a_failed_fence_undoes_nothing_promotes_nothing_and_names_resume(run):
    outcome, world, migration, plan, _ = run(fail_at="fence-dc1-a")
    assert outcome.exit_code == 4, outcome.message
    assert world.fenced == ["dc1-b"] and not world.promoted  # the fence done stays; nothing promoted
    assert "nothing was promoted and no fence is undone" in outcome.message
    assert "`migrate failover --dc dc2 --resume`" in outcome.message
    assert migration.finished is None and not promotion_attempted(plan, migration)


def test_resume_after_a_failed_fence_fences_the_rest_once_and_promotes_once(run, tmp_path):
    outcome, world, migration, plan, _ = run(fail_at="fence-dc1-a")
    world.fail_at = None
    resumed = Engine(example_inventory(), plan, tmp_path).resume(migration)
    assert resumed.exit_code == 0, resumed.message
    assert world.fenced == ["dc1-b", "dc1-a"] and world.promoted


class _DeadHost:
    """A Live whose SSH never answers (a fenced host that died since): a fault the testbed's one
    shared sshd cannot give a single member mid-run."""

    def member(self, name):
        site = example_inventory().site("dc1")
        return site, next(m for m in site.members if m.name == name)

    def ssh(self, *args, **kwargs):
        raise UnreachableError("dc1-a: SSH refused the connection")


def _fence_step(done: bool):
    from migrator.steps.base import RunContext
    from migrator.steps.fence import FenceMember

    state = with_site(load_baseline(), "dc1", dcs={"healthy": False, "error": "refused"})
    plan = plan_failover(example_inventory(), state, "dc2").plan
    spec = next(s for s in plan.steps if s.id == "fence-dc1-a")
    ctx = RunContext(example_inventory(), plan, _DeadHost(), resumed_steps={spec.id},  # type: ignore[arg-type]
                     facts={spec.id: {"fenced_by": "ssh"}} if done else {})
    return FenceMember(spec, ctx)


def test_a_done_fence_whose_host_died_since_still_holds_on_resume():
    assert _fence_step(done=True).precheck() is True


def test_a_fence_never_done_on_a_host_that_does_not_answer_is_not_taken_as_done():
    with pytest.raises(UnreachableError):
        _fence_step(done=False).precheck()


@pytest.mark.parametrize("playbook", ["failover", "reattach"])
def test_rollback_refuses_a_failover_or_a_reattach_and_names_what_to_run(run, tmp_path, playbook):
    # Neither is undone by the tool: a fence stays until reattach; a reattach's standby_cluster is
    # the safe state. The refusal names the command that goes on from there.
    from migrator.errors import UsageError
    from migrator.run.commands import _rollback_locked

    _, _, migration, plan, engine = run()
    if playbook == "reattach":  # the same journal, its plan marked as a reattach's
        stored = plan.model_copy(update={"playbook": "reattach"})
        (tmp_path / "again").mkdir()
        Engine(example_inventory(), stored, tmp_path / "again").start()
        tmp_path = tmp_path / "again"
    with pytest.raises(UsageError, match="which is not rolled back") as caught:
        _rollback_locked(example_inventory(), tmp_path, lambda plan: True, lambda text: None)
    assert caught.value.exit_code == 2
    assert f"migrate {playbook} --resume" in str(caught.value)


def test_execute_names_the_failovers_own_resume_and_never_runs_it_itself(run, tmp_path):
    # An unfinished failover (a fence failed) is finished by `migrate failover --resume`, which holds
    # its lock in the target's etcd and knows the operator's decisions: execute refuses either way.
    from migrator.errors import UsageError
    from migrator.run.commands import _execute_locked

    _, world, migration, _, _ = run(fail_at="fence-dc1-a")
    for resume in (True, False):
        with pytest.raises(UsageError, match="migrate failover --resume --dc dc2") as caught:
            _execute_locked(example_inventory(), "dc2", tmp_path, None, resume, lambda plan: True, lambda text: None)
        assert caught.value.exit_code == 2 and "rollback" not in str(caught.value)
    assert world.fenced == ["dc1-b"] and not world.promoted  # nothing more was run
