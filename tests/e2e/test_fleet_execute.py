"""`migrate fleet execute`, `--resume` and `fleet rollback` on the real testbed: the extra services
svc1..svc3 (one member per site, sharing demo's etcds), each moved by an ordinary `migrate
execute` child of the fleet process.

- three services moved dc1 -> dc2 at parallelism 3 from a reviewed fleet plan, under a write
  ledger and a two-writer sampler per service: 0 acknowledged commits lost, never two writable
  members; then `fleet rollback` moves all three back;
- the fleet process killed with SIGKILL while every service is in flight, one child killed the
  moment its demotion starts (the control machine dying) and one at the cascade: `--resume` adopts
  the child still running, resumes the killed ones from their own journals, and every service
  ends in dc2 with exactly one demotion and one promotion, its timeline one past the start;
- a service blocked at start (its target's Patroni paused): a failure without --skip-blocked,
  left untouched with it while the others move;
- a service whose catch-up gate times out mid-run with `max_failures: 1`: it ends back where it
  started (exit 3), the service waiting for a slot never starts, the running one finishes, and the
  report shows both;
- two Ctrl-C: the running service finishes its move, nothing more starts;
- a reviewed plan gone stale for one service: that service exits 6, nothing changed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_execute import writable
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.testbed import Testbed, wait_until
from tests.testbed.services import ExtraService, ExtraServices, inventory_file

pytestmark = pytest.mark.testbed

EXTRA_SERVICES = 3  # read by the extra_services fixture
MIGRATE = [sys.executable, "-m", "migrator.cli"]
RUN_TIMEOUT = 400


def write_fleet(path: Path, inventories: list[Path], **settings: Any) -> Path:
    lines = ["services:", *(f"  - {inventory}" for inventory in inventories)]
    lines += [f"{key}: {json.dumps(value)}" for key, value in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def fleet(state: Path | None, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MIGRATE, "fleet", *args, *(["--state-dir", str(state)] if state else [])],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def explain(out: subprocess.CompletedProcess) -> str:
    return f"exit {out.returncode}\nstderr tail: {out.stderr[-4000:]}\nstdout tail: {out.stdout[-4000:]}"


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # a line being written
    return out


def services_by_name(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["service"]: row for row in document["services"]}


def assert_primary_in(testbed: Testbed, service: ExtraService, site: str) -> None:
    writers = wait_until(lambda: writable(testbed, service.members) or None, 30, f"{service.name} writable")
    assert writers == [f"{service.name}-{site}-a"], writers
    other = service.dc1 if site == "dc2" else service.dc2
    assert testbed.get_config(other).get("standby_cluster"), f"{other.scope} is not a standby cluster"


def timeline(testbed: Testbed, member) -> int:
    row = testbed.sql(member, "SELECT timeline_id FROM pg_control_checkpoint()")
    return int(row[0][0])


def back_at_baseline(testbed: Testbed, services: list[ExtraService]) -> None:
    extra = ExtraServices(testbed)
    for service in services:
        wait_until(lambda s=service: not extra.problems(s), 90, f"{service.name} back at its baseline")


@pytest.mark.slow
def test_three_services_move_at_parallelism_3_from_a_reviewed_plan_losing_nothing_then_all_roll_back(
    baseline, extra_services, tmp_path
):
    services = extra_services[:3]
    state = tmp_path / "state"
    fleet_file = write_fleet(
        tmp_path / "fleet.yml", [inventory_file(baseline.base, s) for s in services], parallel=3, max_failures=1
    )
    planned = fleet(None, "plan", "--fleet", str(fleet_file), "--dc", "dc2", "--out", str(tmp_path / "plan.json"))
    assert planned.returncode == 0, explain(planned)

    ledgers = {s.name: WriteLedger(baseline, members=s.members, table=f"fleet_{s.name}") for s in services}
    samplers = {s.name: WriterSampler(baseline, members=s.members) for s in services}
    for witness in [*samplers.values(), *ledgers.values()]:
        witness.start()
    try:
        plan = str(tmp_path / "plan.json")
        moved = fleet(
            state, "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--plan", plan, "--yes", "--format", "json"
        )
        assert moved.returncode == 0, explain(moved)
        document = json.loads(moved.stdout)
        for service in services:
            assert_primary_in(baseline, service, "dc2")
        back = fleet(state, "rollback", "--fleet", str(fleet_file), "--yes", "--format", "json")
        assert back.returncode == 0, explain(back)
        time.sleep(1)  # a second of writes on the way-back primaries
    finally:
        for witness in [*ledgers.values(), *samplers.values()]:
            witness.stop()

    rows = services_by_name(document)
    assert {name: (row["status"], row["exit_code"]) for name, row in rows.items()} == {
        s.name: ("moved", 0) for s in services
    }
    assert document["totals"]["moved"] == 3 and document["exit_code"] == 0 and document["parallel"] == 3
    assert document["fingerprint"] == json.loads((tmp_path / "plan.json").read_text())["fingerprint"]
    # At parallelism 3 the three runs overlapped in time.
    assert max(r["started"] for r in rows.values()) < min(r["finished"] for r in rows.values())
    for row in rows.values():
        assert 0 < row["write_unavailable_seconds"] < 5 and row["token"]["lsn"] and Path(row["report_file"]).exists()
        assert row["timelines"]["after"] == row["timelines"]["before"] + 1
    report = Path(document["report_file"])
    assert report.exists() and report.parent == state / "fleet-fleet" and Path(document["gantt_file"]).exists()
    assert "| svc1 | moved | 0 |" in report.read_text() and "## Gantt" in report.read_text()
    journal = records(state / "fleet-fleet" / "journal.jsonl")
    events = [r["event"] for r in journal]
    assert events.count("fleet-run-started") == 2 and events.count("fleet-run-finished") == 2
    assert events.count("service-started") == 6 and events.count("service-finished") == 6
    rolled = json.loads(back.stdout)
    assert {row["service"]: row["status"] for row in rolled["services"]} == {s.name: "moved" for s in services}

    for service in services:
        assert samplers[service.name].violations == [], f"{service.name}: two writable members"
        assert samplers[service.name].samples > 100
        assert_no_acknowledged_commit_lost(baseline, ledgers[service.name], members=service.members)
        assert len(ledgers[service.name].acks) > 500, ledgers[service.name].summary()
        print(f"{service.name}: {ledgers[service.name].summary()}")
    back_at_baseline(baseline, services)
    secrets = baseline.passwords().values()
    for text in [moved.stdout, moved.stderr, back.stdout, back.stderr, report.read_text()]:
        assert not any(secret in text for secret in secrets)


def _phase_reached(journal: Path, phases: set[str]) -> bool:
    return any(r.get("event") == "step-started" and r.get("phase") in phases for r in records(journal))


@pytest.mark.slow
def test_kill_9_of_the_fleet_and_of_children_in_flight_then_resume_finishes_every_service_once(
    baseline, extra_services, tmp_path
):
    services = extra_services[:3]
    svc1, svc2, svc3 = services
    state = tmp_path / "state"
    fleet_file = write_fleet(
        tmp_path / "fleet.yml", [inventory_file(baseline.base, s) for s in services], parallel=3, max_failures=1
    )
    timelines_before = {s.name: timeline(baseline, s.dc1.members[0]) for s in services}
    ledger = WriteLedger(baseline, members=svc1.members, table="fleet_resume_svc1")
    sampler = WriterSampler(baseline, members=svc1.members)
    fleet_journal = state / "fleet-fleet" / "journal.jsonl"
    with open(tmp_path / "first.log", "wb") as log:
        first = subprocess.Popen(
            [*MIGRATE, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--yes",
             "--state-dir", str(state)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    ledger.start()
    sampler.start()
    try:
        wait_until(
            lambda: all(_phase_reached(state / s.name / "journal.jsonl", {"cascade"}) for s in services),
            120,
            "every service in flight (cascade)",
            interval=0.05,
        )
        pids = {r["service"]: r["pid"] for r in records(fleet_journal) if r["event"] == "service-started"}
        assert set(pids) == {s.name for s in services}
        # The control machine dies: the fleet process first, then two of its children, svc1's the
        # moment its demotion starts (before or after its PATCH: resume must handle both).
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        os.kill(pids[svc2.name], signal.SIGKILL)
        wait_until(
            lambda: any(r.get("event") == "step-started" and r.get("step") == "demote-source"
                        for r in records(state / svc1.name / "journal.jsonl")),
            120, "svc1's demotion to start", interval=0.005,
        )  # fmt: skip
        os.kill(pids[svc1.name], signal.SIGKILL)
        assert not any(r["event"] == "fleet-run-finished" for r in records(fleet_journal))

        resumed = fleet(state, "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--resume", "--format", "json")
        assert resumed.returncode == 0, explain(resumed) + (tmp_path / "first.log").read_text()[-3000:]
    finally:
        ledger.stop()
        sampler.stop()
    document = json.loads(resumed.stdout)
    rows = services_by_name(document)
    assert {name: row["status"] for name, row in rows.items()} == {s.name: "moved" for s in services}, rows
    assert "its child (pid" in resumed.stderr and "still runs" in resumed.stderr, "svc3 was not adopted"
    assert rows[svc1.name]["resumed"] and rows[svc2.name]["resumed"]
    for service in services:
        assert_primary_in(baseline, service, "dc2")
        journal = records(state / service.name / "journal.jsonl")
        migrations = {r["migration"] for r in journal if r["event"] == "migration-started"}
        assert len(migrations) == 1, f"{service.name}: the resume started a second migration"
        for step in ("demote-source", "promote-target"):
            applied = [r for r in journal if r["event"] == "step-applied" and r["step"] == step]
            assert len(applied) <= 1, f"{service.name}: {step} applied twice"
        attempts = [r for r in journal if r["event"] == "promotion-attempted"]
        assert len(attempts) == 1, f"{service.name}: {len(attempts)} promotion attempts"
        # One promotion: dc2's timeline is exactly one past dc1's before the move.
        assert timeline(baseline, service.dc2.members[0]) == timelines_before[service.name] + 1
    assert sampler.violations == [], "svc1: two writable members"
    assert_no_acknowledged_commit_lost(baseline, ledger, members=svc1.members)
    print(f"svc1 under resume: {ledger.summary()}")
    events = [r["event"] for r in records(fleet_journal)]
    assert events.count("fleet-run-resumed") == 1 and events.count("fleet-run-finished") == 1

    back = fleet(state, "rollback", "--fleet", str(fleet_file), "--yes")
    assert back.returncode == 0, explain(back)
    back_at_baseline(baseline, services)


def _startup_pid(testbed: Testbed, member) -> int:
    return int(testbed.sql(member, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'")[0][0])


def _variant(testbed: Testbed, service: ExtraService, path: Path, **gates: int | str) -> Path:
    """The service's inventory with some gates changed (or added under `gates:`)."""
    text = inventory_file(testbed.base, service).read_text()
    for key, value in gates.items():
        lines = [line for line in text.splitlines() if line.strip().startswith(f"{key}:")]
        if not lines:
            assert "\ngates:\n" in text, "no gates section in the inventory"
            text = text.replace("\ngates:\n", f"\ngates:\n  {key}: {value}\n", 1)
            continue
        indent = lines[0][: len(lines[0]) - len(lines[0].lstrip())]
        text = text.replace(lines[0], f"{indent}{key}: {value}")
    path.write_text(text)
    return path


@pytest.mark.slow
def test_a_service_blocked_at_start_fails_without_skip_blocked_and_is_left_untouched_with_it(
    baseline, extra_services, tmp_path
):
    svc1, svc2, svc3 = extra_services[:3]
    state = tmp_path / "state"
    fleet_file = write_fleet(
        tmp_path / "fleet.yml",
        [inventory_file(baseline.base, s) for s in (svc1, svc2, svc3)],
        waves=[["svc3"], ["svc1", "svc2"]],
        parallel=2,
        max_failures=1,
    )
    baseline.patch_config(svc3.dc2, {"pause": True})  # its target paused: the `paused` check blocks it
    try:
        wait_until(lambda: baseline.patroni_state(svc3.dc2.members[0]).get("pause") is True, 20, "svc3's dc2 paused")
        configs_before = {site.scope: baseline.get_config(site) for site in svc3.sites}

        failed = fleet(state, "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--yes", "--format", "json")
        assert failed.returncode == 1, explain(failed)
        rows = services_by_name(json.loads(failed.stdout))
        assert rows["svc3"]["status"] == "blocked" and "paused" in rows["svc3"]["message"], rows["svc3"]
        # The blocked service spent the failure budget: wave 2 never started.
        assert rows["svc1"]["status"] == rows["svc2"]["status"] == "not-started", rows
        for service in (svc1, svc2, svc3):
            assert_primary_in(baseline, service, "dc1")

        skipped = fleet(state, "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--yes", "--skip-blocked",
                        "--format", "json")  # fmt: skip
        assert skipped.returncode == 0, explain(skipped)
        document = json.loads(skipped.stdout)
        rows = services_by_name(document)
        assert {n: r["status"] for n, r in rows.items()} == {"svc3": "skipped", "svc1": "moved", "svc2": "moved"}
        assert "left untouched" in rows["svc3"]["message"] and document["totals"]["skipped"] == 1
        assert_primary_in(baseline, svc1, "dc2")
        assert_primary_in(baseline, svc2, "dc2")
        assert writable(baseline, svc3.members) == ["svc3-dc1-a"]
        assert {site.scope: baseline.get_config(site) for site in svc3.sites} == configs_before
    finally:
        baseline.patch_config(svc3.dc2, {"pause": None})
    # `fleet rollback` moves back what the latest fleet run moved: svc1 and svc2, not svc3.
    back = fleet(state, "rollback", "--fleet", str(fleet_file), "--yes", "--format", "json")
    assert back.returncode == 0, explain(back)
    assert sorted(row["service"] for row in json.loads(back.stdout)["services"]) == ["svc1", "svc2"]
    back_at_baseline(baseline, [svc1, svc2, svc3])


@pytest.mark.slow
def test_a_service_failing_mid_run_ends_back_where_it_started_and_max_failures_stops_new_starts(
    baseline, extra_services, tmp_path
):
    """svc1's target stops replaying the moment its demotion starts (its startup process gets
    SIGSTOP, as in test_execute), so its catch-up gate (5 s here) times out and the demotion is
    undone; svc2 (a longer lag window, so it is still running then) finishes; svc3, waiting for a
    slot at parallelism 2, never starts."""
    svc1, svc2, svc3 = extra_services[:3]
    state = tmp_path / "state"
    inventories = [
        _variant(baseline, svc1, tmp_path / "svc1.yml", catchup_timeout_seconds=5),
        # The whole window, not Patroni's evidence (gates.lag_evidence), keeps svc2 running past svc1's failure.
        _variant(baseline, svc2, tmp_path / "svc2.yml", lag_window_seconds=40, lag_evidence="false"),
        inventory_file(baseline.base, svc3),
    ]
    fleet_file = write_fleet(tmp_path / "fleet.yml", inventories, parallel=2, max_failures=1)
    target = svc1.dc2.members[0]
    startup = _startup_pid(baseline, target)
    with open(tmp_path / "fleet.log", "wb") as log:
        proc = subprocess.Popen(
            [*MIGRATE, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--yes", "--format", "json",
             "--state-dir", str(state)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip
    try:
        wait_until(
            lambda: any(r.get("event") == "step-started" and r.get("step") == "demote-source"
                        for r in records(state / "svc1" / "journal.jsonl")),
            120, "svc1's demotion to start", interval=0.005,
        )  # fmt: skip
        os.kill(startup, signal.SIGSTOP)
        stdout, _ = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        os.kill(startup, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 3, f"exit {proc.returncode}\n{(tmp_path / 'fleet.log').read_text()[-4000:]}"
    document = json.loads(stdout)
    rows = services_by_name(document)
    assert (rows["svc1"]["status"], rows["svc1"]["exit_code"]) == ("rolled-back", 3), rows["svc1"]
    assert (rows["svc2"]["status"], rows["svc2"]["exit_code"]) == ("moved", 0), rows["svc2"]
    assert rows["svc3"]["status"] == "not-started" and "max_failures" in rows["svc3"]["message"]
    assert rows["svc2"]["finished"] > rows["svc1"]["finished"], "svc2 was not running when svc1 failed"
    assert document["totals"]["back_where_started"] == 1 and document["totals"]["moved"] == 1
    report = Path(document["report_file"]).read_text()
    assert "| svc1 | rolled-back | 3 |" in report and "| svc2 | moved | 0 |" in report
    assert "no new service started after" in report
    assert_primary_in(baseline, svc1, "dc1")
    assert_primary_in(baseline, svc2, "dc2")
    assert_primary_in(baseline, svc3, "dc1")
    back = fleet(state, "rollback", "--fleet", str(fleet_file), "--yes")
    assert back.returncode == 0, explain(back)
    back_at_baseline(baseline, [svc1, svc2, svc3])


@pytest.mark.slow
def test_ctrl_c_stops_new_starts_and_the_running_service_reaches_its_own_end(baseline, extra_services, tmp_path):
    """Two Ctrl-C (SIGINT to the fleet process, as a terminal sends it) while svc1 is moving at
    parallelism 1: svc1's child never gets the signal and finishes its move, svc2 never starts,
    the second Ctrl-C says what still runs, and the fleet exits 1 (not everything was done)."""
    svc1, svc2 = extra_services[:2]
    state = tmp_path / "state"
    fleet_file = write_fleet(
        tmp_path / "fleet.yml", [inventory_file(baseline.base, s) for s in (svc1, svc2)], parallel=1
    )
    with open(tmp_path / "fleet.log", "wb") as log:
        proc = subprocess.Popen(
            [*MIGRATE, "fleet", "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--yes", "--format", "json",
             "--state-dir", str(state)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip
    try:
        wait_until(lambda: _phase_reached(state / "svc1" / "journal.jsonl", {"cascade"}), 120, "svc1 in flight")
        proc.send_signal(signal.SIGINT)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = (tmp_path / "fleet.log").read_text()
    assert proc.returncode == 1, f"exit {proc.returncode}\n{output[-4000:]}"
    assert "Ctrl-C: no new service starts" in output and "still running: svc1" in output
    rows = services_by_name(json.loads(stdout))
    assert (rows["svc1"]["status"], rows["svc1"]["exit_code"]) == ("moved", 0), rows["svc1"]
    assert rows["svc2"]["status"] == "not-started" and "Ctrl-C" in rows["svc2"]["message"]
    assert_primary_in(baseline, svc1, "dc2")
    assert_primary_in(baseline, svc2, "dc1")
    back = fleet(state, "rollback", "--fleet", str(fleet_file), "--yes")
    assert back.returncode == 0, explain(back)
    back_at_baseline(baseline, [svc1, svc2])


def test_a_service_whose_reviewed_plan_went_stale_exits_6_and_is_left_as_it_was(baseline, extra_services, tmp_path):
    """The fleet plan is reviewed, then svc1's dynamic config changes (a harmless key): its own
    `migrate execute --plan` refuses the stale plan (6) before changing anything; the fleet exits 6."""
    svc1 = extra_services[0]
    state = tmp_path / "state"
    fleet_file = write_fleet(tmp_path / "fleet.yml", [inventory_file(baseline.base, svc1)], parallel=1)
    plan = tmp_path / "plan.json"
    planned = fleet(None, "plan", "--fleet", str(fleet_file), "--dc", "dc2", "--out", str(plan))
    assert planned.returncode == 0, explain(planned)
    baseline.patch_config(svc1.dc1, {"migrator_test_note": "changed after the review"})
    try:
        # Any member answers GET /config from its own view of the DCS: wait until it shows the PATCH.
        wait_until(lambda: baseline.get_config(svc1.dc1).get("migrator_test_note"), 30, "the PATCH in svc1's config")
        configs = {site.scope: baseline.get_config(site) for site in svc1.sites}
        stale = fleet(state, "execute", "--fleet", str(fleet_file), "--dc", "dc2", "--plan", str(plan), "--yes",
                      "--format", "json")  # fmt: skip
        assert stale.returncode == 6, explain(stale)
        row = services_by_name(json.loads(stale.stdout))["svc1"]
        assert (row["status"], row["exit_code"]) == ("failed", 6) and "no longer matches" in row["message"], row
        assert {site.scope: baseline.get_config(site) for site in svc1.sites} == configs
        assert_primary_in(baseline, svc1, "dc1")
    finally:
        baseline.patch_config(svc1.dc1, {"migrator_test_note": None})
