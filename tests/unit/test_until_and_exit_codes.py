"""`--until` stops only where both sites are as safe as before the run, and the exit codes a
pipeline reads: 5 for a busy lock (try later), 6 for a stale reviewed plan (review again), both
apart from 2 (bad input) and 1 (failed, nothing unsafe left)."""

from __future__ import annotations

import pytest

from migrator.cli import run
from migrator.errors import LockBusy, StalePlan, UsageError
from migrator.run.commands import _check_reviewed, execute
from migrator.run.lock import LocalLock
from migrator.model.playbook import PLAYBOOK_DIR, SWITCHOVER_PHASES, UNTIL_STOPS, load_playbook, switchover_playbook
from tests.helpers.snapshots import EXAMPLE_INVENTORY, example_inventory


def test_every_until_stop_of_the_switchover_comes_before_the_write_unavailability_window():
    playbook = switchover_playbook()
    first_window = min(playbook.phases.index(s.phase) for s in playbook.steps if s.write_unavailable)
    stops = [p for p in UNTIL_STOPS if p in playbook.phases]
    assert stops == ["preflight", "pre-seed", "cascade"]
    assert all(playbook.phases.index(p) < first_window for p in stops)


def test_every_phase_of_the_seed_playbook_is_a_stop():
    seed = load_playbook(PLAYBOOK_DIR / "seed.yml")
    assert not any(s.write_unavailable for s in seed.steps)
    assert set(seed.phases) <= set(UNTIL_STOPS)


@pytest.mark.parametrize("phase", ["demote", "token", "catch-up", "promote", "repoint", "verify"])
def test_until_a_phase_inside_or_after_the_window_is_refused_before_anything_is_contacted(tmp_path, phase):
    assert phase in SWITCHOVER_PHASES
    with pytest.raises(UsageError, match=f"--until {phase}: not a safe place to stop") as caught:
        # The inventory's hosts are never contacted: the refusal comes before the lock.
        execute(example_inventory(), "dc2", tmp_path, None, False, lambda plan: True,
                lambda text: None, until=phase)
    assert caught.value.exit_code == 2
    assert not (tmp_path / "demo").exists(), "a refused --until must not even create the state dir"


def test_until_demote_on_the_command_line_exits_2_with_one_line(tmp_path, capsys):
    # The example inventory with its secret and key files present (in tmp_path, not the testbed's
    # directory, which a machine without a testbed lacks): the inventory loads, and the refusal is
    # the --until line alone, before anything is contacted.
    files = tmp_path / "testbed"
    for name in ("secrets/superuser", "secrets/replication", "secrets/restapi", "ssh/id_ed25519",
                 "ssh/known_hosts"):
        (files / name).parent.mkdir(parents=True, exist_ok=True)
        (files / name).write_text("not-a-real-secret\n")
        (files / name).chmod(0o600)
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(EXAMPLE_INVENTORY.read_text().replace("/tmp/migrator-testbed/", f"{files}/"))
    code = run(["execute", "-i", str(inventory), "--dc", "dc2", "--until", "demote", "--yes",
                "--state-dir", str(tmp_path / "state")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--until demote: not a safe place to stop" in err, err
    assert not (tmp_path / "state").exists(), "a refused --until must not even create the state dir"


def test_a_busy_local_lock_exits_5(tmp_path):
    first = LocalLock(tmp_path)
    first.acquire({"pid": 1})
    try:
        with pytest.raises(LockBusy, match="holds") as caught:
            LocalLock(tmp_path).acquire({"pid": 2})
        assert caught.value.exit_code == 5
    finally:
        first.release()
    LocalLock(tmp_path).acquire({"pid": 2})  # free again once released


def test_a_reviewed_plan_that_no_longer_matches_exits_6(tmp_path):
    from tests.unit.test_planner import make_plan

    plan = make_plan()
    reviewed = tmp_path / "reviewed.json"
    reviewed.write_text(plan.to_json())
    _check_reviewed(plan, reviewed)  # the same plan passes
    stale = plan.model_copy(update={"fingerprint": "0" * 64})
    with pytest.raises(StalePlan, match="no longer matches") as caught:
        _check_reviewed(stale, reviewed)
    assert caught.value.exit_code == 6
