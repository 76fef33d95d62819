"""Who Patroni would promote, the proof that the promoted member had the token, and the orphaned
standby check. Live calls are replaced by a small fake only where the testbed cannot produce the
answer on demand (see each test's comment); everything else is pure."""

from __future__ import annotations

import pytest

from migrator.adapters.pg_queries import history_path, parse_file, parse_wal_receiver
from migrator.checks import run_checks
from migrator.errors import UnreachableError, UnsafeStateError
from migrator.model.findings import Verdict
from migrator.model.plan import PlanGate, PlanStep, PlanUndo
from migrator.model.state import lsn_value
from migrator.steps.base import RunContext
from migrator.steps.standby_leader import (
    VerifyPromotionPoint, confirmed_standby_leader, fork_point, orphaned_slot_user,
)
from tests.helpers.snapshots import (
    example_inventory, load_baseline, unreachable, with_member, with_site,
)

HISTORY = ("1\t0/3000060\tno recovery target specified\n\n"
           "2\t0/51A2B38\tno recovery target specified\n")


class FakeLive:
    """Answers GET /patroni roles and PostgreSQL reads from fixed tables of rows (parsed as Live
    parses them); a None role is a silent agent."""

    def __init__(self, roles: dict[str, str | None], rows: dict[str, list] | None = None):
        self.roles, self.rows = roles, rows or {}

    def patroni(self, member: str) -> dict:
        if self.roles[member] is None:
            raise UnreachableError(f"{member}: connection refused")
        return {"role": self.roles[member]}

    def site_roles(self, site: str) -> dict:
        return dict(self.roles)

    def wal_receiver(self, member: str):
        return parse_wal_receiver(member, self.rows[member])

    def history_file(self, member: str, timeline: int) -> str:
        return parse_file(member, history_path(timeline), self.rows[member])


def test_fork_point_is_the_switch_lsn_of_the_newest_timeline():
    assert fork_point(HISTORY) == lsn_value("0/51A2B38")
    assert fork_point("") is None


# In the tests below the fake stands for Patroni agents in states the testbed reaches only after
# ttl seconds (a killed agent, a successor holding the key); the e2e test covers the real thing.
def test_the_planned_standby_leader_is_asked_first_and_kept():
    live = FakeLive({"dc2-a": "standby_leader", "dc2-b": "replica"})
    assert confirmed_standby_leader(live, "dc2", "dc2-a")[0] == "dc2-a"


def test_a_silent_standby_leader_counts_for_nobody_until_a_successor_holds_the_key():
    silent = FakeLive({"dc2-a": None, "dc2-b": "replica"})
    leader, why = confirmed_standby_leader(silent, "dc2", "dc2-a")
    assert leader is None and "Patroni of dc2-a does not answer" in why
    live = FakeLive({"dc2-a": None, "dc2-b": "standby_leader"})
    assert confirmed_standby_leader(live, "dc2", "dc2-a") == (
        "dc2-b", "the standby leader is now dc2-b")


def test_an_orphan_streaming_over_the_slot_is_named_with_the_next_step():
    live = FakeLive({"dc2-a": None, "dc2-b": "standby_leader"},
                    {"dc2-a": [("streaming", "127.0.91.1", "dc2", 1, 50331744, 30.0)]})
    text = orphaned_slot_user(live, "dc2", live.roles, "dc2", {"127.0.91.1": "dc1-a"})
    assert "dc2-a's Patroni does not answer" in text and "from dc1-a over slot dc2" in text
    assert "start Patroni on dc2-a" in text
    live.rows["dc2-a"] = [("streaming", "127.0.91.1", "dc2_x", 1, 50331744, 30.0)]
    assert orphaned_slot_user(live, "dc2", live.roles, "dc2", {}) is None


def verify_step(fork_history: str, token: str) -> VerifyPromotionPoint:
    spec = PlanStep(id="verify-promoted-past-token", phase="promote", kind="verify_promotion_point",
                    title="t", args={"site": "dc2", "token_from": "read-token",
                                     "promoted_by": "promote-target"},
                    gate=PlanGate(wait_for="w", timeout_seconds=2), undo=PlanUndo(kind="none"))
    plan = type("P", (), {"source": "dc1", "target": "dc2"})()
    ctx = RunContext(example_inventory(), plan, FakeLive({}, {"dc2-b": [(fork_history,)]}),
                     facts={"read-token": {"token": lsn_value(token)},
                            "promote-target": {"primary": "dc2-b", "new_timeline": 2}})
    return VerifyPromotionPoint(spec, ctx)


def test_a_timeline_forked_after_the_token_is_proof():
    assert verify_step(HISTORY, "0/51A2AC0").gate() == {"fork_lsn": "0/51A2B38",
                                                       "promoted_member": "dc2-b"}


# A promotion before the token is exactly what the tool prevents, so the testbed cannot show one.
def test_a_timeline_forked_at_or_before_the_token_stops_the_run():
    with pytest.raises(UnsafeStateError,
                       match="promoted at 0/51A2B38, not after the token 0/51A2B38"):
        verify_step(HISTORY, "0/51A2B38").gate()


def test_check_blocks_on_a_standby_member_streaming_without_its_agent():
    state = unreachable(load_baseline(), "dc2-a", probes=("patroni",))
    state = with_member(state, "dc2-b", patroni={"role": "standby_leader"})
    state = with_site(state, "dc2", dcs={"leader": "dc2-b"})
    found = {f.check: f for f in run_checks(example_inventory(), state, "dc1", "dc2")}
    orphan = found["orphaned-standby"]
    assert orphan.verdict is Verdict.BLOCK, orphan
    assert "dc2-a's Patroni does not answer" in orphan.finding
    assert "dc2's leader dc2-b cannot stream" in orphan.finding
    assert "start Patroni on dc2-a" in orphan.fix
    assert found["orphaned-standby"].members == ("dc2-a",)
    healthy = {f.check: f for f in run_checks(example_inventory(), load_baseline(), "dc1", "dc2")}
    assert healthy["orphaned-standby"].verdict is Verdict.OK


# ---- past the token, on the token's timeline -------------------------------------------------

def test_past_the_token_on_its_own_timeline_counts_and_at_or_before_it_does_not():
    from migrator.steps.standby_leader import past_token

    token = 0x3000028
    assert past_token(token + 0x68, 5, None, token, 5)[0] is True
    assert past_token(token, 5, None, token, 5) == (False, "replayed 0/3000028 on timeline 5, not past the token 0/3000028")
    assert past_token(None, 5, None, token, 5)[0] is False


def test_past_the_tokens_lsn_on_an_older_timeline_is_another_history_and_does_not_count():
    from migrator.steps.standby_leader import past_token

    past, why = past_token(0x4000000, 4, None, 0x3000028, 5)
    assert not past and "not on its timeline 5" in why


def test_a_newer_timeline_counts_only_when_its_history_goes_on_past_the_token():
    from migrator.steps.standby_leader import past_token, switch_point

    token = 0x3000028
    went_on = "1\t0/1000000\tno recovery target specified\n5\t0/3000100\tno recovery target specified\n"
    forked_before = "1\t0/1000000\tx\n5\t0/3000000\tx\n"
    assert switch_point(went_on, 5) == 0x3000100 and switch_point(went_on, 2) is None
    assert past_token(0x3000200, 6, went_on, token, 5)[0] is True
    past, why = past_token(0x3000200, 6, forked_before, token, 5)
    assert not past and "leaves the token's timeline 5 at 0/3000000, not after the token" in why
    assert past_token(0x3000200, 6, "", token, 5)[0] is False  # no line for it: unknown, no proof


def test_a_token_without_a_timeline_falls_back_to_the_lsn_alone():
    from migrator.steps.standby_leader import past_token

    assert past_token(0x3000100, 9, None, 0x3000028, None)[0] is True
