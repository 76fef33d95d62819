"""A site's etcd stops during `migrate execute` (issue 6, case 3), on the real testbed, under a
write ledger and a two-writer sampler: no acknowledged commit lost, never two writable members.

The tool never starts a step that needs a site's DCS while that DCS does not answer: it holds
with a countdown until the DCS is back (then continues from fresh observation) or the step's gate
deadline passes (then undoes what it changed, or names the next step once the promotion was
sent). What Patroni itself does meanwhile is asserted too: with failsafe_mode off the source's
primary stops taking writes without its DCS; with failsafe_mode on it keeps taking them.
"""

from __future__ import annotations

import pytest

from tests.helpers.faults import (
    GATES, Run, ensure_etcd_running, events, inventory_with_gates, member_with_role, one_line,
    replay_frozen, set_failsafe_mode, start_etcd_again, stop_etcd,
)
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.e2e.test_execute import assert_primary_site, explain, migrate, writable
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
# The step during which the source's etcd is stopped "before the demotion": replication access is
# proven over SSH for seconds, so the etcd is surely down when the next step that needs it comes.
BEFORE_DEMOTION = "replication-access-target-from-source"


@pytest.mark.slow
def test_source_dcs_down_holds_before_the_demotion_and_after_the_promotion(baseline, tmp_path):
    """(a) dc1 -> dc2 with dc1's etcd stopped before the demotion and back within the deadline:
    the run holds, then finishes. (b) dc2 -> dc1 with dc2's etcd stopped during the catch-up gate
    and not back: dc1 is promoted (that needs only dc1's DCS), the repoint holds until its deadline,
    exit 4 naming `--resume`; with the etcd back, `--resume` finishes."""
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", **GATES)
    # The hold before the repoint lasts its deadline; the resume's repoint took about 1 s.
    short = inventory_with_gates(baseline, tmp_path / "short.yml", **{**GATES, "repoint_timeout_seconds": 15})
    state = tmp_path / "state"
    try:
        with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_dcs_source") as ledger:
            run = Run(state, "execute", "-i", inventory, "--dc", "dc2", "--yes")
            # The etcd stops once both access proofs are done: without its etcd (failsafe_mode off)
            # Patroni restarts dc1-a read-only, and a proof still connecting to dc1-a then fails the
            # run, rightly, with nothing changed. The cascade gate (1 s window) passes before
            # Patroni gives up dc1-a's leader key, so the demotion is where the run holds; a slow
            # gate still holds before itself, or has not yet passed its own hold check.
            run.wait_for("step-done", "replication-access-target-from-source")
            run.wait_for("step-done", "replication-access-source-from-target")
            stop_etcd(baseline, DC1)
            hold = run.wait_for("dcs-hold")
            held_before = hold["step"]
            assert held_before in ("wait-cascade", "demote-source") and "dc1's etcd" in hold["problems"][0], hold
            # Patroni, failsafe_mode off: dc1's primary stops taking writes without its etcd.
            wait_until(lambda: not writable(baseline), 30, "dc1's primary to demote itself")
            start_etcd_again(baseline, DC1)
            out = run.finish()
            assert out.returncode == 0, explain(out)
            assert f"HOLD before {held_before}" in out.stdout and "answers again" in out.stdout, out.stdout
            assert "dc2 is primary; dc1 follows it" in out.stdout
            assert f"for the DCS before {held_before}, then continued" in out.stdout  # in the report too
            steps = events(run)
            assert steps.index(("dcs-back", held_before)) < steps.index(("step-applied", "demote-source"))
            assert_primary_site(baseline, DC2)

            target_leader = member_with_role(baseline, DC1, "standby_leader")
            run = Run(state, "execute", "-i", short, "--dc", "dc1", "--yes")
            run.wait_for("step-started", "demote-source")
            with replay_frozen(baseline, target_leader):
                run.wait_for("step-started", "catch-up")
                stop_etcd(baseline, DC2)
            out = run.finish()
            assert out.returncode == 4, explain(out)
            line = one_line(out.stderr)
            assert "dc2's etcd" in line and "wait-repoint" in line, line
            assert "migrate execute --resume --dc dc1" in line, line
            assert "dc1 is primary and takes writes; dc2 stays read-only" in line, line
            # Promoted without dc2's DCS, which nothing in dc2 can act without: one writer, in dc1.
            assert [w[:3] for w in writable(baseline)] == ["dc1"]
            assert ("step-done", "promote-target") in events(run)
            start_etcd_again(baseline, DC2)
            member_with_role(baseline, DC2, "standby_leader")
            out = migrate("execute", "-i", short, "--dc", "dc1", "--resume", "--yes", "--state-dir", str(state))
            assert out.returncode == 0, explain(out)
            assert_primary_site(baseline, DC1)
    finally:
        ensure_etcd_running(baseline)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)


def move_and_stop_etcd_before_the_promotion(testbed, state, inventory: str, *sites) -> Run:
    """Start a move to dc2 and stop the etcd of `sites` while dc2's standby leader is held back
    from replaying the token, so they are surely down when the promotion comes next."""
    target_leader = member_with_role(testbed, DC2, "standby_leader")
    run = Run(state, "execute", "-i", inventory, "--dc", "dc2", "--yes")
    run.wait_for("step-started", "demote-source")
    with replay_frozen(testbed, target_leader):
        run.wait_for("step-started", "catch-up")
        for site in sites:
            stop_etcd(testbed, site)
    return run


@pytest.mark.slow
def test_target_dcs_down_before_the_promotion_undoes_or_holds(baseline, tmp_path):
    """(c) dc1 -> dc2 with dc2's etcd stopped just before the promotion. Not back within the
    deadline: the promotion is never started, the demotion is undone (dc2 could not have been
    promoted: its DCS is down and every member answers as a standby), exit 3, back where it
    started; when dc1's etcd is down too the undo cannot be sent: exit 4, and `migrate rollback`
    completes once both are back. Back within the deadline: the run holds, then finishes."""
    state = tmp_path / "state"
    short = inventory_with_gates(baseline, tmp_path / "short.yml", **{**GATES, "promote_timeout_seconds": 8})
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", **GATES)
    try:
        with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_dcs_target") as ledger:
            run = move_and_stop_etcd_before_the_promotion(baseline, state, short, DC2, DC1)
            out = run.finish()
            assert out.returncode == 4, explain(out)
            line = one_line(out.stderr)
            assert "held 8s before promote-target" in line and "undoing failed too (dc1's etcd" in line, line
            assert "then `migrate rollback`" in line, line
            assert writable(baseline) == []  # both sites standby: safe, and no site takes writes
            start_etcd_again(baseline, DC1)
            start_etcd_again(baseline, DC2)
            out = migrate("rollback", "-i", short, "--yes", "--state-dir", str(state))
            assert out.returncode == 0, explain(out)
            assert "rolled back (demote-source" in out.stdout, out.stdout
            baseline.wait_healthy(90)

            run = move_and_stop_etcd_before_the_promotion(baseline, state, short, DC2)
            out = run.finish()
            assert out.returncode == 3, explain(out)
            line = one_line(out.stderr)
            assert "dc2's etcd" in line and "before promote-target" in line and "undone: demote-source" in line
            assert "dc1 is still primary, nothing lost: back where it started" in line, line
            assert ("step-started", "promote-target") not in events(run)
            assert [w[:3] for w in writable(baseline)] == ["dc1"]
            start_etcd_again(baseline, DC2)
            baseline.wait_healthy(90)  # dc2 follows dc1 again: its config was never changed

            run = move_and_stop_etcd_before_the_promotion(baseline, state, inventory, DC2)
            run.wait_for("dcs-hold", "promote-target")
            start_etcd_again(baseline, DC2)
            out = run.finish()
            assert out.returncode == 0, explain(out)
            assert "HOLD before promote-target" in out.stdout and "dc2 is primary; dc1 follows it" in out.stdout
            assert_primary_site(baseline, DC2)
            out = migrate("rollback", "-i", inventory, "--yes", "--state-dir", str(state))
            assert out.returncode == 0, explain(out)
            assert_primary_site(baseline, DC1)
    finally:
        ensure_etcd_running(baseline)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)


# failsafe_mode, the step at whose start dc1's etcd stops, the steps the run may hold before.
# With failsafe_mode on dc1 keeps streaming to dc2 without its etcd, so the cascade gate (lag
# window 4 s) passes and the hold is right before the demotion; with it off dc1 stops writing,
# and the etcd is stopped earlier so that the hold comes before the cascade, or, when the cascade
# gate (which runs together with the access proofs) passed its own hold check first, before the
# demotion: both deadlines are 8 s and neither path changes anything.
STAYS_DOWN = [(True, "wait-cascade", ("demote-source",)), (False, BEFORE_DEMOTION, ("wait-cascade", "demote-source"))]


@pytest.mark.slow
@pytest.mark.parametrize("failsafe,stop_at,held_before", STAYS_DOWN, ids=["failsafe-on", "failsafe-off"])
def test_source_dcs_that_stays_down_is_never_demoted_and_the_verdict_says_who_writes(
        baseline, tmp_path, failsafe, stop_at, held_before):
    """dc1's etcd stops before the demotion and stays down past the deadline: nothing is demoted,
    exit 3. With failsafe_mode on, Patroni keeps dc1's primary writing all along and the verdict
    says dc1 is still primary; with it off, Patroni made dc1 read-only by itself and the verdict
    says so, and dc1 is primary again once its etcd is back."""
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", **{
        **GATES, "lag_window_seconds": 4, "lag_evidence": "false", "cascade_timeout_seconds": 8,
        "promote_timeout_seconds": 8})
    state = tmp_path / "state"
    if failsafe:
        set_failsafe_mode(baseline, True)
    try:
        with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_dcs_stays_down") as ledger:
            run = Run(state, "execute", "-i", inventory, "--dc", "dc2", "--yes")
            run.wait_for("step-started", stop_at)
            stop_etcd(baseline, DC1)
            out = run.finish()
            writers_during_outage = writable(baseline)
            start_etcd_again(baseline, DC1)
            wait_until(lambda: [w[:3] for w in writable(baseline)] == ["dc1"], 60, "dc1 primary again")
        assert out.returncode == 3, explain(out)
        line = one_line(out.stderr)
        deadline = 8  # the gate deadline of the step held before (demote-source or wait-cascade)
        assert "dc1's etcd does not answer" in line, line
        assert any(f"held {deadline}s before {step} " in line for step in held_before), line
        assert "nothing had changed" in line, line
        assert ("step-started", "demote-source") not in events(run)
        if failsafe:
            assert [w[:3] for w in writers_during_outage] == ["dc1"]
            assert "dc1 is still primary, nothing lost: back where it started" in line, line
            assert ledger.max_gap_seconds < 3, ledger.summary()  # never stopped writing
        else:
            assert writers_during_outage == []
            assert "no site was promoted, nothing lost; dc1 takes no writes while dc1's etcd" in line, line
            assert "primary again once its etcd is back" in line
    finally:
        ensure_etcd_running(baseline)
        if failsafe:
            set_failsafe_mode(baseline, False)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)
