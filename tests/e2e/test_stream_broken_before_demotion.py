"""The target's stream is broken when the demotion is due (a DCS outage of the source's site
produced this in CI: Patroni promoted dc1's primary again on a new timeline when its etcd came
back, the run went on to the demotion while dc2's WAL receiver was still reconnecting, and the
fast shutdown had nobody to send the final WAL to: the catch-up gate gave up and the run was
undone). The demotion must wait until the target streams from the source's leader on its current
timeline, and then the run finishes with no lost commit.

The moment is made exact with the test-only crash point before the demotion's PATCH
(migrator/run/crashpoint.py): the first run stops there with nothing demoted; then the walsender
serving dc2's slot on dc1's leader is terminated over and over, a stream broken for real, while
`--resume` reaches the demotion, until the resumed run journals that it waits for the stream (and
a second more); then the stream may come back and the run must finish.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest

from migrator.run.crashpoint import CRASH_EXIT_CODE, ENV
from tests.e2e.test_execute import MIGRATE, assert_primary_site, explain, journal_records
from tests.helpers.faults import GATES, Run, inventory_with_gates
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
BROKEN_AT_MOST = 120.0  # the breaker's own deadline, should the run never journal its wait
TERMINATE = ("SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
             "WHERE slot_name = %s AND active_pid IS NOT NULL")


def _execute(inventory: str, state, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*MIGRATE, "execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", str(state),
                           *extra], capture_output=True, text=True, timeout=300, env=env)


def _break_stream(testbed, leader, slot: str, stop: threading.Event, terminated: list[int]) -> None:
    """Terminate the slot's walsender every 10 ms on one kept connection until told to stop: a
    WAL receiver that reconnects (every few seconds) is cut again within milliseconds."""
    deadline = time.monotonic() + BROKEN_AT_MOST
    try:
        with testbed.connect(leader) as conn:
            conn.autocommit = True
            while not stop.is_set() and time.monotonic() < deadline:
                rows = conn.execute(TERMINATE, (slot,)).fetchall()
                terminated[0] += sum(1 for (done,) in rows if done)
                time.sleep(0.01)
    except Exception:  # noqa: BLE001 - the leader shutting down ends the breaking; the asserts judge
        return


def _waits(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("event") == "gate-sample" and r.get("step") == "demote-source"
            and "current timeline" in str(r.get("waiting_for", ""))]


def test_the_demotion_waits_for_the_target_to_stream_again(baseline, tmp_path):
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", **GATES)
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if k != ENV}
    leader = next(m for m in DC1.members if baseline.sql(m, "SELECT NOT pg_is_in_recovery()")[0][0])
    with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_stream_broken") as ledger:
        crashed = _execute(inventory, state, env={**env, ENV: "before-patch:demote-source"})
        assert crashed.returncode == CRASH_EXIT_CODE, explain(crashed)
        assert not baseline.get_config(DC1).get("standby_cluster"), "the crash came before the demotion"

        terminated, stop = [0], threading.Event()
        breaker = threading.Thread(target=_break_stream, args=(baseline, leader, "dc2", stop, terminated))
        breaker.start()
        try:
            run = Run(state, "execute", "-i", inventory, "--dc", "dc2", "--yes", "--resume")
            wait_until(lambda: _waits(run.records()) or run.proc.poll() is not None, 120,
                       "the resumed run to wait for dc2's stream (or to end)")
            time.sleep(1.0)  # the wait lasts while the stream stays broken
        finally:
            stop.set()
            breaker.join()
        out = run.finish()
        assert out.returncode == 0, explain(out)
    assert terminated[0] >= 1, "the stream was never broken: the test proved nothing"
    assert_primary_site(baseline, DC2)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)

    records = journal_records(state)
    waits = _waits(records)
    assert waits, "the demotion did not wait for the broken stream"
    applied = next(i for i, r in enumerate(records) if r.get("event") == "step-applied"
                   and r.get("step") == "demote-source")
    assert records.index(waits[-1]) < applied
