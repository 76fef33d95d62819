"""`migrate check` decides from the same planning function as `migrate plan` (issue 10, item 11):
on the same snapshot both reach the same verdict, the same exit code and the same plan (by
fingerprint), a re-seed where the target's WAL is gone included. The seeding facts (SSH to the
target hosts) are passed in as data, the snapshots are the baseline plus named mutations."""

from __future__ import annotations

import json

import pytest

from migrator import cli
from migrator.errors import PreflightError
from migrator.model.findings import Verdict
from migrator.planning.preflight import check_outcome, plan_from_state
from migrator.model.state import ServiceState
from tests.helpers.snapshots import example_inventory, load_baseline, member, unreachable, with_member
from tests.unit.test_seed import MIB, empty_dc2, facts, wal_gone


def _seed_facts(*_args):
    """Empty data directories with room: what an empty target's hosts show (a re-seed moves a
    full one aside, so it does not look at them)."""
    return facts()


def _lag_over_gate() -> ServiceState:
    state = load_baseline()
    replayed = member(state, "dc2-a").postgres.replay_lsn
    gate = example_inventory().gates.max_replay_lag_bytes
    return with_member(state, "dc1-a", postgres={"current_lsn": replayed + gate + 1})


SNAPSHOTS = {
    "healthy, to dc2": (load_baseline, "dc2", "switchover", 0),
    "healthy, to the primary itself": (load_baseline, "dc1", "switchover", 0),
    "replay lag over the gate": (_lag_over_gate, "dc2", "switchover", 1),
    "empty target": (empty_dc2, "dc2", "seed", 0),
    "target's WAL gone": (lambda: wal_gone(16 * MIB), "dc2", "reseed", 0),
}


@pytest.mark.parametrize("case", list(SNAPSHOTS), ids=list(SNAPSHOTS))
def test_check_and_plan_reach_the_same_verdict_and_the_same_plan(case):
    make, target, proposal, exit_code = SNAPSHOTS[case]
    inventory, state = example_inventory(), make()
    planned = plan_from_state(inventory, state, target, observe_seed_facts=_seed_facts)
    checked = check_outcome(inventory, state, target, _seed_facts)
    assert checked.proposal == proposal
    assert checked.exit_code == exit_code == (0 if planned.executable else 1)
    assert checked.plan is not None and checked.plan.fingerprint == planned.fingerprint
    assert [f.check for f in checked.findings] == [f.check for f in planned.findings]
    assert [f.check for f in checked.blocking] == [f.check for f in planned.blocking_findings]


def test_check_without_a_target_checks_the_move_to_the_other_site():
    inventory, state = example_inventory(), wal_gone(16 * MIB)
    checked = check_outcome(inventory, state, None, _seed_facts)
    assert (checked.source, checked.target, checked.proposal) == ("dc1", "dc2", "reseed")
    assert checked.plan.fingerprint == plan_from_state(
        inventory, state, "dc2", observe_seed_facts=_seed_facts).fingerprint


def test_wal_gone_is_a_reseed_the_check_names_with_its_causes_not_a_refusal():
    checked = check_outcome(example_inventory(), wal_gone(16 * MIB), "dc2", _seed_facts)
    assert checked.exit_code == 0 and checked.blocking == []
    assert checked.summary().startswith("plan: re-seed of dc2 from dc1 (executable, ")
    why = checked.findings[0]
    assert (why.check, why.verdict) == ("reseed-target", Verdict.WARN)
    assert "WAL needed from LSN" in why.finding and "no longer on dc1" in why.finding
    assert "slot dc2 missing on dc1" in why.finding
    assert checked.as_json()["steps"][0] == "wipe-target"


def test_no_primary_site_is_refused_by_both_and_the_check_says_why():
    inventory, state = example_inventory(), unreachable(load_baseline(), "dc1-a", "dc1-b")
    with pytest.raises(PreflightError) as refused:
        plan_from_state(inventory, state, "dc2", observe_seed_facts=_seed_facts)
    checked = check_outcome(inventory, state, "dc2", _seed_facts)
    assert checked.plan is None and checked.exit_code == 1 and checked.blocking
    assert checked.plan_error == str(refused.value)
    assert checked.summary() == f"plan: none for dc1 -> dc2: {refused.value}"
    assert checked.as_json()["executable"] is False


# --- the command line: what `migrate check` and `migrate plan` print and return -----------------


@pytest.fixture
def wal_gone_observed(monkeypatch):
    """Both commands observe the WAL-gone snapshot; the target hosts' facts are data."""
    state = wal_gone(16 * MIB)
    monkeypatch.setattr("migrator.observe.observer.observe", lambda inventory, **_: state)
    monkeypatch.setattr("migrator.planning.preflight.observe", lambda inventory, **_: state)
    monkeypatch.setattr("migrator.planning.preflight.observe_seed", _seed_facts)
    return state


def test_check_and_plan_commands_agree_on_the_reseed_with_exit_0(wal_gone_observed, capsys):
    inventory = example_inventory()
    assert cli.run_plan(inventory, "dc2", cli.OutputFormat.json, None) == 0
    planned = json.loads(capsys.readouterr().out)
    assert cli.run_check(inventory, True, "dc2") == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked["blocking"] == 0
    assert checked["plan"]["proposal"] == "reseed" and checked["plan"]["executable"] is True
    assert checked["plan"]["fingerprint"] == planned["fingerprint"]
    assert checked["plan"]["steps"] == [s["id"] for s in planned["steps"]]
    assert cli.run_check(inventory, False, "dc2") == 0
    text = capsys.readouterr().out
    assert "no blocking finding for dc1 -> dc2" in text
    assert "plan: re-seed of dc2 from dc1 (executable, 11 steps); see migrate plan --dc dc2" in text
