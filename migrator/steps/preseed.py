"""Steps before anything user-visible changes: checks again, slots, access, the future config."""

from __future__ import annotations

import shlex
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from migrator.errors import PreflightError
from migrator.model.inventory import Member
from migrator.planning.preflight import refuse_if_blocked
from migrator.steps.base import Step, step_kind


@step_kind("run_preflight")
class RunPreflight(Step):
    def gate(self) -> dict[str, Any]:
        refuse_if_blocked(
            self.ctx.inventory,
            self.args["source"],
            self.args["target"],
            "switchover",
            "preflight blocks",
            run_ssh=self.live.ssh_read,
        )
        return {}


def _leader_of(step: Step, site: str) -> str:
    roles = step.live.site_roles(site)
    leaders = [name for name, role in roles.items() if role in ("primary", "standby_leader")]
    if len(leaders) != 1:
        raise PreflightError(f"{site} has no single leader (roles: {roles})")
    return leaders[0]


@step_kind("ensure_permanent_slot")
class EnsurePermanentSlot(Step):
    def precheck(self) -> bool:
        return self.args["slot"] in (self.live.config(self.args["site"]).get("slots") or {})

    def apply(self) -> dict[str, Any]:
        self.live.patch_config(self.args["site"], {"slots": {self.args["slot"]: {"type": "physical"}}})
        return {"added": True}

    def gate(self) -> dict[str, Any]:
        site, slot = self.args["site"], self.args["slot"]

        def slot_exists() -> bool:
            leader = _leader_of(self, site)
            return self.live.slot_exists(leader, slot)

        self.wait(slot_exists, f"slot {slot} on {site}'s leader")
        return {}

    def undo(self, facts: dict[str, Any]) -> bool:
        if not facts.get("added"):  # only a slot this run added: an existing one may serve others
            return False
        self.live.patch_config(self.args["site"], {"slots": {self.args["slot"]: None}})
        return True


@step_kind("prove_replication_access")
class ProveReplicationAccess(Step):
    """From every follower host, a real replication connection (IDENTIFY_SYSTEM) to every member of
    the other site: pg_hba, credentials and the network path, proven before the move needs them."""

    def gate(self) -> dict[str, Any]:
        # Every follower host at once, one SSH command per host proving its pairs one after
        # another: an SSH command costs a round trip and a session start on the host (about
        # 0.15 s on an idle loopback testbed, more under load), so a host's pairs share one. (Every
        # pair as its own command at once made eight SSH commands run together, and on a loaded
        # machine some missed their deadline.) A failure is reported in the plan's order, as
        # when they ran one after another.
        to_site = self.ctx.inventory.sites[self.args["to_site"]]
        from_members = list(self.args["from_members"])
        with ThreadPoolExecutor(max_workers=max(1, len(from_members)), thread_name_prefix="access") as pool:
            outcomes = list(pool.map(self._prove_from, from_members))
        for outcome in outcomes:
            if outcome is not None:
                raise outcome
        return {"proven": [f"{f}->{t.name}" for f in from_members for t in to_site.members]}

    def _prove_from(self, from_name: str) -> PreflightError | None:
        """IDENTIFY_SYSTEM from `from_name` to every member of the other site, in one SSH command
        (the password read once from stdin); the first target that refused, in the site's order."""
        inventory = self.ctx.inventory
        to_site = inventory.sites[self.args["to_site"]]
        from_site = inventory.sites[self.args["from_site"]]
        creds = inventory.credentials.replication
        conninfos = [
            f"host={t.host} port={t.pg_port} user={creds.username} "
            f"dbname=replication replication=true connect_timeout={ACCESS_CONNECT_TIMEOUT}"
            for t in to_site.members
        ]
        # Per target: what psql (or the shell starting it) printed on stderr, then a marker line
        # with its exit code (`err=$(...)` keeps psql's exit code; psql never prints the marker).
        command = (
            "IFS= read -r PGPASSWORD && export PGPASSWORD && "
            f"for c in {' '.join(shlex.quote(c) for c in conninfos)}; do "
            f'err=$({shlex.quote(from_site.postgres.bin_dir + "/psql")} "$c" -Atc IDENTIFY_SYSTEM 2>&1 >/dev/null); '
            f'rc=$?; printf "%s\\n{ACCESS_MARKER}%s\\n" "$err" "$rc"; done'
        )
        # Each pair may take its connect_timeout; the command as a whole gets all of them.
        limit = len(conninfos) * ACCESS_CONNECT_TIMEOUT + self.live.timeout
        result = self.live.ssh(from_name, command, timeout=limit, stdin=creds.password.reveal() + "\n")
        outcomes = access_outcomes(result.stdout, len(conninfos), result.stderr)
        for target, (code, stderr) in zip(to_site.members, outcomes, strict=True):
            if code != 0:
                return self._refused(from_name, target, stderr)
        return None

    def _refused(self, from_name: str, target: Member, stderr: str) -> PreflightError:
        to_site = self.ctx.inventory.sites[self.args["to_site"]]
        creds = self.ctx.inventory.credentials.replication
        reason = (stderr.strip().splitlines() or ["no output"])[-1]
        if "Connection refused" in stderr or "Is the server running" in reason:
            # Nothing listens there: no pg_hba or password change would help.
            return PreflightError(
                f"{from_name} cannot open a replication connection to {target.name} "
                f"({target.host}:{target.pg_port}): nothing accepts connections there; "
                f"start {target.name}'s Patroni (and so its PostgreSQL), or fix its "
                "host/pg_port in the inventory, then run again"
            )
        return PreflightError(
            f"{from_name} cannot open a replication connection to {target.name} "
            f"({target.host}:{target.pg_port}) as {creds.username}: {reason}; check pg_hba.conf "
            f"on {to_site.scope} (host replication {creds.username} <{from_name}'s address>), "
            "the password and the firewall"
        )


ACCESS_CONNECT_TIMEOUT = 5
ACCESS_MARKER = "--- migrator: access exit "


def access_outcomes(stdout: str, count: int, stderr: str = "") -> list[tuple[int, str]]:
    """(psql's exit code, its stderr) per target, in order, from the access proof command's output;
    a target the output does not reach (the command stopped early) is (-1, what came before it,
    else the command's own stderr)."""
    outcomes: list[tuple[int, str]] = []
    block: list[str] = []
    for line in stdout.splitlines():
        if line.startswith(ACCESS_MARKER):
            code = line[len(ACCESS_MARKER) :].strip()
            outcomes.append((int(code) if code.isdigit() else -1, "\n".join(block)))
            block = []
        else:
            block.append(line)
    missing = "\n".join(block) or stderr.strip() or "the command stopped before proving it"
    return (outcomes + [(-1, missing)] * count)[:count]


@step_kind("validate_standby_cluster")
class ValidateStandbyCluster(Step):
    """The section the source will get: every host it lists accepts connections on its port."""

    def gate(self) -> dict[str, Any]:
        section = self.args["standby_cluster"]
        hosts = [h.strip() for h in str(section["host"]).split(",")]
        for host in hosts:
            try:
                socket.create_connection((host, int(section["port"])), timeout=5).close()
            except OSError as exc:
                raise PreflightError(
                    f"standby_cluster for {self.args['site']} lists {host}:{section['port']}, "
                    f"which does not accept connections ({exc.strerror or exc})"
                ) from None
        return {"hosts": hosts}
