"""The pause / clean stop path needs every source member to answer on its REST API: a member
that does not (down, wrong TLS CA or host name, wrong api_url) blocks the plan before anything
changes, instead of a pause that times out and is undone a full gate later."""

from __future__ import annotations

from migrator.checks import run_checks
from migrator.model.findings import Verdict
from tests.helpers.snapshots import example_inventory, load_baseline, unreachable, with_member


def _finding(state):
    findings = run_checks(example_inventory(), state, "dc1", "dc2")
    return next(f for f in findings if f.check == "pause-path-reaches-source")


def test_graceful_path_needs_no_pause_and_passes():
    assert _finding(load_baseline()).verdict is Verdict.OK


def test_a_source_replica_without_rest_api_blocks_the_pause_path():
    tls = ("dc1-b: the TLS certificate of Patroni REST API at https://127.0.91.2:8008 is not issued "
           "for that host")
    state = unreachable(load_baseline(), "dc1-b", error=tls, probes=("patroni",))
    finding = _finding(state)
    assert finding.verdict is Verdict.BLOCK
    assert "dc1-b's Patroni REST API does not answer" in finding.finding
    assert "not issued" in finding.finding
    assert "make dc1-b's REST API answer" in finding.fix


def test_an_old_patroni_with_every_source_member_answering_passes():
    state = with_member(load_baseline(), "dc1-b", patroni={"version": "3.3.11"})
    assert _finding(state).verdict is Verdict.OK


def test_a_silent_target_member_does_not_block_it():
    # Only the source is paused; the target's missing member is another check's business.
    state = with_member(unreachable(load_baseline(), "dc2-b", probes=("patroni",)), "dc1-b",
                        patroni={"version": "3.3.11"})
    assert _finding(state).verdict is Verdict.OK
