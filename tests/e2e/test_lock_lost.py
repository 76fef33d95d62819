"""The migration lock vanishes under a running `migrate execute` (issue 10, item 6), on the real
testbed, under a write ledger and a two-writer sampler.

The lock is a key with a lease in dc1's etcd. Its keep-alive checks every refresh, so a lease that
was revoked, or that expired because its etcd was down for longer than the TTL, is noticed within
one TTL. During the cascade gate (before the demotion) that stops the run: what it changed is
undone, exit 3, one stderr line naming the lock, dc1 stays (or becomes again) the primary, 0 lost.
The lock's TTL is the inventory gate `lock_ttl_seconds`, 5 s here to keep the tests short; the
cascade gate's lag window is long, so the fault surely lands inside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from datetime import datetime

import pytest

from tests.helpers.faults import (
    GATES, Run, ensure_etcd_running, events, inventory_with_gates, member_with_role, one_line, replay_frozen,
    start_etcd_again, stop_etcd,
)
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.e2e.test_execute import MIGRATE, assert_primary_site, explain, migrate, writable
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
LOCK_KEY = "/migrator/demo/lock"
LOCK_TTL = 5
# The cascade gate outlasts every fault below: the run can only end early because of the lock.
LONG_CASCADE = {**GATES, "lag_window_seconds": 120, "lag_evidence": "false", "cascade_timeout_seconds": 240,
                "lock_ttl_seconds": LOCK_TTL}


def etcdctl(*args: str) -> subprocess.CompletedProcess:
    """Debian's etcd-client against dc1's etcd, where the lock lives."""
    return subprocess.run(["etcdctl", "--endpoints", DC1.etcd_url, "--command-timeout=5s", *args],
                          capture_output=True, text=True, timeout=15,
                          env={**os.environ, "ETCDCTL_API": "3"})


def lock_holder() -> dict:
    out = etcdctl("get", LOCK_KEY, "--print-value-only")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def dynamic_configs(testbed) -> dict[str, dict]:
    return {site.name: testbed.get_config(site) for site in (DC1, DC2)}


def lock_lost_record(run: Run) -> dict:
    return next(r for r in run.records() if r["event"] == "lock-lost")


def assert_stopped_for_the_lock(run: Run, out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 3, explain(out)
    line = one_line(out.stderr)
    assert "the migration lock was lost" in line and LOCK_KEY in line and "dc1's etcd" in line, line
    assert "before dc1 was demoted" in line, line
    assert ("step-started", "demote-source") not in events(run)  # no demotion was ever sent
    assert lock_lost_record(run)["stopped"] is True
    report = run.state / "demo" / f"report-{run.records()[0]['migration']}.md"
    assert "LOCK LOST" in report.read_text(), report.read_text()
    return line


@pytest.mark.slow
def test_lock_lease_revoked_during_the_cascade_gate_stops_and_undoes(baseline, tmp_path):
    """(a) `etcdctl lease revoke` of the lock's lease while `wait-cascade` waits: the run stops
    within one TTL with exit 3, dc1 is still primary, both dynamic configs are as before, nothing
    is lost, and the next `execute` takes the lock again."""
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", **LONG_CASCADE)
    state = tmp_path / "state"
    configs_before = dynamic_configs(baseline)
    with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_lock_revoked") as ledger:
        run = Run(state, "execute", "-i", inventory, "--dc", "dc2", "--yes")
        run.wait_for("step-started", "wait-cascade")
        time.sleep(2)  # a keep-alive or two inside the gate first
        holder = lock_holder()
        assert holder.get("run_id") and holder.get("boot_id") and holder.get("pid_ns"), holder
        revoked = etcdctl("lease", "revoke", format(holder["lease"], "x"))
        assert revoked.returncode == 0, revoked.stderr
        revoked_at = time.time()
        out = run.finish(timeout=120)
        line = assert_stopped_for_the_lock(run, out)
        assert "no longer exists" in line or "key was deleted" in line, line
        noticed = lock_lost_record(run)["ts"]
        noticed_after = datetime.fromisoformat(noticed).timestamp() - revoked_at
        assert noticed_after < LOCK_TTL, f"the lost lease was noticed {noticed_after:.1f}s after the revoke"
        assert "dc1 is still primary" in line, line
        assert_primary_site(baseline, DC1)
        assert dynamic_configs(baseline) == configs_before
        # The lock is free again: the next run takes it (and stops after the preflight phase).
        again = migrate("execute", "-i", inventory, "--dc", "dc2", "--until", "preflight", "--yes",
                        "--state-dir", str(state))
        assert again.returncode == 0, explain(again)
    print(f"lock lease revoked: noticed after {noticed_after:.2f}s; {ledger.summary()}\n{line}")
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)


@pytest.mark.slow
def test_lock_etcd_down_longer_than_the_ttl_stops_before_the_demotion(baseline, tmp_path):
    """(b) dc1's etcd (where the lock lives) stopped during the cascade gate for longer than the
    TTL: no keep-alive succeeds, so the run stops with exit 3 naming the lost lock and never sends
    the demotion; once etcd is back, dc1 is primary again (Patroni kept it read-only meanwhile,
    failsafe_mode off) and nothing is lost."""
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", **LONG_CASCADE)
    state = tmp_path / "state"
    try:
        with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_lock_etcd") as ledger:
            run = Run(state, "execute", "-i", inventory, "--dc", "dc2", "--yes")
            run.wait_for("step-started", "wait-cascade")
            time.sleep(2)
            stop_etcd(baseline, DC1)
            stopped_at = time.monotonic()
            out = run.finish(timeout=180)
            ended_after = time.monotonic() - stopped_at
            line = assert_stopped_for_the_lock(run, out)
            assert "no keep-alive succeeded" in line, line
            time.sleep(max(0.0, LOCK_TTL + 1 - (time.monotonic() - stopped_at)))  # down longer than the TTL
            down_for = time.monotonic() - stopped_at
            start_etcd_again(baseline, DC1)
            assert_primary_site(baseline, DC1)
            assert [w[:3] for w in writable(baseline)] == ["dc1"]
    finally:
        ensure_etcd_running(baseline)
    print(f"lock etcd down {down_for:.1f}s: run ended {ended_after:.1f}s after the stop; {ledger.summary()}\n{line}")
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)


@pytest.mark.slow
def test_lock_lost_after_the_demotion_finishes_the_cut_over_and_says_so(baseline, tmp_path):
    """(c) The lease revoked while the catch-up gate waits (dc2's replay held back for a few
    seconds, so the revoke surely lands there): the demotion was sent, so the run does not stop
    for the lock; it promotes dc2, exits 0, and its outcome and Markdown report say the lock was
    lost. `migrate rollback` takes the lock again and moves back."""
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", **{**GATES, "lock_ttl_seconds": LOCK_TTL})
    state = tmp_path / "state"
    with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_lock_late") as ledger:
        target_leader = member_with_role(baseline, DC2, "standby_leader")
        run = Run(state, "execute", "-i", inventory, "--dc", "dc2", "--yes")
        run.wait_for("step-started", "demote-source")
        with replay_frozen(baseline, target_leader):
            run.wait_for("step-started", "catch-up")
            revoked = etcdctl("lease", "revoke", format(lock_holder()["lease"], "x"))
            assert revoked.returncode == 0, revoked.stderr
            run.wait_for("lock-lost", timeout=LOCK_TTL + 2)
        out = run.finish(timeout=180)
        assert out.returncode == 0, explain(out)
        assert "dc2 is primary; dc1 follows it" in out.stdout, out.stdout
        assert "the migration lock was lost during the run" in out.stdout and LOCK_KEY in out.stdout, out.stdout
        assert lock_lost_record(run)["stopped"] is False
        report = run.state / "demo" / f"report-{run.records()[0]['migration']}.md"
        assert "LOCK LOST" in report.read_text() and "the run went on" in report.read_text()
        assert_primary_site(baseline, DC2)
        back = migrate("rollback", "-i", inventory, "--yes", "--state-dir", str(state))
        assert back.returncode == 0, explain(back)
        assert "lock was lost" not in back.stdout  # the rollback held its own lock throughout
        assert_primary_site(baseline, DC1)
    print(f"lock lost after the demotion: {ledger.summary()}")
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)


def test_a_failover_refuses_while_a_planned_move_holds_the_lock_in_the_first_sites_etcd(baseline, tmp_path):
    # A failover takes its lock in the target's etcd (the failing source's may be gone) and, when
    # the first site's etcd answers, the lock `execute` and `rollback` hold there too: with a
    # planned move running (a holder on another machine, so no take-over), it exits 5 before
    # anything is observed or fenced.
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", **GATES)
    before = dynamic_configs(baseline)
    lease = etcdctl("lease", "grant", "60")
    assert lease.returncode == 0, lease.stderr
    lease_id = lease.stdout.split()[1]
    holder = {"host": "other-laptop", "pid": 4242, "user": "dba", "since": "2026-12-05T03:00:00.000Z",
              "run_id": "f" * 32, "lease": int(lease_id, 16)}
    put = etcdctl("put", f"--lease={lease_id}", LOCK_KEY, json.dumps(holder))
    assert put.returncode == 0, put.stderr
    try:
        out = subprocess.run([*MIGRATE, "failover", "-i", str(inventory), "--dc", "dc2", "--yes",
                              "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=120)
    finally:
        etcdctl("lease", "revoke", lease_id)
    assert out.returncode == 5, explain(out)
    line = one_line(out.stderr)
    assert "already running" in line and "dba@other-laptop pid 4242" in line, line
    assert_primary_site(baseline, DC1)
    assert dynamic_configs(baseline) == before  # nothing fenced, nothing promoted
    # and the lock in dc2's etcd was given back: a later run is not blocked by this one
    dc2_lock = subprocess.run(["etcdctl", "--endpoints", DC2.etcd_url, "--command-timeout=5s", "get", LOCK_KEY,
                               "--print-value-only"], capture_output=True, text=True, timeout=15,
                              env={**os.environ, "ETCDCTL_API": "3"})
    assert dc2_lock.returncode == 0 and not dc2_lock.stdout.strip(), dc2_lock.stdout
