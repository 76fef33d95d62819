"""The reattach plan as pure functions of a snapshot: each old-site member judged on its pg_control
against the new primary's timeline history (follows / rewind / re-clone, the diverged range), the
refusals (a writable old member, a new site that is not primary, an old DCS that does not answer,
an unreadable pg_control, another cluster), the no-op, and the steps the plan resolves."""

from __future__ import annotations

from typing import Any

import pytest

from migrator.model.findings import Verdict
from migrator.model.state import ServiceState, lsn_value
from migrator.planning.reattach import (
    diverged_summary,
    judge,
    member_verdict,
    parse_history,
    reattach_plan,
    reattach_playbook,
)
from tests.helpers.snapshots import (
    example_inventory, load_baseline, unreachable, with_config, with_member, with_site,
)

FORK = "0/5000100"
HISTORY = "1\t0/3000000\tno recovery target specified\n\n2\t0/5000100\tno recovery target specified\n"


def control(state: str = "shut down", checkpoint: str = "0/5000028", timeline: int = 2,
            min_recovery: str = "0/0", min_timeline: int = 0, hints: str = "on", checksums: str = "0") -> dict:
    return {
        "Database system identifier": "7710426464059593388",
        "Database cluster state": state,
        "Latest checkpoint location": checkpoint,
        "Latest checkpoint's TimeLineID": str(timeline),
        "Minimum recovery ending location": min_recovery,
        "Min recovery ending loc's timeline": str(min_timeline),
        "wal_log_hints setting": hints,
        "Data page checksum version": checksums,
    }


def failed_over(**controls: dict) -> ServiceState:
    """dc1 stopped (Patroni and PostgreSQL refuse, pg_control read over SSH), dc2 promoted on
    timeline 3: its standby_cluster gone, dc2-a writable."""
    state = unreachable(load_baseline(), "dc1-a", "dc1-b")
    for name in ("dc1-a", "dc1-b"):
        state = with_member(state, name, host_facts={"controldata": controls.get(name, control())})
    state = with_config(state, "dc2", {"standby_cluster": None})
    state = with_member(state, "dc2-a", patroni={"role": "primary"},
                        postgres={"in_recovery": False, "timeline": 3, "current_lsn": lsn_value("0/6000000")})
    return with_member(state, "dc2-b", postgres={"timeline": 3})


def judged(state: ServiceState, history: str | None = HISTORY, error: str | None = None):
    return judge(example_inventory(), state, "dc1", "dc2", history, error)


def by_check(findings) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for f in findings:
        out.setdefault(f.check, []).append(f)
    return out


# --- one member against the history ----------------------------------------------------------


def test_history_lines_are_parsed_and_garbage_is_skipped():
    assert parse_history(HISTORY + "garbage\n3\tnot-an-lsn\tx\n# comment\n") == [
        (1, lsn_value("0/3000000")), (2, lsn_value(FORK))]


def test_a_primary_whose_shutdown_checkpoint_is_before_the_fork_follows_cleanly():
    verdict = member_verdict("dc1-a", control(checkpoint="0/5000028"), parse_history(HISTORY), 3)
    assert verdict.action == "follow" and not verdict.diverged
    assert verdict.fork == lsn_value(FORK)


def test_a_primary_with_a_checkpoint_at_or_past_the_fork_diverged_with_its_range():
    verdict = member_verdict("dc1-a", control(checkpoint="0/5002100"), parse_history(HISTORY), 3)
    assert verdict.action == "rewind"
    assert (verdict.diverged_from, verdict.diverged_to) == (lsn_value(FORK), lsn_value("0/5002100"))
    assert verdict.range_text() == "0/5000100..0/5002100 (8192 bytes)"
    at_fork = member_verdict("dc1-a", control(checkpoint=FORK), parse_history(HISTORY), 3)
    assert at_fork.action == "rewind"  # a checkpoint record that starts at the fork is not on dc2


def test_a_standby_is_judged_on_its_minimum_recovery_point():
    at_fork = control(state="shut down in recovery", checkpoint="0/4000000", min_recovery=FORK, min_timeline=2)
    assert member_verdict("dc1-b", at_fork, parse_history(HISTORY), 3).action == "follow"
    past = control(state="shut down in recovery", checkpoint="0/4000000", min_recovery="0/5000200", min_timeline=2)
    verdict = member_verdict("dc1-b", past, parse_history(HISTORY), 3)
    assert verdict.action == "rewind" and verdict.diverged_to == lsn_value("0/5000200")


def test_without_wal_log_hints_or_checksums_a_diverged_member_is_recloned():
    no_hints = control(checkpoint="0/5002100", hints="off")
    assert member_verdict("dc1-a", no_hints, parse_history(HISTORY), 3).action == "reclone"
    checksums = control(checkpoint="0/5002100", hints="off", checksums="1")
    assert member_verdict("dc1-a", checksums, parse_history(HISTORY), 3).action == "rewind"


def test_a_member_not_shut_down_cleanly_is_rewound_with_an_open_range():
    crashed = control(state="in production", checkpoint="0/4000000")
    verdict = member_verdict("dc1-a", crashed, parse_history(HISTORY), 3)
    assert verdict.action == "rewind" and verdict.diverged_to is None
    assert verdict.range_text() == "from 0/5000100 (end unknown: not shut down cleanly)"


def test_a_member_on_the_new_primarys_timeline_follows_and_one_off_its_history_diverged():
    assert member_verdict("dc1-a", control(timeline=3), parse_history(HISTORY), 3).action == "follow"
    other = member_verdict("dc1-a", control(timeline=7), parse_history(HISTORY), 3)
    assert other.action == "rewind" and "not on the new primary's history" in other.reason


def test_a_pg_control_without_a_checkpoint_is_refused():
    with pytest.raises(ValueError, match="dc1-a: pg_control has no readable checkpoint"):
        member_verdict("dc1-a", {"Database cluster state": "shut down"}, [], 3)


# --- the site: findings and refusals ----------------------------------------------------------


def test_a_clean_failover_plans_every_step_and_no_rewind():
    state = failed_over()
    judgement = judged(state)
    assert [v.action for v in judgement.verdicts] == ["follow", "follow"]
    assert not [f for f in judgement.findings if f.verdict is Verdict.BLOCK]
    plan = reattach_plan(example_inventory(), state, reattach_playbook(), "dc1", "dc2", judgement)
    assert plan.executable and (plan.source, plan.target, plan.playbook) == ("dc2", "dc1", "reattach")
    assert [s.id for s in plan.steps] == [
        "reattach-preflight", "slot-for-old-site-on-new-primary", "standby-cluster-in-old-dcs", "start-old-site"]
    section = plan.config_after["dc1"]["standby_cluster"]
    assert section["primary_slot_name"] == "dc1" and section["host"].count(",") == 1
    assert "standby_cluster" in plan.config_diff["dc1"]
    start = plan.steps[-1].args
    assert [m["name"] for m in start["members"]] == ["dc1-a", "dc1-b"] and start["forget_initialize"] is False
    assert plan.topology_after["dc1"].role == "standby" and plan.topology_after["dc1"].follows == "dc2"


def test_a_diverged_member_is_a_warning_with_its_range_and_gets_the_rewind_step():
    state = failed_over(**{"dc1-a": control(checkpoint="0/5002100")})
    judgement = judged(state)
    warn = by_check(judgement.findings)["reattach-diverged"]
    assert warn[0].verdict is Verdict.WARN and "0/5000100..0/5002100 (8192 bytes)" in warn[0].finding
    plan = reattach_plan(example_inventory(), state, reattach_playbook(), "dc1", "dc2", judgement)
    rewind = next(s for s in plan.steps if s.id == "rewind-diverged")
    assert [m["name"] for m in rewind.args["members"]] == ["dc1-a"]
    assert rewind.args["members"][0]["diverged_bytes"] == 8192
    # The member with clean data starts first and becomes the standby leader.
    start = next(s for s in plan.steps if s.id == "start-old-site")
    assert [m["name"] for m in start.args["members"]] == ["dc1-b", "dc1-a"]
    assert diverged_summary(start.args["members"]) == [
        "dc1-a diverged: WAL 0/5000100..0/5002100 (8192 bytes) never reached the new primary; rewound"]


def test_when_every_member_is_recloned_the_initialize_key_goes_and_the_slowest_gate_applies():
    bad = control(checkpoint="0/5002100", hints="off")
    state = failed_over(**{"dc1-a": bad, "dc1-b": bad})
    judgement = judged(state)
    plan = reattach_plan(example_inventory(), state, reattach_playbook(), "dc1", "dc2", judgement)
    start = next(s for s in plan.steps if s.id == "start-old-site")
    assert start.args["forget_initialize"] is True
    assert start.gate is not None and start.gate.timeout_seconds == example_inventory().gates.seed_timeout_seconds
    assert "reattach-all-recloned" in by_check(judgement.findings)


def test_a_writable_old_member_blocks_with_what_to_do():
    state = with_member(failed_over(), "dc1-a", postgres=load_baseline().sites["dc1"].members[0].postgres.model_dump(),
                        postgres_error=None)
    block = by_check(judged(state).findings)["reattach-old-not-writable"][0]
    assert block.verdict is Verdict.BLOCK and "dc1-a of dc1 runs as a writable primary" in block.finding and "stop it at once" in block.fix
    assert "if dc2 is the primary now, stop it at once" in block.fix


def test_a_new_site_still_standby_blocks_and_names_the_failover():
    block = by_check(judged(load_baseline()).findings)["reattach-new-primary"][0]
    assert block.verdict is Verdict.BLOCK and "migrate failover --dc dc2" in block.fix
    assert block.finding.endswith("dc1 still takes writes: nothing was failed over")


def test_an_old_dcs_that_does_not_answer_blocks():
    state = with_site(failed_over(), "dc1", dcs={"healthy": False, "error": "connection refused"})
    block = by_check(judged(state).findings)["reattach-old-dcs"][0]
    assert block.verdict is Verdict.BLOCK and "bring dc1's etcd back first" in block.fix


def test_an_unreadable_pg_control_or_history_blocks():
    state = unreachable(failed_over(), "dc1-b", probes=("host",), error="ssh: connection refused")
    block = by_check(judged(state).findings)["reattach-pg-control"][0]
    assert block.members == ("dc1-b",) and "ssh: connection refused" in block.finding
    history = by_check(judged(failed_over(), history=None, error="permission denied").findings)["reattach-history"]
    assert history[0].verdict is Verdict.BLOCK and "permission denied" in history[0].finding


def test_another_cluster_in_the_old_data_directory_is_never_rewound():
    other = {**control(), "Database system identifier": "42"}
    block = by_check(judged(failed_over(**{"dc1-a": other})).findings)["reattach-same-cluster"][0]
    assert block.verdict is Verdict.BLOCK and "system identifier 42" in block.finding


def test_an_old_site_already_following_is_a_no_op():
    from migrator.planning.switchover import standby_cluster_following

    state = with_config(failed_over(), "dc1", {"standby_cluster": standby_cluster_following(example_inventory(), "dc1", "dc2")})
    for name, role in (("dc1-a", "standby_leader"), ("dc1-b", "replica")):
        state = with_member(state, name, patroni=load_baseline().sites["dc2"].members[0].patroni.model_dump(),
                            patroni_error=None)
        state = with_member(state, name, patroni={"role": role})
    judgement = judged(state)
    assert judgement.noop_reason == "dc1 is already a standby cluster of dc2"
    plan = reattach_plan(example_inventory(), state, reattach_playbook(), "dc1", "dc2", judgement)
    assert plan.noop_reason and plan.steps == ()


def test_a_member_named_for_reclone_is_set_aside_whatever_its_verdict():
    state = failed_over(**{"dc1-a": control(checkpoint="0/5002100")})
    judgement = judge(example_inventory(), state, "dc1", "dc2", HISTORY, None, frozenset({"dc1-a", "dc1-b"}))
    assert [(v.member, v.action) for v in judgement.verdicts] == [("dc1-a", "reclone"), ("dc1-b", "reclone")]
    plan = reattach_plan(example_inventory(), state, reattach_playbook(), "dc1", "dc2", judgement)
    start = next(s for s in plan.steps if s.id == "start-old-site")
    assert start.args["forget_initialize"] is True  # no member keeps data: Patroni must bootstrap a standby leader
    assert diverged_summary(start.args["members"]) == [
        "dc1-a diverged: WAL 0/5000100..0/5002100 (8192 bytes) never reached the new primary; "
        "re-cloned (its old data moved aside)",
        "dc1-b re-cloned on request (its old data moved aside)"]


# --- the start step's writability guard -------------------------------------------------------
# A fake Live: the testbed cannot make Patroni start a member as a primary under standby_cluster,
# so the guard that stops the run if one ever answers writable is provoked here.


class _WritableOldSite:
    timeout = 1.0

    def __init__(self, writers: list[str]):
        self.writers, self.started = writers, []

    def writable(self, site: str) -> list[str]:
        return list(self.writers) if site == "dc1" else ["dc2-a"]

    def patroni(self, name: str) -> dict:
        from migrator.errors import UnreachableError

        raise UnreachableError(f"{name}: refused")

    def ssh(self, name: str, command: str, **kwargs):
        self.started.append(name)
        raise AssertionError("nothing may be started while an old member is writable")


def test_the_start_step_stops_with_exit_4_when_an_old_member_is_writable():
    from migrator.errors import UnsafeStateError
    from migrator.model.plan import PlanGate, PlanStep, PlanUndo
    from migrator.steps.base import RunContext
    from migrator.steps.reattach import StartReattachedMembers

    spec = PlanStep(id="start-old-site", phase="reattach", kind="start_reattached_members", title="t",
                    args={"site": "dc1", "source": "dc2", "slot": "dc1", "forget_initialize": False,
                          "members": [{"name": "dc1-a", "start_command": "start dc1-a"}]},
                    gate=PlanGate(wait_for="w", timeout_seconds=2), undo=PlanUndo(kind="none"))
    live = _WritableOldSite(["dc1-b"])
    step = StartReattachedMembers(spec, RunContext(example_inventory(), None, live))  # type: ignore[arg-type]
    with pytest.raises(UnsafeStateError, match="dc1-b of dc1 accepts writes before its Patroni starts") as caught:
        step.apply()
    assert caught.value.exit_code == 4 and live.started == []


def test_a_paused_old_site_is_resumed_in_the_same_write_as_its_standby_cluster():
    from tests.helpers.snapshots import with_config

    state = with_config(failed_over(), "dc1", {"pause": True})
    plan = reattach_plan(example_inventory(), state, reattach_playbook(), "dc1", "dc2", judged(state))
    assert "pause" not in plan.config_after["dc1"] and plan.config_after["dc1"]["standby_cluster"]
    write = next(s for s in plan.steps if s.id == "standby-cluster-in-old-dcs")
    assert write.title.endswith("(and remove pause)")


def test_the_start_step_knows_where_a_failover_left_its_fence_marker():
    state = failed_over()
    plan = reattach_plan(example_inventory(), state, reattach_playbook(), "dc1", "dc2", judged(state))
    start = next(s for s in plan.steps if s.id == "start-old-site")
    site = example_inventory().site("dc1")
    for m in start.args["members"]:
        member = next(x for x in site.members if x.name == m["name"])
        assert m["fence_marker"] == site.patroni_config_for(member).rsplit("/", 1)[0] + "/MIGRATOR-FENCED"


def test_the_rewind_sends_the_password_on_stdin_never_on_a_command_line_and_keeps_patronis_files(monkeypatch):
    """A fake Live records what would run over SSH (the real rewind is proven on the testbed)."""
    from migrator.model.plan import PlanStep, PlanUndo
    from migrator.steps.base import RunContext
    from migrator.steps.reattach import RewindOrSetAside

    inventory = example_inventory()
    password = "pw-Rewind-123"
    monkeypatch.setattr(type(inventory.credentials.superuser.password), "reveal", lambda self: password)

    class Result:
        ok, exit_code, stderr = True, 0, ""

        def __init__(self, stdout: str):
            self.stdout = stdout

    class Live:
        timeout = 1.0

        def __init__(self):
            self.calls: list[tuple[str, str | None]] = []

        def member(self, name):
            site_name, site, member = inventory.member(name)
            return site, member

        def ssh(self, name, command, timeout=None, stdin=None):
            self.calls.append((command, stdin))
            return Result("pg_rewind: servers diverged at WAL location 0/5000100 on timeline 2\nmigrator-rewind:0\n")

    live = Live()
    spec = PlanStep(id="rewind-diverged", phase="reattach", kind="rewind_or_set_aside", title="t",
                    args={"site": "dc1", "source": "dc2", "members": []}, undo=PlanUndo(kind="none"))
    step = RewindOrSetAside(spec, RunContext(inventory, None, live))  # type: ignore[arg-type]
    member = {"name": "dc1-a", "data_dir": "/data/dc1-a", "bin_dir": "/usr/lib/postgresql/15/bin"}
    facts = step._rewind(member, "dc2-a")
    assert facts["pg_rewind"] == "pg_rewind: servers diverged at WAL location 0/5000100 on timeline 2"
    (command, stdin), = live.calls
    assert password and password not in command and stdin == password + "\n"
    assert "pg_rewind -D" in command and "postgresql.conf" in command and "pg_hba.conf" in command


# --- patroni.enable_command (the counterpart of the failover's disable_command) ---------------


def _inventory_with_patroni_keys(keys: str):
    from migrator.model.inventory import parse_inventory
    from tests.helpers.snapshots import EXAMPLE_INVENTORY

    stop = "      stop_command: /tmp/migrator-testbed/bin/patroni-service stop {member}\n"
    text = EXAMPLE_INVENTORY.read_text()
    assert text.count(stop) == 2
    text = text.replace(stop, stop + keys, 1)  # dc1's patroni section only
    return parse_inventory(text, source="x.yml", base_dir=EXAMPLE_INVENTORY.parent, check_local_files=False)


def test_enable_command_is_expanded_per_member_in_the_start_step_and_its_manual_line():
    inventory = _inventory_with_patroni_keys("      disable_command: systemctl disable patroni@{member}\n"
                                             "      enable_command: systemctl enable patroni@{member}\n")
    state = failed_over()
    judgement = judge(inventory, state, "dc1", "dc2", HISTORY, None)
    assert "reattach-service-disabled" not in by_check(judgement.findings)  # it is re-enabled: no warning
    plan = reattach_plan(inventory, state, reattach_playbook(), "dc1", "dc2", judgement)
    start = next(s for s in plan.steps if s.id == "start-old-site")
    assert {m["name"]: m["enable_command"] for m in start.args["members"]} == {
        "dc1-a": "systemctl enable patroni@dc1-a", "dc1-b": "systemctl enable patroni@dc1-b"}
    assert any("systemctl enable patroni@dc1-a && " in line for line in start.manual), start.manual


def test_without_enable_command_a_disabled_service_is_a_warning_and_the_arg_is_none():
    inventory = _inventory_with_patroni_keys("      disable_command: systemctl disable patroni@{member}\n")
    state = failed_over()
    judgement = judge(inventory, state, "dc1", "dc2", HISTORY, None)
    assert by_check(judgement.findings)["reattach-service-disabled"][0].verdict is Verdict.WARN
    plan = reattach_plan(inventory, state, reattach_playbook(), "dc1", "dc2", judgement)
    start = next(s for s in plan.steps if s.id == "start-old-site")
    assert [m["enable_command"] for m in start.args["members"]] == [None, None]


class _Result:
    def __init__(self, exit_code: int, stderr: str = ""):
        self.exit_code, self.ok, self.stdout, self.stderr = exit_code, exit_code == 0, "", stderr


class _StoppedOldSite:
    """A fake Live whose dc1 members are stopped and not writable; records every SSH command.
    Only to see the order of the commands (the testbed's services have no enable/disable)."""

    timeout = 1.0

    def __init__(self, enable_exit: int):
        self.enable_exit, self.commands = enable_exit, []

    def writable(self, site: str) -> list[str]:
        return [] if site == "dc1" else ["dc2-a"]

    def ssh(self, name: str, command: str, **kwargs):
        self.commands.append(command)
        return _Result(self.enable_exit if command.startswith("enable") else 0, "Unit patroni.service is masked.")


def _start_step(live):
    from migrator.model.plan import PlanGate, PlanStep, PlanUndo
    from migrator.steps.base import RunContext
    from migrator.steps.reattach import StartReattachedMembers

    spec = PlanStep(id="start-old-site", phase="reattach", kind="start_reattached_members", title="t",
                    args={"site": "dc1", "source": "dc2", "slot": "dc1", "forget_initialize": False,
                          "members": [{"name": "dc1-a", "start_command": "start dc1-a",
                                       "enable_command": "enable dc1-a"}]},
                    gate=PlanGate(wait_for="w", timeout_seconds=2), undo=PlanUndo(kind="none"))
    return StartReattachedMembers(spec, RunContext(example_inventory(), None, live))  # type: ignore[arg-type]


def test_the_start_step_enables_the_service_before_starting_it():
    live = _StoppedOldSite(enable_exit=0)
    _start_step(live)._start({"name": "dc1-a", "start_command": "start dc1-a", "enable_command": "enable dc1-a"})
    assert live.commands == ["enable dc1-a", "start dc1-a"]


def test_a_failed_enable_command_starts_nothing_and_names_the_command():
    from migrator.errors import UnreachableError

    live = _StoppedOldSite(enable_exit=1)
    with pytest.raises(UnreachableError, match=r"dc1-a: patroni.enable_command `enable dc1-a` failed \(exit 1\): "
                       r"Unit patroni.service is masked.*--resume"):
        _start_step(live)._start({"name": "dc1-a", "start_command": "start dc1-a", "enable_command": "enable dc1-a"})
    assert live.commands == ["enable dc1-a"]
