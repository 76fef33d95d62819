"""The target's standby leader changes inside the catch-up gate (issue 6, case 5).

Right after the demotion is sent, dc2's standby leader gets two faults: its PostgreSQL recovery
process is stopped with SIGSTOP (so it cannot replay past the token and the gate stays open), and
its Patroni agent is killed with SIGKILL (its PostgreSQL keeps running, orphaned, and keeps
answering queries). The cascading replica still receives the WAL through the orphan's walsender and
replays it. After ttl the replica takes dc2's leader key; the tool follows it, promotes only once
*it* has replayed past the token, and proves afterwards that its new timeline forked after the
token.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.helpers.site_moves import inventory_with_gates, member_with_role
from tests.e2e.test_execute import (
    MIGRATE, assert_primary_site, explain, journal_records, migrate, writable,
)
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]


def step_facts(state, step: str) -> dict:
    done = [r for r in journal_records(state) if r["event"] == "step-done" and r["step"] == step]
    assert len(done) == 1, done
    return done[0]["facts"]


def test_standby_leader_killed_in_the_catch_up_gate_the_tool_promotes_its_successor(
        baseline, tmp_path):
    # ttl is 20 s on the testbed: the successor takes the leader key 20-25 s after the kill.
    inventory = str(inventory_with_gates(baseline, tmp_path / "inventory.yml", lag_window_seconds=1,
                                         catchup_timeout_seconds=90))
    state = tmp_path / "state"
    old_leader = member_with_role(baseline, DC2, "standby_leader")
    successor = next(m for m in DC2.members if m != old_leader)
    startup = baseline.sql(old_leader, "SELECT pid FROM pg_stat_activity "
                                       "WHERE backend_type = 'startup'")[0][0]
    stopped = False
    try:
        with WriterSampler(baseline) as sampler, \
                WriteLedger(baseline, table="ledger_leader_change") as ledger:
            proc = subprocess.Popen([*MIGRATE, "execute", "-i", inventory, "--dc", "dc2", "--yes",
                                     "--state-dir", str(state)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            try:
                wait_until(lambda: any(r["event"] == "step-started" and r["step"] == "demote-source"
                                       for r in journal_records(state)),
                           120, "the demotion to start", interval=0.005)
                os.kill(startup, signal.SIGSTOP)
                stopped = True
                baseline.kill_patroni(old_leader)
                killed_at = time.monotonic()
                stdout, stderr = proc.communicate(timeout=240)
            finally:
                if proc.poll() is None:
                    proc.kill()
            out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
            assert out.returncode == 0, explain(out)
            print(f"\nexecute finished {time.monotonic() - killed_at:.1f}s after the kill")
            assert_primary_site(baseline, DC2)
            assert writable(baseline) == [successor.name]
            caught = step_facts(state, "catch-up")
            token = step_facts(state, "read-token")["token"]
            assert caught["caught_up_member"] == successor.name and caught["replayed"] > token
            proof = step_facts(state, "verify-promoted-past-token")
            assert proof["promoted_member"] == successor.name
            assert f"caught up: {successor.name} replayed past the token" in out.stdout
            # The orphan never wrote: still in recovery, replay frozen before the token.
            assert baseline.sql(old_leader, "SELECT pg_is_in_recovery()") == [(True,)]
            replay = baseline.sql(old_leader,
                                  "SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint")[0][0]
            assert replay <= token

            # Repair the faults, let Patroni take the orphan back as a replica, then move back.
            os.kill(startup, signal.SIGCONT)
            stopped = False
            baseline.start_patroni(old_leader)
            wait_until(lambda: baseline.patroni_state(old_leader).get("replication_state")
                       == "streaming", 90, f"{old_leader.name} streaming again", interval=0.5)
            out = migrate("rollback", "-i", inventory, "--yes", "--state-dir", str(state))
            assert out.returncode == 0, explain(out)
            assert_primary_site(baseline, DC1)
        assert sampler.violations == []
        assert_no_acknowledged_commit_lost(baseline, ledger)
        print(f"ledger: {ledger.summary()}")
    finally:
        if stopped:
            os.kill(startup, signal.SIGCONT)
        if not baseline.patroni_alive(old_leader):
            baseline.start_patroni(old_leader)


def test_standby_leader_agent_killed_in_the_cascade_gate_names_the_orphan_and_changes_nothing(
        baseline, tmp_path):
    """Killed in the cascade gate, before anything user-visible changed: the agent's PostgreSQL
    keeps streaming over slot dc2, so no successor could use the slot. The gate times out naming
    the orphan and the next step; nothing changed on any cluster (exit 3)."""
    inventory = str(inventory_with_gates(baseline, tmp_path / "inventory.yml",
                                         lag_window_seconds=30, lag_evidence=False,
                                         cascade_timeout_seconds=6))
    state = tmp_path / "state"
    old_leader = member_with_role(baseline, DC2, "standby_leader")
    configs = {site.name: baseline.get_config(site) for site in (DC1, DC2)}
    try:
        with WriterSampler(baseline) as sampler, \
                WriteLedger(baseline, table="ledger_cascade_kill") as ledger:
            proc = subprocess.Popen([*MIGRATE, "execute", "-i", inventory, "--dc", "dc2", "--yes",
                                     "--state-dir", str(state)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
            try:
                wait_until(lambda: any(r["event"] == "step-started" and r["step"] == "wait-cascade"
                                       for r in journal_records(state)), 120, "the cascade gate",
                           interval=0.005)
                baseline.kill_patroni(old_leader)
                stdout, stderr = proc.communicate(timeout=120)
            finally:
                if proc.poll() is None:
                    proc.kill()
            out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
            assert out.returncode == 3, explain(out)
            print(f"\n{out.stderr}")
            assert out.stderr.count("\n") == 1, explain(out)
            for words in (f"{old_leader.name}'s Patroni does not answer", f"over slot {DC2.slot}",
                          f"start Patroni on {old_leader.name}",
                          "dc1 is still primary, nothing lost"):
                assert words in out.stderr, explain(out)
            assert_primary_site(baseline, DC1)
            assert {site.name: baseline.get_config(site) for site in (DC1, DC2)} == configs
            baseline.start_patroni(old_leader)
            baseline.wait_healthy(60)
        assert sampler.violations == []
        assert_no_acknowledged_commit_lost(baseline, ledger)
    finally:
        if not baseline.patroni_alive(old_leader):
            baseline.start_patroni(old_leader)
