"""Who Patroni would promote, and proof afterwards that the promoted member had the token.

The catch-up gate must measure the member that becomes primary when `standby_cluster` is removed:
the holder of the target site's leader key. The standby leader can change during the gate (its
Patroni killed: the key expires after ttl and a replica takes it), while the old standby leader's
PostgreSQL, orphaned, keeps answering queries. So a replay position counts only for a member
whose own Patroni says `standby_leader`; a member whose Patroni does not answer may still hold the
key until it expires, so nobody counts until the site has one answering standby leader again.

After the promotion, the new timeline's history file on the new primary says where the timeline
forked (the end of what it had replayed). A fork at or before the token would mean commits of the
old primary are missing there: the run stops (exit 4) instead of calling the move done.
"""

from __future__ import annotations

from typing import Any

from migrator.errors import UnreachableError, UnsafeStateError
from migrator.state import lsn_text, lsn_value
from migrator.steps.base import Live, Step

HISTORY_QUERY = "SELECT pg_read_file(%s)"
RECEIVER_SLOT = "SELECT status, sender_host, slot_name FROM pg_stat_wal_receiver"


def own_role(live: Live, member: str) -> str | None:
    """The member's role by its own GET /patroni; None when its Patroni does not answer."""
    try:
        role = live.patroni(member).get("role")
    except UnreachableError:
        return None
    return "primary" if role == "master" else role


def confirmed_standby_leader(live: Live, site: str, expected: str) -> tuple[str | None, str]:
    """(member, why): the one member of `site` whose Patroni says standby_leader, asking
    `expected` first (one call on the usual path), else every member; None while the site has
    not exactly one (a silent member may still hold the key until its ttl runs out)."""
    if own_role(live, expected) == "standby_leader":
        return expected, f"{expected} is the standby leader"
    roles = live.site_roles(site)
    leaders = [name for name, role in roles.items() if role == "standby_leader"]
    silent = [name for name, role in roles.items() if role is None]
    if len(leaders) == 1:
        # The leader key is one key: a member whose Patroni says standby_leader holds it, so a
        # silent member cannot hold it at the same time.
        return leaders[0], f"the standby leader is now {leaders[0]}"
    if silent:
        return None, (f"Patroni of {', '.join(silent)} does not answer: waiting until {site} has "
                      "one answering standby leader (a dead agent's leader key expires after ttl)")
    return None, f"{site} has standby leader(s) {leaders or 'none'}"


def orphaned_slot_user(live: Live, site: str, roles: dict[str, str | None], slot: str,
                       hosts: dict[str, str]) -> str | None:
    """A member whose Patroni is silent while its PostgreSQL still streams over the site's slot:
    killed agent, orphaned PostgreSQL. It keeps the slot active on the followed site, so whichever
    member takes the leader key cannot stream ('replication slot ... is active for PID'), and
    nothing but its owner can end that. The operator's next step, or None."""
    for member in (name for name, role in roles.items() if role is None):
        try:
            rows = live.query(member, RECEIVER_SLOT)
        except UnreachableError:
            continue
        if rows and rows[0][0] == "streaming" and rows[0][2] == slot:
            upstream = hosts.get(rows[0][1], rows[0][1])
            return (f"{member}'s Patroni does not answer while its PostgreSQL still streams from "
                    f"{upstream} over slot {slot}, so no other {site} member can use that slot: "
                    f"start Patroni on {member} (or stop its PostgreSQL), then run the move again "
                    "(runbooks/standby-leader-changes.md)")
    return None


def fork_point(history: str) -> int | None:
    """The switch LSN of the newest timeline in a .history file (last non-comment line)."""
    lines = [line.split() for line in history.splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    return lsn_value(lines[-1][1]) if lines and len(lines[-1]) >= 2 else None


class VerifyPromotionPoint(Step):
    """The new primary's timeline forked after the token: it had replayed the old primary's
    shutdown checkpoint, so every commit acknowledged on the source is on it."""

    kind = "verify_promotion_point"

    def gate(self) -> dict[str, Any]:
        token = self.ctx.facts.get(self.args["token_from"], {}).get("token")
        promoted = self.ctx.facts.get(self.args["promoted_by"], {})
        primary, timeline = promoted.get("primary"), promoted.get("new_timeline")
        if token is None or primary is None or timeline is None:
            raise UnsafeStateError(
                f"step {self.spec.id}: the token or the new primary is not known from this run; "
                "check by hand that the new primary's timeline forked after the token "
                "(runbooks/standby-leader-changes.md)")
        path = f"pg_wal/{int(timeline):08X}.history"
        found: dict[str, Any] = {}

        def read() -> bool:
            found["fork"] = fork_point(self.live.query(primary, HISTORY_QUERY, (path,))[0][0])
            return found["fork"] is not None

        self.wait(read, f"{primary}'s {path}", interval=0.2)
        fork = found["fork"]
        if fork <= token:
            raise UnsafeStateError(
                f"{primary} was promoted at {lsn_text(fork)}, not after the token "
                f"{lsn_text(token)}: "
                f"commits of {self.ctx.plan.source} between them may be missing on it; stop the "
                f"traffic to {primary} and follow runbooks/standby-leader-changes.md, 'promoted "
                "before the token'")
        return {"fork_lsn": lsn_text(fork), "promoted_member": primary}
