"""Seeding steps: build the target's standby cluster on hosts that have none.

Patroni does the cloning itself (a base backup from the source for the first member, from the
standby leader for the others); these steps write its configuration, start it with the site's
own service command, follow the base backup, and wait for the replication the next step needs.
Undo never deletes data: it stops Patroni and moves data directories aside.
"""

from __future__ import annotations

import hashlib
import shlex
import sys
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from migrator.adapters.dcs import Etcd3Dcs, site_dcs
from migrator.adapters.pg_queries import BaseBackupProgress
from migrator.adapters.remote import POSTGRES_OS_USER
from migrator.checks.seed import needs_seed
from migrator.errors import MigratorError, PreflightError, UnreachableError
from migrator.observe.observer import observe
from migrator.planning.preflight import refuse_if_blocked
from migrator.planning.seed_config import reveal
from migrator.run.journal import utc_now
from migrator.steps.base import Step, step_kind

if TYPE_CHECKING:  # rich.progress is imported when a bar is drawn, not at start-up
    from rich.progress import Progress, TaskID


def _stamp() -> str:
    return utc_now().replace(":", "").replace("-", "")[:15]


def _privileged(ssh_user: str, command: str) -> str:
    """Files owned by the PostgreSQL user are written as root (directly, or through sudo)."""
    if ssh_user in ("root", POSTGRES_OS_USER):
        return command
    return f"sudo -n sh -c {shlex.quote(command)}"


@step_kind("run_seed_preflight")
class RunSeedPreflight(Step):
    def gate(self) -> dict[str, Any]:
        inventory, source, target = self.ctx.inventory, self.args["source"], self.args["target"]
        state = observe(inventory)
        if not needs_seed(state, target):
            raise PreflightError(
                f"{target} is no longer empty (a member's Patroni answers or its DCS "
                "holds members): plan again with `migrate plan`"
            )
        refuse_if_blocked(inventory, source, target, "seed", "seeding refused", state)
        return {}


@step_kind("write_patroni_configs")
class WritePatroniConfigs(Step):
    """Each member's patroni.yml, mode 0600, owned by the PostgreSQL user; a file already there
    that differs is copied to `<file>.migrator-backup-<UTC>` first."""

    def _content(self, text: str) -> str:
        return reveal(text, self.ctx.inventory, self.args["site"])

    def _on_every_member(self, commands: dict[str, tuple[str, str | None]]) -> dict[str, Any]:
        """Run one command per member (member -> (command, stdin)), all started before any is
        collected: the members are separate hosts, so the files are written at the same time."""
        limit = max(30.0, self.live.timeout * 2)
        for member, (command, stdin) in commands.items():
            self.live.start_remote(f"{self.spec.id}-{member}", member, command, timeout=limit, stdin=stdin)
        return {member: self.live.finish_remote(f"{self.spec.id}-{member}") for member in commands}

    def precheck(self) -> bool:
        files = {e["member"]: e for e in self.args["files"]}
        results = self._on_every_member(
            {m: (f"sha256sum {shlex.quote(e['path'])} 2>/dev/null", None) for m, e in files.items()}
        )
        return all(
            results[m] is not None
            and results[m].stdout.startswith(hashlib.sha256(self._content(e["text"]).encode()).hexdigest())
            for m, e in files.items()
        )

    def apply(self) -> dict[str, Any]:
        backups: dict[str, str | None] = {}
        stamp = _stamp()
        commands: dict[str, tuple[str, str | None]] = {}
        for entry in self.args["files"]:
            site, member = self.live.member(entry["member"])
            user = site.ssh_for(member).user
            path = shlex.quote(entry["path"])
            backup = shlex.quote(f"{entry['path']}.migrator-backup-{stamp}")
            owner = f'chown {POSTGRES_OS_USER}: "$f.migrator-new"; ' if user != POSTGRES_OS_USER else ""
            script = (
                f'set -e; f={path}; mkdir -p "$(dirname "$f")"; umask 077; '
                'cat > "$f.migrator-new"; chmod 600 "$f.migrator-new"; '
                'if [ -e "$f" ]; then if cmp -s "$f" "$f.migrator-new"; then '
                'rm -f "$f.migrator-new"; echo unchanged; exit 0; fi; '
                f'cp -p "$f" {backup}; echo backup; fi; {owner}mv "$f.migrator-new" "$f"; echo written'
            )
            commands[entry["member"]] = (_privileged(user, script), self._content(entry["text"]))
        results = self._on_every_member(commands)
        for entry in self.args["files"]:
            result = results[entry["member"]]
            if not result.ok:
                raise UnreachableError(
                    f"{entry['member']}: cannot write {entry['path']}: "
                    f"{(result.stderr.strip().splitlines() or ['no output'])[-1]}"
                )
            backups[entry["member"]] = (
                f"{entry['path']}.migrator-backup-{stamp}" if "backup" in result.stdout.split() else None
            )
        return {"backups": backups, "written": [e["member"] for e in self.args["files"]]}

    def undo(self, facts: dict[str, Any]) -> bool:
        backups = facts.get("backups") or {}
        changed = False
        for entry in self.args["files"]:
            if entry["member"] not in (facts.get("written") or []):
                continue
            path = shlex.quote(entry["path"])
            backup = backups.get(entry["member"])
            if backup:
                command = f"mv {shlex.quote(backup)} {path}"
            else:
                aside = shlex.quote(entry["path"] + ".migrator-undone-" + _stamp())
                command = f"if [ -e {path} ]; then mv {path} {aside}; fi"
            site, member = self.live.member(entry["member"])
            self.live.ssh(entry["member"], _privileged(site.ssh_for(member).user, command))
            changed = True
        return changed


class _SeedMembers(Step):
    def _running(self, member_name: str) -> dict[str, Any] | None:
        try:
            return self.live.patroni(member_name)
        except UnreachableError:
            return None

    def _stopped(self, member_name: str) -> bool:
        return self._running(member_name) is None

    def _start(self, member_name: str, command: str) -> None:
        self.ctx.progress(f"{member_name}: {command}")
        result = self.live.ssh(member_name, command, timeout=max(30.0, self.live.timeout * 6))
        if not result.ok:
            reason = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])[-1]
            raise UnreachableError(
                f"{member_name}: the start command `{command}` failed (exit {result.exit_code}): {reason}"
            )

    def _unseed(self, members: list[dict[str, Any]]) -> bool:
        """Stop Patroni (and so PostgreSQL) on each member and move its data directory aside."""
        changed = False
        stamp = _stamp()
        for m in members:
            name = m["name"]
            self.ctx.progress(f"undo: {name}: {m['stop_command']}")
            try:
                self.live.ssh(name, m["stop_command"], timeout=120)
            except UnreachableError as exc:
                raise UnreachableError(f"{name}: cannot stop Patroni ({exc})") from None
            self.wait(partial(self._stopped, name), f"{name}'s Patroni to stop", interval=0.5, timeout=120)
            site, member = self.live.member(name)
            data_dir = shlex.quote(m["data_dir"])
            aside = shlex.quote(f"{m['data_dir']}.migrator-aside-{stamp}")
            command = (
                f'd={data_dir}; i=0; while [ -e "$d/postmaster.pid" ] && [ $i -lt 60 ]; do '
                "sleep 1; i=$((i+1)); done; "
                f'if [ -d "$d" ]; then mv "$d" {aside}; echo moved; fi'
            )
            result = self.live.ssh(name, _privileged(site.ssh_for(member).user, command), timeout=90)
            changed = changed or "moved" in result.stdout
        return changed

    def _forget_site(self) -> None:
        """The target's DCS keys go with its data: a later seed must bootstrap afresh (Patroni
        waits for a leader forever when the scope is initialized but no member has data)."""
        site = self.live.site(self.args["site"])
        if any(self._running(m.name) is not None for m in site.members):
            return  # someone runs there: leave the keys alone
        dcs: Etcd3Dcs = site_dcs(site, self.live.timeout)
        prefix = f"{site.namespace.rstrip('/')}/{site.scope}/"
        try:
            dcs.client().delete_prefix(prefix)
        except Exception as exc:  # noqa: BLE001 - etcd3gw raises its own and requests' errors
            raise UnreachableError(f"cannot remove {prefix} from {self.args['site']}'s etcd ({exc})") from None


def _initialized(step: Step, site_name: str) -> bool:
    """The site's initialize key exists: a member has won the race to bootstrap it."""
    site = step.live.site(site_name)
    try:
        snapshot = site_dcs(site, step.live.timeout).snapshot(site.namespace, site.scope)
    except Exception:  # noqa: BLE001 - etcd3gw raises its own and requests' errors; a miss is a later sample
        return False
    return "initialize" in snapshot.keys


@step_kind("start_seed_leader")
class StartSeedLeader(_SeedMembers):
    """Patroni on the first member, the only one whose patroni.yml may bootstrap the site: it
    takes the site's initialize key and clones the source (create_replica_methods: basebackup).
    The gate holds once it has won that race, so that the other members start while its copy
    crosses sites (they can only clone a leader, so they wait for it); that it becomes the
    standby leader streaming from the source is the next step's gate."""

    def _member(self) -> dict[str, Any]:
        return {
            "name": self.args["member"],
            "stop_command": self.args["stop_command"],
            "data_dir": self.args["data_dir"],
        }

    def precheck(self) -> bool:
        return self._running(self.args["member"]) is not None

    def apply(self) -> dict[str, Any]:
        self._start(self.args["member"], self.args["start_command"])
        return {"started": self.args["member"]}

    def gate(self) -> dict[str, Any]:
        member, site = self.args["member"], self.args["site"]
        state = {"why": "starting"}

        def bootstrapping() -> bool:
            patroni = self._running(member)
            if patroni is None:
                state["why"] = "Patroni not answering yet"
                return False
            if patroni.get("role") == "standby_leader":
                return True  # already past its bootstrap (a resumed run)
            if not _initialized(self, site):
                state["why"] = f"role {patroni.get('role')}, state {patroni.get('state')}, no initialize key yet"
                return False
            return True

        self.wait(
            bootstrapping,
            f"{member} to take {site}'s initialize key and start its base backup from {self.args['source']}",
            interval=0.2,
            describe=lambda: state["why"],
        )
        return {"bootstrapping": member}

    def undo(self, facts: dict[str, Any]) -> bool:
        changed = self._unseed([self._member()])
        self._forget_site()
        return changed


@step_kind("start_seed_replicas")
class StartSeedReplicas(_SeedMembers):
    """The other members, all at once, started while the standby leader's copy still crosses
    sites: their patroni.yml has no bootstrap section, so each waits for the standby leader's key
    and then clones it inside the target site; no copy crosses the inter-site link again and none
    waits for another. The gate: the first member is the standby leader streaming from the source
    over the slot, and every other member a replica streaming from it, all at the same moment.
    The facts keep when the standby leader first streamed and, per member, when its Patroni was
    started and when it was first seen cascading: the overlap is in the journal."""

    def precheck(self) -> bool:
        return all(self._running(m["name"]) is not None for m in self.args["members"])

    def _leader_streaming(self) -> tuple[bool, str]:
        member, slot = self.args["leader"], self.args["slot"]
        source_hosts = {m.host for m in self.live.site(self.args["source"]).members}
        patroni = self._running(member)
        if patroni is None:
            return False, "Patroni not answering"
        role, pg_state = patroni.get("role"), patroni.get("state")
        if role != "standby_leader":
            return False, f"role {role}, state {pg_state}"
        receiver = self.live.wal_receiver(member)
        if not receiver or not receiver.streaming:
            return False, f"standby leader, WAL receiver {receiver.status if receiver else 'absent'}"
        if receiver.sender_host not in source_hosts or receiver.slot_name != slot:
            return False, f"streaming from {receiver.sender_host} with slot {receiver.slot_name}"
        return True, f"standby leader streaming from {self.args['source']} over slot {slot}"

    def _cascading(self, name: str) -> tuple[bool, str]:
        leader_host = self.live.member(self.args["leader"])[1].host
        patroni = self._running(name)
        if patroni is None:
            return False, "Patroni not answering yet"
        if patroni.get("role") != "replica":
            return False, f"role {patroni.get('role')}, state {patroni.get('state')}"
        receiver = self.live.wal_receiver(name)
        if not receiver or not receiver.streaming:
            return False, f"WAL receiver {receiver.status if receiver else 'absent'}"
        if receiver.sender_host != leader_host:
            return False, f"streams from {receiver.sender_host}, not from {self.args['leader']} ({leader_host})"
        return True, f"streams from {self.args['leader']}"

    def apply(self) -> dict[str, Any]:
        """Every start command is sent before any is collected: the members clone concurrently
        (the standby leader serves one base backup per member, over the target's own network)."""
        waiting = [m for m in self.args["members"] if self._running(m["name"]) is None]
        started_at: dict[str, str] = {}
        limit = max(30.0, self.live.timeout * 6)
        for m in waiting:
            self.ctx.progress(f"{m['name']}: {m['start_command']}")
            self.live.start_remote(f"seed-start-{m['name']}", m["name"], m["start_command"], timeout=limit)
            started_at[m["name"]] = utc_now()
        # Every command collected before any failure is raised: none is left running unheard.
        results = {m["name"]: self.live.finish_remote(f"seed-start-{m['name']}") for m in waiting}
        for m in waiting:
            result = results[m["name"]]
            if result is not None and not result.ok:
                reason = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])[-1]
                # The engine undoes only steps whose change was recorded; the members whose start
                # did succeed are cloning now: stop them here, as this step's undo would.
                try:
                    self._unseed(list(reversed(waiting)))
                except MigratorError as exc:
                    reason += f"; stopping the members started with it failed too ({exc})"
                raise UnreachableError(
                    f"{m['name']}: the start command `{m['start_command']}` failed (exit {result.exit_code}): {reason}"
                )
        return {"started": list(started_at), "started_at": started_at}

    def gate(self) -> dict[str, Any]:
        leader = self.args["leader"]
        names = [m["name"] for m in self.args["members"]]
        cascading_at: dict[str, str] = {}
        leader_streaming_at: str | None = None  # when the standby leader was first seen streaming
        why: dict[str, str] = {}
        # The cross-site copy is followed on the source until the standby leader streams; then the
        # in-site clones, on the standby leader that serves them.
        across = BackupProgress(self, self.args["source"])
        inside = BackupProgress(self, self.args["site"], member=leader)

        def every_one_cascading() -> bool:
            nonlocal leader_streaming_at
            ok, why[leader] = self._leader_streaming()
            if ok and leader_streaming_at is None:
                leader_streaming_at = utc_now()
            (inside if leader_streaming_at else across).sample()
            held = leader_streaming_at is not None and ok
            for name in names:
                # Before the standby leader exists a replica is only waiting: one REST call shows it.
                member_ok, why[name] = (
                    self._cascading(name) if leader_streaming_at else (False, "waiting for the standby leader")
                )
                if member_ok:
                    cascading_at.setdefault(name, utc_now())
                held = held and member_ok
            return held

        def describe() -> str:
            members = "; ".join(f"{name}: {why[name]}" for name in [leader, *names] if name in why)
            progress = inside.text() if leader_streaming_at else across.text()
            return ", ".join(part for part in (progress, members) if part)

        try:
            self.wait(
                every_one_cascading,
                f"{leader} to clone {self.args['source']} and stream as standby leader, "
                f"{', '.join(names) or 'no other member'} to clone {leader} and cascade from it",
                # REST calls and a query per member per sample: a short interval costs little and
                # the next step starts the moment the last member cascades.
                interval=0.2,
                describe=describe,
            )
        finally:
            across.close()
            inside.close()
        return {
            "standby_leader": leader,
            "standby_leader_streaming_at": leader_streaming_at,
            "base_backup": across.summary(),
            "cascading": names,
            "cascading_at": cascading_at,
        }

    def undo(self, facts: dict[str, Any]) -> bool:
        return self._unseed(list(reversed(self.args["members"])))


@step_kind("wipe_target")
class WipeTarget(_SeedMembers):
    """Before a re-seed: the target's members stopped, their data directories moved aside, its DCS
    keys removed, so that Patroni bootstraps it afresh as a standby cluster. Refused while any
    target member accepts writes: a writable site is never wiped."""

    def _keys_left(self) -> bool:
        site = self.live.site(self.args["site"])
        snapshot = site_dcs(site, self.live.timeout).snapshot(site.namespace, site.scope)
        return bool(snapshot.keys)

    def precheck(self) -> bool:
        running = [m["name"] for m in self.args["members"] if self._running(m["name"]) is not None]
        return not running and not self._keys_left() and not self._data_left()

    def _data_left(self) -> bool:
        for m in self.args["members"]:
            result = self.live.ssh(m["name"], f"test -e {shlex.quote(m['data_dir'])}")
            if result.ok:
                return True
        return False

    def apply(self) -> dict[str, Any]:
        writers = [m["name"] for m in self.args["members"] if self.live.in_recovery(m["name"]) is False]
        if writers:
            raise PreflightError(
                f"{', '.join(writers)} in {self.args['site']} accepts writes: a writable "
                "site is never wiped; look with `migrate status`"
            )
        self._unseed(list(reversed(self.args["members"])))
        self._forget_site()
        return {"wiped": [m["name"] for m in self.args["members"]]}

    def gate(self) -> dict[str, Any]:
        self.wait(
            lambda: not any(self._running(m["name"]) for m in self.args["members"]) and not self._keys_left(),
            f"{self.args['site']} stopped and its DCS keys gone",
            interval=0.5,
        )
        return {}


class BackupProgress:
    """Bytes done / total, rate and ETA of a running base backup, read on the member that serves
    it (a member of the source, or the standby leader for a replica): a rich progress bar on a
    terminal, one line per second otherwise (through the step's progress and the journal)."""

    def __init__(self, step: Step, site: str, member: str | None = None):
        self.step, self.site, self.member = step, site, member
        self.first: tuple[float, int] | None = None
        self.last: tuple[float, int, int | None, str] | None = None
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def _served(self) -> BaseBackupProgress | None:
        # Patroni takes the standby leader's base backup from the first host of standby_cluster
        # that answers, which may be a replica of the source: ask every member.
        names = [self.member] if self.member else [m.name for m in self.step.live.site(self.site).members]
        for name in names:
            try:
                served = self.step.live.basebackup_progress(name)
            except MigratorError:
                continue
            if served is not None:
                return served
        return None

    def sample(self) -> None:
        served = self._served()
        if served is None:
            return
        phase, done, total = served.phase, served.streamed, served.total
        now = time.monotonic()
        if self.first is None:
            self.first = (now, done or 0)
        self.last = (now, done or 0, total, phase)
        self._draw(done or 0, total, phase)

    def rate(self) -> float | None:
        if self.first is None or self.last is None or self.last[0] - self.first[0] < 1:
            return None
        return (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])

    def text(self) -> str:
        if self.last is None:
            return ""
        _, done, total, phase = self.last
        rate = self.rate()
        parts = [f"base backup {phase}: {done / 1048576:.1f} MiB"]
        if total:
            parts.append(f"of {total / 1048576:.1f} MiB ({100 * done / total:.0f}%)")
        if rate:
            parts.append(f"{rate / 1048576:.1f} MiB/s")
            if total and total > done:
                parts.append(f"ETA {(total - done) / rate:.0f}s")
        return ", ".join(parts)

    def summary(self) -> dict[str, Any]:
        if self.last is None:
            return {}
        return {"bytes": self.last[1], "total": self.last[2], "bytes_per_second": self.rate()}

    def _draw(self, done: int, total: int | None, phase: str) -> None:
        if not sys.stdout.isatty():
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        if self.bar is None or self.task is None:
            self.bar = Progress(
                TextColumn("base backup {task.fields[phase]}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
            self.bar.start()
            self.task = self.bar.add_task("base backup", total=total, phase=phase)
        self.bar.update(self.task, completed=done, total=total, phase=phase)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
