"""A black-holed target cannot stall the write-unavailability window.

As the catch-up gate starts, dc2's standby leader is frozen: its Patroni and every process of
its PostgreSQL get SIGSTOP. The kernel keeps their TCP connections up and still accepts new ones,
so no connection breaks, and statement_timeout never fires (the server runs no timer): only the
tool's own deadline can end the wait. The catch-up gate must give up at its deadline, the demotion
is undone (dc1 primary again), exit 3, no acknowledged commit lost, never two writers."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.helpers.faults import Run, inventory_with_gates
from tests.helpers.ledger import ALL_MEMBERS, WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.e2e.test_execute import DC1, DC2, assert_primary_site, explain
from tests.testbed import wait_until

pytestmark = pytest.mark.testbed

CATCHUP_SECONDS = 8
# What the run may take after the gate's deadline: the undo asks the frozen member whether it is
# writable (a PostgreSQL connect bounded by connect_timeout_seconds = 5) and waits for dc1 to take
# writes again (2-3 s). Measured: 7.1-7.7 s.
UNDO_ALLOWANCE = 12


def postgres_processes(testbed, member) -> list[int]:
    """The postmaster (from postmaster.pid) and every process it forked (by their parent pid in
    /proc): backends, walsender, walreceiver, startup, checkpointer..."""
    postmaster = testbed.postmaster_pid(member)
    assert postmaster, f"{member.name}: no postmaster.pid"
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        parent = int(stat.rsplit(")", 1)[1].split()[1])  # the command may hold spaces and ')'
        if parent == postmaster:
            children.append(int(entry.name))
    return [postmaster, *children]


def freeze(testbed, member) -> list[int]:
    """SIGSTOP the member's Patroni first (so it cannot react), then PostgreSQL: the postmaster
    first (it forks no more), then its children."""
    patroni = testbed.registry.load()[f"patroni-{member.name}"]
    os.kill(patroni, signal.SIGSTOP)
    stopped = [patroni]
    try:
        for pid in postgres_processes(testbed, member):
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
    except BaseException:
        thaw(stopped)
        raise
    return stopped


def thaw(pids: list[int]) -> None:
    for pid in reversed(pids):
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def _ts(record: dict) -> float:
    return datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_frozen_target_standby_leader_times_out_the_catch_up_on_time_and_undoes(baseline, tmp_path):
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", catchup_timeout_seconds=CATCHUP_SECONDS)
    frozen = next(m for m in DC2.members if baseline.patroni_state(m)["role"] == "standby_leader")
    # The sampler skips the frozen member: its probe would hang with it (the frozen member cannot
    # write anyway); the ledger keeps every member, so the check below proves it caught up after.
    sampled = [m for m in ALL_MEMBERS if m.name != frozen.name]
    pids: list[int] = []
    # Looked up before the run, so that only the signal lies between the demotion's start and the freeze.
    startup = baseline.sql(frozen, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'")[0][0]
    with WriterSampler(baseline, members=sampled) as sampler, \
            WriteLedger(baseline, table="ledger_black_holed") as ledger:
        run = Run(tmp_path / "state", "execute", "-i", inventory, "--dc", "dc2", "--yes")
        try:
            # A healthy target passes the catch-up gate within about 0.3 s of the demotion, and the
            # demotion itself waits for the target to stream (a target frozen before it is never
            # demoted to). So the target's replay stops as the demotion starts (its WAL receiver
            # keeps streaming, the demotion goes out), and the whole member freezes as the gate
            # starts: the gate faces a member that never answers and never replays the token.
            run.wait_for("step-started", "demote-source")
            os.kill(startup, signal.SIGSTOP)
            pids = [startup]
            run.wait_for("step-started", "catch-up")
            pids = freeze(baseline, frozen)
            out = run.finish(timeout=CATCHUP_SECONDS + UNDO_ALLOWANCE + 120)
            exited_at = time.time()
        finally:
            thaw(pids)
        records = run.records()
        wait_until(lambda: len(baseline.sql(frozen, "SELECT 1")) == 1, 60, f"{frozen.name} to answer again")
        time.sleep(1)
    by_event = {(r["event"], r.get("step")): r for r in records}
    gate_started = by_event[("step-started", "catch-up")]
    gate_failed = next(r for r in records if r["event"] == "step-failed")
    gate_seconds = _ts(gate_failed) - _ts(gate_started)
    since_demotion = exited_at - _ts(by_event[("step-applied", "demote-source")])
    print(f"\nfrozen {frozen.name} ({len(pids)} processes); catch-up gate gave up after {gate_seconds:.1f}s "
          f"(deadline {CATCHUP_SECONDS}s); migrate exited {out.returncode} {since_demotion:.1f}s after the "
          f"demotion; {ledger.summary()}")
    assert out.returncode == 3, explain(out)
    assert gate_failed["step"] == "catch-up", gate_failed
    assert CATCHUP_SECONDS - 1 <= gate_seconds <= CATCHUP_SECONDS + 3, gate_seconds
    assert since_demotion <= CATCHUP_SECONDS + UNDO_ALLOWANCE, since_demotion
    assert out.stderr.count("\n") == 1 and "catch-up" in out.stderr and "undone" in out.stderr, explain(out)
    outcomes = [r["outcome"] for r in records if r["event"] == "migration-finished"]
    assert outcomes == ["rolled-back"]
    assert_primary_site(baseline, DC1)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)
    baseline.wait_healthy()
