"""The Patroni < 4.1 path. There, adding standby_cluster demotes with an immediate shutdown, which
can leave the old primary ahead of the target. Instead: pause the source, stop its primary
cleanly (the token is then a real shutdown checkpoint), promote the target first, and resume
the source with its standby_cluster only once its own Patroni reports PostgreSQL `stopped`:
resuming earlier restarts the old primary read-write (docs/architecture.md, "Patroni behaviour")."""

from __future__ import annotations

import shlex
from typing import Any

from migrator.adapters.remote import as_postgres, controldata_command
from migrator.errors import UnsafeStateError
from migrator.observe.controldata import parse_controldata
from migrator.run.journal import utc_now
from migrator.steps.base import Step, step_kind
from migrator.steps.switchover import run_before_demote, wait_for_target_streaming


def _pg_ctl(step: Step, member_name: str, action: str) -> str:
    site, member = step.live.member(member_name)
    ssh_user = site.ssh_for(member).user
    data_dir, bin_dir = step.args["data_dir"], step.args["bin_dir"]
    return as_postgres(ssh_user, f"{bin_dir}/pg_ctl {action} -D {shlex.quote(data_dir)} -t 60")


@step_kind("pause_site")
class PauseSite(Step):
    def precheck(self) -> bool:
        return bool(self.live.config(self.args["site"]).get("pause"))

    def apply(self) -> dict[str, Any]:
        self.warm_up_switchover_connections()
        self.live.patch_config(self.args["site"], {"pause": True})
        return {"paused_by_this_run": True}

    def gate(self) -> dict[str, Any]:
        site = self.live.site(self.args["site"])
        self.wait(
            lambda: all(self.live.patroni(m.name).get("pause") for m in site.members),
            f"every {site.scope} member to report pause",
            interval=0.1,
        )
        return {}

    def undo(self, facts: dict[str, Any]) -> bool:
        if not facts.get("paused_by_this_run"):
            return False
        self.live.patch_config(self.args["site"], {"pause": None})
        return True


@step_kind("stop_postgres")
class StopPostgres(Step):
    def precheck(self) -> bool:
        return self.live.in_recovery(self.args["member"]) is None and self._stopped()

    def _stopped(self) -> bool:
        site, member = self.live.member(self.args["member"])
        read_once = controldata_command(
            site.ssh_for(member).user, self.args["bin_dir"], self.args["data_dir"], self.live.timeout, wait=False
        )
        result = self.live.ssh(self.args["member"], read_once)
        return parse_controldata(result.stdout).get("Database cluster state") == "shut down"

    def apply(self) -> dict[str, Any]:
        member = self.args["member"]
        wait_for_target_streaming(self, self.args["site"], member)
        hook_output = run_before_demote(self)  # a failure: nothing stopped, earlier steps undone
        # Writes end when the fast shutdown starts, not when pg_control says it is done.
        stopping_at = utc_now()
        # -W: pg_ctl's own wait polls every 100 ms; the gate below polls pg_control faster.
        result = self.live.ssh(member, _pg_ctl(self, member, f"stop -W -m {self.args.get('mode', 'fast')}"), timeout=90)
        if not result.ok and not self._stopped():
            output = (result.stderr or result.stdout).strip()[-200:]
            raise UnsafeStateError(
                f"pg_ctl stop on {member} failed: {output}; "
                f"{self.args['site']} is paused: check PostgreSQL on {member} by hand"
            )
        return {"stopped_by_this_run": True, "source_read_only_at": stopping_at, **hook_output}

    def gate(self) -> dict[str, Any]:
        # Refusing connections is enough here: the token step that follows waits for pg_control
        # to say "shut down" (on the host, started before this step).
        member = self.args["member"]
        self.wait(lambda: self.live.in_recovery(member) is None, f"{member} to refuse connections", interval=0.01)
        return {}

    def undo(self, facts: dict[str, Any]) -> bool:
        if not facts.get("stopped_by_this_run"):
            return False
        member = self.args["member"]
        # Start it again as it was: a primary (no standby.signal), while the site is still paused.
        self.live.ssh(member, _pg_ctl(self, member, "start -w -l /dev/null"), timeout=90)
        self.wait(lambda: self.live.in_recovery(member) is False, f"{member} to accept writes again", interval=0.1)
        return True


@step_kind("wait_patroni_stopped")
class WaitPatroniStopped(Step):
    def gate(self) -> dict[str, Any]:
        member = self.args["member"]
        self.wait(
            lambda: self.live.patroni(member).get("state") == "stopped",
            f"{member}'s Patroni to report PostgreSQL stopped",
            interval=0.1,
        )
        return {}


@step_kind("resume_as_standby")
class ResumeAsStandby(Step):
    def precheck(self) -> bool:
        config = self.live.config(self.args["site"])
        return bool(config.get("standby_cluster")) and not config.get("pause")

    def apply(self) -> dict[str, Any]:
        self.live.patch_config(self.args["site"], {"standby_cluster": self.args["standby_cluster"], "pause": None})
        return {"resumed_at": utc_now()}

    def gate(self) -> dict[str, Any]:
        site = self.args["site"]
        self.wait(
            lambda: "standby_leader" in self.live.site_roles(site).values(),
            f"{site} to have a standby leader",
            interval=0.2,
        )
        return {}
