"""The rules several layers read, written once: the Patroni version parser (the checks' warning
and the planner's demotion path agree on every version string), the synchronous-mode predicate,
and a site's leader (the checks and the planner name the same member)."""

from __future__ import annotations

import pytest

from migrator.checks import run_checks
from migrator.model.findings import Verdict
from migrator.rules.patroni_version import GRACEFUL_DEMOTE_MIN_PATRONI, graceful_demote_possible, version_tuple
from migrator.rules.sync_mode import sync_mode_on
from tests.helpers.snapshots import example_inventory, load_baseline, unreachable, with_member, with_site

VERSIONS = {
    "4.1.5": (4, 1, 5),
    "4.0.0rc1": (4, 0, 0),
    "v3": (3,),
    "v3.3.11.post1": (3, 3, 11),
    "  4.1": (4, 1),
    "4.1.5.6": (4, 1, 5),  # at most major.minor.patch
    "4.10.0": (4, 10, 0),
    "": None,
    "unknown": None,
    "rc1": None,
    None: None,
}


@pytest.mark.parametrize("text", list(VERSIONS), ids=[repr(t) for t in VERSIONS])
def test_version_tuple_reads_the_release_numbers_a_version_starts_with(text):
    assert version_tuple(text) == VERSIONS[text]


def test_versions_compare_as_numbers_not_as_text():
    assert version_tuple("4.10.0") > version_tuple("4.9.9") > version_tuple("4.1") >= GRACEFUL_DEMOTE_MIN_PATRONI
    assert version_tuple("4.0.0rc1") < GRACEFUL_DEMOTE_MIN_PATRONI
    assert version_tuple("v3") < GRACEFUL_DEMOTE_MIN_PATRONI


@pytest.mark.parametrize("text", ["4.1.5", "4.0.0rc1", "v3", "5", "unknown"])
def test_the_version_check_and_the_demotion_path_agree(text):
    """Older or unknown on one member: the check does not say OK and the plan takes the pause path."""
    state = with_member(load_baseline(), "dc1-b", patroni={"version": text})
    found = {f.check: f for f in run_checks(example_inventory(), state, "dc1", "dc2")}["patroni-version"]
    graceful = graceful_demote_possible(state, ["dc1", "dc2"])
    assert graceful == (found.verdict is Verdict.OK)


@pytest.mark.parametrize(
    ("value", "on"),
    [(True, True), ("on", True), (" Quorum ", True), ("yes", True), ("1", True),
     (False, False), ("off", False), (None, False), (1, False), ("", False)],
)
def test_sync_mode_on_reads_the_value_as_patroni_does(value, on):
    assert sync_mode_on(value) is on


def test_a_site_leader_is_named_by_its_own_word_first():
    assert load_baseline().sites["dc1"].leader.name == "dc1-a"
    assert load_baseline().sites["dc2"].leader.name == "dc2-a"


def test_a_site_leader_unreachable_is_the_dcs_leader_key_holder():
    state = unreachable(load_baseline(), "dc2-a")
    assert state.sites["dc2"].leader.name == "dc2-a"


def test_a_leader_only_get_cluster_names_is_not_taken_as_observed():
    """GET /cluster answered by a replica lags during transitions: with the leader silent and
    etcd unread, the checks and the planner both see no leader (and block), as one reading."""
    state = with_site(unreachable(load_baseline(), "dc2-a"), "dc2", dcs={"leader": None})
    cluster = {"members": [{"name": "dc2-a", "role": "standby_leader"}, {"name": "dc2-b", "role": "replica"}]}
    state = with_site(state, "dc2", cluster=cluster)
    assert state.sites["dc2"].leader is None
    found = {f.check: f for f in run_checks(example_inventory(), state, "dc1", "dc2")}
    assert found["members-reachable"].verdict is Verdict.BLOCK
    assert "dc2-a (dc2 leader unknown)" in found["members-reachable"].finding
