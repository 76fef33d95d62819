"""The engine's rule for a lost migration lock, with plain data (a real plan of the example
inventory, a journal in a temporary directory, no site touched): before any step of the
write-unavailability window started, a lost lock stops the run with LockLost (a GateTimeout, so
the engine undoes and exits 3); once one started, the run goes on, the journal records it and
the outcome's message says so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrator.run.engine import Engine, Migration, Outcome
from migrator.errors import GateTimeout, LockLost
from tests.unit.test_planner import inventory_with_secrets
from tests.unit.test_runbook import checked_plan

REASON = "/migrator/demo/lock in dc1's etcd, lease 4d: etcd says lease 4d no longer exists"


def engine(monkeypatch, tmp_path: Path, reason: str | None) -> tuple[Engine, Migration]:
    plan = checked_plan()
    (tmp_path / "state").mkdir(mode=0o700)
    eng = Engine(inventory_with_secrets(monkeypatch, tmp_path), plan, tmp_path / "state",
                 lock_lost=lambda: reason)
    return eng, Migration("m1", tmp_path / "plan.json", plan.target, plan.source)


def lock_records(tmp_path: Path) -> list[dict]:
    lines = (tmp_path / "state" / "journal.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["event"] == "lock-lost"]


def test_a_lock_lost_before_the_demotion_stops_the_run_as_a_gate_timeout(monkeypatch, tmp_path):
    eng, migration = engine(monkeypatch, tmp_path, REASON)
    migration.started.update({"preflight-checks", "wait-cascade"})
    check = eng._lock_watch(migration)
    with pytest.raises(LockLost) as caught:
        check()
    assert isinstance(caught.value, GateTimeout) and caught.value.exit_code == 3
    assert str(caught.value).startswith(f"the migration lock was lost ({REASON}) before dc1 was demoted")
    check()  # told once: the undo that follows polls gates too and must not be stopped again
    assert [r["stopped"] for r in lock_records(tmp_path)] == [True]


def test_a_lock_lost_after_the_demotion_was_sent_lets_the_run_finish_and_says_so(monkeypatch, tmp_path):
    eng, migration = engine(monkeypatch, tmp_path, REASON)
    migration.started.update({"wait-cascade", "demote-source"})
    eng._lock_watch(migration)()  # no exception
    outcome = eng._with_lock_note(Outcome(0, "dc2 is primary; dc1 follows it", "m1", "done"), migration)
    assert outcome.exit_code == 0
    assert outcome.message.startswith("dc2 is primary; dc1 follows it; the migration lock was lost during "
                                      f"the run ({REASON})")
    assert [r["stopped"] for r in lock_records(tmp_path)] == [False]


def test_a_lock_lost_after_the_last_check_is_still_in_the_outcome_and_the_journal(monkeypatch, tmp_path):
    eng, migration = engine(monkeypatch, tmp_path, REASON)
    outcome = eng._with_lock_note(Outcome(4, "promotion not confirmed", "m1", "stopped-unsafe"), migration)
    assert outcome.exit_code == 4 and "the migration lock was lost during the run" in outcome.message
    assert len(lock_records(tmp_path)) == 1


def test_a_held_lock_changes_nothing(monkeypatch, tmp_path):
    eng, migration = engine(monkeypatch, tmp_path, None)
    eng._lock_watch(migration)()
    done = Outcome(0, "dc2 is primary; dc1 follows it", "m1", "done")
    assert eng._with_lock_note(done, migration) == done
    assert not (tmp_path / "state" / "journal.jsonl").exists() or lock_records(tmp_path) == []
