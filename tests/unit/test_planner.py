"""The planner as data (pyinfra style): a snapshot and a target in, the expected steps, configs and
fingerprint out. Every snapshot is the healthy testbed baseline plus a named mutation; no test
depends on an exact LSN value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrator.errors import InventoryError, PreflightError
from migrator.model.findings import Finding, Verdict
from migrator.model.inventory import Inventory, parse_inventory
from migrator.model.plan import Plan
from migrator.planning.switchover import (
    config_diff,
    plan,
    render_standby_cluster,
)
from migrator.rules.patroni_version import graceful_demote_possible
from migrator.model.playbook import (
    SWITCHOVER_PHASES,
    PlaybookError,
    parse_playbook,
    switchover_playbook,
)
from migrator.render.plan_report import render
from migrator.model.state import ServiceState
from tests.helpers.snapshots import load_baseline, unreachable, with_config, with_member, with_site

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_INVENTORY = REPO_ROOT / "examples" / "testbed.yml"

GRACEFUL_ONLY = {"demote-source"}
PRE_41_ONLY = {"pause-source", "stop-source-primary", "wait-source-stopped",
               "resume-source-as-standby"}


# --- inputs: the testbed inventory and named mutations of the baseline snapshot ---------------


def example_inventory(text: str | None = None) -> Inventory:
    """examples/testbed.yml (or an edited copy), without needing its key and secret files."""
    return parse_inventory(
        EXAMPLE_INVENTORY.read_text() if text is None else text, source="testbed.yml",
        base_dir=EXAMPLE_INVENTORY.parent, check_local_files=False,
    )


def with_patroni_version(state: ServiceState, member: str, version: str) -> ServiceState:
    return with_member(state, member, patroni={"version": version})


def with_wal_moved(state: ServiceState, by: int = 7_340_032) -> ServiceState:
    """The same topology a little later: the primary wrote `by` more bytes, the standbys replayed
    half of that (so the lag moved too), and the snapshot has a new timestamp."""
    for site in state.sites.values():
        for m in site.members:
            if m.postgres is None:
                continue
            step = by if not m.postgres.in_recovery else by // 2
            moved = {k: getattr(m.postgres, k) + step
                     for k in ("current_lsn", "receive_lsn", "replay_lsn")
                     if getattr(m.postgres, k) is not None}
            state = with_member(state, m.name, postgres=moved)
    return state.model_copy(update={"observed_at": "2031-01-01T00:00:00+00:00"})


def with_source_switched_over_in_site(state: ServiceState) -> ServiceState:
    """dc1's own switchover: dc1-b is now its primary, dc1-a a replica."""
    position = state.sites["dc1"].member("dc1-a").postgres.current_lsn
    state = with_member(state, "dc1-a", patroni={"role": "replica", "state": "streaming"},
                        postgres={"in_recovery": True, "current_lsn": None,
                                  "replay_lsn": position, "receive_lsn": position})
    state = with_member(state, "dc1-b", patroni={"role": "primary", "state": "running"},
                        postgres={"in_recovery": False, "current_lsn": position,
                                  "replay_lsn": None, "receive_lsn": None})
    return with_site(state, "dc1", dcs={"leader": "dc1-b"})


def with_target_standby_leader_moved(state: ServiceState) -> ServiceState:
    """dc2's standby leader moved from dc2-a to dc2-b."""
    state = with_member(state, "dc2-a", patroni={"role": "replica"})
    state = with_member(state, "dc2-b", patroni={"role": "standby_leader"})
    return with_site(state, "dc2", dcs={"leader": "dc2-b"})


def after_switchover(state: ServiceState) -> ServiceState:
    """What the baseline looks like once dc2 is primary and dc1 follows it."""
    position = state.sites["dc1"].member("dc1-a").postgres.current_lsn
    state = with_config(state, "dc2", {"standby_cluster": None})
    state = with_config(state, "dc1", {"standby_cluster": {
        "host": "127.0.2.1,127.0.2.2", "port": 5432, "primary_slot_name": "dc1",
        "create_replica_methods": ["basebackup"]}})
    state = with_member(state, "dc1-a", patroni={"role": "standby_leader"},
                        postgres={"in_recovery": True, "current_lsn": None,
                                  "replay_lsn": position})
    state = with_member(state, "dc2-a", patroni={"role": "primary"},
                        postgres={"in_recovery": False, "current_lsn": position,
                                  "replay_lsn": None, "receive_lsn": None})
    return state


def blocking_finding(check: str = "replay-lag") -> Finding:
    return Finding(check=check, verdict=Verdict.BLOCK, site="dc2",
                   finding="dc2-a is far behind", fix="wait for it to catch up")


def make_plan(state: ServiceState | None = None, target: str = "dc2",
              findings: list[Finding] | None = None, inventory: Inventory | None = None) -> Plan:
    return plan(inventory or example_inventory(), state or load_baseline(), switchover_playbook(),
                target, findings or [])


def step_ids(p: Plan) -> list[str]:
    return [s.id for s in p.steps]


def phases_in_order(p: Plan) -> list[str]:
    seen: list[str] = []
    for step in p.steps:
        if step.phase not in seen:
            seen.append(step.phase)
    return seen


def window(p: Plan) -> list[str]:
    return [s.id for s in p.steps if s.write_unavailable]


# --- the graceful path (Patroni >= 4.1 everywhere) --------------------------------------------


def test_baseline_dc1_to_dc2_runs_every_phase_in_order_on_the_graceful_path():
    p = make_plan()
    assert (p.source, p.target, p.noop_reason) == ("dc1", "dc2", None)
    assert p.graceful_demote is True
    assert phases_in_order(p) == list(SWITCHOVER_PHASES)
    ids = step_ids(p)
    assert "demote-source" in ids and not PRE_41_ONLY & set(ids)
    assert ids.index("demote-source") < ids.index("read-token") < ids.index("catch-up") \
        < ids.index("promote-target") < ids.index("wait-repoint")


def test_write_unavailability_window_is_demote_through_promote_and_contiguous():
    p = make_plan()
    ids = step_ids(p)
    inside = window(p)
    assert inside[0] == "demote-source" and inside[-1] == "promote-target"
    assert ids[ids.index(inside[0]):ids.index(inside[-1]) + 1] == inside
    assert p.write_unavailability.path == "graceful-demote"
    assert p.write_unavailability.expected_seconds < 1
    assert p.write_unavailability.worst_case_seconds == \
        example_inventory().gates.catchup_timeout_seconds


def test_steps_carry_concrete_arguments_from_inventory_and_observed_leaders():
    p = make_plan()
    steps = {s.id: s for s in p.steps}
    assert steps["wait-cascade"].args["source_leader"] == "dc1-a"
    assert steps["wait-cascade"].args["target_leader"] == "dc2-a"
    assert steps["wait-cascade"].args["target_replicas"] == ["dc2-b"]
    assert steps["read-token"].args["member"] == "dc1-a"
    assert steps["read-token"].args["data_dir"] == "/tmp/migrator-testbed/dc1/dc1-a/data"
    assert steps["catch-up"].args == {"site": "dc2", "member": "dc2-a",
                                      "token_from": "read-token"}
    gates = example_inventory().gates
    assert steps["catch-up"].gate.timeout_seconds == gates.catchup_timeout_seconds
    assert steps["wait-cascade"].args["max_lag_bytes"] == gates.max_replay_lag_bytes
    assert steps["demote-source"].undo.kind == "undo_demote"
    assert steps["promote-target"].undo.kind == "reverse_switchover"
    assert all(s.manual for s in p.steps), "every step has a manual equivalent"


def test_slots_already_in_the_dynamic_config_are_marked_already_satisfied():
    p = make_plan()
    steps = {s.id: s for s in p.steps}
    assert steps["slot-for-target-on-source"].already_satisfied
    assert steps["slot-for-source-on-target"].already_satisfied
    assert not steps["demote-source"].already_satisfied


def test_a_missing_permanent_slot_stays_a_step_to_do():
    state = with_config(load_baseline(), "dc2", {"slots": {"dc1": None}})
    steps = {s.id: s for s in make_plan(state).steps}
    assert steps["slot-for-source-on-target"].already_satisfied is False
    assert steps["slot-for-source-on-target"].args == {
        "site": "dc2", "slot": "dc1",
        "api_urls": ["http://127.0.2.1:8008", "http://127.0.2.2:8008"]}
    assert steps["slot-for-target-on-source"].already_satisfied is True


# --- the Patroni < 4.1 path -------------------------------------------------------------------


def test_one_member_on_patroni_3_3_gives_the_pause_clean_stop_resume_path():
    p = make_plan(with_patroni_version(load_baseline(), "dc1-b", "3.3.11"))
    ids = step_ids(p)
    assert p.graceful_demote is False
    assert "demote-source" not in ids
    assert PRE_41_ONLY <= set(ids)
    order = ["pause-source", "stop-source-primary", "read-token", "catch-up", "promote-target",
             "wait-source-stopped", "resume-source-as-standby", "wait-repoint"]
    assert [i for i in ids if i in order] == order
    assert phases_in_order(p) == list(SWITCHOVER_PHASES)
    assert window(p)[0] == "stop-source-primary" and window(p)[-1] == "promote-target"
    assert p.write_unavailability.path == "pause-and-clean-stop"
    steps = {s.id: s for s in p.steps}
    assert steps["stop-source-primary"].args["mode"] == "fast"
    assert steps["stop-source-primary"].undo.kind == "start_postgres"
    assert steps["resume-source-as-standby"].args["standby_cluster"]["primary_slot_name"] == "dc1"
    assert "pg_ctl stop" in " ".join(steps["stop-source-primary"].manual)


def test_an_unknown_patroni_version_takes_the_safe_older_path():
    state = unreachable(load_baseline(), "dc2-b", probes=("patroni", "host"))
    assert graceful_demote_possible(state, ["dc1", "dc2"]) is False
    assert "pause-source" in step_ids(make_plan(state))


def test_patroni_4_1_0_is_graceful_and_4_0_is_not():
    base = load_baseline()
    assert graceful_demote_possible(with_patroni_version(base, "dc2-a", "4.1.0"), ["dc1", "dc2"])
    assert not graceful_demote_possible(with_patroni_version(base, "dc2-a", "4.0.6"),
                                        ["dc1", "dc2"])


# --- no-op ------------------------------------------------------------------------------------


def test_target_already_primary_is_a_noop_with_no_steps():
    p = make_plan(target="dc1")
    assert p.noop_reason and "dc1" in p.noop_reason
    assert p.steps == ()
    assert p.write_unavailability is None
    assert all(diff == "" for diff in p.config_diff.values())
    assert p.config_after == p.config_before


def test_after_the_move_planning_dc2_again_is_a_noop():
    p = make_plan(after_switchover(load_baseline()), target="dc2")
    assert (p.source, p.target) == ("dc2", "dc2")
    assert p.noop_reason and p.steps == ()


# --- standby_cluster and configs --------------------------------------------------------------


def test_dc1_after_the_move_follows_every_dc2_member_with_slot_dc1():
    p = make_plan()
    assert p.config_after["dc1"]["standby_cluster"] == {
        "host": "127.0.2.1,127.0.2.2", "port": 5432, "primary_slot_name": "dc1",
        "create_replica_methods": ["basebackup"],
    }
    assert "standby_cluster" not in p.config_after["dc2"]
    assert p.config_after["dc2"]["slots"] == {"dc1": {"type": "physical"}}
    assert p.config_after["dc1"]["slots"] == {"dc2": {"type": "physical"}}
    demote = next(s for s in p.steps if s.id == "demote-source")
    assert demote.args["standby_cluster"] == p.config_after["dc1"]["standby_cluster"]


def test_target_gains_the_slot_for_source_when_missing():
    state = with_config(load_baseline(), "dc2", {"slots": None})
    p = make_plan(state)
    assert p.config_after["dc2"]["slots"] == {"dc1": {"type": "physical"}}
    assert "+  dc1:" in p.config_diff["dc2"]


def test_config_diffs_show_the_standby_cluster_lines():
    p = make_plan()
    assert "+standby_cluster:" in p.config_diff["dc1"]
    assert "+  host: 127.0.2.1,127.0.2.2" in p.config_diff["dc1"]
    assert "-standby_cluster:" in p.config_diff["dc2"]
    assert "-  host: 127.0.1.1,127.0.1.2" in p.config_diff["dc2"]
    assert p.config_diff["dc1"].startswith("--- dc1 dynamic config (observed)")


def test_config_diff_of_an_unchanged_config_is_empty():
    config = {"ttl": 20, "slots": {"dc2": {"type": "physical"}}}
    assert config_diff("dc1", config, dict(config)) == ""


def test_standby_cluster_renders_optional_settings_only_when_given():
    plain = render_standby_cluster(["127.0.91.1", "127.0.91.2"], 5433, "west")
    assert plain == {"host": "127.0.91.1,127.0.91.2", "port": 5433, "primary_slot_name": "west",
                     "create_replica_methods": ["basebackup"]}
    full = render_standby_cluster(["h"], 5432, "east", restore_command="cp '/a/%f' \"%p\"",
                                  recovery_min_apply_delay="5min")
    assert full["restore_command"] == "cp '/a/%f' \"%p\""
    assert full["recovery_min_apply_delay"] == "5min"


def test_followed_site_with_members_on_different_ports_is_an_inventory_error():
    text = EXAMPLE_INVENTORY.read_text()
    head, tail = text.rsplit("pg_port: 5432", 1)  # the last member: dc2-b
    inventory = example_inventory(head + "pg_port: 5433" + tail)
    with pytest.raises(InventoryError, match="different pg_port.*dc2-b:5433"):
        make_plan(inventory=inventory)


# --- topology ---------------------------------------------------------------------------------


def test_topology_before_and_predicted_after():
    p = make_plan()
    before, after = p.topology_before, p.topology_after
    assert (before["dc1"].role, before["dc1"].leader, before["dc1"].replicas) == \
        ("primary", "dc1-a", ("dc1-b",))
    assert (before["dc2"].role, before["dc2"].follows, before["dc2"].leader) == \
        ("standby", "dc1", "dc2-a")
    assert all(m.replay_lag_bytes is not None and m.replay_lag_bytes >= 0
               for v in before.values() for m in v.members)
    assert (after["dc2"].role, after["dc2"].leader, after["dc2"].follows) == \
        ("primary", "dc2-a", None)
    assert (after["dc1"].role, after["dc1"].follows, after["dc1"].leader) == \
        ("standby", "dc2", None)
    assert after["dc1"].leader_note == "decided by Patroni at demotion"
    assert after["dc1"].timelines == after["dc2"].timelines
    assert after["dc2"].timelines[0] > max(before["dc2"].timelines)


# --- fingerprint, JSON, purity ----------------------------------------------------------------


def test_fingerprint_ignores_lsns_timestamps_and_finding_texts():
    first = make_plan(findings=[Finding(check="replay-lag", verdict=Verdict.OK,
                                        finding="lag 0 bytes")])
    later_state = with_wal_moved(load_baseline())
    later = make_plan(later_state, findings=[Finding(check="replay-lag", verdict=Verdict.OK,
                                                     finding="lag 8192 bytes")])
    assert first.observed_at != later.observed_at
    assert first.topology_before != later.topology_before  # the lag columns did move
    assert first.fingerprint == later.fingerprint


def test_fingerprint_changes_when_a_leader_changes():
    base = make_plan().fingerprint
    source_moved = make_plan(with_source_switched_over_in_site(load_baseline()))
    target_moved = make_plan(with_target_standby_leader_moved(load_baseline()))
    assert source_moved.topology_before["dc1"].leader == "dc1-b"
    assert target_moved.topology_before["dc2"].leader == "dc2-b"
    assert len({base, source_moved.fingerprint, target_moved.fingerprint}) == 3


def test_fingerprint_changes_with_the_path_and_the_configs_after():
    base = make_plan().fingerprint
    assert make_plan(with_patroni_version(load_baseline(), "dc1-b", "3.3.11")).fingerprint != base
    assert make_plan(with_config(load_baseline(), "dc1", {"ttl": 30})).fingerprint != base


def test_fingerprint_holds_across_idempotent_pre_seed_work():
    # A slot added by the pre-seed phase (or by hand) changes nothing that must match at execute
    # time: the same plan resumes after it.
    no_slot = with_config(load_baseline(), "dc2", {"slots": None})
    assert make_plan(no_slot).fingerprint == make_plan().fingerprint


def test_plan_json_is_canonical_and_round_trips():
    p = make_plan(findings=[blocking_finding()])
    text = p.to_json()
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False)
    back = Plan.from_json(text)
    assert back == p
    assert back.verify_fingerprint()
    assert back.to_json() == text
    assert len(p.fingerprint) == 64


def test_an_edited_plan_file_no_longer_matches_its_fingerprint():
    data = json.loads(make_plan().to_json())
    data["steps"][-1]["args"]["to_site"] = "dc3"
    assert not Plan.from_json(json.dumps(data)).verify_fingerprint()


def test_planning_is_pure_same_inputs_same_plan():
    state = load_baseline()
    assert make_plan(state).to_json() == make_plan(state).to_json()


# --- verdicts and refusals --------------------------------------------------------------------


def test_a_blocking_finding_makes_the_plan_not_executable():
    ok = make_plan(findings=[Finding(check="replay-lag", verdict=Verdict.WARN, finding="x")])
    blocked = make_plan(findings=[blocking_finding()])
    assert ok.executable is True
    assert blocked.executable is False
    assert [f.check for f in blocked.blocking_findings] == ["replay-lag"]
    assert blocked.steps == ok.steps  # still a full plan, for the review


def test_no_observed_standby_leader_in_target_blocks_with_a_planner_finding():
    state = unreachable(load_baseline(), "dc2-a")
    state = with_site(state, "dc2", dcs={"leader": None})
    p = make_plan(state)
    assert not p.executable
    assert any(f.check == "plan-target-leader" for f in p.blocking_findings)


def test_no_single_primary_site_refuses_to_plan():
    state = unreachable(load_baseline(), "dc1-a")
    with pytest.raises(PreflightError, match="not exactly one primary site"):
        make_plan(state)


def test_an_unresolvable_playbook_expression_names_the_step():
    text = (REPO_ROOT / "playbooks" / "switchover.yml").read_text()
    broken = text.replace("token_from: \"'read-token'\"", "token_from: read_tokn", 1)
    assert broken != text
    playbook = parse_playbook(broken, source="broken.yml")
    with pytest.raises(PlaybookError, match=r"broken.yml: step 'catch-up': args.token_from"):
        plan(example_inventory(), load_baseline(), playbook, "dc2", [])


# --- secrets ----------------------------------------------------------------------------------


SECRETS = {
    "MIGRATOR_PLAN_TEST_SU": "su-Plan-Secret-1",
    "MIGRATOR_PLAN_TEST_REPL": "repl-Plan-Secret-2",
    "MIGRATOR_PLAN_TEST_API": "api-Plan-Secret-3",
}


def inventory_with_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Inventory:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    restapi_dc2 = tmp_path / "restapi-dc2"
    restapi_dc2.write_text("api-File-Secret-4\n")
    text = EXAMPLE_INVENTORY.read_text()
    text = text.replace("file:/tmp/migrator-testbed/secrets/superuser", "env:MIGRATOR_PLAN_TEST_SU")
    text = text.replace("file:/tmp/migrator-testbed/secrets/replication",
                        "env:MIGRATOR_PLAN_TEST_REPL")
    text = text.replace("file:/tmp/migrator-testbed/secrets/restapi", "env:MIGRATOR_PLAN_TEST_API",
                        1)
    text = text.replace("file:/tmp/migrator-testbed/secrets/restapi", f"file:{restapi_dc2}", 1)
    inventory = example_inventory(text)
    assert sorted(inventory.secrets()) == sorted([*SECRETS.values(), "api-File-Secret-4"])
    return inventory


def test_no_secret_value_or_reference_in_the_plan_or_any_report(monkeypatch, tmp_path):
    inventory = inventory_with_secrets(monkeypatch, tmp_path)
    for state in (load_baseline(), with_patroni_version(load_baseline(), "dc1-b", "3.3.11")):
        p = plan(inventory, state, switchover_playbook(), "dc2", [blocking_finding()])
        outputs = [p.to_json(), p.to_json(pretty=True), repr(p)] + \
            [render(p, fmt) for fmt in ("text", "md", "json")]
        for output in outputs:
            for secret in inventory.secrets():
                assert secret not in output
            for reference in ("env:MIGRATOR_PLAN_TEST", "file:", str(tmp_path)):
                assert reference not in output


def test_replay_lag_is_measured_against_the_primary_position():
    by = 7_340_032
    before = make_plan().topology_before
    later = make_plan(with_wal_moved(load_baseline(), by)).topology_before

    def lag(view, name):
        return next(m.replay_lag_bytes for m in view.members if m.name == name)

    assert lag(before["dc1"], "dc1-a") == lag(later["dc1"], "dc1-a") == 0
    assert lag(later["dc2"], "dc2-a") - lag(before["dc2"], "dc2-a") == by - by // 2
    assert later["dc2"].replay_lag_bytes == max(lag(later["dc2"], "dc2-a"),
                                                lag(later["dc2"], "dc2-b"))


def test_manual_equivalents_name_patronictl_demote_and_promote_cluster_where_patroni_has_them():
    steps = {s.id: s for s in make_plan().steps}
    demote = next(line for line in steps["demote-source"].manual if "demote-cluster" in line)
    assert "--host " in demote and "--port " in demote and "--primary-slot-name dc1" in demote
    assert " dc1 --force" in demote.replace("'", "")  # the source's scope, as the cluster name
    assert any("PATCH" in line for line in steps["demote-source"].manual)  # beside the REST call
    promote = [line for line in steps["promote-target"].manual if "promote-cluster" in line]
    assert len(promote) == 1 and "promote-cluster dc2 --force" in promote[0].replace("'", "")
    # An unknown (possibly pre-4.0) Patroni: no promote-cluster line, only PATCH and edit-config.
    older = make_plan(unreachable(load_baseline(), "dc2-b", probes=("patroni", "host")))
    manual = " ".join(next(s for s in older.steps if s.id == "promote-target").manual)
    assert "promote-cluster" not in manual and "standby_cluster=null" in manual
