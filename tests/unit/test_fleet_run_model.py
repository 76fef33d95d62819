"""The fleet run's plain data: the exit-code order, statuses from a child's document, the totals,
the fleet journal read back, the fleet lock, and the report's words."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from migrator.errors import LockBusy
from migrator.model.fleet_run import FleetRunSummary, ServiceResult, child_status, status_of, worst_exit_code
from migrator.render import fleet_run_report
from migrator.run.fleet_child import ProgressTail, deadline_seconds, is_migrate_child, pid_alive, read_document
from migrator.run.fleet_journal import FleetLock, fleet_runs, fleet_state_dir, latest_run
from migrator.run.journal import Journal


@pytest.mark.parametrize(
    ("codes", "worst"),
    [([], 0), ([0, 0], 0), ([0, 1], 1), ([1, 2], 2), ([2, 5], 5), ([5, 6], 6), ([6, 3], 3), ([3, 4, 0], 4), ([130], 1)],
)
def test_the_fleet_exit_code_is_the_worst_of_the_services_in_the_documented_order(codes, worst):
    assert worst_exit_code(codes) == worst


def test_status_of_a_finished_service():
    assert status_of(0, "done") == "moved" and status_of(0, "nothing-to-do") == "no-op"
    assert status_of(3, "rolled-back") == "rolled-back" and status_of(4, "stopped-unsafe") == "unsafe"
    assert status_of(6, "error") == "failed" and status_of(1, "error") == "failed"


@pytest.mark.parametrize(
    ("exit_code", "kind", "verdict", "migration_started", "status"),
    [
        # Its own preflight refused it (a blocking finding, a site that did not answer): nothing changed.
        (1, "error", "error", False, "blocked"),
        # An error out of a migration it had started is a failure, never "blocked" (never skipped).
        (1, "error", "error", True, "failed"),
        # Refusals that want a human stay failures: bad input / an unfinished migration, lock busy, stale plan.
        (2, "error", "error", False, "failed"),
        (5, "error", "error", False, "failed"),
        (6, "error", "error", False, "failed"),
        # Run outcomes.
        (0, "run", "nothing-to-do", False, "no-op"),
        (0, "run", "done", True, "moved"),
        (1, "run", "failed", True, "failed"),
        (3, "run", "rolled-back", True, "rolled-back"),
        (4, "run", "stopped-unsafe", True, "unsafe"),
    ],
)
def test_a_childs_result_gives_its_status(exit_code, kind, verdict, migration_started, status):
    assert child_status(exit_code, kind, verdict, migration_started) == status


def _summary(results: list[ServiceResult]) -> FleetRunSummary:
    return FleetRunSummary("r1", "execute", "fleet.yml", "dc2", "2026-01-01T00:00:00+00:00", None, 30.0, 3, 1, None,
                           results)  # fmt: skip


def test_totals_count_each_outcome_and_give_the_longest_and_median_gap():
    summary = _summary(
        [
            ServiceResult("a", 1, "moved", exit_code=0, write_unavailable_seconds=0.3),
            ServiceResult("b", 1, "moved", exit_code=0, write_unavailable_seconds=0.5),
            ServiceResult("c", 1, "rolled-back", exit_code=3),
            ServiceResult("d", 2, "skipped"),
            ServiceResult("e", 2, "not-started"),
            ServiceResult("f", 2, "no-op", exit_code=0),
            ServiceResult("g", 2, "moved", exit_code=0, write_unavailable_seconds=0.4, overran=True),
        ]
    )
    totals = summary.totals()
    assert (totals["moved"], totals["no_op"], totals["skipped"], totals["not_started"]) == (3, 1, 1, 1)
    assert (totals["failed"], totals["back_where_started"], totals["overran"]) == (1, 1, 1)
    assert totals["longest_gap_seconds"] == 0.5 and totals["median_gap_seconds"] == 0.4
    assert summary.exit_code == 3
    document = summary.as_json()
    assert document["kind"] == "fleet-run" and document["exit_code"] == 3 and len(document["services"]) == 7


def test_a_blocked_service_without_a_child_makes_the_fleet_exit_1():
    assert (
        _summary([ServiceResult("a", 1, "blocked", exit_code=1), ServiceResult("b", 1, "moved", exit_code=0)]).exit_code
        == 1
    )
    assert _summary([ServiceResult("a", 1, "skipped"), ServiceResult("b", 1, "moved", exit_code=0)]).exit_code == 0


def test_the_report_names_every_service_the_totals_and_embeds_the_gantt():
    summary = _summary(
        [
            ServiceResult(
                "a|b",
                1,
                "moved",
                exit_code=0,
                write_unavailable_seconds=0.3,
                token={"lsn": "0/3", "timeline": 1},
                timelines={"before": 1, "after": 2},
            ),  # fmt: skip
            ServiceResult("c", 1, "rolled-back", exit_code=3, message="catch-up gate timed out; dc1 is primary again"),
        ]
    )
    markdown = fleet_run_report.markdown(summary, "report-r1.svg")
    assert "| 1 | a\\|b | moved | 0 | 0.300 s |" in markdown and "0/3 (tl 1)" in markdown and "1 -> 2" in markdown
    assert "**exit code 3**" in markdown and "1 back where started" in markdown
    assert "![fleet Gantt of run r1](report-r1.svg)" in markdown
    assert "catch-up gate timed out" in fleet_run_report.text(summary)


def test_the_gantt_draws_one_row_per_service_from_its_journal_records():
    records = [
        {"ts": "2026-01-01T00:00:00.000+00:00", "event": "migration-started", "migration": "m1"},
        {"ts": "2026-01-01T00:00:10.000+00:00", "event": "migration-finished", "migration": "m1", "outcome": "done"},
    ]
    svg = fleet_run_report.gantt([("svc1", records, "m1"), ("svc2", records, "m1")])
    assert svg.startswith("<svg") and "svc1" in svg and "svc2" in svg


def test_the_fleet_journal_reads_back_each_run_and_its_services(tmp_path: Path):
    journal = Journal(tmp_path)
    journal.append("fleet-run-started", run="r1", command="execute", target="dc2", services=["a", "b", "c"])
    journal.append("service-started", run="r1", service="a", wave=1, pid=11)
    journal.append(
        "service-finished", run="r1", service="a", result=ServiceResult("a", 1, "moved", exit_code=0).as_json()
    )
    journal.append("service-started", run="r1", service="b", wave=1, pid=12)
    journal.append("service-skipped", run="r1", service="c", result=ServiceResult("c", 1, "skipped").as_json())
    run = latest_run(journal)
    assert run is not None and run.finished is None and run.command == "execute"
    assert set(run.results()) == {"a", "c"} and run.results()["a"].status == "moved"
    assert run.services["b"].started is not None and run.services["b"].finished is None
    journal.append("fleet-run-finished", run="r1", exit_code=0)
    journal.append("fleet-run-started", run="r2", command="rollback", services=["a"])
    assert [r.run for r in fleet_runs(journal)] == ["r1", "r2"]
    assert latest_run(journal, "execute").finished is not None  # type: ignore[union-attr]


def test_a_second_fleet_run_of_the_same_fleet_is_refused_with_exit_5_naming_the_holder(tmp_path: Path):
    directory = fleet_state_dir(tmp_path, Path("/somewhere/dc1 evacuation.yml"))
    assert directory == tmp_path / "fleet-dc1-evacuation" and oct(directory.stat().st_mode)[-3:] == "700"
    with FleetLock(directory, "f.yml"):
        with pytest.raises(LockBusy) as caught:
            FleetLock(directory, "f.yml").__enter__()
    assert caught.value.exit_code == 5 and f"pid {os.getpid()}" in str(caught.value)
    with FleetLock(directory, "f.yml"):  # released on exit
        pass


def test_a_child_pid_is_adopted_only_while_it_is_a_migrate_process_for_that_inventory(tmp_path: Path):
    script = "import time; time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", script, "migrator.cli", "inv.yml"])
    try:
        assert pid_alive(proc.pid)
        # Until its exec is done, a new process's command line is still its parent's.
        deadline = time.monotonic() + 10
        while b"inv.yml" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert is_migrate_child(proc.pid, "inv.yml") and not is_migrate_child(proc.pid, "other.yml")
    finally:
        proc.kill()
        proc.wait()
    assert not pid_alive(proc.pid) and not is_migrate_child(proc.pid, "inv.yml")


def test_a_document_is_read_only_when_complete(tmp_path: Path):
    out = tmp_path / "svc.json"
    out.write_text('{"schema": 1, "exit_code"')
    assert read_document(out) is None and read_document(tmp_path / "none.json") is None
    out.write_text('{"schema": 1, "exit_code": 3, "verdict": "rolled-back"}')
    assert read_document(out) == {"schema": 1, "exit_code": 3, "verdict": "rolled-back"}


def test_progress_is_the_latest_migrations_phase_and_lag(tmp_path: Path):
    journal = Journal(tmp_path)
    journal.append("migration-started", migration="old")
    journal.append("step-started", migration="old", step="x", phase="verify")
    since = journal.records()[-1]["ts"]
    journal.append("migration-started", migration="new")
    journal.append("step-started", migration="new", step="c", phase="cascade")
    journal.append("gate-sample", migration="new", lag_bytes=4096)
    assert ProgressTail(tmp_path, since).read() == ("cascade", 4096, "new")
    assert ProgressTail(tmp_path / "none", None).read() == (None, None, None)


def test_progress_reads_only_what_was_appended_and_waits_for_a_line_to_be_complete(tmp_path: Path):
    journal = Journal(tmp_path)
    journal.append("migration-started", migration="m1")
    tail = ProgressTail(tmp_path, None)
    assert tail.read() == (None, None, "m1")
    journal.append("step-started", migration="m1", step="c", phase="cascade")
    offset_before = tail._offset
    assert tail.read() == ("cascade", None, "m1") and tail._offset > offset_before
    with journal.path.open("ab") as torn:  # a record being written: half a line
        torn.write(b'{"ts": "x", "event": "gate-sample", "migration": "m1", "lag_')
    assert tail.read() == ("cascade", None, "m1")
    with journal.path.open("ab") as rest:
        rest.write(b'bytes": 512}\n')
    assert tail.read() == ("cascade", 512, "m1")
    # The file replaced by a shorter one (restored from a backup): read again from its start.
    replaced = tmp_path / "journal.new"
    replaced.write_text('{"ts": "y", "event": "migration-started", "migration": "m2"}\n')
    replaced.replace(journal.path)
    assert tail.read() == (None, None, "m2")


def test_the_deadline_adds_every_gate_and_a_margin():
    from migrator.model.inventory import parse_inventory

    fixture = Path(__file__).parent / "fixtures" / "inventory" / "two_sites.yml"
    inventory = parse_inventory(fixture.read_text(), source=str(fixture), base_dir=fixture.parent,
                                check_local_files=False)  # fmt: skip
    gates = inventory.gates
    assert deadline_seconds(None, inventory) > gates.cascade_timeout_seconds + gates.catchup_timeout_seconds


def test_the_live_table_shows_each_services_phase_lag_deadline_and_outcome():
    import io

    from rich.console import Console

    from migrator.model.fleet_run import ServiceProgress
    from migrator.render.fleet_live import EventLines, progress_table

    rows = [
        ServiceProgress("svc1", 1, "running", phase="cascade", lag_bytes=3 << 20, deadline_seconds=412),
        ServiceProgress("svc2", 1, "rolled-back", exit_code=3, note="catch-up gate timed out"),
        ServiceProgress("svc3", 2, "waiting"),
    ]
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(progress_table(rows, "fleet execute -> dc2"))
    text = out.getvalue()
    assert "cascade" in text and "3.0 MiB" in text and "412 s" in text and "rolled-back" in text and "waiting" in text
    stream = io.StringIO()
    lines = EventLines(stream)
    lines.event("svc1: phase\ndemote")
    lines.refresh(rows)  # no table without a terminal
    assert stream.getvalue().count("\n") == 1 and stream.getvalue().rstrip().endswith("svc1: phase demote")


def test_a_child_past_its_deadline_is_reported_overran_and_still_waited_for():
    import time

    from migrator.run.fleet_child import Child

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1.2)"])
    polls: list[bool] = []
    began = time.monotonic()
    Child(proc.pid, proc).wait(time.monotonic() + 0.3, polls.append)
    assert time.monotonic() - began >= 1.0, "the child was not waited for to its end"
    assert proc.returncode == 0 and polls[0] is False and polls[-1] is True


def test_the_fleet_process_does_not_import_the_engine():
    """The fleet process only reads journals: importing the engine (its steps and adapters) cost
    it about half a second of CPU before the first child started (bench/fleet.py)."""
    code = (
        "import sys, migrator.cli; from migrator.run.fleet_run import run_fleet_execute, run_fleet_rollback; "
        "from migrator.render import fleet_run_report, fleet_live; "
        "print(sorted(m for m in sys.modules if m in ('migrator.run.engine', 'migrator.adapters.live')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "[]", out.stdout
