"""When the cascade and repoint gates may pass on evidence instead of the lag window
(migrator/rules/streaming_evidence.py), on plain data shaped like Patroni 4.1's GET /cluster."""

from __future__ import annotations

import pytest

from migrator.rules.streaming_evidence import (
    MIN_SAMPLES,
    connections_span_window,
    evidence_holds,
    patroni_shows_streaming,
)

MARK = 0x50002B0
MEMBERS = ["dc1-a", "dc1-b"]


def cluster(**changes) -> dict:
    """dc1-b the standby leader (Patroni shows no LSN for it), dc1-a a replica, both streaming."""
    members = {
        "dc1-a": {"name": "dc1-a", "role": "replica", "state": "streaming", "timeline": 2,
                  "receive_lsn": "0/50002B0", "replay_lsn": "0/50002B0", "lag": 0},
        "dc1-b": {"name": "dc1-b", "role": "standby_leader", "state": "streaming", "timeline": 2},
    }
    for name, fields in changes.items():
        members[name.replace("_", "-")] = None if fields is None else {**members[name.replace("_", "-")], **fields}
    return {"members": [m for m in members.values() if m is not None], "scope": "dc1"}


def test_every_member_streaming_on_the_timeline_and_replayed_to_the_mark_holds():
    assert patroni_shows_streaming(cluster(), MEMBERS, 2, MARK) == (
        True, "Patroni's DCS view shows every member streaming")
    assert patroni_shows_streaming(cluster(), MEMBERS, None, MARK)[0]  # the cascade: no timeline asked


@pytest.mark.parametrize(("changes", "why"), [
    ({"dc1_a": None}, "does not list dc1-a"),
    ({"dc1_b": {"state": "running"}}, "shows dc1-b running, not streaming"),
    ({"dc1_a": {"timeline": 1}}, "dc1-a on timeline 1, not 2"),
    ({"dc1_b": {"timeline": "2"}}, "dc1-b on timeline '2', not 2"),
    ({"dc1_a": {"replay_lsn": "0/5000000"}}, "dc1-a replayed to 0/5000000, not yet 0/50002B0"),
    ({"dc1_a": {"replay_lsn": "garbage"}}, "dc1-a replayed to garbage"),
    ({"dc1_a": {"replay_lsn": None}}, "dc1-a replayed to None"),
])
def test_anything_short_of_it_is_refused_with_the_member_named(changes, why):
    ok, reason = patroni_shows_streaming(cluster(**changes), MEMBERS, 2, MARK)
    assert not ok and why in reason


@pytest.mark.parametrize("garbage", [None, [], "text", {"members": "x"}, {"members": [1, {"name": 3}]}])
def test_a_view_of_the_wrong_shape_is_not_evidence_and_not_an_exception(garbage):
    ok, reason = patroni_shows_streaming(garbage, MEMBERS, None, MARK)
    assert not ok and "does not list dc1-a" in reason


def test_our_own_half_needs_consecutive_samples_and_every_member_at_the_mark():
    assert not evidence_holds(MIN_SAMPLES - 1, MARK, MARK)[0]
    assert not evidence_holds(MIN_SAMPLES, None, MARK)[0]
    assert not evidence_holds(MIN_SAMPLES, MARK, None)[0]
    ok, why = evidence_holds(MIN_SAMPLES, MARK - 1, MARK)
    assert not ok and "not yet replayed to 0/50002B0" in why
    assert evidence_holds(MIN_SAMPLES, MARK, MARK) == (True, "2 consecutive samples, every member replayed to 0/50002B0")


def test_streams_older_than_the_window_prove_it_and_anything_else_does_not():
    assert connections_span_window(5.0, 5) == (
        True, "every member's stream one connection for 5s, over the 5s window")
    assert connections_span_window(7200.4, 10)[0]
    ok, why = connections_span_window(4.99, 5)
    assert not ok and "the newest stream has run 5.0s, not yet the 5s window" == why
    # A member whose WAL receiver's start is not shown, or a clock that says nonsense, is no proof.
    for age in (None, -1.0, float("nan"), float("inf")):
        ok, why = connections_span_window(age, 5)
        assert not ok and "does not show how long it has run" in why, age


def test_the_plan_says_which_way_the_streaming_gates_pass_and_why_the_window_stays():
    from tests.helpers.snapshots import example_inventory
    from tests.unit.test_planner import make_plan

    inventory = example_inventory()
    window = inventory.gates.lag_window_seconds
    for step in (s for s in make_plan().steps if s.kind in ("wait_cascade", "wait_repoint")):
        assert step.args["evidence"] is True and step.args["window_seconds"] == window
        assert step.args["window_from_stream_start"] is True
        assert "Patroni's own DCS view" in step.gate.threshold and "the window stays only as" in step.gate.threshold
        assert f"one connection for {window} s or more (PostgreSQL's own clock" in step.gate.threshold
    strict = inventory.model_copy(update={"gates": inventory.gates.model_copy(update={"lag_evidence": False})})
    for step in (s for s in make_plan(inventory=strict).steps if s.kind in ("wait_cascade", "wait_repoint")):
        assert step.args["evidence"] is False and step.args["window_from_stream_start"] is False
        assert step.gate.threshold.endswith(f"for {window} s in a row (gates.lag_evidence is off)"), step.gate.threshold
