"""Synchronous mode moves with the primary: the carry, the planned configs and steps, the checks.
States are the observed healthy testbed plus named mutations."""

from __future__ import annotations

from migrator.checks import run_checks
from migrator.model.findings import Verdict
from migrator.planning.switchover import plan
from migrator.model.playbook import switchover_playbook
from migrator.rules.sync_mode import settings_text, sync_mode_carry
from migrator.model.state import ServiceState
from tests.helpers.snapshots import (
    example_inventory, load_baseline, unreachable, with_config, with_member, with_replication,
)

CARRY, DROP = "carry-synchronous-mode-to-target", "drop-synchronous-mode-from-source"


def findings(state: ServiceState) -> dict:
    return {f.check: f for f in run_checks(example_inventory(), state, "dc1", "dc2")}


def make_plan(state: ServiceState):
    inventory = example_inventory()
    return plan(inventory, state, switchover_playbook(), "dc2",
                run_checks(inventory, state, "dc1", "dc2"))


def sync_on(state: ServiceState, **extra) -> ServiceState:
    """dc1 in synchronous mode with dc1-b as its synchronous standby, as Patroni sets it."""
    return _dc1_b_sync(with_config(state, "dc1", {"synchronous_mode": True, **extra}))


def _dc1_b_sync(state: ServiceState) -> ServiceState:
    data = state.model_dump(mode="json")
    for m in data["sites"]["dc1"]["members"]:
        if m["name"] == "dc1-a":
            for row in m["postgres"]["replication"]:
                row["sync_state"] = "sync" if row["application_name"] == "dc1-b" else "async"
    return ServiceState.model_validate(data)


# --- the carry --------------------------------------------------------------------------------


def test_nothing_is_carried_when_the_source_is_asynchronous():
    assert sync_mode_carry({"ttl": 20}, {"synchronous_mode": True}) is None
    assert sync_mode_carry({"synchronous_mode": False}, {}) is None


def test_the_source_settings_replace_the_target_ones_and_leave_the_source():
    carry = sync_mode_carry({"synchronous_mode": True, "synchronous_mode_strict": True},
                            {"synchronous_node_count": 2})
    assert carry == {
        "settings": {"synchronous_mode": True, "synchronous_mode_strict": True},
        "target_patch": {"synchronous_mode": True, "synchronous_mode_strict": True,
                         "synchronous_node_count": None},
        "target_previous": {"synchronous_mode": None, "synchronous_mode_strict": None,
                            "synchronous_node_count": 2},
        "source_patch": {"synchronous_mode": None, "synchronous_mode_strict": None},
    }
    assert sync_mode_carry({"synchronous_mode": "quorum"}, {})["settings"] == {
        "synchronous_mode": "quorum"}
    assert settings_text(carry["settings"]) == ("synchronous_mode: true, "
                                                "synchronous_mode_strict: true")


# --- the plan ---------------------------------------------------------------------------------


def test_an_asynchronous_source_plans_no_sync_steps():
    p = make_plan(load_baseline())
    assert CARRY not in [s.id for s in p.steps] and DROP not in [s.id for s in p.steps]
    assert "synchronous" not in p.config_diff["dc2"]


def test_sync_mode_is_written_to_the_target_before_the_cut_over_and_dropped_after():
    p = make_plan(sync_on(load_baseline(), synchronous_mode_strict=True))
    assert p.executable
    ids = [s.id for s in p.steps]
    assert ids.index(CARRY) < ids.index("wait-cascade") < ids.index("demote-source")
    assert ids.index("promote-target") < ids.index("wait-repoint") < ids.index(DROP) < ids.index(
        "verify-single-writer")
    carry, drop = p.steps[ids.index(CARRY)], p.steps[ids.index(DROP)]
    assert carry.args == {"site": "dc2", "settings": {"synchronous_mode": True,
                                                      "synchronous_mode_strict": True}}
    assert carry.undo.kind == "restore_dynamic_config" and not carry.write_unavailable
    assert drop.args == {"site": "dc1", "settings": {"synchronous_mode": None,
                                                     "synchronous_mode_strict": None}}
    assert drop.undo.kind == "none"
    assert any("synchronous_mode_strict=true" in line for line in carry.manual)
    # The config diff shows the settings moving: on dc2, off dc1.
    assert p.config_after["dc2"]["synchronous_mode"] is True
    assert p.config_after["dc2"]["synchronous_mode_strict"] is True
    assert "synchronous_mode" not in p.config_after["dc1"]
    assert "+synchronous_mode: true" in p.config_diff["dc2"]
    assert "-synchronous_mode: true" in p.config_diff["dc1"]
    assert "standby_cluster" not in p.config_after["dc2"]


# --- the checks -------------------------------------------------------------------------------


def test_a_local_synchronous_standby_is_fine_and_the_carry_is_announced():
    found = findings(sync_on(load_baseline()))
    assert found["synchronous-mode"].verdict is Verdict.OK, found["synchronous-mode"]
    assert "carries it to dc2" in found["synchronous-mode"].finding
    target = found["synchronous-mode-target"]
    assert target.verdict is Verdict.OK and "dc2-b can be its synchronous standby" in target.finding


def test_the_other_sites_standby_leader_as_synchronous_standby_warns():
    # Strict mode with no dc1 replica: Patroni names '*' and dc2-a's walsender satisfies it.
    state = with_config(unreachable(load_baseline(), "dc1-b"), "dc1",
                        {"synchronous_mode": True, "synchronous_mode_strict": True})
    state = with_replication(state, "dc1-a", sync_state="sync")
    found = findings(state)["synchronous-mode"]
    assert found.verdict is Verdict.WARN
    assert "synchronous standby is dc2-a, outside dc1" in found.finding


def test_strict_mode_carried_to_a_target_without_a_streaming_replica_warns():
    state = sync_on(load_baseline(), synchronous_mode_strict=True)
    state = with_member(state, "dc2-b", postgres={"wal_receiver": None})
    found = findings(state)["synchronous-mode-target"]
    assert found.verdict is Verdict.WARN, found
    assert "commits on dc2 wait until a standby streams" in found.finding
    plain = findings(with_member(sync_on(load_baseline()), "dc2-b",
                                 postgres={"wal_receiver": None}))["synchronous-mode-target"]
    assert plain.verdict is Verdict.WARN and "asynchronously" in plain.finding


def test_a_nosync_replica_cannot_be_the_synchronous_standby():
    state = with_member(sync_on(load_baseline()), "dc2-b", patroni={"tags": {"nosync": True}})
    assert findings(state)["synchronous-mode-target"].verdict is Verdict.WARN
