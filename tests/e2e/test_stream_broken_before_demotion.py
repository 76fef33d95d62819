"""The target's stream is broken when the demotion is due (a DCS outage of the source's site
produced this in CI: Patroni promoted dc1's primary again on a new timeline when its etcd came
back, the run went on to the demotion while dc2's WAL receiver was still reconnecting, and the
fast shutdown had nobody to send the final WAL to: the catch-up gate gave up and the run was
undone). The demotion must wait until the target streams from the source's leader on its current
timeline, and then the run finishes with no lost commit.

The moment is made exact with the test-only crash point before the demotion's PATCH
(migrator/run/crashpoint.py): the first run stops there with nothing demoted; then the walsender
serving dc2's slot on dc1's leader is terminated over and over for a few seconds, a stream broken
for real, while `--resume` reaches the demotion.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from migrator.run.crashpoint import CRASH_EXIT_CODE, ENV
from tests.e2e.test_execute import MIGRATE, assert_primary_site, explain, journal_records
from tests.helpers.faults import GATES, inventory_with_gates
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.testbed import SITE_BY_NAME

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
BROKEN_SECONDS = 6.0  # longer than PostgreSQL's 5 s between reconnection attempts
TERMINATE = ("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
             "WHERE slot_name = %s AND active_pid IS NOT NULL")


def _execute(inventory: str, state, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*MIGRATE, "execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", str(state),
                           *extra], capture_output=True, text=True, timeout=300, env=env)


def _break_stream(testbed, leader, slot: str, seconds: float, terminated: list[int]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            rows = testbed.sql(leader, TERMINATE, (slot,))
        except Exception:  # noqa: BLE001 - the leader shutting down ends the breaking; the asserts judge
            return
        terminated[0] += sum(1 for (done,) in rows if done)
        time.sleep(0.05)


def test_the_demotion_waits_for_the_target_to_stream_again(baseline, tmp_path):
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", **GATES)
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k != ENV}
    leader = next(m for m in DC1.members if baseline.sql(m, "SELECT NOT pg_is_in_recovery()")[0][0])
    with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_stream_broken") as ledger:
        crashed = _execute(inventory, state, env={**env, ENV: "before-patch:demote-source"})
        assert crashed.returncode == CRASH_EXIT_CODE, explain(crashed)
        assert not baseline.get_config(DC1).get("standby_cluster"), "the crash came before the demotion"

        terminated = [0]
        breaker = threading.Thread(target=_break_stream, args=(baseline, leader, "dc2", BROKEN_SECONDS, terminated))
        breaker.start()
        try:
            out = _execute(inventory, state, "--resume", env=env)
        finally:
            breaker.join()
        assert out.returncode == 0, explain(out)
    assert terminated[0] >= 1, "the stream was never broken: the test proved nothing"
    assert_primary_site(baseline, DC2)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)

    records = journal_records(state)
    waits = [r for r in records if r.get("event") == "gate-sample" and r.get("step") == "demote-source"
             and "current timeline" in str(r.get("waiting_for", ""))]
    assert waits, "the demotion did not wait for the broken stream"
    applied = next(i for i, r in enumerate(records) if r.get("event") == "step-applied"
                   and r.get("step") == "demote-source")
    assert records.index(waits[-1]) < applied
