"""The checks run in one explicit order (checks/__init__.py ORDER), whichever topic module holds
them: the findings order of every report and plan, and so part of a plan's fingerprint. The list
below is the order the checks had when they were registered by their place in one file."""

from __future__ import annotations

import pytest

from migrator.checks import CHECK_IDS, CHECKS, ORDER, replication, run_checks, settings, synchronous, topology
from migrator.checks.base import REGISTERED, check
from tests.helpers.snapshots import example_inventory, load_baseline

BEFORE_THE_SPLIT = [
    ("members-reachable", "members_reachable"),
    ("dcs-quorum", "dcs_quorum"),
    ("paused", "paused"),
    ("system-identifier", "system_identifier"),
    ("unique-member-names", "unique_member_names"),
    ("single-writer", "single_writer"),
    ("source-is-primary", "source_is_primary"),
    ("token-readable", "token_readable"),
    ("target-follows-source-leader", "target_follows_source_leader"),
    ("target-replicas-cascade", "target_replicas_cascade"),
    ("slot-for-target", "slot_for_target"),
    ("slot-for-source", "slot_for_source"),
    ("replay-lag", "replay_lag"),
    ("synchronous-mode", "synchronous_mode"),
    ("nofailover-target", "nofailover_target"),
    ("patroni-version", "patroni_version"),
    ("rewind-fallback", "rewind_fallback"),
    ("walsender-headroom", "walsender_headroom"),
    ("slot-headroom", "slot_headroom"),
    ("max-slot-wal-keep-size", "max_slot_wal_keep_size"),
    ("logical-slots", "logical_slots"),
    ("archiving", "archiving"),
    ("watchdog", "watchdog"),
    ("target-wal-available", "target_wal_available"),
    ("pause-path-reaches-source", "pause_path_reaches_source"),
    ("synchronous-mode-target", "synchronous_mode_target"),
    ("orphaned-standby", "orphaned_standby"),
]


def test_the_checks_run_in_the_order_they_had_before_the_split():
    assert [(check_id, function.__name__) for check_id, function in CHECKS] == BEFORE_THE_SPLIT
    assert list(CHECK_IDS) == list(ORDER) == [check_id for check_id, _ in BEFORE_THE_SPLIT]


def test_the_findings_come_in_that_order():
    found = run_checks(example_inventory(), load_baseline(), "dc1", "dc2")
    assert [f.check for f in found] == list(ORDER)


def test_every_topic_module_holds_checks_and_every_check_is_in_one():
    homes = {function.__module__ for function in REGISTERED.values()}
    assert homes == {m.__name__ for m in (topology, replication, synchronous, settings)}


def test_a_check_id_cannot_be_registered_twice():
    with pytest.raises(ValueError, match="registered twice"):
        check("replay-lag")(lambda ctx: None)
    assert REGISTERED["replay-lag"].__name__ == "replay_lag"
