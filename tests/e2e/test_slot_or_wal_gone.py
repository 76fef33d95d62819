"""Field fault: the target's slot removed on the source while the target is down, and the WAL it
needs recycled. `migrate check` names the cause instead of "healthy" and, like `migrate plan`,
proposes re-seeding the target (the same plan, exit 0 from both), and executing that plan brings
the target back, nothing lost."""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers.ledger import WriteLedger, assert_no_acknowledged_commit_lost
from tests.e2e.test_execute import explain, journal_records, migrate
from tests.testbed import SITE_BY_NAME, wait_until
from tests.testbed.patroni_config import member_dir

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]


def _primary(testbed):
    return next(m for m in DC1.members if testbed.patroni_state(m).get("role") == "primary")


def _oldest_wal_start(testbed, member) -> int:
    return testbed.sql(member, """
        SELECT (('x' || substr(n, 1, 8))::bit(32)::bigint << 32)
               + ('x' || substr(n, 9, 8))::bit(32)::bigint * pg_size_bytes(current_setting('wal_segment_size'))
          FROM (SELECT min(substr(name, 9, 16)) AS n FROM pg_ls_waldir()
                 WHERE name ~ '^[0-9A-F]{24}$') w""")[0][0]


@pytest.mark.slow
def test_slot_removed_and_wal_recycled_while_the_target_is_down_is_named_and_reseeded(baseline, tmp_path):
    testbed, inventory, state = baseline, str(baseline.inventory_path), tmp_path / "state"
    leader = next(m for m in DC2.members if testbed.patroni_state(m)["role"] == "standby_leader")
    position = testbed.sql(leader, "SELECT (pg_last_wal_receive_lsn() - '0/0')::bigint")[0][0]
    # dc2 goes down (its replica first, then its standby leader).
    for member in sorted(DC2.members, key=lambda m: m is leader):
        testbed.stop_patroni(member)
    # Someone removes dc2's slot from dc1 and keeps little WAL. Patroni recreates a permanent slot
    # from the dynamic config, so it goes from there (Patroni then drops it from PostgreSQL).
    testbed.patch_config(DC1, {"slots": {"dc2": None},
                               "postgresql": {"parameters": {"wal_keep_size": "16MB"}}})
    primary = _primary(testbed)
    wait_until(lambda: not testbed.sql(primary, "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'dc2'"),
               30, "slot dc2 dropped on dc1")
    wait_until(lambda: testbed.sql(primary, "SHOW wal_keep_size") == [("16MB",)], 30, "wal_keep_size reloaded")
    # Enough writes and checkpoints that the segment dc2 needs next is recycled.
    testbed.sql(primary, "CREATE TABLE IF NOT EXISTS wal_churn (pad text)")

    def churned() -> bool:
        for _ in range(4):
            testbed.sql(primary, "INSERT INTO wal_churn SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
            testbed.sql(primary, "SELECT pg_switch_wal()")
        testbed.sql(primary, "CHECKPOINT")
        return _oldest_wal_start(testbed, primary) > position

    wait_until(churned, 120, "dc1 to recycle the WAL dc2 needs", interval=0)

    # check and plan decide alike: the same re-seed proposed (the same plan, by fingerprint), the
    # same exit code, and check still names the causes.
    check = migrate("check", "-i", inventory, "--dc", "dc2", "--json")
    plan = migrate("plan", "-i", inventory, "--dc", "dc2", "--format", "json")
    assert check.returncode == plan.returncode == 0, explain(check) + explain(plan)
    checked = json.loads(check.stdout)
    assert checked["blocking"] == 0 and checked["plan"]["proposal"] == "reseed", checked["plan"]
    why = {f["check"]: f for f in checked["findings"]}["reseed-target"]
    assert why["verdict"] == "warn", why
    assert "slot dc2 missing on dc1" in why["finding"], why
    assert "WAL needed from LSN" in why["finding"] and "no longer on dc1" in why["finding"], why
    assert "this plan re-seeds dc2" in why["fix"], why
    planned = json.loads(plan.stdout)
    steps = [s["id"] for s in planned["steps"]]
    assert steps[:3] == ["wipe-target", "seed-preflight", "slot-for-target-on-source"], steps
    assert "start-target-leader" in steps and "demote-source" not in steps
    assert any(f["check"] == "reseed-target" for f in planned["findings"])
    assert checked["plan"]["fingerprint"] == planned["fingerprint"]
    assert checked["plan"]["steps"] == steps
    as_text = migrate("check", "-i", inventory, "--dc", "dc2")
    assert as_text.returncode == 0, explain(as_text)
    assert f"plan: re-seed of dc2 from dc1 (executable, {len(steps)} steps)" in as_text.stdout

    with WriteLedger(testbed, table="ledger_reseed") as ledger:
        out = migrate("execute", "-i", inventory, "--dc", "dc2", "--until", "cascade", "--yes",
                      "--state-dir", str(state), timeout=600)
        assert out.returncode == 0, explain(out)
        time.sleep(1)
    assert_no_acknowledged_commit_lost(testbed, ledger)
    applied = [r["step"] for r in journal_records(state) if r["event"] == "step-applied"]
    assert applied[:2] == ["wipe-target", "slot-for-target-on-source"], applied
    # The old data directories were moved aside, not deleted.
    for member in DC2.members:
        assert list(member_dir(testbed.base, member).glob("data.migrator-aside-*")), member.name
    assert testbed.patroni_state(DC2.members[0])["role"] == "standby_leader"
    assert testbed.sql(DC2.members[1], "SELECT status, sender_host FROM pg_stat_wal_receiver") == \
        [("streaming", DC2.members[0].host)]
    again = migrate("check", "-i", inventory, "--dc", "dc2", "--json")
    after = {f["check"]: f["verdict"] for f in json.loads(again.stdout)["findings"]}
    assert after["slot-for-target"] == "ok" and after["target-wal-available"] == "ok", after
    testbed.sql(_primary(testbed), "DROP TABLE wal_churn")
