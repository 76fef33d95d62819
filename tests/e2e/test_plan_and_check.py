"""`migrate check`, `plan` and `status` against the real testbed: a healthy testbed passes, and
each thing a DBA breaks by hand is named by the exact check that blocks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.faults import inventory_with_gates
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]


def migrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrator.cli", *args], capture_output=True, text=True,
                          timeout=120)


def check_findings(testbed) -> tuple[int, dict[str, dict]]:
    out = migrate("check", "--inventory", str(testbed.inventory_path), "--json")
    assert "Traceback" not in out.stderr
    findings = json.loads(out.stdout)["findings"]
    return out.returncode, {f["check"]: f for f in findings}


def assert_blocks(testbed, check_id: str, *words: str) -> dict:
    code, findings = check_findings(testbed)
    finding = findings[check_id]
    assert finding["verdict"] == "block", finding
    for word in words:
        assert word in finding["finding"], finding
    assert code == 1
    return finding


def test_healthy_testbed_passes_every_check_and_plans_dc1_to_dc2(baseline):
    code, findings = check_findings(baseline)
    assert code == 0, [f for f in findings.values() if f["verdict"] == "block"]
    assert not [f for f in findings.values() if f["verdict"] == "block"]

    out = migrate("plan", "--inventory", str(baseline.inventory_path), "--dc", "dc2", "--format", "json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert (plan["source"], plan["target"]) == ("dc1", "dc2")
    assert plan["executable"] is True
    # The topology in the plan is the real one.
    primary = next(m for m in DC1.members if baseline.patroni_state(m)["role"] == "primary")
    standby_leader = next(m for m in DC2.members if baseline.patroni_state(m)["role"] == "standby_leader")
    plan_text = json.dumps(plan["topology_before"])
    assert primary.name in plan_text and standby_leader.name in plan_text
    phases = [step["phase"] for step in plan["steps"]]
    for phase in ("pre-seed", "cascade", "demote", "token", "catch-up", "promote", "repoint", "verify"):
        assert phase in phases
    assert len(plan["fingerprint"]) == 64


def test_plan_to_the_site_that_is_already_primary_has_no_steps(baseline):
    out = migrate("plan", "--inventory", str(baseline.inventory_path), "--dc", "dc1", "--format", "json")
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["steps"] == [] and plan["noop_reason"]


def test_reports_never_contain_a_password(baseline, tmp_path):
    secrets = list(baseline.passwords().values())
    outputs = []
    for fmt in ("text", "md", "json"):
        target = tmp_path / f"plan.{fmt}"
        out = migrate("plan", "--inventory", str(baseline.inventory_path), "--dc", "dc2", "--format", fmt,
                      "--out", str(target))
        assert out.returncode == 0, out.stderr
        outputs += [target.read_text(), out.stdout, out.stderr]
    outputs.append(migrate("check", "--inventory", str(baseline.inventory_path), "--json").stdout)
    outputs.append(migrate("status", "--inventory", str(baseline.inventory_path)).stdout)
    for text in outputs:
        for secret in secrets:
            assert secret not in text


def test_dropping_dc1_slot_for_dc2_blocks(baseline):
    # What a DBA does by mistake: take the slot out of the dynamic config, then drop it. Patroni
    # keeps an active slot, so the walsender is terminated first.
    baseline.patch_config(DC1, {"slots": {DC2.slot: None}})
    primary = next(m for m in DC1.members if baseline.patroni_state(m)["role"] == "primary")

    def dropped() -> bool:
        baseline.sql(primary, "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                              "WHERE slot_name = %s AND active_pid IS NOT NULL", (DC2.slot,))
        baseline.sql(primary, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                              "WHERE slot_name = %s AND NOT active", (DC2.slot,))
        return not baseline.sql(primary, "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s",
                                (DC2.slot,))

    wait_until(dropped, 20, f"slot {DC2.slot} dropped on {primary.name}", interval=0.05)
    finding = assert_blocks(baseline, "slot-for-target", DC2.slot, "dc1")
    assert "missing" in finding["finding"]


def test_dc2_following_a_dc1_replica_warns_and_the_plan_repoints_it(baseline):
    replica = next(m for m in DC1.members if baseline.patroni_state(m)["role"] == "replica")
    baseline.patch_config(DC2, {"standby_cluster": {"host": replica.host}})
    standby_leader = next(m for m in DC2.members if baseline.patroni_state(m)["role"] == "standby_leader")
    wait_until(lambda: baseline.sql(standby_leader, "SELECT sender_host FROM pg_stat_wal_receiver WHERE "
                                    "status = 'streaming'") == [(replica.host,)], 40,
               f"{standby_leader.name} to stream from {replica.name}")
    # Cascading from a replica works; the plan re-points dc2 first (test_standby_follows_replica).
    code, findings = check_findings(baseline)
    finding = findings["target-follows-source-leader"]
    assert finding["verdict"] == "warn" and replica.name in finding["finding"], finding
    assert code == 0


def test_paused_dc2_blocks(baseline):
    baseline.patch_config(DC2, {"pause": True})
    wait_until(lambda: all(baseline.patroni_state(m).get("pause") for m in DC2.members), 15, "dc2 paused")
    assert_blocks(baseline, "paused", "dc2")


def test_dc2_etcd_down_blocks(baseline):
    baseline.registry.stop(["etcd-dc2"], timeout=10)
    finding = assert_blocks(baseline, "dcs-quorum", "dc2")
    assert DC2.etcd_host in finding["finding"]


def test_status_shows_both_sites(baseline):
    out = migrate("status", "--inventory", str(baseline.inventory_path))
    assert out.returncode == 0, out.stderr
    for member in DC1.members + DC2.members:
        assert member.name in out.stdout
    assert "standby_leader" in out.stdout and "primary (writable)" in out.stdout


def test_a_stale_reviewed_plan_exits_6_and_an_unsafe_until_exits_2_with_nothing_changed(baseline, tmp_path):
    """Exit codes a pipeline can act on: 6 "review again" for a reviewed plan that no longer
    matches (here: another lag gate than the one reviewed), 2 for `--until` inside the window."""
    reviewed = tmp_path / "plan.json"
    out = migrate("plan", "-i", str(baseline.inventory_path), "--dc", "dc2", "--format", "json",
                  "--out", str(reviewed))
    assert out.returncode == 0, out.stderr
    changed = inventory_with_gates(baseline, tmp_path / "inventory.yml", lag_window_seconds=2)
    configs = {site.name: baseline.get_config(site) for site in SITE_BY_NAME.values()}
    state = tmp_path / "state"
    stale = migrate("execute", "-i", changed, "--dc", "dc2", "--plan", str(reviewed), "--yes",
                    "--state-dir", str(state))
    assert stale.returncode == 6, stale.stderr
    assert stale.stderr.count("\n") == 1 and "no longer matches the sites" in stale.stderr, stale.stderr
    for phase in ("demote", "promote"):
        until = migrate("execute", "-i", str(baseline.inventory_path), "--dc", "dc2", "--until", phase,
                        "--yes", "--state-dir", str(state))
        assert until.returncode == 2, until.stderr
        assert f"--until {phase}: not a safe place to stop" in until.stderr and until.stderr.count("\n") == 1
    assert {site.name: baseline.get_config(site) for site in SITE_BY_NAME.values()} == configs
    assert not (state / "demo" / "journal.jsonl").exists()
