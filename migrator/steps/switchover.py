"""The write-unavailability window: demote the source, read its token, let the target catch up,
promote the target. Each poll is tens of milliseconds on a kept-open connection."""

from __future__ import annotations

import time
from typing import Any

from migrator.adapters.live import controldata_wait_command
from migrator.adapters.patroni import PatroniRefused
from migrator.errors import GateTimeout, LockLost, PreflightError, UnreachableError, UnsafeStateError
from migrator.model.plan import deadline_seconds
from migrator.model.state import lsn_text as lsn
from migrator.model.state import lsn_value
from migrator.observe.controldata import parse_controldata
from migrator.run.dcs_hold import etcd_problem, hold_for_dcs
from migrator.run.hooks import migration_env, run_configured_hook
from migrator.run.journal import utc_now
from migrator.steps.base import Step, step_kind
from migrator.steps.follow import member_by_host
from migrator.steps.standby_leader import ReplayProof, confirmed_standby_leader, forked_after_token, replay_proof

# A clean shutdown leaves pg_control "shut down"; a standby shut down cleanly says "... in
# recovery". Patroni restarts the old primary as a standby within a second or two, after which it
# says "in archive recovery" but still carries the shutdown checkpoint as its latest one until
# the first restartpoint, recognisable because a shutdown checkpoint's REDO is the record itself.
CLEAN_STATES = ("shut down", "shut down in recovery")
RESTARTED_STATES = ("in archive recovery",)
LEADER_RECHECK_SECONDS = 1.0  # how often a catch-up gate that waits asks who leads the target


@step_kind("demote_site")
class DemoteSite(Step):
    def precheck(self) -> bool:
        return bool(self.live.config(self.args["site"]).get("standby_cluster"))

    def apply(self) -> dict[str, Any]:
        self._planned_leader_writes()
        wait_for_target_streaming(self, self.args["site"], self.args["leader"])
        # Before the warm-up, whose remote pg_control wait must not spend its time on the hook.
        # A failure here stops the run with nothing demoted; the engine undoes the earlier steps.
        hook_output = run_before_demote(self)
        self.warm_up_switchover_connections()
        sent_at = utc_now()  # the window's breakdown starts here (migrator/render/window_breakdown.py)
        send_config_patch(
            self,
            self.args["site"],
            {"standby_cluster": self.args["standby_cluster"]},
            lambda config: bool(config.get("standby_cluster")),
        )
        # demote_sent_at is taken once the PATCH was answered (or seen landed).
        return {"demote_patch_sent_at": sent_at, "demote_sent_at": utc_now(), **hook_output}

    def _planned_leader_writes(self) -> None:
        """The token is read from the planned leader's pg_control, so the demotion is only sent
        while that member is the site's one writer. After a DCS outage (Patroni demotes a primary
        without its DCS when failsafe_mode is off) it takes writes again a few seconds after the
        DCS is back; another member taking over means the plan is stale."""
        site, leader = self.args["site"], self.args["leader"]
        writers = self.wait(
            lambda: self.live.writable(site), f"{site} to have a writable primary ({leader})", interval=0.1
        )
        if writers != [leader]:
            raise PreflightError(
                f"{site}'s writable member is now {', '.join(writers)}, not {leader} as planned (a failover or a "
                f"DCS outage since the plan); {site} was not demoted: run `migrate execute` again to plan from "
                "the current state"
            )

    def gate(self) -> dict[str, Any]:
        leader = self.args["leader"]
        self.wait(
            lambda: self.live.in_recovery(leader) is not False, f"{leader} to stop accepting writes", interval=0.01
        )
        return {"source_read_only_at": utc_now()}

    def undo(self, facts: dict[str, Any]) -> bool:
        """Make the source primary again: safe only while the target was never promoted."""
        target = self.ctx.plan.target
        if self._target_may_be_promoted(target):
            raise UnsafeStateError(
                f"{target} may have been promoted, so {self.args['site']} is not made primary again "
                f"(that would give two writable sites); run `migrate execute --resume` to finish the move"
            )
        # The PATCH goes through the source's DCS: wait for it if it is down, as before any step.
        hold_for_dcs(self.ctx, [self.args["site"]], self.timeout, f"undoing {self.spec.id}")
        self.live.patch_config(self.args["site"], {"standby_cluster": None})
        self.wait(
            lambda: self.live.writable(self.args["site"]), f"{self.args['site']} to accept writes again", interval=0.1
        )
        return True

    def _target_may_be_promoted(self, target: str) -> bool:
        if self.live.writable(target):
            return True
        if etcd_problem(self.live, target) is None:
            return not self.live.config(target).get("standby_cluster")
        # The target's config cannot be read while its etcd is down, but nothing can promote it
        # then either (Patroni needs its DCS to promote, and the run never sent the promotion):
        # it is safe when every target member answers as a standby.
        return any(self.live.in_recovery(m.name) is not True for m in self.live.site(target).members)


def wait_for_target_streaming(step: Step, source: str, leader: str) -> None:
    """Demote only while the target streams from `leader` on its current timeline. The shutdown
    sends the final WAL to the walsenders connected at that moment and to no one after: once the
    source is a standby cluster no member of it accepts the target's read-write connection. The
    cascade gate proved the stream, but a DCS outage since then (Patroni demotes a primary without
    its DCS and promotes it on a new timeline when the DCS is back) leaves the target's WAL
    receiver reconnecting for seconds; a demotion sent then left the target short of the token
    and the run undone. Here the run waits instead, up to the step's deadline, nothing changed."""
    target = step.ctx.plan.target
    source_hosts = member_by_host(step, source)
    state = {"why": ""}

    def streaming() -> bool:
        timeline = step.live.timeline(leader)
        seen = []
        for member in step.live.site(target).members:
            try:
                receiver = step.live.wal_receiver(member.name)
            except UnreachableError:
                continue
            if receiver is None or not receiver.streaming:
                continue
            if source_hosts.get(receiver.sender_host or "") == leader and receiver.timeline == timeline:
                return True
            seen.append(f"{member.name} streams from {receiver.sender_host} on timeline {receiver.timeline}")
        state["why"] = "; ".join(seen) or f"no {target} member streams"
        state["why"] += f" ({leader} is on timeline {timeline})"
        return False

    step.wait(
        streaming,
        f"{target} to stream from {leader} on its current timeline before {source} is demoted",
        interval=0.1,
        describe=lambda: state["why"],
    )


def run_before_demote(step: Step) -> dict[str, Any]:
    """The inventory's before_demote hook (e.g. pgbouncer PAUSE); its output as a fact."""
    ctx = step.ctx
    output = run_configured_hook(
        ctx.inventory.hooks, "before_demote", migration_env(ctx.inventory.service, ctx.plan.source, ctx.plan.target)
    )
    return {} if output is None else {"before_demote_output": output}


def send_config_patch(step: Step, site: str, patch: dict[str, Any], landed: Any) -> None:
    """PATCH a site's dynamic config; when no member answered, look whether it landed anyway
    before calling it failed. Right after a site's etcd came back, Patroni answered GET /config
    while a PATCH hung for seconds and then took effect (the next member's PATCH got 409), so a
    PATCH without an answer may still land. The step was going to make this change: while the
    config does not show it, send it again, until the step's deadline."""
    try:
        step.live.patch_config(site, patch)
        return
    except PatroniRefused:
        raise  # every member answered with a refusal (401, 409...): nothing is pending anywhere
    except UnreachableError as exc:
        error = exc

    def in_place() -> bool:
        if landed(step.live.config(site)):
            return True
        step.live.patch_config(site, patch)
        return landed(step.live.config(site))

    try:
        step.wait(
            in_place, f"{site}'s dynamic config to show the change (the PATCH got no answer: {error})", interval=0.5
        )
    except LockLost:
        raise  # the run stops for the lock, not for the unanswered PATCH
    except GateTimeout:
        raise error from None


@step_kind("prove_not_writable")
class ProveNotWritable(Step):
    def gate(self) -> dict[str, Any]:
        site = self.args["site"]
        self.wait(lambda: not self.live.writable(site), f"every {site} member to refuse writes", interval=0.02)
        return {}


@step_kind("read_token")
class ReadToken(Step):
    """The old primary's final LSN: the location of its shutdown checkpoint."""

    def gate(self) -> dict[str, Any]:
        member, data_dir, bin_dir = self.args["member"], self.args["data_dir"], self.args["bin_dir"]
        seen: dict[str, Any] = {"reads": 0}
        early = {"pending": True}  # a read begun before the demotion, collected by the first probe

        def token() -> dict[str, Any] | None:
            result = self.live.finish_remote(self.spec.id) if early.pop("pending", False) else None
            if result is None:
                command = controldata_wait_command(self.live, member, bin_dir, data_dir, 5)
                result = self.live.ssh(member, command, timeout=10)
            seen["reads"] += 1
            facts = parse_controldata(result.stdout)
            seen["state"] = facts.get("Database cluster state", result.stderr.strip()[:80])
            seen.setdefault("first", seen["state"])
            checkpoint = facts.get("Latest checkpoint location")
            redo = facts.get("Latest checkpoint's REDO location")
            if not checkpoint:
                return None
            clean = seen["state"] in CLEAN_STATES
            restarted_after_clean = seen["state"] in RESTARTED_STATES and redo == checkpoint
            if clean or restarted_after_clean:
                return {
                    "token": lsn_value(checkpoint),
                    "token_text": checkpoint,
                    "token_state": seen["state"],
                    "token_reads": seen["reads"],
                    "token_first_state": seen.setdefault("first", seen["state"]),
                    "token_timeline": int(facts.get("Latest checkpoint's TimeLineID", "0") or 0),
                    "token_read_at": utc_now(),
                    # As pg_controldata prints it: the host's local time, whole seconds.
                    "token_checkpoint_time": facts.get("Time of latest checkpoint"),
                }
            return None

        return self.wait(
            token,
            f"{member}'s pg_control to show a clean shutdown",
            interval=0.02,
            describe=lambda: f"state {seen.get('state', '?')}",
        )


def token_of(step: Step, token_from: str) -> tuple[int, int | None]:
    """The token (LSN) and its timeline, as the token step learned them in this migration."""
    facts = step.ctx.facts.get(token_from, {})
    if facts.get("token") is None:
        raise PreflightError(f"step {step.spec.id}: no token learned by step {token_from}")
    return facts["token"], facts.get("token_timeline")


@step_kind("wait_replay_past_token")
class WaitReplayPastToken(Step):
    def gate(self) -> dict[str, Any]:
        token, token_timeline = token_of(self, self.args["token_from"])
        site = self.args["site"]
        state: dict[str, Any] = {"member": self.args["member"], "replayed": None}

        def replayed_past() -> bool:
            try:
                proof = replay_proof(self.live, state["member"], token, token_timeline)
            except UnreachableError:
                # The standby leader may have changed under us: follow whoever leads the site now.
                leaders = [n for n, r in self.live.site_roles(site).items() if r == "standby_leader"]
                if leaders:
                    state["member"] = leaders[0]
                raise
            state["replayed"], state["proof"] = proof.replayed, proof.why
            if not proof.past and time.monotonic() < state.get("next_leader_check", 0.0):
                return False
            # Only the member Patroni would promote counts, and the standby leader can change
            # here (agent killed: its PostgreSQL replays on, or stalls, orphaned). While behind,
            # look again once a second; once past the token, confirm before it counts.
            state["next_leader_check"] = time.monotonic() + LEADER_RECHECK_SECONDS
            leader, state["why"] = confirmed_standby_leader(self.live, site, state["member"])
            if leader != state["member"]:
                state["member"] = leader or state["member"]
                return False
            return proof.past

        self.wait(
            replayed_past,
            f"{site} to replay past the token {lsn(token)}",
            interval=0.01,
            describe=lambda: (
                (state.get("proof") or f"{state['member']} replayed {lsn(state['replayed'])}")
                + (f"; {state['why']}" if state.get("why") else "")
            ),
        )
        return {"caught_up_member": state["member"], "replayed": state["replayed"], "caught_up_at": utc_now()}


@step_kind("promote_site")
class PromoteSite(Step):
    """Remove standby_cluster from the target's dynamic config: Patroni promotes the holder of
    the target's leader key. Right before the PATCH the catch-up proof is taken again, about the
    member whose own Patroni says standby_leader at that moment: a DCS hold, the before_promote
    hook or a crash and `--resume` may lie between the catch-up gate and this step, and the
    leader key may have moved meanwhile. The journal says `promotion-attempted` just before the
    PATCH: until then every failure undoes the demotion; from then on nothing is undone by a
    PATCH, unless every member answered with a refusal (`promotion-refused`: nothing can land)."""

    def precheck(self) -> bool:
        if self.spec.id not in self.ctx.resumed_steps:
            # First attempt: the plan saw the target as a standby cluster moments ago, and the
            # PATCH is idempotent; skipping the GET keeps a round trip out of the write gap.
            return False
        return not self.live.config(self.args["site"]).get("standby_cluster")

    def apply(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"timeline_before": self._timeline_before()}
        # A failure of the before_promote hook stops the run before the promotion: the demotion
        # is undone.
        ctx = self.ctx
        output = run_configured_hook(
            ctx.inventory.hooks,
            "before_promote",
            migration_env(ctx.inventory.service, ctx.plan.source, ctx.plan.target),
        )
        if output is not None:
            facts["before_promote_output"] = output
        proof = self._prove_again()
        facts.update(
            proven_member=proof.member,
            proven_replayed=proof.replayed,
            proven_timeline=proof.timeline,
            proven_at=utc_now(),
        )
        self.ctx.record("promotion-attempted", step=self.spec.id, member=proof.member)
        facts["promote_patch_sent_at"] = utc_now()
        try:
            send_config_patch(
                self, self.args["site"], {"standby_cluster": None}, lambda config: not config.get("standby_cluster")
            )
        except PatroniRefused as exc:
            self.ctx.record("promotion-refused", step=self.spec.id, error=str(exc))
            raise
        # promote_sent_at is taken once the PATCH was answered (or seen landed).
        return {**facts, "promote_sent_at": utc_now()}

    def _timeline_before(self) -> int | None:
        # The target replayed up to the token, so it stands on the token's timeline; its own
        # pg_control may still name an older one until its next restartpoint.
        token = self.ctx.facts.get(self.args["token_from"], {})
        if token.get("token_timeline") is not None:
            return token["token_timeline"]
        try:
            return self.live.timeline(self.args["leader"])
        except UnreachableError:
            return None

    def _prove_again(self) -> ReplayProof:
        """The member Patroni will promote has replayed past the token on its timeline, asked
        now; waits up to the catch-up gate's deadline (GateTimeout: the demotion is undone)."""
        token, token_timeline = token_of(self, self.args["token_from"])
        site = self.args["site"]
        caught = self.ctx.facts.get(self.args["proof_from"], {})
        seen: dict[str, Any] = {"member": caught.get("caught_up_member") or self.args["leader"], "why": ""}

        def proven() -> ReplayProof | None:
            leader, why = confirmed_standby_leader(self.live, site, seen["member"])
            if leader is None:
                seen["why"] = why
                return None
            seen["member"] = leader
            proof = replay_proof(self.live, leader, token, token_timeline)
            seen["why"] = proof.why
            return proof if proof.past else None

        catch_up = next(s for s in self.ctx.plan.steps if s.id == self.args["proof_from"])
        return self.wait(
            proven,
            f"{site}'s standby leader to be proven past the token {lsn(token)} right before the promotion",
            interval=0.01,
            describe=lambda: seen["why"],
            timeout=deadline_seconds(catch_up, self.ctx.inventory.gates.connect_timeout_seconds),
        )

    def gate(self) -> dict[str, Any]:
        site = self.args["site"]
        facts = self.ctx.facts.get(self.spec.id) or {}
        found = wait_for_new_primary(self, site, f"{site} to have a writable primary", interval=0.01)
        if found["primary"] != facts.get("proven_member"):
            # Patroni promoted another member than the one proven right before the PATCH (the key
            # moved in between, or a resumed run found the promotion done): it counts only when
            # its new timeline forked after the token.
            token, _ = token_of(self, self.args["token_from"])
            found["fork_lsn"] = lsn(forked_after_token(self, found["primary"], found["new_timeline"], token))
        return found


def wait_for_new_primary(step: Step, site: str, what: str, interval: float) -> dict[str, Any]:
    """Wait until `site` has exactly one writer, on a timeline past the step's `timeline_before`
    fact (when it has one): {primary, new_timeline, target_writable_at}. Promotion always starts a
    new timeline; a writer on the old one is not the promotion the step sent."""
    before = (step.ctx.facts.get(step.spec.id) or {}).get("timeline_before")
    found: dict[str, Any] = {}

    def promoted() -> bool:
        writers = step.live.writable(site)
        if len(writers) != 1:
            return False
        timeline = step.live.timeline(writers[0])
        found.update(primary=writers[0], new_timeline=timeline)
        return before is None or timeline > before

    step.wait(promoted, what, interval=interval)
    found["target_writable_at"] = utc_now()
    return found
