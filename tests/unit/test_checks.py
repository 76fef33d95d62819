"""Preflight checks: each test is the observed healthy testbed plus one named mutation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrator.checks import CHECK_IDS, run_checks, worst
from migrator.rules.patroni_version import version_tuple
from migrator.errors import UsageError
from migrator.model.findings import Finding, Verdict
from migrator.model.state import ServiceState
from tests.helpers.snapshots import (
    load_baseline,
    member,
    streaming_from,
    example_inventory,
    unreachable,
    with_config,
    with_member,
    with_replication,
    with_settings,
    with_site,
    with_slot,
    with_system_identifier,
    without_slot,
)

# What the healthy testbed is expected to warn about: it runs without a watchdog device (set in
# tests/testbed/patroni_config.py) and with PostgreSQL's default max_slot_wal_keep_size (-1).
BASELINE_WARNINGS = {"watchdog", "max-slot-wal-keep-size"}
ALL_MEMBERS = ("dc1-a", "dc1-b", "dc2-a", "dc2-b")
GATE = example_inventory().gates.max_replay_lag_bytes


def run(state: ServiceState, source: str = "dc1", target: str = "dc2") -> list[Finding]:
    return run_checks(example_inventory(), state, source, target)


def finding(state: ServiceState, check: str, source: str = "dc1", target: str = "dc2") -> Finding:
    return next(f for f in run(state, source, target) if f.check == check)


def describe(findings: list[Finding]) -> str:
    return "\n".join(f"{f.verdict.value} {f.check}: {f.finding}" for f in findings
                     if f.verdict is not Verdict.OK)


def assert_well_formed(findings: list[Finding]) -> None:
    assert [f.check for f in findings] == list(CHECK_IDS)
    for f in findings:
        assert f.finding and "\n" not in f.finding, f
        assert (f.fix is None) == (f.verdict is Verdict.OK), f
        assert f.fix is None or "\n" not in f.fix
        assert "could not read this snapshot" not in f.finding, f


# --- the baseline -----------------------------------------------------------------------------


def test_check_ids_are_stable_unique_and_each_gives_one_finding():
    findings = run(load_baseline())
    assert len(set(CHECK_IDS)) == len(CHECK_IDS) >= 21
    assert CHECK_IDS[0] == "members-reachable"
    assert_well_formed(findings)


def test_healthy_testbed_has_no_block_and_only_the_expected_warnings():
    findings = run(load_baseline())
    warned = {f.check for f in findings if f.verdict is Verdict.WARN}
    assert worst(findings) is not Verdict.BLOCK, describe(findings)
    assert warned <= BASELINE_WARNINGS, describe(findings)
    assert "watchdog" in warned


def test_ok_findings_name_what_was_observed():
    by_id = {f.check: f for f in run(load_baseline())}
    assert "dc1-a" in by_id["single-writer"].finding
    assert "dc2-a" in by_id["target-follows-source-leader"].finding
    assert "dc1-a" in by_id["target-follows-source-leader"].finding
    assert "slot dc2" in by_id["slot-for-target"].finding
    assert str(GATE) in by_id["replay-lag"].finding


# --- blocking cases ---------------------------------------------------------------------------


def _lag_over_gate(state: ServiceState) -> ServiceState:
    replayed = member(state, "dc2-a").postgres.replay_lsn
    return with_member(state, "dc1-a", postgres={"current_lsn": replayed + GATE + 1})


def _no_free_walsender_on_target(state: ServiceState) -> ServiceState:
    in_use = len(member(state, "dc2-a").postgres.replication)
    return with_settings(state, "dc2-a", max_wal_senders=str(in_use))


def _no_room_for_source_slot_on_target(state: ServiceState) -> ServiceState:
    state = without_slot(state, "dc2-a", "dc1")
    used = len(member(state, "dc2-a").postgres.slots)
    return with_settings(state, "dc2-a", max_replication_slots=str(used))


def _strict_sync_without_sync_standby(state: ServiceState) -> ServiceState:
    state = with_config(state, "dc1", {"synchronous_mode": True, "synchronous_mode_strict": True})
    return with_replication(state, "dc1-a", sync_state="async")


def _nofailover(*names: str) -> Callable[[ServiceState], ServiceState]:
    def mutate(state: ServiceState) -> ServiceState:
        for name in names:
            state = with_member(state, name, patroni={"tags": {"nofailover": True}})
        return state

    return mutate


BLOCKS: dict[str, tuple[Callable[[ServiceState], ServiceState], str, list[str]]] = {
    # case: (mutation of the baseline, check id, words the finding must contain)
    "two writable members in dc1": (
        lambda s: with_member(s, "dc1-b", postgres={"in_recovery": False}),
        "single-writer", ["2 writable members in dc1", "dc1-a", "dc1-b", "split brain"]),
    "no writable member": (
        lambda s: with_member(s, "dc1-a", postgres={"in_recovery": True}),
        "single-writer", ["no writable member"]),
    "writable members in both sites": (
        lambda s: with_member(s, "dc2-a", postgres={"in_recovery": False}),
        "single-writer", ["several sites", "dc1-a (dc1)", "dc2-a (dc2)"]),
    "target standby leader streams from a member outside the source": (
        lambda s: streaming_from(s, "dc2-a", "dc2-b"),
        "target-follows-source-leader",
        ["dc2-a streams from dc2-b (127.0.2.2", "not from dc1's leader dc1-a (127.0.1.1)"]),
    "target standby leader not streaming": (
        lambda s: with_member(s, "dc2-a", postgres={"wal_receiver": {"status": "waiting"}}),
        "target-follows-source-leader", ["dc2-a's WAL receiver is waiting, not streaming"]),
    "target standby leader without WAL receiver": (
        lambda s: with_member(s, "dc2-a", postgres={"wal_receiver": None}),
        "target-follows-source-leader", ["dc2-a has no WAL receiver"]),
    "slot dc2 missing on dc1": (
        lambda s: without_slot(s, "dc1-a", "dc2"),
        "slot-for-target", ["slot dc2 missing on dc1", "dc1-a"]),
    "WAL of slot dc2 lost": (
        lambda s: with_slot(s, "dc1-a", "dc2", wal_status="lost"),
        "slot-for-target", ["WAL needed by slot dc2 is no longer on dc1", "lost"]),
    "WAL of slot dc2 unreserved": (
        lambda s: with_slot(s, "dc1-a", "dc2", wal_status="unreserved"),
        "slot-for-target", ["slot dc2", "unreserved"]),
    "slot dc2 inactive": (
        lambda s: with_slot(s, "dc1-a", "dc2", active=False),
        "slot-for-target", ["slot dc2 on dc1 is inactive"]),
    "slot dc2 logical": (
        lambda s: with_slot(s, "dc1-a", "dc2", slot_type="logical", database="postgres"),
        "slot-for-target", ["slot dc2 on dc1 is logical, not physical"]),
    "slot dc2 not permanent in dc1's config": (
        lambda s: with_config(s, "dc1", {"slots": {"dc2": None}}),
        "slot-for-target", ["slot dc2 is not a permanent slot in dc1's dynamic config"]),
    "dc2 consumes another slot name": (
        lambda s: with_config(s, "dc2", {"standby_cluster": {"primary_slot_name": "other"}}),
        "slot-for-target", ["primary_slot_name is other", "slot dc2"]),
    "replay lag over the gate": (
        _lag_over_gate, "replay-lag", ["dc2-a", "dc1-a", f"{GATE + 1} bytes", f"{GATE}-byte gate"]),
    "dc2 paused in its config": (
        lambda s: with_config(s, "dc2", {"pause": True}),
        "paused", ["dc2 is paused", "pause: true"]),
    "dc1 paused as a member reports": (
        lambda s: with_member(s, "dc1-b", patroni={"pause": True}),
        "paused", ["dc1 is paused", "dc1-b"]),
    "dc2 etcd down": (
        lambda s: with_site(s, "dc2", dcs={"healthy": False, "error": "context deadline exceeded"}),
        "dcs-quorum", ["dc2 etcd at", "not healthy", "context deadline exceeded"]),
    "system identifier differs": (
        lambda s: with_system_identifier(s, "dc2", "7000000000000000001"),
        "system-identifier",
        ["system identifiers differ", "7000000000000000001", "dc2-a", "dc2-b"]),
    "target leader unreachable": (
        lambda s: unreachable(s, "dc2-a", error="connection refused"),
        "members-reachable", ["dc2-a (dc2 leader)", "connection refused"]),
    "source leader unreachable": (
        lambda s: unreachable(s, "dc1-a", error="timed out after 5s"),
        "members-reachable", ["dc1-a (dc1 leader)", "timed out after 5s"]),
    "source is a standby cluster too": (
        lambda s: with_config(s, "dc1", {"standby_cluster": {
            "host": "127.0.2.1,127.0.2.2", "port": 5432, "primary_slot_name": "dc1"}}),
        "source-is-primary", ["dc1 is a standby cluster", "not the primary site"]),
    "target is not a standby cluster": (
        lambda s: with_config(s, "dc2", {"standby_cluster": None}),
        "source-is-primary", ["dc2 is not a standby cluster"]),
    "source leader in recovery": (
        lambda s: with_member(s, "dc1-a", postgres={"in_recovery": True}),
        "source-is-primary", ["dc1's leader dc1-a is in recovery"]),
    "every target member has nofailover": (
        _nofailover("dc2-a", "dc2-b"),
        "nofailover-target", ["every observed dc2 member has nofailover", "dc2-a", "dc2-b"]),
    "member name used in both sites": (
        lambda s: with_site(s, "dc2", dcs={"members": {"dc1-b": {"role": "replica"}}}),
        "unique-member-names", ["member name dc1-b is used in dc1 and dc2"]),
    "no free WAL sender on the target leader": (
        _no_free_walsender_on_target, "walsender-headroom", ["dc2-a", "no free WAL sender"]),
    "no room for the source's slot on the target leader": (
        _no_room_for_source_slot_on_target, "slot-headroom", ["dc2-a", "no room for slot dc1"]),
}


@pytest.mark.parametrize("case", list(BLOCKS), ids=list(BLOCKS))
def test_blocking_case_names_what_it_saw(case):
    mutate, check, words = BLOCKS[case]
    found = finding(mutate(load_baseline()), check)
    assert found.verdict is Verdict.BLOCK, found
    for word in words:
        assert word in found.finding, (word, found.finding)
    assert found.fix


def test_lost_slot_fix_says_re_seed_the_target():
    state = with_slot(load_baseline(), "dc1-a", "dc2", wal_status="lost")
    found = finding(state, "slot-for-target")
    assert "re-seed the target" in found.fix


def test_split_brain_names_both_members_in_the_finding_fields():
    found = finding(with_member(load_baseline(), "dc1-b", postgres={"in_recovery": False}),
                    "single-writer")
    assert set(found.members) == {"dc1-a", "dc1-b"} and found.site == "dc1"


def test_following_a_replica_points_at_the_fixed_address_trap():
    found = finding(streaming_from(load_baseline(), "dc2-a", "dc2-b"),
                    "target-follows-source-leader")
    assert "session is read-only" in found.fix and "standby_cluster.host" in found.fix


# --- warning cases ----------------------------------------------------------------------------


WARNINGS: dict[str, tuple[Callable[[ServiceState], ServiceState], str, list[str]]] = {
    "target replica cascades from the source": (
        lambda s: streaming_from(s, "dc2-b", "dc1-a"),
        "target-replicas-cascade", ["dc2-b streams from dc1-a", "not from dc2's standby leader"]),
    "target replica not streaming": (
        lambda s: with_member(s, "dc2-b", postgres={"wal_receiver": None}),
        "target-replicas-cascade", ["dc2-b is not streaming"]),
    "source replica unreachable": (
        lambda s: unreachable(s, "dc1-b", error="no route to host"),
        "members-reachable", ["dc1-b (dc1 replica)", "no route to host"]),
    "SSH to the source leader fails": (
        lambda s: unreachable(s, "dc1-a", error="host key mismatch", probes=("host",)),
        "members-reachable", ["dc1-a (dc1) over SSH", "host key mismatch"]),
    "slot for the source not yet in the target's config": (
        lambda s: with_config(s, "dc2", {"slots": {"dc1": None}}),
        "slot-for-source", ["slot dc1 is not a permanent slot in dc2's dynamic config"]),
    "slot for the source in config but not yet created": (
        lambda s: without_slot(s, "dc2-a", "dc1"),
        "slot-for-source", ["not yet on dc2-a"]),
    "standby_cluster.host is a single member address": (
        lambda s: with_config(s, "dc2", {"standby_cluster": {"host": "127.0.1.1"}}),
        "target-follows-source-leader", ["single address 127.0.1.1 (dc1-a)"]),
    "standby_cluster.host list leaves a member out": (
        lambda s: with_config(s, "dc2", {"standby_cluster": {"host": "127.0.1.1,127.0.91.9"}}),
        "target-follows-source-leader", ["leaves out dc1-b (127.0.1.2)"]),
    "older Patroni on the source leader": (
        lambda s: with_member(s, "dc1-a", patroni={"version": "3.3.11"}),
        "patroni-version", ["dc1-a (3.3.11)", "pause / clean stop / resume"]),
    "Patroni 4.0 is older than 4.1": (
        lambda s: with_member(s, "dc2-b", patroni={"version": "4.0.9"}),
        "patroni-version", ["dc2-b (4.0.9)"]),
    "Patroni version unknown": (
        lambda s: with_member(s, "dc2-b", patroni={"version": None},
                              host_facts={"patroni_version": None}),
        "patroni-version", ["Patroni version unknown on dc2-b"]),
    "some target members have nofailover": (
        _nofailover("dc2-b"), "nofailover-target", ["nofailover on dc2-b"]),
    "synchronous mode on the source": (
        lambda s: with_config(s, "dc1", {"synchronous_mode": True}),
        "synchronous-mode", ["dc1 uses synchronous_mode", "no synchronous standby"]),
    "use_pg_rewind off on the target": (
        lambda s: with_config(s, "dc2", {"postgresql": {"use_pg_rewind": False}}),
        "rewind-fallback", ["use_pg_rewind is not true in dc2's dynamic config"]),
    "neither wal_log_hints nor checksums": (
        lambda s: with_settings(s, "dc1-b", wal_log_hints="off", data_checksums="off"),
        "rewind-fallback", ["wal_log_hints off and data_checksums off on dc1-b"]),
    "one free WAL sender on the source leader": (
        lambda s: with_settings(s, "dc1-a", max_wal_senders=str(
            len(member(s, "dc1-a").postgres.replication) + 1)),
        "walsender-headroom", ["dc1-a", "one free"]),
    "logical slot on the source": (
        lambda s: with_slot(s, "dc1-a", "cdc_orders", slot_type="logical", database="app",
                            active=True),
        "logical-slots", ["cdc_orders (dc1-a)", "do not follow to a standby cluster"]),
    "archiving fails on the source leader": (
        lambda s: with_member(with_settings(s, "dc1-a", archive_mode="on"), "dc1-a", postgres={
            "archiver_failed_count": 3, "archiver_last_failed_wal": "00000001000000000000000A"}),
        "archiving", ["failed 3 time(s) on dc1-a", "00000001000000000000000A"]),
    "watchdog not readable": (
        lambda s: unreachable(s, "dc2-b", probes=("host",)),
        "watchdog", ["dc2-b (not readable)"]),
    "etcd cluster size unknown": (
        lambda s: with_site(s, "dc1", dcs={"cluster_size": None}),
        "dcs-quorum", ["dc1 etcd", "cluster size is unknown"]),
    "a member missing from the inventory": (
        lambda s: with_site(s, "dc2", dcs={"members": {"dc2-z": {"role": "replica"}}}),
        "unique-member-names", ["member dc2-z, which is not in the inventory"]),
    "target standby leader streams from a source replica": (
        lambda s: streaming_from(s, "dc2-a", "dc1-b"),
        "target-follows-source-leader",
        ["dc2-a streams from dc1's replica dc1-b (127.0.1.2)", "not from its leader dc1-a"]),
    # Observed on Patroni 4.1.5: the demotion empties synchronous_standby_names, it never blocks.
    "strict synchronous mode without a sync standby": (
        _strict_sync_without_sync_standby,
        "synchronous-mode", ["dc1 has synchronous_mode_strict", "no synchronous standby", "dc1-a"]),
}


@pytest.mark.parametrize("case", list(WARNINGS), ids=list(WARNINGS))
def test_warning_case_names_what_it_saw(case):
    mutate, check, words = WARNINGS[case]
    findings = run(mutate(load_baseline()))
    found = next(f for f in findings if f.check == check)
    assert found.verdict is Verdict.WARN, found
    for word in words:
        assert word in found.finding, (word, found.finding)
    assert found.fix


def test_missing_slot_for_the_source_is_left_to_the_pre_seed_step():
    state = with_config(load_baseline(), "dc2", {"slots": {"dc1": None}})
    found = finding(state, "slot-for-source")
    assert "the pre-seed step adds it" in found.fix


def test_unreachable_replica_does_not_block_the_move():
    findings = run(unreachable(load_baseline(), "dc2-b"))
    assert worst(findings) is Verdict.WARN, describe(findings)


# --- ok cases and special states --------------------------------------------------------------


def test_watchdog_required_everywhere_is_ok():
    state = load_baseline()
    for name in ALL_MEMBERS:
        state = with_member(state, name, host_facts={"watchdog_mode": "required"})
    assert finding(state, "watchdog").verdict is Verdict.OK


def test_bounded_max_slot_wal_keep_size_is_ok():
    state = with_settings(load_baseline(), *ALL_MEMBERS, max_slot_wal_keep_size="10240")
    found = finding(state, "max-slot-wal-keep-size")
    assert found.verdict is Verdict.OK and "10240" in found.finding


def test_patroni_versions_compare_numerically():
    state = with_member(load_baseline(), "dc1-a", patroni={"version": "4.10.0"})
    assert finding(state, "patroni-version").verdict is Verdict.OK
    assert version_tuple("4.10.0") > version_tuple("4.9.9") > version_tuple("4.1")
    assert version_tuple("v3.3.11.post1") == (3, 3, 11)
    assert version_tuple("unknown") is None and version_tuple(None) is None


def test_standby_leader_behind_a_vip_is_matched_by_application_name():
    # sender_host is an address no member has (a VIP): dc1-a's pg_stat_replication decides.
    state = with_member(load_baseline(), "dc2-a",
                        postgres={"wal_receiver": {"sender_host": "127.0.91.99"}})
    assert finding(state, "target-follows-source-leader").verdict is Verdict.OK
    state = with_replication(state, "dc1-a", application_name="someone-else")
    assert finding(state, "target-follows-source-leader").verdict is Verdict.BLOCK


def test_unreadable_config_falls_back_to_the_dcs_copy_and_the_roles():
    state = with_site(load_baseline(), "dc2", dynamic_config=None, config_error="HTTP 503")
    assert finding(state, "source-is-primary").verdict is Verdict.OK
    state = with_site(state, "dc2", dcs={"config": None})
    assert finding(state, "source-is-primary").verdict is Verdict.OK  # dc2-a says standby_leader
    assert finding(state, "slot-for-source").verdict is Verdict.WARN


def test_target_already_primary_says_nothing_to_move_and_blocks_nothing():
    # The baseline seen as a move to dc1: dc1 already leads and dc2 follows it.
    findings = run(load_baseline(), source="dc2", target="dc1")
    by_id = {f.check: f for f in findings}
    assert worst(findings) is Verdict.WARN, describe(findings)
    assert by_id["source-is-primary"].verdict is Verdict.WARN
    assert "nothing to move" in by_id["source-is-primary"].finding
    for check in ("target-follows-source-leader", "slot-for-target", "replay-lag"):
        assert by_id[check].finding.startswith("not applicable"), by_id[check]


def test_target_that_is_the_source_and_primary_says_nothing_to_move():
    # The planner derives the source from the primary site: a finished move arrives like this.
    findings = run(load_baseline(), source="dc1", target="dc1")
    assert_well_formed(findings)
    assert worst(findings) is Verdict.WARN, describe(findings)
    found = next(f for f in findings if f.check == "source-is-primary")
    assert "dc1 is already the primary site: nothing to move" in found.finding


@pytest.mark.parametrize(("source", "target"), [("dc1", "dc9"), ("dc9", "dc2")])
def test_unknown_sites_are_usage_errors(source, target):
    with pytest.raises(UsageError, match="dc9"):
        run(load_baseline(), source, target)


def test_worst_verdict():
    def make(verdict: Verdict) -> Finding:
        return Finding(check="x", verdict=verdict, finding="f",
                       fix=None if verdict is Verdict.OK else "fix")

    assert worst([]) is Verdict.OK
    assert worst([make(Verdict.OK), make(Verdict.WARN)]) is Verdict.WARN
    assert worst([make(Verdict.BLOCK), make(Verdict.WARN), make(Verdict.OK)]) is Verdict.BLOCK


# --- any damage: never raises, one finding per check ------------------------------------------

ROLES = ("primary", "master", "replica", "standby_leader", "demoted", None)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    down=st.dictionaries(st.sampled_from(ALL_MEMBERS),
                         st.sets(st.sampled_from(("patroni", "postgres", "host")), min_size=1)),
    flips=st.sets(st.sampled_from(ALL_MEMBERS)),
    roles=st.dictionaries(st.sampled_from(ALL_MEMBERS), st.sampled_from(ROLES)),
    no_receiver=st.sets(st.sampled_from(ALL_MEMBERS)),
    dcs_down=st.sets(st.sampled_from(("dc1", "dc2"))),
    direction=st.sampled_from([("dc1", "dc2"), ("dc2", "dc1"), ("dc1", "dc1"), ("dc2", "dc2")]),
)
def test_any_damage_gives_one_finding_per_check_and_never_raises(
        down, flips, roles, no_receiver, dcs_down, direction):
    state = load_baseline()
    for name in flips:
        state = with_member(state, name, postgres={
            "in_recovery": not member(state, name).postgres.in_recovery})
    for name in no_receiver:
        state = with_member(state, name, postgres={"wal_receiver": None})
    for name, role in roles.items():
        state = with_member(state, name, patroni={"role": role})
    for site in dcs_down:
        state = with_site(state, site, dcs={"healthy": False, "leader": None, "error": "down"})
    for name, probes in down.items():
        state = unreachable(state, name, probes=tuple(sorted(probes)))
    findings = run(state, *direction)
    assert_well_formed(findings)
