"""`migrate reattach --dc dc1` after a failover done by hand (dc1 stopped, dc2 promoted by removing
its standby_cluster through PATCH /config, writes on dc2), on the real testbed: dc1 comes back as a
standby cluster of dc2 and is never writable on the way, a member that took commits after the fork
is rewound with its diverged range in the report, a run killed at a step boundary finishes with
`--resume`, and `migrate execute --dc dc1` then moves the primary back with nothing lost."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from tests.e2e.test_execute import MIGRATE, assert_primary_site, explain, journal_records, migrate, writable
from tests.helpers.faults import start_etcd_again, stop_etcd
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.testbed import SITE_BY_NAME, wait_until
from tests.testbed.patroni_config import member_dir

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]


def _role(testbed, member) -> str | None:
    try:
        return testbed.patroni_state(member).get("role")
    except Exception:  # noqa: BLE001 - a stopped member has no role
        return None


def _stop_dc1(testbed) -> None:
    """A clean stop (Patroni's fast shutdown): the replica first, so that it cannot take over."""
    primary = next(m for m in DC1.members if _role(testbed, m) == "primary")
    for member in [m for m in DC1.members if m is not primary] + [primary]:
        testbed.stop_patroni(member)
    assert writable(testbed, DC1.members) == []


def _promote_dc2_by_hand(testbed, member=None):
    """What a DBA does: standby_cluster removed from dc2's dynamic config."""
    testbed.patch_config(DC2, {"standby_cluster": None}, member=member)
    new = wait_until(lambda: next((m for m in DC2.members if _role(testbed, m) == "primary"), None), 60,
                     "dc2's primary")
    wait_until(lambda: writable(testbed, [new]) == [new.name], 30, "dc2's primary writable")
    return new


class Dc1Writers:
    """Polls every dc1 member (pg_is_in_recovery) while a command runs: any answer `false` is a
    moment dc1 was writable."""

    def __init__(self, testbed):
        self.testbed, self.seen, self.samples = testbed, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            found = writable(self.testbed, DC1.members)
            self.samples += 1
            if found:
                self.seen.append(found)
            self._stop.wait(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)


def assert_dc1_streams_from_dc2(testbed) -> None:
    roles = {m.name: _role(testbed, m) for m in DC1.members}
    assert sorted(roles.values()) == ["replica", "standby_leader"], roles
    leader = next(m for m in DC1.members if roles[m.name] == "standby_leader")
    status, slot, sender = testbed.sql(leader, "SELECT status, slot_name, sender_host FROM pg_stat_wal_receiver")[0]
    assert (status, slot) == ("streaming", "dc1") and sender in {m.host for m in DC2.members}, (status, slot, sender)
    assert testbed.get_config(DC1)["standby_cluster"]["host"] == ",".join(m.host for m in DC2.members)


def _plan_json(inventory: str) -> dict:
    out = migrate("plan", "-i", inventory, "--reattach", "--dc", "dc1", "--format", "json")
    assert out.returncode == 0, explain(out)
    return json.loads(out.stdout)


def test_reattach_refuses_while_dc2_is_still_a_standby_cluster(baseline, tmp_path):
    out = migrate("reattach", "-i", str(baseline.inventory_path), "--dc", "dc1", "--yes",
                  "--state-dir", str(tmp_path / "state"))
    assert out.returncode == 1, explain(out)
    line = out.stderr.strip().splitlines()[-1]
    assert "dc2 is not a writable primary site" in line and "migrate failover --dc dc2" in line, line
    assert "Traceback" not in out.stderr
    assert_primary_site(baseline, DC1)  # nothing changed


@pytest.mark.slow
def test_reattach_after_a_hand_failover_then_execute_back_loses_no_commit(baseline, tmp_path):
    testbed, inventory, state = baseline, str(baseline.inventory_path), str(tmp_path / "state")
    with WriterSampler(testbed) as sampler, WriteLedger(testbed, table="ledger_reattach") as ledger:
        time.sleep(1)
        _stop_dc1(testbed)
        # What `migrate failover`'s fence leaves beside each fenced member's patroni.yml.
        markers = [member_dir(testbed.base, m) / "MIGRATOR-FENCED" for m in DC1.members]
        for marker in markers:
            marker.write_text("fenced by migrate failover\n")
        stop_etcd(testbed, DC1)  # the whole site down
        _promote_dc2_by_hand(testbed)
        acked = len(ledger.acknowledged)
        wait_until(lambda: len(ledger.acknowledged) > acked + 50, 60, "commits on dc2")
        start_etcd_again(testbed, DC1)  # dc1's etcd and hosts back, its Patroni not started

        plan = _plan_json(inventory)
        assert plan["playbook"] == "reattach" and plan["executable"], plan["findings"]
        verdicts = {f["members"][0]: f["check"] for f in plan["findings"] if f["members"]}
        assert verdicts == {"dc1-a": "reattach-member", "dc1-b": "reattach-member"}, plan["findings"]

        with Dc1Writers(testbed) as dc1_writers:
            out = migrate("reattach", "-i", inventory, "--dc", "dc1", "--yes", "--state-dir", state)
        assert out.returncode == 0, explain(out)
        assert dc1_writers.samples > 10 and dc1_writers.seen == [], dc1_writers.seen
        assert_dc1_streams_from_dc2(testbed)
        assert "dc1 is a standby cluster of dc2" in out.stdout
        assert [m for m in markers if m.exists()] == []  # streaming as a standby: no longer fenced

        out = migrate("execute", "-i", inventory, "--dc", "dc1", "--yes", "--state-dir", state)
        assert out.returncode == 0, explain(out)
        assert_primary_site(testbed, DC1)
        time.sleep(1)
    assert_no_acknowledged_commit_lost(testbed, ledger)
    assert sampler.violations == []


@pytest.mark.slow
def test_a_diverged_member_is_rewound_with_its_range_reported_and_a_killed_run_resumes(baseline, tmp_path):
    testbed, inventory, state = baseline, str(baseline.inventory_path), tmp_path / "state"
    primary = next(m for m in DC1.members if _role(testbed, m) == "primary")
    testbed.sql(primary, "DROP TABLE IF EXISTS reattach_fork")
    testbed.sql(primary, "CREATE TABLE reattach_fork (id int PRIMARY KEY)")
    testbed.sql(primary, "INSERT INTO reattach_fork VALUES (1)")
    leader2 = next(m for m in DC2.members if _role(testbed, m) == "standby_leader")
    wait_until(lambda: testbed.sql(leader2, "SELECT count(*) FROM reattach_fork")[0][0] == 1, 30, "row 1 on dc2")
    # dc2 cut off (stopped), then commits only dc1 has, then dc1 down and dc2 promoted by hand.
    for member in DC2.members:
        testbed.stop_patroni(member)
    for i in range(100, 300):
        testbed.sql(primary, "INSERT INTO reattach_fork VALUES (%s)", (i,))
    _stop_dc1(testbed)
    testbed.start_patroni(leader2)
    wait_until(lambda: _role(testbed, leader2) == "standby_leader", 60, "dc2's standby leader back")
    new = _promote_dc2_by_hand(testbed, member=leader2)
    for member in DC2.members:
        if member is not leader2:
            testbed.start_patroni(member)
    testbed.sql(new, "INSERT INTO reattach_fork VALUES (2)")

    plan = _plan_json(inventory)
    diverged = [f for f in plan["findings"] if f["check"] == "reattach-diverged"]
    assert {f["members"][0] for f in diverged} >= {primary.name}, plan["findings"]
    fork = next(s for s in plan["steps"] if s["id"] == "rewind-diverged")["args"]["members"][0]
    assert fork["action"] == "rewind" and fork["diverged_bytes"] > 0, fork
    expected_range = fork["diverged_range"]

    # The primary is rewound, the replica re-cloned on request (its data moved aside). Killed right
    # after both, before the journal says so: --resume must neither rewind nor move again.
    replica = next(m for m in DC1.members if m is not primary)
    aside_before = set(member_dir(testbed.base, replica).glob("data.migrator-aside-*"))
    crash = subprocess.run([*MIGRATE, "reattach", "-i", inventory, "--dc", "dc1", "--reclone", replica.name,
                            "--yes", "--state-dir", str(state)],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "MIGRATOR_TEST_CRASH_AT": "after-patch:rewind-diverged"})
    assert crash.returncode == 137, explain(crash)
    assert all(_role(testbed, m) is None for m in DC1.members)  # nothing of dc1 started
    assert testbed.get_config(DC2).get("standby_cluster") is None
    with Dc1Writers(testbed) as dc1_writers:
        out = migrate("reattach", "-i", inventory, "--dc", "dc1", "--resume", "--yes", "--state-dir", str(state))
    assert out.returncode == 0, explain(out)
    assert dc1_writers.seen == [], dc1_writers.seen
    assert_dc1_streams_from_dc2(testbed)

    records = journal_records(state)
    runs = [r for r in records if r["event"] == "run-started"]
    assert [r["resume"] for r in runs] == [False, True]
    in_place = [r["step"] for r in records if r["event"] == "step-in-place"]
    applied = [r["step"] for r in records if r["event"] == "step-applied"]
    assert "rewind-diverged" in in_place and "rewind-diverged" not in applied, (in_place, applied)
    assert applied.count("standby-cluster-in-old-dcs") == 1, applied
    report = next(state.glob("demo/report-*.md")).read_text()
    assert f"{primary.name} diverged: WAL {expected_range} never reached the new primary; rewound" in report, report
    assert f"{replica.name} diverged: WAL " in report and "re-cloned (its old data moved aside)" in report, report
    aside = list(set(member_dir(testbed.base, replica).glob("data.migrator-aside-*")) - aside_before)
    assert len(aside) == 1 and (aside[0] / "global" / "pg_control").is_file(), aside  # never deleted
    # dc1 holds dc2's history now: the rows only dc1 had are gone from it, dc2's row is there.
    for member in DC1.members:
        wait_until(lambda m=member: testbed.sql(m, "SELECT count(*) FROM reattach_fork WHERE id = 2")[0][0] == 1,
                   30, f"dc2's row on {member.name}")
        assert testbed.sql(member, "SELECT count(*) FROM reattach_fork WHERE id >= 100")[0][0] == 0

    out = migrate("execute", "-i", inventory, "--dc", "dc1", "--yes", "--state-dir", str(state))
    assert out.returncode == 0, explain(out)
    assert_primary_site(testbed, DC1)


@pytest.mark.slow
def test_every_member_recloned_bootstraps_a_standby_leader_from_dc2_and_keeps_the_old_data(baseline, tmp_path):
    """No dc1 member keeps its data: the initialize key goes, the first member clones dc2 and becomes
    the standby leader under dc1's standby_cluster, never writable; both old directories stay aside."""
    testbed, inventory, state = baseline, str(baseline.inventory_path), str(tmp_path / "state")
    before = {m.name: set(member_dir(testbed.base, m).glob("data.migrator-aside-*")) for m in DC1.members}
    _stop_dc1(testbed)
    _promote_dc2_by_hand(testbed)
    with Dc1Writers(testbed) as dc1_writers:
        out = migrate("reattach", "-i", inventory, "--dc", "dc1", "--reclone", "dc1-a", "--reclone", "dc1-b",
                      "--yes", "--state-dir", state)
    assert out.returncode == 0, explain(out)
    assert dc1_writers.samples > 10 and dc1_writers.seen == [], dc1_writers.seen
    assert_dc1_streams_from_dc2(testbed)
    assert "dc1-a re-cloned on request (its old data moved aside)" in " ".join(out.stdout.split())
    for member in DC1.members:
        new = set(member_dir(testbed.base, member).glob("data.migrator-aside-*")) - before[member.name]
        assert len(new) == 1 and (new.pop() / "global" / "pg_control").is_file(), member.name
    out = migrate("execute", "-i", inventory, "--dc", "dc1", "--yes", "--state-dir", state)
    assert out.returncode == 0, explain(out)
    assert_primary_site(testbed, DC1)
