"""The write-unavailability window: demote the source, read its token, let the target catch up,
promote the target. Each poll is tens of milliseconds on a kept-open connection."""

from __future__ import annotations

import time
from typing import Any

from migrator.adapters.pg import TIMELINE_QUERY
from migrator.dcs_watch import etcd_problem, hold_for_dcs
from migrator.errors import GateTimeout, PreflightError, UnreachableError, UnsafeStateError
from migrator.hooks import HookFailed, run_hook
from migrator.journal import utc_now
from migrator.observe import parse_controldata
from migrator.remote import controldata_command
from migrator.state import lsn_text as lsn, lsn_value
from migrator.steps.base import Live, Step
from migrator.steps.standby_leader import confirmed_standby_leader

# A clean shutdown leaves pg_control "shut down"; a standby shut down cleanly says "... in
# recovery". Patroni restarts the old primary as a standby within a second or two, after which it
# says "in archive recovery" but still carries the shutdown checkpoint as its latest one until
# the first restartpoint, recognisable because a shutdown checkpoint's REDO is the record itself.
CLEAN_STATES = ("shut down", "shut down in recovery")
RESTARTED_STATES = ("in archive recovery",)
LEADER_RECHECK_SECONDS = 1.0  # how often a catch-up gate that waits asks who leads the target


class DemoteSite(Step):
    kind = "demote_site"
    changes_state = True

    def precheck(self) -> bool:
        return bool(self.live.config(self.args["site"]).get("standby_cluster"))

    def apply(self) -> dict[str, Any]:
        self._planned_leader_writes()
        self.warm_up_switchover_connections()
        send_config_patch(self, self.args["site"], {"standby_cluster": self.args["standby_cluster"]},
                          lambda config: bool(config.get("standby_cluster")))
        return {"demote_sent_at": utc_now()}

    def _planned_leader_writes(self) -> None:
        """The token is read from the planned leader's pg_control, so the demotion is only sent
        while that member is the site's one writer. After a DCS outage (Patroni demotes a primary
        without its DCS when failsafe_mode is off) it takes writes again a few seconds after the
        DCS is back; another member taking over means the plan is stale."""
        site, leader = self.args["site"], self.args["leader"]
        writers = self.wait(lambda: self.live.writable(site), f"{site} to have a writable primary ({leader})",
                            interval=0.1)
        if writers != [leader]:
            raise PreflightError(
                f"{site}'s writable member is now {', '.join(writers)}, not {leader} as planned (a failover or a "
                f"DCS outage since the plan); {site} was not demoted: run `migrate execute` again to plan from "
                "the current state")

    def gate(self) -> dict[str, Any]:
        leader = self.args["leader"]
        self.wait(lambda: self.live.in_recovery(leader) is not False,
                  f"{leader} to stop accepting writes", interval=0.01)
        return {"source_read_only_at": utc_now()}

    def undo(self, facts: dict[str, Any]) -> bool:
        """Make the source primary again: safe only while the target was never promoted."""
        target = self.ctx.plan.target
        if self._target_may_be_promoted(target):
            raise UnsafeStateError(
                f"{target} may have been promoted, so {self.args['site']} is not made primary again "
                f"(that would give two writable sites); run `migrate execute --resume` to finish the move")
        # The PATCH goes through the source's DCS: wait for it if it is down, as before any step.
        hold_for_dcs(self.ctx, [self.args["site"]], self.timeout, f"undoing {self.spec.id}")
        self.live.patch_config(self.args["site"], {"standby_cluster": None})
        self.wait(lambda: self.live.writable(self.args["site"]),
                  f"{self.args['site']} to accept writes again", interval=0.1)
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


def send_config_patch(step: Step, site: str, patch: dict[str, Any], landed: Any) -> None:
    """PATCH a site's dynamic config; when no member answered, look whether it landed anyway
    before calling it failed. Right after a site's etcd came back, Patroni answered GET /config
    while a PATCH hung for seconds and then took effect (the next member's PATCH got 409), so a
    PATCH without an answer may still land. The step was going to make this change: while the
    config does not show it, send it again, until the step's deadline."""
    try:
        step.live.patch_config(site, patch)
        return
    except UnreachableError as exc:
        if "did not answer" not in str(exc):
            raise  # every member answered (401, 409...): nothing is pending in any Patroni
        error = exc

    def in_place() -> bool:
        if landed(step.live.config(site)):
            return True
        step.live.patch_config(site, patch)
        return landed(step.live.config(site))

    try:
        step.wait(in_place, f"{site}'s dynamic config to show the change (the PATCH got no answer: {error})",
                  interval=0.5)
    except GateTimeout:
        raise error from None


class ProveNotWritable(Step):
    kind = "prove_not_writable"

    def gate(self) -> dict[str, Any]:
        site = self.args["site"]
        self.wait(lambda: not self.live.writable(site), f"every {site} member to refuse writes",
                  interval=0.02)
        return {}


class ReadToken(Step):
    """The old primary's final LSN: the location of its shutdown checkpoint."""

    kind = "read_token"

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
                return {"token": lsn_value(checkpoint), "token_text": checkpoint, "token_state": seen["state"],
                        "token_reads": seen["reads"], "token_first_state": seen.setdefault("first", seen["state"]),
                        "token_timeline": int(facts.get("Latest checkpoint's TimeLineID", "0") or 0)}
            return None

        return self.wait(token, f"{member}'s pg_control to show a clean shutdown", interval=0.02,
                         describe=lambda: f"state {seen.get('state', '?')}")


def controldata_wait_command(live: Live, member: str, bin_dir: str, data_dir: str, seconds: float) -> str:
    """Shell that prints pg_controldata once the cluster is neither "in production" nor "shutting
    down" (so: shut down, or already restarted in recovery, which read_token tells apart). The
    same command preflight runs once on the source leader (check `token-readable`)."""
    site, found = live.member(member)
    return controldata_command(site.ssh_for(found).user, bin_dir, data_dir, seconds, wait=True)


class WaitReplayPastToken(Step):
    kind = "wait_replay_past_token"

    def gate(self) -> dict[str, Any]:
        token = self.ctx.facts.get(self.args["token_from"], {}).get("token")
        if token is None:
            raise PreflightError(f"step {self.spec.id}: no token learned by step {self.args['token_from']}")
        site = self.args["site"]
        state = {"member": self.args["member"], "replayed": None}

        def replayed_past() -> bool:
            try:
                value = self.live.query(state["member"], "SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint")[0][0]
            except UnreachableError:
                # The standby leader may have changed under us: follow whoever leads the site now.
                leaders = [n for n, r in self.live.site_roles(site).items() if r == "standby_leader"]
                if leaders:
                    state["member"] = leaders[0]
                raise
            state["replayed"] = value
            behind = value is None or value <= token
            if behind and time.monotonic() < state.get("next_leader_check", 0.0):
                return False
            # Only the member Patroni would promote counts, and the standby leader can change
            # here (agent killed: its PostgreSQL replays on, or stalls, orphaned). While behind,
            # look again once a second; once past the token, confirm before it counts.
            state["next_leader_check"] = time.monotonic() + LEADER_RECHECK_SECONDS
            leader, state["why"] = confirmed_standby_leader(self.live, site, state["member"])
            if leader != state["member"]:
                state["member"] = leader or state["member"]
                return False
            return not behind

        self.wait(replayed_past, f"{site} to replay past the token {lsn(token)}", interval=0.01,
                  describe=lambda: f"{state['member']} replayed {lsn(state['replayed'])}"
                                   + (f"; {state['why']}" if state.get("why") else ""))
        return {"caught_up_member": state["member"], "replayed": state["replayed"], "caught_up_at": utc_now()}


class PromoteSite(Step):
    kind = "promote_site"
    changes_state = True

    def precheck(self) -> bool:
        if self.spec.id not in self.ctx.resumed_steps:
            # First attempt: the plan saw the target as a standby cluster moments ago, and the
            # PATCH is idempotent; skipping the GET keeps a round trip out of the write gap.
            return False
        return not self.live.config(self.args["site"]).get("standby_cluster")

    def apply(self) -> dict[str, Any]:
        # The target replayed up to the token, so it stands on the token's timeline; its own
        # pg_control may still name an older one until its next restartpoint.
        token = next((f for f in self.ctx.facts.values() if "token_timeline" in f), {})
        before = token.get("token_timeline")
        if before is None:
            try:
                before = self.live.query(self.args["leader"], TIMELINE_QUERY)[0][0]
            except UnreachableError:
                pass
        facts: dict[str, Any] = {"timeline_before": before}
        hooks = self.ctx.inventory.hooks
        if hooks.before_promote:
            # A failure here stops the run before the promotion: the demotion is undone.
            facts["before_promote_output"] = run_hook("before_promote", hooks.before_promote,
                                                      hooks.timeout_seconds, self._hook_env())
        send_config_patch(self, self.args["site"], {"standby_cluster": None},
                          lambda config: not config.get("standby_cluster"))
        return {**facts, "promote_sent_at": utc_now()}

    def _hook_env(self, primary: str | None = None) -> dict[str, str]:
        env = {"MIGRATOR_SERVICE": self.ctx.inventory.service, "MIGRATOR_SOURCE": self.ctx.plan.source,
               "MIGRATOR_TARGET": self.ctx.plan.target}
        if primary:
            env.update(MIGRATOR_NEW_PRIMARY=primary, MIGRATOR_NEW_PRIMARY_HOST=self.live.member(primary)[1].host)
        return env

    def gate(self) -> dict[str, Any]:
        site = self.args["site"]
        found: dict[str, Any] = {}

        def promoted() -> bool:
            writers = self.live.writable(site)
            if len(writers) != 1:
                return False
            timeline = self.live.query(writers[0], TIMELINE_QUERY)[0][0]
            before = (self.ctx.facts.get(self.spec.id) or {}).get("timeline_before")
            found.update(primary=writers[0], new_timeline=timeline)
            # Promotion always starts a new timeline; a writer on the old one is not our promotion.
            return before is None or timeline > before

        self.wait(promoted, f"{site} to have a writable primary", interval=0.01)
        found["target_writable_at"] = utc_now()
        hooks = self.ctx.inventory.hooks
        if hooks.after_promote:
            try:
                found["after_promote_output"] = run_hook("after_promote", hooks.after_promote,
                                                         hooks.timeout_seconds, self._hook_env(found["primary"]))
            except HookFailed as exc:
                # The database side is done and must not be undone; the traffic switch is the
                # operator's to finish. The run goes on and ends with exit 1 naming the hook.
                found["warning"] = f"{exc}; {site} is primary, move the traffic by hand"
                self.ctx.progress(f"WARNING: {found['warning']}")
        return found

