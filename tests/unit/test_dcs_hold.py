"""Which steps hold for which site's DCS, and how a hold is shown (pure: plans from the baseline
snapshot, output into a buffer)."""

from __future__ import annotations

import io

from migrator.run.dcs_hold import Countdown, deadline_seconds, sites_needed
from tests.unit.test_planner import example_inventory, make_plan


def needed(target: str = "dc2") -> dict[str, list[str]]:
    plan = make_plan() if target == "dc2" else make_plan(target=target)
    return {s.id: sites_needed(s, plan.target) for s in plan.steps}


def test_demotion_waits_for_both_sites_dcs_and_promotion_for_the_targets_only():
    by_step = needed()
    assert by_step["demote-source"] == ["dc1", "dc2"]
    assert by_step["promote-target"] == ["dc2"]
    assert by_step["wait-cascade"] == ["dc1", "dc2"]
    assert by_step["wait-repoint"] == ["dc1"]
    assert by_step["slot-for-target-on-source"] == ["dc1"]
    assert by_step["slot-for-source-on-target"] == ["dc2"]


def test_steps_inside_the_window_before_the_promotion_need_no_dcs():
    # They read PostgreSQL and pg_control only: a DCS outage there must not stretch the window.
    by_step = needed()
    for step in ("source-read-only", "read-token", "catch-up", "verify-single-writer"):
        assert by_step[step] == [], step


def test_a_hold_lasts_at_most_the_steps_own_gate_deadline():
    plan = make_plan()
    steps = {s.id: s for s in plan.steps}
    assert deadline_seconds(steps["promote-target"], 5) == steps["promote-target"].gate.timeout_seconds
    assert deadline_seconds(steps["wait-repoint"], 5) == steps["wait-repoint"].gate.timeout_seconds


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_countdown_on_a_terminal_rewrites_one_line_and_erases_it():
    stream, lines = _Terminal(), []
    countdown = Countdown(lines.append, stream)
    countdown.show("HOLD 9s left")
    countdown.show("HOLD 8s left")
    countdown.clear()
    assert lines == []
    assert stream.getvalue() == "\r\033[KHOLD 9s left\r\033[KHOLD 8s left\r\033[K"


def test_countdown_without_a_terminal_is_a_plain_line_every_few_seconds():
    now = [100.0]
    stream, lines = io.StringIO(), []
    countdown = Countdown(lines.append, stream, clock=lambda: now[0])
    for second in range(12):  # one call a second, as the hold polls
        now[0] = 100.0 + second
        countdown.show(f"HOLD {12 - second}s left")
    # The hold printed its opening line itself: the first plain line comes five seconds later.
    assert lines == ["HOLD 7s left", "HOLD 2s left"] and stream.getvalue() == ""


def test_the_end_of_run_report_lists_each_hold_and_how_it_ended(tmp_path):
    from migrator.render.run_outcome import _holds
    from migrator.run.journal import Journal

    journal = Journal(tmp_path)
    journal.append("dcs-hold", migration="m1", step="wait-cascade", before="wait-cascade",
                   problems=["dc1's etcd does not answer (...)"], seconds=90)
    journal.append("dcs-back", migration="m1", step="wait-cascade", before="wait-cascade", held_seconds=11.2)
    journal.append("dcs-hold-expired", migration="m1", step="wait-repoint", before="wait-repoint",
                   problems=["dc2's etcd does not answer (...)"])
    journal.append("dcs-back", migration="other", step="wait-cascade", before="wait-cascade", held_seconds=3)
    assert _holds(journal, "m1") == [
        "held 11.2 s for the DCS before wait-cascade, then continued",
        "held for the DCS before wait-repoint until the deadline: dc2's etcd does not answer (...)",
    ]


def test_countdown_on_a_terminal_never_wraps(monkeypatch):
    import os
    import shutil

    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a, **k: os.terminal_size((40, 24)))
    stream = _Terminal()
    Countdown(lambda text: None, stream).show("HOLD before wait-cascade: 5s left: " + "x" * 80)
    assert stream.getvalue() == "\r\033[K" + ("HOLD before wait-cascade: 5s left: " + "x" * 80)[:36] + "..."


# --- a config PATCH that got no answer ---------------------------------------------------------
# On the testbed this happened once right after dc2's etcd came back (a PATCH hung, then took
# effect, and the next member's PATCH got 409): a race it cannot produce on demand, so these tests
# replay it with a stand-in for the live connections.

class _SitesAfterEtcdReturned:
    def __init__(self, answers: list[str], lands_after: int):
        self.answers = list(answers)  # per PATCH: "lost" (no answer) or "ok"
        self.lands_after = lands_after  # config reads before the lost PATCH shows
        self.reads = 0
        self.patches = 0

    def patch_config(self, site, patch):
        from migrator.errors import UnreachableError

        self.patches += 1
        if self.answers.pop(0) == "lost":
            raise UnreachableError("no member of dc2 accepted PATCH /config: dc2-a: Patroni REST API at "
                                   "http://127.0.91.1:8008 did not answer (Read timed out.)")

    def config(self, site):
        self.reads += 1
        return {} if self.reads > self.lands_after else {"standby_cluster": {"host": "127.0.91.1"}}


def _promote_step(live):
    from migrator.steps.base import RunContext
    from migrator.steps.switchover import PromoteSite

    plan = make_plan()
    spec = next(s for s in plan.steps if s.id == "promote-target")
    return PromoteSite(spec, RunContext(inventory=example_inventory(), plan=plan, live=live))


def test_a_promotion_patch_without_an_answer_that_landed_is_not_a_failure():
    from migrator.steps.switchover import send_config_patch

    live = _SitesAfterEtcdReturned(["lost"], lands_after=0)
    send_config_patch(_promote_step(live), "dc2", {"standby_cluster": None},
                      lambda config: not config.get("standby_cluster"))
    assert live.patches == 1  # it had landed: not sent again


def test_a_promotion_patch_without_an_answer_that_did_not_land_is_sent_again():
    from migrator.steps.switchover import send_config_patch

    live = _SitesAfterEtcdReturned(["lost", "ok"], lands_after=2)
    send_config_patch(_promote_step(live), "dc2", {"standby_cluster": None},
                      lambda config: not config.get("standby_cluster"))
    assert live.patches == 2


def test_a_patch_every_member_refused_fails_at_once():
    import pytest

    from migrator.adapters.patroni import PatroniRefused
    from migrator.steps.switchover import send_config_patch

    class Refusing(_SitesAfterEtcdReturned):
        # Live.patch_config raises PatroniRefused when every member answered with a refusal.
        def patch_config(self, site, patch):
            self.patches += 1
            raise PatroniRefused("dc2-a: Patroni REST API at http://127.0.91.1:8008 refused the credentials (401)")

    live = Refusing([], lands_after=0)
    with pytest.raises(PatroniRefused, match="401"):
        send_config_patch(_promote_step(live), "dc2", {"standby_cluster": None},
                          lambda config: not config.get("standby_cluster"))
    assert live.patches == 1 and live.reads == 0
