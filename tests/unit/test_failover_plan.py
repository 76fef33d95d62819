"""The failover plan, pure: facts (an observed snapshot of a failing source) in, fences, proof,
refusals and steps out. No network: the snapshots are the testbed's baseline with mutations."""

from __future__ import annotations

import json

import pytest

from migrator.errors import UsageError
from migrator.model.inventory import parse_inventory
from migrator.planning.failover import judge, plan_failover
from migrator.render.failover_report import render_failover
from tests.helpers.snapshots import (
    EXAMPLE_INVENTORY, example_inventory, load_baseline, unreachable, with_config, with_member, with_site,
)

DC1_DOWN = "etcd http://127.0.1.100:2379: connection refused"


def _etcd_down(state, site="dc1"):
    return with_site(state, site, dcs={"healthy": False, "error": DC1_DOWN})


def _shut_down(state, name, checkpoint, state_text="shut down"):
    return with_member(state, name, host_facts={"controldata": {
        "Database cluster state": state_text, "Latest checkpoint location": checkpoint,
        "Latest checkpoint's TimeLineID": "1"}})


def _replayed(state, name, lsn):
    return with_member(state, name, postgres={"replay_lsn": lsn})


def _inventory_with_fence_hook():
    text = EXAMPLE_INVENTORY.read_text().replace("gates:\n", "hooks:\n  fence: /usr/local/bin/stonith\ngates:\n", 1)
    return parse_inventory(text, source="x.yml", base_dir=EXAMPLE_INVENTORY.parent, check_local_files=False)


def test_every_source_member_answering_over_ssh_is_fenced_over_ssh_and_the_plan_is_executable():
    found = plan_failover(example_inventory(), _etcd_down(load_baseline()), "dc2")
    assert found.source == "dc1" and found.executable, found.blocked
    # The replica first: with the primary stopped last, no other member of dc1 can take over.
    assert [(f.member, f.method) for f in found.fences] == [("dc1-b", "ssh"), ("dc1-a", "ssh")]
    assert found.dcs["dc1"] == DC1_DOWN and found.dcs["dc2"] is None
    # Members still run: the token is read after the stop.
    assert found.proof.status == "after-fencing"
    # No graceful fence without the source's DCS; fences before the proof, the promotion last but one.
    kinds = [s.kind for s in found.plan.steps]
    assert kinds == ["fence_member", "fence_member", "prove_failover", "promote_failover", "verify_failover"]
    assert found.plan.playbook == "failover" and found.plan.fingerprint
    fence = found.plan.steps[1]
    assert fence.args["stop_command"].endswith("patroni-service stop dc1-a")
    assert fence.args["marker"].endswith("/dc1/dc1-a/MIGRATOR-FENCED")
    assert found.plan.steps[2].args["fences"] == ["fence-dc1-b", "fence-dc1-a"]
    assert found.plan.steps[2].args["member"] == "dc2-a"


def test_the_source_dcs_answering_adds_the_graceful_fence_first():
    found = plan_failover(example_inventory(), load_baseline(), "dc2")
    first = found.plan.steps[0]
    assert first.kind == "fence_source_config" and first.args["site"] == "dc1"
    assert first.args["standby_cluster"]["host"] == "127.0.2.1,127.0.2.2"
    assert first.args["standby_cluster"]["primary_slot_name"] == "dc1"


def test_an_unreachable_member_is_unfenced_and_refused_naming_it_and_the_fix():
    state = unreachable(_etcd_down(load_baseline()), "dc1-a", probes=("patroni", "postgres", "host"))
    found = plan_failover(example_inventory(), state, "dc2")
    assert not found.executable
    assert sorted((f.member, f.method) for f in found.fences) == [("dc1-a", "unfenced"), ("dc1-b", "ssh")]
    refusal = next(line for line in found.blocked if "dc1-a" in line)
    assert "--fenced dc1-a" in refusal and "hooks.fence" in refusal and "connection refused" in refusal


def test_fenced_by_the_operator_it_goes_on_and_the_proof_names_what_is_not_read():
    state = unreachable(_etcd_down(load_baseline()), "dc1-a", probes=("patroni", "postgres", "host"))
    state = _replayed(_shut_down(state, "dc1-b", "0/5000028", "shut down in recovery"), "dc2-a", 0x5000100)
    found = plan_failover(example_inventory(), state, "dc2", fenced=["dc1-a"])
    assert found.executable, found.blocked
    assert found.fences[0].member == "dc1-a" and found.fences[0].method == "operator"
    assert found.proof.status == "lossless" and found.proof.unread == ("dc1-a",)
    assert "not proven for dc1-a" in found.proof.summary


def test_a_fence_hook_fences_what_ssh_cannot_reach():
    state = unreachable(_etcd_down(load_baseline()), "dc1-a", probes=("patroni", "postgres", "host"))
    found = plan_failover(_inventory_with_fence_hook(), state, "dc2")
    assert found.executable, found.blocked
    assert found.fences[0].method == "hook"
    assert found.plan.steps[0].args["method"] == "hook"


def test_fenced_by_the_operator_but_writable_is_refused():
    found = plan_failover(example_inventory(), _etcd_down(load_baseline()), "dc2", fenced=["dc1-a"])
    assert any("--fenced dc1-a, but its PostgreSQL answers and takes writes" in line for line in found.blocked)


def test_fenced_names_no_source_member_is_bad_input():
    with pytest.raises(UsageError, match="--fenced dc2-a: not a member of dc1"):
        plan_failover(example_inventory(), load_baseline(), "dc2", fenced=["dc2-a"])


def test_a_target_whose_etcd_is_down_or_without_standby_leader_is_refused():
    found = plan_failover(example_inventory(), _etcd_down(load_baseline(), "dc2"), "dc2")
    assert any(line.startswith("dc2's etcd does not answer") for line in found.blocked)
    found = plan_failover(example_inventory(), with_member(load_baseline(), "dc2-a", patroni={"role": "replica"}), "dc2")
    assert any("dc2 has no standby leader answering" in line for line in found.blocked)


def test_a_target_that_is_no_standby_cluster_is_refused():
    state = with_config(load_baseline(), "dc2", {"standby_cluster": None})
    found = plan_failover(example_inventory(), state, "dc2")
    assert any("dc2 is not a standby cluster" in line for line in found.blocked)


def test_members_already_shut_down_give_the_final_proof_lossless():
    state = _shut_down(_shut_down(_etcd_down(load_baseline()), "dc1-a", "0/6000028"), "dc1-b", "0/5000028",
                       "shut down in recovery")
    found = plan_failover(example_inventory(), _replayed(state, "dc2-a", 0x6000100), "dc2")
    assert found.proof.status == "lossless" and found.proof.token == 0x6000028
    assert found.proof.token_member == "dc1-a" and found.executable


def test_a_gap_states_range_bytes_and_holders_and_needs_the_flag():
    state = _shut_down(_shut_down(_etcd_down(load_baseline()), "dc1-a", "0/6000028"), "dc1-b", "0/5000028",
                       "shut down in recovery")
    state = _replayed(state, "dc2-a", 0x5800000)
    found = plan_failover(example_inventory(), state, "dc2")
    proof = found.proof
    assert proof.status == "gap" and proof.gap_bytes == 0x6000028 - 0x5800000
    assert proof.holders == ("dc1-a",)
    assert "0/5800000 .. 0/6000028" in proof.summary and f"{0x800028} bytes" in proof.summary
    assert any("only with --accept-data-loss" in line for line in found.blocked)
    accepted = plan_failover(example_inventory(), state, "dc2", accept_data_loss=True)
    assert accepted.executable and accepted.plan.steps[-3].args["accept_data_loss"] is True


def test_no_readable_pg_control_is_unknown_and_needs_the_flag():
    state = unreachable(_etcd_down(load_baseline()), "dc1-a", "dc1-b", probes=("patroni", "postgres", "host"))
    found = plan_failover(example_inventory(), state, "dc2", fenced=["dc1-a", "dc1-b"])
    assert found.proof.status == "unknown"
    assert any("loss unknown" in line and "--accept-data-loss" in line for line in found.blocked)
    assert plan_failover(example_inventory(), state, "dc2", fenced=["dc1-a", "dc1-b"],
                         accept_data_loss=True).executable


@pytest.mark.parametrize(("checkpoints", "replayed", "status"), [
    ({"a": (100, 1), "b": (90, 1)}, 101, "lossless"),
    ({"a": (100, 1), "b": (90, 1)}, 100, "gap"),  # replayed must be past the checkpoint record
    ({"a": (None, None)}, 50, "unknown"),
    ({}, 50, "unknown"),
])
def test_judge(checkpoints, replayed, status):
    proof = judge(checkpoints, "t", replayed, ())
    assert proof.status == status
    if status == "gap":
        assert proof.gap_bytes == 0 and proof.holders == ("a",)


def test_the_plan_renders_in_every_format_with_fences_and_proof():
    state = unreachable(_etcd_down(load_baseline()), "dc1-a", probes=("patroni", "postgres", "host"))
    found = plan_failover(example_inventory(), state, "dc2")
    text = render_failover(found, "text")
    for needle in ("REFUSED", "dc1's etcd: NO", "dc1-a: UNFENCED", "dc1-b: SSH", "Proof", "promote-dc2"):
        assert needle in text, needle
    md = render_failover(found, "md")
    assert md.startswith("# Failover dc1 -> dc2") and "## Fence list" in md and "- dc1-a: UNFENCED" in md
    data = json.loads(render_failover(found, "json"))
    assert data["executable"] is False and data["fences"][0]["method"] == "unfenced"
    assert data["plan"]["playbook"] == "failover"
    runbook = render_failover(found, "runbook")
    assert "pg_ctl stop -D" in runbook and "standby_cluster=null" in runbook


def test_a_disable_command_is_run_per_member_and_shown_in_the_manual_steps():
    text = EXAMPLE_INVENTORY.read_text().replace(
        "      stop_command: /tmp/migrator-testbed/bin/patroni-service stop {member}\n",
        "      stop_command: /tmp/migrator-testbed/bin/patroni-service stop {member}\n"
        "      disable_command: sudo systemctl disable patroni@{member}\n")
    inventory = parse_inventory(text, source="x.yml", base_dir=EXAMPLE_INVENTORY.parent, check_local_files=False)
    found = plan_failover(inventory, _etcd_down(load_baseline()), "dc2")
    fence = next(s for s in found.plan.steps if s.id == "fence-dc1-a")
    assert fence.args["disable_command"] == "sudo systemctl disable patroni@dc1-a"
    assert any("sudo systemctl disable patroni@dc1-a" in line for line in fence.manual)
    plain = plan_failover(example_inventory(), _etcd_down(load_baseline()), "dc2")
    assert next(s for s in plain.plan.steps if s.id == "fence-dc1-a").args["disable_command"] is None
