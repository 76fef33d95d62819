"""One refusal line for blocking findings: `migrate plan`/`execute`/`rollback` and the preflight
steps all stop with `<what>: <check>: <finding>; <fix> (and N more blocking)`, built by
`first_blocking_line`, and the steps re-check through the same `findings_of` as planning."""

from __future__ import annotations

import pytest

from migrator.errors import PreflightError
from migrator.model.findings import Finding, Verdict, first_blocking_line
from migrator.planning.preflight import findings_of, preflight, refuse_if_blocked
from tests.helpers.snapshots import example_inventory, load_baseline, member, unreachable, with_member
from tests.unit.test_seed import MIB, empty_dc2, facts, wal_gone


def _finding(check: str, verdict: Verdict, fix: str | None = None) -> Finding:
    return Finding(check=check, verdict=verdict, finding=f"{check} observed", fix=fix)


def test_nothing_blocking_gives_no_line():
    assert first_blocking_line("cannot plan", []) is None
    assert first_blocking_line("cannot plan", [_finding("a", Verdict.OK), _finding("b", Verdict.WARN, "do b")]) is None


def test_the_line_names_the_first_blocking_check_its_finding_and_its_fix():
    found = [_finding("a", Verdict.WARN, "do a"), _finding("b", Verdict.BLOCK, "do b")]
    assert first_blocking_line("cannot plan", found) == "cannot plan: b: b observed; do b"


def test_a_blocking_finding_without_a_fix_ends_with_its_finding():
    assert first_blocking_line("seeding refused", [_finding("b", Verdict.BLOCK)]) == "seeding refused: b: b observed"


def test_the_line_counts_the_other_blocking_findings_only():
    found = [
        _finding("a", Verdict.BLOCK, "do a"),
        _finding("b", Verdict.OK),
        _finding("c", Verdict.BLOCK),
        _finding("d", Verdict.BLOCK, "do d"),
    ]
    assert first_blocking_line("the plan is blocked", found) == "the plan is blocked: a: a observed; do a (and 2 more blocking)"


def _lag_over_gate():
    state = load_baseline()
    replayed = member(state, "dc2-a").postgres.replay_lsn
    gate = example_inventory().gates.max_replay_lag_bytes
    return with_member(state, "dc1-a", postgres={"current_lsn": replayed + gate + 1})


def test_the_preflight_step_refuses_with_the_line_of_the_checks_planning_ran():
    inventory, state = example_inventory(), _lag_over_gate()
    planned = preflight(inventory, state, "dc2")
    with pytest.raises(PreflightError) as refused:
        refuse_if_blocked(inventory, "dc1", "dc2", "switchover", "preflight blocks", state)
    assert str(refused.value) == first_blocking_line("preflight blocks", planned.findings)
    assert str(refused.value).startswith("preflight blocks: ")


def test_the_preflight_step_passes_a_healthy_snapshot():
    refuse_if_blocked(example_inventory(), "dc1", "dc2", "switchover", "preflight blocks", load_baseline())


def test_the_seed_preflight_refuses_a_target_without_disk_room(monkeypatch):
    monkeypatch.setattr("migrator.planning.preflight.observe_seed", lambda *_: facts(free_bytes=1 * MIB))
    with pytest.raises(PreflightError, match=r"^seeding refused: seed-target-disk: "):
        refuse_if_blocked(example_inventory(), "dc1", "dc2", "seed", "seeding refused", empty_dc2())


def test_findings_of_a_plan_kind_are_those_preflight_decided():
    inventory = example_inventory()
    for state, proposal in ((load_baseline(), "switchover"), (empty_dc2(), "seed"), (wal_gone(16 * MIB), "reseed")):
        decided = preflight(inventory, state, "dc2", lambda *_: facts())
        assert decided.proposal == proposal
        again = findings_of(inventory, state, "dc1", "dc2", proposal, observe_seed_facts=lambda *_: facts())
        assert [f.model_dump() for f in again] == [f.model_dump() for f in decided.findings]


def test_planning_without_a_primary_refuses_with_the_same_line():
    inventory, state = example_inventory(), unreachable(load_baseline(), "dc1-a", "dc1-b")
    decided = preflight(inventory, state, "dc2")
    from migrator.planning.preflight import plan_from_preflight

    with pytest.raises(PreflightError) as refused:
        plan_from_preflight(inventory, state, decided)
    assert str(refused.value) == first_blocking_line("cannot plan", decided.findings)
