"""`migrate execute` and `migrate rollback` on the real testbed, with a write ledger and a
two-writer sampler running: no acknowledged commit lost, never two writable members."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest

from migrator.render.window_breakdown import TOOL_MILESTONES
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.testbed import MEMBER_BY_NAME, SITE_BY_NAME, wait_until

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
MIGRATE = [sys.executable, "-m", "migrator.cli"]


def migrate(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*MIGRATE, *args], capture_output=True, text=True, timeout=timeout)


def explain(out: subprocess.CompletedProcess) -> str:
    return f"exit {out.returncode}\nstderr: {out.stderr}\nstdout tail: {out.stdout[-3000:]}"


def writable(testbed, members=None) -> list[str]:
    """The members that take writes now; `members` defaults to the demo service's, both sites."""
    found = []
    for member in members if members is not None else (*DC1.members, *DC2.members):
        try:
            if testbed.sql(member, "SELECT NOT pg_is_in_recovery()")[0][0]:
                found.append(member.name)
        except Exception:  # noqa: BLE001 - a member that does not answer writes nothing
            pass
    return found


def assert_primary_site(testbed, site) -> None:
    """Exactly one writable member, in `site`; the other site is a standby cluster of it."""
    writers = wait_until(lambda: writable(testbed) or None, 30, "a writable member")
    assert len(writers) == 1 and writers[0].startswith(site.name), writers
    other = DC2 if site is DC1 else DC1
    assert testbed.get_config(other).get("standby_cluster"), f"{other.name} is not a standby cluster"
    assert not testbed.get_config(site).get("standby_cluster")


def journal_records(state_dir: Path) -> list[dict]:
    path = state_dir / "demo" / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


PLAIN_HTTP = "WARNING: site {site} sends the Patroni REST API password over plain http"
SVG = "{http://www.w3.org/2000/svg}"


def assert_timeline_beside(report: Path, records: list[dict]) -> None:
    """The run's picture sits beside its Markdown report, which embeds it; it parses, has a bar
    per step of the migration and the write-unavailability window where the journal puts it."""
    migration = report.stem.removeprefix("report-")
    svg = report.with_suffix(".svg")
    assert f"]({svg.name})" in report.read_text(), report
    assert svg.stat().st_mode & 0o077 == 0
    root = ET.fromstring(svg.read_text())
    rects = list(root.iter(f"{SVG}rect"))
    bars = {r.get("data-row") for r in rects if "bar" in r.get("class", "").split()}
    started = next(r for r in records if r["event"] == "migration-started" and r["migration"] == migration)
    assert bars == set(started["steps"]), svg
    window = [r for r in rects if "window" in r.get("class", "").split()]
    assert len(window) == 1 and "window-promoted" in window[0].get("class"), svg
    facts = {}
    for record in records:
        if record.get("migration") == migration and record["event"] == "step-done":
            facts.update(record["facts"])
    seconds = (datetime.fromisoformat(facts["target_writable_at"])
               - datetime.fromisoformat(facts["source_read_only_at"])).total_seconds()
    drawn = float(window[0].get("data-end")) - float(window[0].get("data-start"))
    assert abs(drawn - seconds) < 0.002 and 0 < seconds < 5, (drawn, seconds)
    plot = next(r for r in rects if "plot" in r.get("class", "").split())
    scale = float(plot.get("width")) / float(plot.get("data-seconds"))
    assert abs(float(window[0].get("width")) - seconds * scale) < 0.05


def assert_window_explained(report: str) -> None:
    """The report's breakdown of the window (migrator/render/window_breakdown.py): every part of
    the cut-over measured, in the order they happen, none negative, and the parts inside the
    window adding up to the window the report states above them."""
    window = float(re.search(r"^- write unavailability: (\d+\.\d+) s \(source read-only", report, re.M)[1])
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in report.splitlines() if re.match(r"\| [^|]+ -> [^|]+ \|", line)]
    names = [f"{a} -> {b}" for (a, _), (b, _) in zip(TOOL_MILESTONES, TOOL_MILESTONES[1:])]
    assert [r[0] for r in rows] == names, report
    seconds = [float(r[3]) for r in rows]  # "not measured" fails here: a real run measures each
    assert all(s >= 0 for s in seconds), rows
    inside = sum(s for s, r in zip(seconds, rows) if r[4] == "in")
    assert window - 0.01 <= inside <= window + 0.01, (inside, window, rows)


def test_execute_to_dc2_and_roll_back_under_load_twice(baseline, tmp_path):
    # Traffic hooks that record what they were told, to check them against the real new primary.
    hook_log = tmp_path / "hooks.log"
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(baseline.inventory_path.read_text().replace("sites:\n", (
        "hooks:\n"
        f"  before_promote: echo before $MIGRATOR_SOURCE $MIGRATOR_TARGET >> {hook_log}\n"
        f"  after_promote: echo after $MIGRATOR_NEW_PRIMARY $MIGRATOR_NEW_PRIMARY_HOST >> {hook_log}\n"
        "sites:\n"), 1))
    inventory, state = str(inventory), str(tmp_path / "state")
    expected_hooks = []
    with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_round_trip") as ledger:
        for _ in range(2):
            out = migrate("execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", state)
            assert out.returncode == 0, explain(out)
            assert "write unavailability:" in out.stdout
            assert "write unavailability, part by part" in out.stdout
            # The testbed sends the REST password over plain http: said first, before any step.
            assert out.stdout.startswith(PLAIN_HTTP.format(site="dc1")), out.stdout[:500]
            assert_primary_site(baseline, DC2)
            new = MEMBER_BY_NAME[writable(baseline)[0]]
            expected_hooks += ["before dc1 dc2", f"after {new.name} {new.host}"]
            out = migrate("rollback", "-i", inventory, "--yes", "--state-dir", state)
            assert out.returncode == 0, explain(out)
            assert_primary_site(baseline, DC1)
            new = MEMBER_BY_NAME[writable(baseline)[0]]
            expected_hooks += ["before dc2 dc1", f"after {new.name} {new.host}"]
        time.sleep(1)
    assert hook_log.read_text().splitlines() == expected_hooks
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)
    assert ledger.max_gap_seconds < 5, ledger.summary()
    # Every run left a journal record of its outcome and a report beside it.
    finished = [r for r in journal_records(Path(state)) if r["event"] == "migration-finished"]
    assert [r["outcome"] for r in finished] == ["done", "done", "rolled-back"] * 2
    reports = list((Path(state) / "demo").glob("report-*.md"))
    assert len(reports) == 4
    for report in reports:  # execute's and rollback's alike
        assert f"**{PLAIN_HTTP.format(site='dc2')}" in report.read_text(), report
        assert_timeline_beside(report, journal_records(Path(state)))
        assert_window_explained(report.read_text())
    for path in (Path(state) / "demo").iterdir():
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"


# Where `migrate execute` is killed with SIGKILL (the journal record after which it dies), and
# the direction of the move; the points alternate directions so the testbed ends where it began.
CRASH_POINTS = [
    ("dc2", "step-done", "slot-for-target-on-source"),
    ("dc1", "step-done", "wait-cascade"),
    ("dc2", "step-started", "demote-source"),  # between the journal's `started` and the PATCH
    ("dc1", "step-started", "catch-up"),  # inside the catch-up gate
    ("dc2", "step-applied", "promote-target"),
    ("dc1", "step-done", "wait-repoint"),
]


@pytest.mark.slow
def test_kill_9_at_step_boundaries_then_resume_loses_nothing(baseline, tmp_path):
    inventory, state = str(baseline.inventory_path), tmp_path / "state"
    with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_crash") as ledger:
        for target, event, step in CRASH_POINTS:
            seen = len(journal_records(state))
            proc = subprocess.Popen([*MIGRATE, "execute", "-i", inventory, "--dc", target, "--yes",
                                     "--state-dir", str(state)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: any(r["event"] == event and r.get("step") == step
                                       for r in journal_records(state)[seen:]), 120,
                           f"journal record {event} {step}", interval=0.005)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            out = migrate("execute", "-i", inventory, "--dc", target, "--resume", "--yes",
                          "--state-dir", str(state))
            assert out.returncode == 0, f"resume after kill at {event} {step}: {explain(out)}"
            assert_primary_site(baseline, SITE_BY_NAME[target])
        time.sleep(1)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)
    # No demotion or promotion was ever sent twice in one migration.
    records = journal_records(state)
    for kind in ("demote-source", "promote-target"):
        applied = [(r["migration"]) for r in records if r["event"] == "step-applied" and r["step"] == kind]
        assert len(applied) == len(set(applied)), f"{kind} applied twice in one migration"


def test_catch_up_timeout_undoes_the_demotion_and_exits_3(baseline, tmp_path):
    """The target's standby leader stops replaying right when the demotion starts: its startup
    (recovery) process gets SIGSTOP, a stalled standby produced for real. (pg_wal_replay_pause()
    would not do: Patroni resumes paused replay within a loop.) It can never replay past the
    token, so the catch-up gate times out and the tool makes dc1 primary again."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(baseline.inventory_path.read_text()
                         .replace("catchup_timeout_seconds: 60", "catchup_timeout_seconds: 5"))
    state = tmp_path / "s"
    primary = next(m for m in DC1.members if baseline.patroni_state(m)["role"] == "primary")
    standby_leader = next(m for m in DC2.members if baseline.patroni_state(m)["role"] == "standby_leader")
    baseline.sql(primary, "DROP TABLE IF EXISTS before_timeout")
    baseline.sql(primary, "CREATE TABLE before_timeout (id int)")
    baseline.sql(primary, "INSERT INTO before_timeout VALUES (1)")
    startup_pid = baseline.sql(standby_leader, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'")[0][0]
    proc = subprocess.Popen([*MIGRATE, "execute", "-i", str(inventory), "--dc", "dc2", "--yes", "--state-dir",
                             str(state)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: any(r["event"] == "step-started" and r["step"] == "demote-source"
                               for r in journal_records(state)), 120, "the demotion to start", interval=0.005)
        os.kill(startup_pid, signal.SIGSTOP)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        os.kill(startup_pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert out.returncode == 3, explain(out)
    assert out.stderr.count("\n") == 1 and "catch-up" in out.stderr and "undone" in out.stderr
    assert_primary_site(baseline, DC1)
    writer = MEMBER_BY_NAME[writable(baseline)[0]]
    assert baseline.sql(writer, "SELECT count(*) FROM before_timeout") == [(1,)]
    outcomes = [r["outcome"] for r in journal_records(state) if r["event"] == "migration-finished"]
    assert outcomes == ["rolled-back"]


def test_a_second_execute_while_one_runs_is_refused(baseline, tmp_path):
    inventory, state = str(baseline.inventory_path), tmp_path / "state"
    first = subprocess.Popen([*MIGRATE, "execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir",
                              str(state)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: any(r["event"] == "run-started" for r in journal_records(state)), 60,
                   "the first run to start")
        same_machine = migrate("execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", str(state))
        # A busy lock has its own exit code (5: try later), apart from bad input (2).
        assert same_machine.returncode == 5, explain(same_machine)
        assert "holds" in same_machine.stderr
        # Another operator, another state directory: the lease in dc1's etcd refuses them.
        other = migrate("execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", str(tmp_path / "other"))
        assert other.returncode == 5, explain(other)
        assert "already running" in other.stderr and f"pid {first.pid}" in other.stderr
    finally:
        assert first.wait(120) == 0, first.stderr.read()
    out = migrate("rollback", "-i", inventory, "--yes", "--state-dir", str(state))
    assert out.returncode == 0, explain(out)
    assert_primary_site(baseline, DC1)
