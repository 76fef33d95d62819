"""`migrate failover`: fence the failing source, prove what the target has, promote it, verify.

Nothing here undoes a fence: a fenced site comes back only through `migrate reattach`, which
makes it a standby before any of its Patroni starts. The promotion is sent only after every
source member is fenced (the plan orders the steps so, and a failed fence stops the run) and once
the prove step has either shown the target past the token or recorded an accepted loss.
"""

from __future__ import annotations

import shlex
import time
from typing import Any

from migrator.adapters.patroni import PatroniRefused
from migrator.adapters.remote import as_postgres, controldata_command
from migrator.errors import GateTimeout, UnreachableError, UnsafeStateError
from migrator.model.state import lsn_text, lsn_value
from migrator.observe.controldata import parse_controldata
from migrator.planning.failover import SHUT_DOWN, judge
from migrator.run.hooks import HookFailed, migration_env, run_configured_hook, run_hook
from migrator.run.journal import utc_now
from migrator.steps.base import Step, step_kind
from migrator.steps.standby_leader import confirmed_standby_leader, fork_point, move_traffic, replay_proof
from migrator.steps.switchover import send_config_patch, wait_for_new_primary

# While the target's replay has not moved for this long, it has replayed all it will get.
STALL_SECONDS = 3.0
# `pg_ctl status`: 0 running, 3 not running, 4 no data directory.
_STOP_SCRIPT = (
    'if "$1/pg_ctl" status -D "$2" >/dev/null 2>&1; then "$1/pg_ctl" stop -D "$2" -m fast -w -t 60; fi; '
    '"$1/pg_ctl" status -D "$2" >/dev/null 2>&1; echo "pg_ctl-status $?"'
)


def _site_user(step: Step, member: str) -> str:
    site, found = step.live.member(member)
    return site.ssh_for(found).user


@step_kind("fence_source_config")
class FenceSourceConfig(Step):
    """The graceful fence, where the source's DCS still answers: with standby_cluster in its
    dynamic config no Patroni of the source starts a primary again, whatever restarts it."""

    def precheck(self) -> bool:
        try:
            return bool(self.live.config(self.args["site"]).get("standby_cluster"))
        except UnreachableError:
            if self.spec.id in self.ctx.facts:
                # Done in an earlier run, and the fences that followed stopped every Patroni that
                # could answer GET /config: the section stays in the DCS, nothing to re-send.
                return True
            raise

    def apply(self) -> dict[str, Any]:
        send_config_patch(
            self,
            self.args["site"],
            {"standby_cluster": self.args["standby_cluster"]},
            lambda config: bool(config.get("standby_cluster")),
        )
        return {"standby_cluster_sent_at": utc_now()}


@step_kind("fence_member")
class FenceMember(Step):
    """One source member fenced: over SSH (Patroni stopped first so it cannot restart
    PostgreSQL, then `pg_ctl stop -m fast`, then a marker beside patroni.yml that the report
    names), by the inventory's fence hook, or by the operator's word (--fenced)."""

    def precheck(self) -> bool:
        method = self.args["method"]
        if method == "operator":
            return True
        if method == "hook":
            return self.spec.id in self.ctx.facts  # done in an earlier run: not run twice
        if self.spec.id not in self.ctx.resumed_steps:
            return False
        try:
            return self._stopped() and self._marker_present()
        except UnreachableError as exc:
            if self.spec.id not in self.ctx.facts:
                raise
            # Fenced in an earlier run (stopped, marker written), and its host does not answer
            # now: it starts nothing by itself, and a failover must not wait for a dead host.
            self.ctx.progress(f"{self.args['member']}: fenced before; its host does not answer now ({exc})")
            return True

    def apply(self) -> dict[str, Any]:
        method = self.args["method"]
        if method == "hook":
            return self._hook()
        if method != "ssh":
            raise UnsafeStateError(f"{self.args['member']} is not fenced ({method}); nothing was promoted")
        member = self.args["member"]
        facts: dict[str, Any] = {"fence_started_at": utc_now()}
        # Patroni first: stopped PostgreSQL under a live Patroni is started again on its next loop.
        stop = self.live.ssh(member, self.args["stop_command"], timeout=self.timeout)
        facts["patroni_stop_exit"] = stop.exit_code
        if stop.exit_code != 0:
            self.ctx.progress(f"{member}: `{self.args['stop_command']}` exited {stop.exit_code}; stopping PostgreSQL")
        script = f"sh -c {shlex.quote(_STOP_SCRIPT)} sh {shlex.quote(self.args['bin_dir'])} " + shlex.quote(
            self.args["data_dir"]
        )
        result = self.live.ssh(member, as_postgres(_site_user(self, member), script), timeout=self.timeout)
        facts["pg_ctl_output"] = (result.stdout.strip().splitlines() or [""])[-1][:200]
        disable = self.args.get("disable_command")
        if disable:
            # A failure here leaves the member stopped (fenced now) but not kept down across a
            # reboot: a warning in the outcome, not a reason to leave the target unpromoted.
            disabled = self.live.ssh(member, disable, timeout=self.timeout)
            facts["disabled"] = disabled.exit_code == 0
            if disabled.exit_code != 0:
                facts["warning"] = f"{member}: `{disable}` exited {disabled.exit_code}; disable Patroni there by hand"
        marker = self.args["marker"]
        note = (
            f"fenced by migrate failover at {utc_now()}: Patroni stopped, PostgreSQL stopped; see runbooks/failover.md"
        )
        mark = self.live.ssh(
            member, f"printf '%s\\n' {shlex.quote(note)} > {shlex.quote(marker)}", timeout=self.timeout
        )
        facts["marker"] = marker if mark.exit_code == 0 else None
        return facts

    def _hook(self) -> dict[str, Any]:
        ctx = self.ctx
        command = getattr(ctx.inventory.hooks, "fence", None)
        if not command:
            raise UnsafeStateError(
                f"{self.args['member']} cannot be fenced: hooks.fence is no longer in the inventory; nothing was "
                "promoted"
            )
        env = {
            **migration_env(ctx.inventory.service, ctx.plan.source, ctx.plan.target),
            "MIGRATOR_FENCE_MEMBER": self.args["member"],
            "MIGRATOR_FENCE_HOST": self.args["host"],
        }
        try:
            output = run_hook("fence", command, ctx.inventory.hooks.timeout_seconds, env)
        except HookFailed as exc:
            raise UnsafeStateError(
                f"{exc}: {self.args['member']} is not fenced, so nothing was promoted; fence it by other means and "
                f"run `migrate failover --dc {ctx.plan.target}` again with --fenced {self.args['member']}"
            ) from None
        return {"fence_hook_output": output}

    def _status(self) -> str:
        script = f"{shlex.quote(self.args['bin_dir'] + '/pg_ctl')} status -D {shlex.quote(self.args['data_dir'])}"
        member = self.args["member"]
        result = self.live.ssh(
            member, as_postgres(_site_user(self, member), f"{script} >/dev/null 2>&1; echo $?"), timeout=10
        )
        return result.stdout.strip()

    def _stopped(self) -> bool:
        return self._status() in ("3", "4")

    def _marker_present(self) -> bool:
        result = self.live.ssh(self.args["member"], f"test -f {shlex.quote(self.args['marker'])}", timeout=10)
        return result.exit_code == 0

    def gate(self) -> dict[str, Any]:
        method, member = self.args["method"], self.args["member"]
        if method != "ssh":
            return {"fenced_by": method, "checkpoint": None, "fenced_at": utc_now()}
        self.wait(self._stopped, f"{member}'s PostgreSQL to be stopped", interval=0.5)
        command = controldata_command(
            _site_user(self, member), self.args["bin_dir"], self.args["data_dir"], 10, wait=False
        )
        control = parse_controldata(self.live.ssh(member, command, timeout=20).stdout)
        state = control.get("Database cluster state")
        facts: dict[str, Any] = {
            "fenced_by": "ssh",
            "control_state": state,
            "fenced_at": utc_now(),
            "checkpoint": None,
            "marker": self.args["marker"],
        }
        checkpoint = control.get("Latest checkpoint location", "")
        if state in SHUT_DOWN and "/" in checkpoint:
            # A clean stop: its checkpoint is the end of what this member wrote. A crashed one
            # ("in production") carries a stale checkpoint: fenced, but no token from it.
            facts.update(
                checkpoint=lsn_value(checkpoint),
                checkpoint_text=checkpoint,
                checkpoint_timeline=int(control.get("Latest checkpoint's TimeLineID", "0") or 0) or None,
            )
        return facts


@step_kind("prove_failover")
class ProveFailover(Step):
    """The token is the highest shutdown checkpoint among the fenced members; the target's
    standby leader replays what it received (bounded); lossless when past the token. A gap (or
    no pg_control at all) stops the run unless the plan accepts the loss, and then the lost range
    is a journal record and a fact of the run's report."""

    def gate(self) -> dict[str, Any]:
        site, source = self.args["site"], self.args["source"]
        checkpoints: dict[str, tuple[int | None, int | None]] = {}
        unread: list[str] = []
        for fence_id in self.args["fences"]:
            fenced = self.ctx.facts.get(fence_id, {})
            member = next(s.args["member"] for s in self.ctx.plan.steps if s.id == fence_id)
            if fenced.get("checkpoint") is not None:
                checkpoints[member] = (fenced["checkpoint"], fenced.get("checkpoint_timeline"))
            else:
                unread.append(member)
        token = max((lsn for lsn, _ in checkpoints.values() if lsn is not None), default=None)
        seen: dict[str, Any] = {"member": self.args["member"], "replayed": None, "since": time.monotonic()}

        def settled() -> bool:
            leader, why = confirmed_standby_leader(self.live, site, seen["member"] or "")
            if leader is None:
                seen["why"] = why
                return False
            seen["member"] = leader
            replayed = self.live.replay_position(leader).replayed
            if replayed != seen["replayed"]:
                seen.update(replayed=replayed, since=time.monotonic())
            seen["why"] = f"{leader} replayed {lsn_text(replayed)}; token {lsn_text(token)}"
            if token is not None and replayed is not None and replayed > token:
                return True
            return time.monotonic() - seen["since"] >= STALL_SECONDS

        try:
            self.wait(settled, f"{site} to replay what it received", interval=0.1, describe=lambda: seen.get("why", ""))
        except GateTimeout:
            if seen["replayed"] is None:
                raise
        proof = judge(checkpoints, seen["member"], seen["replayed"], tuple(unread))
        token_timeline = checkpoints.get(proof.token_member or "", (None, None))[1]
        if proof.status == "lossless" and proof.token is not None and token_timeline:
            # Past the token's LSN is not enough on another timeline: past it on the token's own.
            on_timeline = replay_proof(self.live, seen["member"], proof.token, token_timeline)
            if not on_timeline.past:
                proof = proof.model_copy(
                    update={"status": "gap", "summary": f"not proven on the token's timeline: {on_timeline.why}"}
                )
        facts: dict[str, Any] = {
            "status": proof.status,
            "token": proof.token,
            "token_text": lsn_text(proof.token) if proof.token is not None else None,
            "token_member": proof.token_member,
            # The run report's token line (render/run_outcome.py) reads these two.
            "token_state": f"shut down, {proof.token_member}" if proof.token_member else "not read",
            "token_timeline": token_timeline,
            "target_member": proof.target_member,
            "replayed": proof.target_replayed,
            "replayed_text": lsn_text(proof.target_replayed),
            "unread": list(proof.unread),
            "proven_at": utc_now(),
            "note": proof.summary,
        }
        if proof.status == "lossless":
            facts["proven_point"] = proof.token
            return facts
        if not self.args.get("accept_data_loss"):
            raise UnsafeStateError(
                f"{proof.summary}; nothing was promoted and {source} stays fenced: start a member holding that WAL "
                f"so {site} can receive it (runbooks/failover.md), or accept the loss with "
                f"`migrate failover --dc {site} --resume --accept-data-loss`"
            )
        facts.update(
            proven_point=proof.target_replayed,
            accepted_loss=True,
            lost_from=lsn_text(proof.target_replayed),
            lost_to=lsn_text(proof.token) if proof.token is not None else "unknown",
            lost_bytes=proof.gap_bytes,
            holders=list(proof.holders),
            note=f"DATA LOSS ACCEPTED: {proof.summary}",
        )
        self.ctx.record(
            "data-loss-accepted",
            step=self.spec.id,
            status=proof.status,
            lost_from=facts["lost_from"],
            lost_to=facts["lost_to"],
            lost_bytes=proof.gap_bytes,
            holders=list(proof.holders),
        )
        return facts


@step_kind("promote_failover")
class PromoteFailover(Step):
    """Remove standby_cluster from the target's dynamic config, after proving again, about the
    member Patroni will promote, that it stands at or past the proven point. `promotion-attempted`
    is journaled just before the PATCH; the gate wants one writer on a new timeline whose fork is
    at or past the proven point (past the token when lossless)."""

    def precheck(self) -> bool:
        if self.spec.id not in self.ctx.resumed_steps:
            return False
        return not self.live.config(self.args["site"]).get("standby_cluster")

    def _proof(self) -> dict[str, Any]:
        proof = self.ctx.facts.get(self.args["proof_from"], {})
        if proof.get("proven_point") is None:
            raise UnsafeStateError(
                f"step {self.spec.id}: no proven point from step {self.args['proof_from']}; nothing was promoted"
            )
        return proof

    def _at_point(self, replayed: int | None, proof: dict[str, Any]) -> bool:
        if replayed is None:
            return False
        if proof.get("accepted_loss"):
            return replayed >= proof["proven_point"]
        return replayed > proof["proven_point"]

    def apply(self) -> dict[str, Any]:
        proof = self._proof()
        site = self.args["site"]
        ctx = self.ctx
        facts: dict[str, Any] = {}
        output = run_configured_hook(
            ctx.inventory.hooks, "before_promote", migration_env(ctx.inventory.service, ctx.plan.source, site)
        )
        if output is not None:
            facts["before_promote_output"] = output
        seen: dict[str, Any] = {"member": proof.get("target_member") or self.args["leader"] or "", "why": ""}

        def proven() -> bool:
            leader, why = confirmed_standby_leader(self.live, site, seen["member"])
            seen["why"] = why
            if leader is None:
                return False
            seen["member"] = leader
            position = self.live.replay_position(leader)
            seen.update(replayed=position.replayed, timeline=position.timeline)
            seen["why"] = f"{leader} replayed {lsn_text(position.replayed)}"
            return self._at_point(position.replayed, proof)

        self.wait(
            proven,
            f"{site}'s standby leader at the proven point right before the promotion",
            interval=0.05,
            describe=lambda: seen["why"],
        )
        facts.update(
            proven_member=seen["member"],
            proven_replayed=seen["replayed"],
            proven_timeline=seen["timeline"],
            timeline_before=seen["timeline"],
            proven_at=utc_now(),
        )
        self.ctx.record("promotion-attempted", step=self.spec.id, member=seen["member"])
        facts["promote_patch_sent_at"] = utc_now()
        try:
            send_config_patch(self, site, {"standby_cluster": None}, lambda config: not config.get("standby_cluster"))
        except PatroniRefused as exc:
            self.ctx.record("promotion-refused", step=self.spec.id, error=str(exc))
            raise
        return {**facts, "promote_sent_at": utc_now()}

    def gate(self) -> dict[str, Any]:
        site = self.args["site"]
        proof = self._proof()
        found = wait_for_new_primary(self, site, f"{site} to have a writable primary on a new timeline", interval=0.05)
        history: dict[str, Any] = {}

        def read_fork() -> bool:
            history["fork"] = fork_point(self.live.history_file(found["primary"], found["new_timeline"]))
            return history["fork"] is not None

        self.wait(read_fork, f"{found['primary']}'s timeline {found['new_timeline']} history", interval=0.2)
        fork = history["fork"]
        found["fork_lsn"] = lsn_text(fork)
        point = proof["proven_point"]
        if fork < point or (not proof.get("accepted_loss") and fork <= point):
            raise UnsafeStateError(
                f"{found['primary']} was promoted at {lsn_text(fork)}, before the proven point {lsn_text(point)}: "
                f"commits may be missing on it; stop the traffic to it and follow runbooks/failover.md"
            )
        found.update(move_traffic(self, found["primary"]))
        return found


@step_kind("verify_failover")
class VerifyFailover(Step):
    def gate(self) -> dict[str, Any]:
        site, source = self.args["site"], self.args["source"]
        seen: dict[str, Any] = {}

        def one_writer() -> bool:
            seen["target"], seen["source"] = self.live.writable(site), self.live.writable(source)
            return len(seen["target"]) == 1 and not seen["source"]

        self.wait(
            one_writer,
            f"one writer in {site} and none in {source}",
            interval=0.2,
            describe=lambda: f"{site}: {seen.get('target')}, {source}: {seen.get('source')}",
        )
        try:
            lsn = self.live.emit_wal_message(seen["target"][0], "migrator", "failover verified")
        except UnreachableError as exc:
            raise UnsafeStateError(f"{seen['target'][0]} did not take a write after the failover: {exc}") from None
        return {"writer": seen["target"][0], "verify_write_lsn": lsn_text(lsn)}
