"""The target's standby leader becomes unreachable in the write-unavailability window (issue 6,
case 4), on the real testbed, under a write ledger and a two-writer sampler.

The fault is a dead host, not a stopped PostgreSQL: Patroni restarts a PostgreSQL that stopped
(`starting ... after failure`) within one loop, and a PostgreSQL whose Patroni alone died keeps
replaying, and either one catches up long before a gate deadline. So the member's Patroni is
killed first (nothing restarts PostgreSQL any more), then its PostgreSQL is stopped immediately
(no shutdown checkpoint, no goodbye to its clients): it neither replays nor answers. Its leader key
lives on until the ttl (20 s) runs out, so no other dc2 member can take over before the catch-up
deadline (6 s here): the gate must time out, and the demotion be undone.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.helpers.faults import GATES, Run, events, inventory_with_gates, member_with_role, one_line
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.e2e.test_execute import assert_primary_site, explain, writable
from tests.testbed import SITE_BY_NAME, wait_until
from tests.testbed.processes import pid_alive, send_signal

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]


def kill_host(testbed, member, frozen: int | None = None) -> None:
    """Patroni SIGKILLed, then PostgreSQL's immediate shutdown (SIGQUIT to the postmaster); a
    `frozen` (SIGSTOPped) child is let go so that it can take its SIGQUIT."""
    postmaster = testbed.postmaster_pid(member)
    testbed.kill_patroni(member)
    send_signal(postmaster, signal.SIGQUIT)
    if frozen is not None:
        try:
            os.kill(frozen, signal.SIGCONT)
        except ProcessLookupError:
            pass
    wait_until(lambda: not pid_alive(postmaster), 15, f"{member.name}'s PostgreSQL to stop")


def test_target_standby_leader_down_during_catch_up_undoes_the_demotion_and_exits_3(baseline, tmp_path):
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml",
                                     **{**GATES, "catchup_timeout_seconds": 6})
    state = tmp_path / "state"
    target_leader = member_with_role(baseline, DC2, "standby_leader")
    startup = baseline.sql(target_leader, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'")[0][0]
    try:
        with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_target_down") as ledger:
            # The catch-up gate passes within about 0.3 s of the demotion on a healthy target, so
            # its replay is frozen as the demotion starts (its WAL receiver keeps streaming: the
            # demotion waits for a streaming target, and gets one), and the host dies as the
            # catch-up starts: the target never replays the token.
            run = Run(state, "execute", "-i", inventory, "--dc", "dc2", "--yes")
            run.wait_for("step-started", "demote-source")
            os.kill(startup, signal.SIGSTOP)
            run.wait_for("step-started", "catch-up")
            kill_host(baseline, target_leader, frozen=startup)
            out = run.finish()
            assert out.returncode == 3, explain(out)
            line = one_line(out.stderr)
            assert "step catch-up: gave up after 6s" in line and "undone: demote-source" in line, line
            assert "dc1 is still primary, nothing lost: back where it started" in line, line
            assert [w[:3] for w in writable(baseline)] == ["dc1"]
            assert ("step-started", "promote-target") not in events(run)
            assert [r["outcome"] for r in run.records() if r["event"] == "migration-finished"] == ["rolled-back"]
            # The host comes back: Patroni starts PostgreSQL, dc2 follows dc1 again.
            baseline.start_patroni(target_leader)
            baseline.wait_healthy(90)
    finally:
        try:
            os.kill(startup, signal.SIGCONT)  # a run that failed before the host died leaves it frozen
        except ProcessLookupError:
            pass
        if not baseline.patroni_alive(target_leader):
            baseline.start_patroni(target_leader)
    assert_primary_site(baseline, DC1)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)
