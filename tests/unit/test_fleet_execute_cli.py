"""`migrate fleet execute|rollback` refuse bad input up front, one line each, before any service
is contacted or started: exit 2 for input, 5 for a fleet run already holding the fleet's lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrator import cli
from migrator.run.fleet_journal import FleetLock, fleet_state_dir
from migrator.run.journal import Journal
from tests.unit.test_fleet import write_inventory


@pytest.fixture
def fleet_file(tmp_path: Path) -> Path:
    write_inventory(tmp_path, "inv/orders.yml", "orders")
    write_inventory(tmp_path, "inv/billing.yml", "billing")
    path = tmp_path / "fleet.yml"
    path.write_text("services:\n  - inv/*.yml\nparallel: 2\n")
    return path


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.run(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_without_a_terminal_and_without_yes_nothing_starts(fleet_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    code, _, err = run(capsys, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc2",
                       "--state-dir", str(tmp_path / "s"))  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "pass --yes" in err
    assert not (tmp_path / "s" / "fleet-fleet" / "journal.jsonl").exists()


def test_a_site_some_inventory_lacks_is_refused_naming_it(fleet_file, tmp_path, capsys):
    code, _, err = run(capsys, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc9", "--yes",
                       "--state-dir", str(tmp_path / "s"))  # fmt: skip
    assert code == 2 and "has no site 'dc9'" in err


def test_an_unreadable_or_mismatched_plan_is_refused(fleet_file, tmp_path, capsys):
    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    code, _, err = run(capsys, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--yes",
                       "--plan", str(bad), "--state-dir", str(tmp_path / "s"))  # fmt: skip
    assert code == 2 and "not a readable fleet plan" in err and err.count("\n") == 1
    other = {"fleet": "f", "target": "dc1", "observed_at": "t", "parallel": 1, "max_failures": 1,
             "pause_between_waves": False, "skip_blocked": False, "waves": [], "services": [], "fingerprint": "x"}  # fmt: skip
    bad.write_text(json.dumps(other))
    code, _, err = run(capsys, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--yes",
                       "--plan", str(bad), "--state-dir", str(tmp_path / "s"))  # fmt: skip
    assert code == 2 and "moves to dc1, not dc2" in err


def test_a_reviewed_plan_whose_service_plan_was_edited_into_no_plan_is_refused_before_anything_starts(
    fleet_file, tmp_path, capsys
):
    rows = [{"service": name, "inventory": f"inv/{name}.yml", "wave": 1, "verdict": "executable", "target": "dc2",
             "plan": {"steps": "edited by hand"} if name == "orders" else None} for name in ("billing", "orders")]  # fmt: skip
    plan = {"fleet": "f", "target": "dc2", "observed_at": "t", "parallel": 1, "max_failures": 1,
            "pause_between_waves": False, "skip_blocked": False, "waves": [], "services": rows, "fingerprint": "x"}  # fmt: skip
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    code, _, err = run(capsys, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--yes",
                       "--plan", str(tmp_path / "plan.json"), "--state-dir", str(tmp_path / "s"))  # fmt: skip
    assert code == 2 and err.count("\n") == 1, err
    assert "the plan of orders is not a plan" in err and "run `migrate fleet plan` again" in err, err
    assert not (tmp_path / "s" / "fleet-fleet" / "journal.jsonl").exists()


def test_resume_with_nothing_to_resume_and_rollback_with_nothing_moved_are_refused(fleet_file, tmp_path, capsys):
    state = str(tmp_path / "s")
    code, _, err = run(capsys, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--resume",
                       "--state-dir", state)  # fmt: skip
    assert code == 2 and "nothing to resume" in err
    code, _, err = run(capsys, "fleet", "rollback", "--fleet", str(fleet_file), "--yes", "--state-dir", state)
    assert code == 2 and "no fleet execute" in err and "nothing to roll back" in err


def test_an_unfinished_fleet_run_must_be_resumed_first(fleet_file, tmp_path, capsys):
    state = tmp_path / "s"
    journal = Journal(fleet_state_dir(state, fleet_file))
    journal.append("fleet-run-started", run="r1", command="execute", target="dc2", services=["billing", "orders"])
    code, _, err = run(capsys, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--yes",
                       "--state-dir", str(state))  # fmt: skip
    assert code == 2 and "did not finish" in err and "--resume --dc dc2" in err
    code, _, err = run(capsys, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc1", "--resume",
                       "--state-dir", str(state))  # fmt: skip
    assert code == 2 and "moves to dc2, not dc1" in err
    code, _, err = run(capsys, "fleet", "rollback", "--fleet", str(fleet_file), "--yes", "--state-dir", str(state))
    assert code == 2 and "finish it first" in err


def test_a_second_fleet_run_of_the_same_fleet_exits_5(fleet_file, tmp_path, capsys):
    state = tmp_path / "s"
    with FleetLock(fleet_state_dir(state, fleet_file), str(fleet_file)):
        code, _, err = run(capsys, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--yes",
                           "--state-dir", str(state))  # fmt: skip
    assert code == 5 and "another fleet run" in err and "pid" in err and err.count("\n") == 1


def test_rollback_of_a_service_not_in_the_fleet_names_the_fleet_s_services(fleet_file, tmp_path, capsys):
    state = tmp_path / "s"
    journal = Journal(fleet_state_dir(state, fleet_file))
    journal.append("fleet-run-started", run="r1", command="execute", target="dc2", services=["billing", "orders"])
    journal.append("fleet-run-finished", run="r1", exit_code=0)
    code, _, err = run(capsys, "fleet", "rollback", "--fleet", str(fleet_file), "--yes", "--service", "nope",
                       "--state-dir", str(state))  # fmt: skip
    assert code == 2 and "no service 'nope'" in err and "billing" in err
    code, _, err = run(capsys, "fleet", "rollback", "--fleet", str(fleet_file), "--yes", "--state-dir", str(state))
    assert code == 2 and "left no service moved" in err
