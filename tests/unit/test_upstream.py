"""A target that follows a source replica: the checks warn, the plan re-points it before the
cut-over. Each test is the observed healthy testbed plus the in-site switchover that causes it."""

from __future__ import annotations

from migrator.checks import run_checks
from migrator.model.findings import Verdict
from migrator.model.plan import Plan
from migrator.planning.switchover import plan
from migrator.model.playbook import switchover_playbook
from migrator.rules.upstream import stray_upstream, target_repoint
from migrator.model.state import ServiceState
from tests.helpers.snapshots import (
    example_inventory, load_baseline, streaming_from, with_config, with_member, with_site,
    with_slot,
)

STEP = "repoint-target-at-source-leader"


def switched_over_in_dc1(state: ServiceState) -> ServiceState:
    """dc1's own switchover: dc1-b leads dc1, dc1-a is its replica; dc2, whose standby_cluster.host
    is the single address of dc1-a, still streams from dc1-a, and slot dc2 on dc1-b is idle."""
    position = state.sites["dc1"].member("dc1-a").postgres.current_lsn
    state = with_member(state, "dc1-a", patroni={"role": "replica", "state": "streaming"},
                        postgres={"in_recovery": True, "current_lsn": None,
                                  "replay_lsn": position, "receive_lsn": position})
    state = with_member(state, "dc1-b", patroni={"role": "primary", "state": "running"},
                        postgres={"in_recovery": False, "current_lsn": position,
                                  "replay_lsn": None, "receive_lsn": None})
    state = with_site(state, "dc1", dcs={"leader": "dc1-b"})
    state = with_config(state, "dc2", {"standby_cluster": {"host": "127.0.1.1"}})
    state = streaming_from(state, "dc2-a", "dc1-a")
    return with_slot(state, "dc1-b", "dc2", active=False)


def make_plan(state: ServiceState) -> Plan:
    inventory = example_inventory()
    return plan(inventory, state, switchover_playbook(), "dc2",
                run_checks(inventory, state, "dc1", "dc2"))


def test_baseline_follows_the_leader_and_plans_no_repoint():
    state = load_baseline()
    assert stray_upstream(state, "dc1", "dc2") is None
    assert STEP not in [s.id for s in make_plan(state).steps]


def test_a_replica_upstream_is_named_and_the_plan_repoints_before_the_cascade():
    state = switched_over_in_dc1(load_baseline())
    assert stray_upstream(state, "dc1", "dc2").name == "dc1-a"
    p = make_plan(state)
    assert p.executable, [f for f in p.findings if f.verdict is Verdict.BLOCK]
    ids = [s.id for s in p.steps]
    assert ids.index("validate-standby-cluster-for-source") < ids.index(STEP) < ids.index(
        "wait-cascade") < ids.index("demote-source")
    step = p.steps[ids.index(STEP)]
    assert step.args == {"site": "dc2", "follows": "dc1", "slot": "dc2",
                         "standby_cluster": {"host": "127.0.1.1,127.0.1.2", "port": 5432}}
    assert "dc1-a" in step.title and "127.0.1.1,127.0.1.2" in step.title
    assert "dc1-b" in step.gate.wait_for and step.gate.timeout_seconds == 120
    assert step.undo.kind == "restore_standby_cluster"
    assert "127.0.1.1:5432" in step.undo.description
    assert not step.write_unavailable
    assert any("PATCH" in line and "127.0.1.1,127.0.1.2" in line for line in step.manual)


def test_repoint_changes_only_host_and_port_and_remembers_what_was_there():
    state = switched_over_in_dc1(load_baseline())
    repoint = target_repoint(example_inventory(), state, "dc1", "dc2")
    assert repoint == {"stray": "dc1-a", "source_leader": "dc1-b",
                       "previous": {"host": "127.0.1.1", "port": 5432},
                       "standby_cluster": {"host": "127.0.1.1,127.0.1.2", "port": 5432}}


def test_checks_warn_instead_of_blocking_and_name_the_replica_and_the_step():
    state = switched_over_in_dc1(load_baseline())
    found = {f.check: f for f in run_checks(example_inventory(), state, "dc1", "dc2")}
    follows, slot = found["target-follows-source-leader"], found["slot-for-target"]
    assert follows.verdict is Verdict.WARN and slot.verdict is Verdict.WARN
    assert "dc1's replica dc1-a" in follows.finding and "leader dc1-b" in follows.finding
    assert STEP in follows.fix and STEP in slot.fix
    assert "streams from dc1-a, a replica" in slot.finding


def test_an_inactive_slot_with_the_standby_on_the_leader_still_blocks():
    state = with_slot(load_baseline(), "dc1-a", "dc2", active=False)
    found = {f.check: f for f in run_checks(example_inventory(), state, "dc1", "dc2")}
    assert found["slot-for-target"].verdict is Verdict.BLOCK
    assert STEP not in [s.id for s in make_plan(state).steps]


def test_a_standby_that_does_not_stream_is_not_repointed_but_blocks():
    state = with_member(switched_over_in_dc1(load_baseline()), "dc2-a",
                        postgres={"wal_receiver": {"status": "waiting"}})
    assert stray_upstream(state, "dc1", "dc2") is None
    p = make_plan(state)
    assert not p.executable and STEP not in [s.id for s in p.steps]
