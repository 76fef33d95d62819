"""dc2 left streaming from a dc1 *replica* after an in-site switchover on dc1 (issue 6, case 2).

With a single address in dc2's standby_cluster.host, dc2's standby leader keeps cascading from the
old dc1 primary, now a replica: WAL still arrives, Patroni logs 'session is read-only' every loop,
and slot dc2 on dc1's real leader goes inactive. `check` warns and the plan re-points dc2 at every
dc1 member before the cut-over. With a host list (the testbed's baseline) Patroni re-attaches to
the new dc1 primary by itself and the plan needs no such step (the same scenario, after the
move back).
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest

from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.helpers.site_moves import (
    in_site_switchover, inventory_with_gates, member_with_role, receiver, wait_streams_from,
)
from tests.e2e.test_execute import (
    MIGRATE, assert_primary_site, explain, journal_records, migrate,
)
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
STEP = "repoint-target-at-source-leader"


def findings(inventory: str) -> tuple[int, dict[str, dict]]:
    out = migrate("check", "-i", inventory, "--json")
    assert "Traceback" not in out.stderr, explain(out)
    return out.returncode, {f["check"]: f for f in json.loads(out.stdout)["findings"]}


def planned_steps(inventory: str) -> list[dict]:
    out = migrate("plan", "-i", inventory, "--dc", "dc2", "--format", "json")
    assert out.returncode == 0, explain(out)
    return json.loads(out.stdout)["steps"]


@pytest.mark.slow
def test_single_host_on_a_replica_is_repointed_and_a_host_list_reattaches_by_itself(
        baseline, tmp_path):
    inventory = str(baseline.inventory_path)
    old_primary = member_with_role(baseline, DC1, "primary")
    new_primary = next(m for m in DC1.members if m != old_primary)
    standby_leader = member_with_role(baseline, DC2, "standby_leader")
    # The shape that traps: one fixed address, the primary's.
    baseline.patch_config(DC2, {"standby_cluster": {"host": old_primary.host}})
    wait_streams_from(baseline, standby_leader, old_primary)
    state = tmp_path / "state"
    # A 1 s lag window instead of 5 s: the gates are the same, the scenario is shorter.
    quick = str(inventory_with_gates(baseline, tmp_path / "quick.yml", lag_window_seconds=1))
    try:
        with WriterSampler(baseline) as sampler, \
                WriteLedger(baseline, table="ledger_stray") as ledger:
            in_site_switchover(baseline, DC1, new_primary)
            # dc2 keeps cascading from the old primary, now a replica: legal in PostgreSQL.
            wait_streams_from(baseline, standby_leader, old_primary)
            wait_until(lambda: baseline.sql(old_primary, "SELECT pg_is_in_recovery()") == [(True,)],
                       30, f"{old_primary.name} to be a replica")
            assert baseline.sql(new_primary, "SELECT active FROM pg_replication_slots WHERE "
                                "slot_name = %s", (DC2.slot,)) == [(False,)]

            code, found = findings(inventory)
            assert code == 0, found
            follows = found["target-follows-source-leader"]
            assert follows["verdict"] == "warn", follows
            assert old_primary.name in follows["finding"] and "replica" in follows["finding"]
            assert STEP in follows["fix"]
            assert found["slot-for-target"]["verdict"] == "warn", found["slot-for-target"]

            steps = planned_steps(inventory)
            ids = [s["id"] for s in steps]
            assert ids.index(STEP) < ids.index("wait-cascade") < ids.index("demote-source")
            repoint = steps[ids.index(STEP)]
            assert repoint["args"]["standby_cluster"] == {
                "host": ",".join(m.host for m in DC1.members), "port": 5432}
            assert repoint["undo"]["kind"] == "restore_standby_cluster"

            # A run that fails at the cascade gate (a window longer than its timeout, no early pass
            # on evidence) undoes the re-point: dc2's standby_cluster is exactly as the operator left it.
            short = inventory_with_gates(baseline, tmp_path / "short.yml",
                                         lag_window_seconds=30, lag_evidence=False, cascade_timeout_seconds=3)
            out = migrate("execute", "-i", str(short), "--dc", "dc2", "--yes",
                          "--state-dir", str(tmp_path / "undo"))
            assert out.returncode == 3, explain(out)
            assert out.stderr.count("\n") == 1 and STEP in out.stderr, explain(out)
            assert "dc1 is still primary, nothing lost" in out.stderr
            assert baseline.get_config(DC2)["standby_cluster"]["host"] == old_primary.host
            assert_primary_site(baseline, DC1)

            # The real run is killed right after the promotion was sent, then resumed: the done
            # re-point must still hold although dc2 has no standby_cluster any more.
            proc = subprocess.Popen([*MIGRATE, "execute", "-i", quick, "--dc", "dc2", "--yes",
                                     "--state-dir", str(state)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            try:
                wait_until(lambda: any(r["event"] == "step-applied" and r["step"] == "promote-target"
                                       for r in journal_records(state)), 120,
                           "the promotion to be sent", interval=0.005)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            out = migrate("execute", "-i", quick, "--dc", "dc2", "--resume", "--yes",
                          "--state-dir", str(state))
            assert out.returncode == 0, explain(out)  # exit 4 if the done re-point did not hold
            started = [r for r in journal_records(state)
                       if r["event"] == "step-started" and r["step"] == STEP]
            assert len(started) == 1, "the re-point ran again on resume"
            assert "dc2 is primary; dc1 follows it" in out.stdout
            assert_primary_site(baseline, DC2)
            done = [r for r in journal_records(state)
                    if r["event"] == "step-done" and r["step"] == STEP]
            assert len(done) == 1 and new_primary.name in done[0]["facts"]["follows"], done

            out = migrate("rollback", "-i", quick, "--yes", "--state-dir", str(state))
            assert out.returncode == 0, explain(out)
            assert_primary_site(baseline, DC1)

            # The other shape: the move back gave dc2 a host list of every dc1 member. Now the
            # in-site switchover that trapped the single address is harmless: Patroni adds
            # target_session_attrs=read-write and dc2 re-attaches to dc1's new primary by itself.
            assert baseline.get_config(DC2)["standby_cluster"]["host"] == ",".join(
                m.host for m in DC1.members)
            leader_now = member_with_role(baseline, DC1, "primary")
            other = next(m for m in DC1.members if m != leader_now)
            standby_leader = member_with_role(baseline, DC2, "standby_leader")
            in_site_switchover(baseline, DC1, other)
            seconds = wait_streams_from(baseline, standby_leader, other, timeout=60)
            print(f"\nhost list: {standby_leader.name} streams from {other.name} {seconds:.1f}s "
                  "after the in-site switchover ended")
            assert receiver(baseline, standby_leader)[2] == DC2.slot
            wait_until(lambda: findings(inventory)[1]["target-follows-source-leader"]["verdict"]
                       == "ok", 30, "target-follows-source-leader ok", interval=1)
            code, found = findings(inventory)
            slot = found["slot-for-target"]
            assert code == 0 and slot["verdict"] == "ok", slot
            assert STEP not in [s["id"] for s in planned_steps(inventory)]
        assert sampler.violations == []
        assert_no_acknowledged_commit_lost(baseline, ledger)
        assert ledger.max_gap_seconds < 5, ledger.summary()
    finally:
        # Leave dc1-a leading dc1 as the other scenarios expect; `baseline` resets the configs.
        in_site_switchover(baseline, DC1, old_primary)
