"""Who Patroni would promote, proof that it replayed past the token, and proof afterwards that
the promoted member had the token.

The catch-up gate must measure the member that becomes primary when `standby_cluster` is removed:
the holder of the target site's leader key. The standby leader can change during the gate (its
Patroni killed: the key expires after ttl and a replica takes it), while the old standby leader's
PostgreSQL, orphaned, keeps answering queries. So a replay position counts only for a member
whose own Patroni says `standby_leader`; a member whose Patroni does not answer may still hold the
key until it expires, so nobody counts until the site has one answering standby leader again.

"Past the token" means past it *on the token's timeline*: a standby that replayed beyond the
token's LSN on another history (it followed a diverged primary) does not have the old primary's
commits. A standby's replay timeline is not exposed directly, so it is taken as the highest of
what the WAL receiver streams, the last restartpoint's timeline, and the newest timeline history
file in pg_wal (`Live.replay_position`). A timeline above the token's counts only when its
history file says the token's timeline went on past the token.

After the promotion, the new timeline's history file on the new primary says where the timeline
forked (the end of what it had replayed). A fork at or before the token would mean commits of the
old primary are missing there: the run stops (exit 4) instead of calling the move done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migrator.adapters.live import Live
from migrator.adapters.pg_queries import history_path
from migrator.errors import UnreachableError, UnsafeStateError
from migrator.model.state import lsn_text, lsn_value
from migrator.run.hooks import HookFailed, migration_env, run_configured_hook
from migrator.steps.base import Step, step_kind


@dataclass(frozen=True)
class ReplayProof:
    """Where a standby stands against the token, and in words why it does or does not count."""

    member: str
    replayed: int | None
    timeline: int | None
    past: bool
    why: str


def switch_point(history: str, timeline: int) -> int | None:
    """Where `timeline` ended, by a .history file's line for it (None when it has none)."""
    for line in history.splitlines():
        fields = line.split()
        if (
            len(fields) >= 2
            and not line.lstrip().startswith("#")
            and fields[0].isdigit()
            and int(fields[0]) == timeline
        ):
            return lsn_value(fields[1])
    return None


def past_token(
    replayed: int | None, timeline: int | None, history: str | None, token: int, token_timeline: int | None
) -> tuple[bool, str]:
    """Whether a standby at (replayed, timeline) has replayed past the token on the token's
    timeline; `history` is its timeline's .history file when that timeline is above the token's."""
    if replayed is None:
        return False, "replays nothing (not in recovery, or no WAL replayed)"
    at = f"replayed {lsn_text(replayed)} on timeline {timeline}"
    if replayed <= token:
        return False, f"{at}, not past the token {lsn_text(token)}"
    if not token_timeline or timeline == token_timeline:
        return True, f"{at}, past the token {lsn_text(token)}"
    if timeline is None or timeline < token_timeline:
        return False, (f"{at}: past the token's LSN but not on its timeline {token_timeline} (another history)")
    end = switch_point(history or "", token_timeline)
    if end is not None and end > token:
        return True, (
            f"{at}, past the token {lsn_text(token)}; timeline {token_timeline} went on to "
            f"{lsn_text(end)} in its history"
        )
    return False, (
        f"{at}: its history leaves the token's timeline {token_timeline} at "
        f"{lsn_text(end) if end is not None else 'an unknown point'}, not after the token"
    )


def replay_proof(live: Live, member: str, token: int, token_timeline: int | None) -> ReplayProof:
    """Ask `member` itself where its replay stands against the token (UnreachableError when it
    does not answer)."""
    position = live.replay_position(member)
    replayed, timeline = position.replayed, position.timeline
    history = None
    if replayed is not None and timeline and token_timeline and timeline > token_timeline:
        history = live.history_file(member, timeline)
    past, why = past_token(replayed, timeline, history, token, token_timeline)
    return ReplayProof(member, replayed, timeline, past, f"{member} {why}")


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
        return None, (
            f"Patroni of {', '.join(silent)} does not answer: waiting until {site} has "
            "one answering standby leader (a dead agent's leader key expires after ttl)"
        )
    return None, f"{site} has standby leader(s) {leaders or 'none'}"


def orphaned_slot_user(
    live: Live, site: str, roles: dict[str, str | None], slot: str, hosts: dict[str, str]
) -> str | None:
    """A member whose Patroni is silent while its PostgreSQL still streams over the site's slot:
    killed agent, orphaned PostgreSQL. It keeps the slot active on the followed site, so whichever
    member takes the leader key cannot stream ('replication slot ... is active for PID'), and
    nothing but its owner can end that. The operator's next step, or None."""
    for member in (name for name, role in roles.items() if role is None):
        try:
            receiver = live.wal_receiver(member)
        except UnreachableError:
            continue
        if receiver and receiver.streaming and receiver.slot_name == slot:
            sender = receiver.sender_host
            upstream = hosts.get(sender, sender) if sender is not None else sender
            return (
                f"{member}'s Patroni does not answer while its PostgreSQL still streams from "
                f"{upstream} over slot {slot}, so no other {site} member can use that slot: "
                f"start Patroni on {member} (or stop its PostgreSQL), then run the move again "
                "(runbooks/standby-leader-changes.md)"
            )
    return None


def fork_point(history: str) -> int | None:
    """The switch LSN of the newest timeline in a .history file (last non-comment line)."""
    lines = [line.split() for line in history.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return lsn_value(lines[-1][1]) if lines and len(lines[-1]) >= 2 else None


def forked_after_token(step: Step, primary: str, timeline: int, token: int) -> int:
    """The LSN where `primary`'s timeline `timeline` forked, read from its history file; raises
    UnsafeStateError when that is not after the token (commits of the source may be missing)."""
    path = history_path(timeline)
    found: dict[str, Any] = {}

    def read() -> bool:
        found["fork"] = fork_point(step.live.history_file(primary, timeline))
        return found["fork"] is not None

    step.wait(read, f"{primary}'s {path}", interval=0.2)
    fork = found["fork"]
    if fork <= token:
        raise UnsafeStateError(
            f"{primary} was promoted at {lsn_text(fork)}, not after the token "
            f"{lsn_text(token)}: "
            f"commits of {step.ctx.plan.source} between them may be missing on it; stop the "
            f"traffic to {primary} and follow runbooks/standby-leader-changes.md, 'promoted "
            "before the token'"
        )
    return fork


@step_kind("verify_promotion_point")
class VerifyPromotionPoint(Step):
    """The new primary's timeline forked after the token: it had replayed the old primary's
    shutdown checkpoint, so every commit acknowledged on the source is on it. Only then does
    traffic move: the after_promote hook runs here, after the proof, never before it."""

    def gate(self) -> dict[str, Any]:
        token = self.ctx.facts.get(self.args["token_from"], {}).get("token")
        promoted = self.ctx.facts.get(self.args["promoted_by"], {})
        primary, timeline = promoted.get("primary"), promoted.get("new_timeline")
        if token is None or primary is None or timeline is None:
            raise UnsafeStateError(
                f"step {self.spec.id}: the token or the new primary is not known from this run; "
                "check by hand that the new primary's timeline forked after the token "
                "(runbooks/standby-leader-changes.md)"
            )
        fork = forked_after_token(self, primary, timeline, token)
        found: dict[str, Any] = {"fork_lsn": lsn_text(fork), "promoted_member": primary}
        found.update(move_traffic(self, primary))
        return found


def move_traffic(step: Step, primary: str) -> dict[str, Any]:
    """The after_promote hook (DNS, VIP, pgbouncer), once the new primary is proven. A failure
    does not undo the database side; the run ends with exit 1 naming the hook."""
    ctx = step.ctx
    if not ctx.inventory.hooks.after_promote:
        return {}
    env = migration_env(
        ctx.inventory.service, ctx.plan.source, ctx.plan.target, primary, step.live.member(primary)[1].host
    )
    try:
        output = run_configured_hook(ctx.inventory.hooks, "after_promote", env)
    except HookFailed as exc:
        warning = f"{exc}; {ctx.plan.target} is primary, move the traffic by hand"
        ctx.progress(f"WARNING: {warning}")
        return {"warning": warning}
    return {} if output is None else {"after_promote_output": output}
