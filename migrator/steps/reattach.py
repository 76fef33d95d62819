"""Reattach steps: the old primary site (after a failover) comes back as a standby cluster of the
new one and never takes a write on the way.

The order is the safety: `standby_cluster` goes into the old site's DCS key while none of its
Patroni runs (so none can start as a primary), a diverged member is rewound or set aside while it
is still stopped, and only then are the members started, one at a time, each watched for
writability on every poll.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from migrator.adapters.dcs import site_dcs
from migrator.adapters.remote import as_postgres, controldata_command
from migrator.errors import PreflightError, UnreachableError, UnsafeStateError
from migrator.observe.controldata import parse_controldata
from migrator.steps.base import Step, step_kind
from migrator.steps.seed import _privileged, _stamp

# The files Patroni owns in a data directory: pg_rewind copies the source's over them, so they
# are put back afterwards (Patroni's own rewind does the same).
CONFIG_FILES = ("postgresql.conf", "postgresql.base.conf", "pg_hba.conf", "pg_ident.conf")
REWIND_MARK = "migrator-rewind:"


def _writers(step: Step, site: str) -> list[str]:
    return step.live.writable(site)


def _refuse_writers(step: Step, site: str, when: str) -> None:
    writers = _writers(step, site)
    if writers:
        raise UnsafeStateError(
            f"{', '.join(writers)} of {site} accepts writes {when}: two writable sites; stop it now "
            f"(its Patroni, then `pg_ctl stop -m fast`) and see runbooks/reattach.md"
        )


def _primary_of(step: Step, site: str) -> str:
    writers = _writers(step, site)
    if len(writers) != 1:
        raise PreflightError(f"{site} has {len(writers)} writable members ({', '.join(writers) or 'none'}), not one")
    return writers[0]


@step_kind("run_reattach_preflight")
class RunReattachPreflight(Step):
    """Right before the first change: the new site has exactly one writer, the old site none."""

    def gate(self) -> dict[str, Any]:
        old, new = self.args["old_site"], self.args["new_site"]
        writers = _writers(self, old)
        if writers:
            raise PreflightError(
                f"{', '.join(writers)} of {old} accepts writes: reattaching it now would leave two "
                f"writable sites; stop it (its Patroni, then `pg_ctl stop -m fast`) and plan again"
            )
        return {"new_primary": _primary_of(self, new)}


def _config_key(step: Step, site_name: str) -> str:
    site = step.live.site(site_name)
    return f"{site.namespace.rstrip('/')}/{site.scope}/config"


def _matches(config: dict[str, Any], section: dict[str, Any]) -> bool:
    current = config.get("standby_cluster") or {}
    return all(current.get(k) == v for k, v in section.items())


@step_kind("write_standby_cluster_dcs")
class WriteStandbyClusterDcs(Step):
    """standby_cluster straight into the site's DCS key (compare-and-set): no Patroni of the site
    runs to take a PATCH, and none may start before the key says it."""

    def _read(self) -> tuple[bytes | None, dict[str, Any]]:
        site = self.live.site(self.args["site"])
        client = site_dcs(site, self.live.timeout, self.args["site"]).client()
        try:
            found = client.get(_config_key(self, self.args["site"]))
        except Exception as exc:  # noqa: BLE001 - etcd3gw raises its own and requests' errors
            raise UnreachableError(f"cannot read {self.args['site']}'s config from its etcd ({exc})") from None
        if not found:
            return None, {}
        raw = found[0]
        raw_bytes = raw if isinstance(raw, bytes) else str(raw).encode()
        try:
            value = json.loads(raw_bytes.decode("utf-8"))
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise PreflightError(f"{self.args['site']}'s config key in etcd is not a JSON object; fix it by hand")
        return raw_bytes, value

    def precheck(self) -> bool:
        config = self._read()[1]
        return _matches(config, self.args["section"]) and not config.get("pause")

    def apply(self) -> dict[str, Any]:
        site_name = self.args["site"]
        _refuse_writers(self, site_name, "before its standby_cluster is written")
        raw, config = self._read()
        if raw is None:
            raise PreflightError(
                f"{site_name}'s etcd holds no config key ({_config_key(self, site_name)}); re-seed {site_name} instead"
            )
        previous = config.get("standby_cluster")
        config["standby_cluster"] = self.args["section"]
        # A paused site would never start PostgreSQL; with standby_cluster in the same write,
        # resuming cannot make any member a primary.
        paused = config.pop("pause", None)
        site = self.live.site(site_name)
        client = site_dcs(site, self.live.timeout, site_name).client()
        try:
            swapped = client.replace(_config_key(self, site_name), raw.decode("utf-8"), json.dumps(config))
        except Exception as exc:  # noqa: BLE001 - etcd3gw raises its own and requests' errors
            raise UnreachableError(f"cannot write {site_name}'s config to its etcd ({exc})") from None
        if not swapped:
            raise PreflightError(
                f"{site_name}'s config changed while it was being written (someone else acts on it); "
                "run `migrate reattach --resume` after looking with `migrate status`"
            )
        return {"previous_standby_cluster": previous, "pause_removed": bool(paused)}

    def gate(self) -> dict[str, Any]:
        self.wait(self.precheck, f"{self.args['site']}'s DCS config to say standby_cluster", interval=0.2)
        return {}


def _controldata(step: Step, member: dict[str, Any]) -> dict[str, str]:
    site, inv_member = step.live.member(member["name"])
    command = controldata_command(site.ssh_for(inv_member).user, member["bin_dir"], member["data_dir"], 30, wait=False)
    result = step.live.ssh(member["name"], command, timeout=45)
    if not result.ok:
        return {}
    return parse_controldata(result.stdout)


def _control_timeline(control: dict[str, str]) -> int | None:
    """The timeline Patroni would judge the member on (min recovery point's, else checkpoint's)."""
    for key in ("Min recovery ending loc's timeline", "Latest checkpoint's TimeLineID"):
        value = control.get(key, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return None


@step_kind("rewind_or_set_aside")
class RewindOrSetAside(Step):
    """Each diverged member, still stopped: pg_rewind from the new primary (Patroni's
    configuration files kept), or its data directory moved to `<data>.migrator-aside-<UTC>`
    (never deleted) so that Patroni re-clones it."""

    def _running(self, name: str) -> bool:
        try:
            self.live.patroni(name)
            return True
        except UnreachableError:
            return False

    def _marker(self) -> str:
        """Left inside a directory this plan set aside, so that a resumed run knows it did (an
        older aside directory of another run proves nothing)."""
        return f"migrator-set-aside-{self.ctx.plan.fingerprint[:12]}"

    def _aside_exists(self, member: dict[str, Any]) -> bool:
        """This plan set the directory aside, or there is no cluster left in it to set aside."""
        data = shlex.quote(member["data_dir"])
        command = f"ls {data}.migrator-aside-*/{self._marker()} >/dev/null 2>&1 || test ! -e {data}/global/pg_control"
        return self.live.ssh(member["name"], command).ok

    def _done(self, member: dict[str, Any], primary_timeline: int) -> bool:
        if member["action"] == "reclone":
            return self._aside_exists(member)
        return _control_timeline(_controldata(self, member)) == primary_timeline

    def precheck(self) -> bool:
        primary = _primary_of(self, self.args["source"])
        timeline = self.live.timeline(primary)
        return all(self._done(m, timeline) for m in self.args["members"])

    def apply(self) -> dict[str, Any]:
        primary = _primary_of(self, self.args["source"])
        timeline = self.live.timeline(primary)
        facts: dict[str, Any] = {}
        for member in self.args["members"]:
            name = member["name"]
            if self._running(name):
                raise UnsafeStateError(
                    f"{name}'s Patroni runs: a diverged member is rewound or set aside only while stopped; "
                    f"stop it (`{member['stop_command']}`) and run `migrate reattach --resume`"
                )
            if self._done(member, timeline):
                facts[name] = {"action": member["action"], "diverged_range": member["diverged_range"], "before": True}
                continue
            if member["action"] == "rewind":
                facts[name] = self._rewind(member, primary)
            else:
                facts[name] = self._set_aside(member)
            facts[name]["diverged_range"] = member["diverged_range"]
        return {"diverged": facts}

    def _rewind(self, member: dict[str, Any], primary: str) -> dict[str, Any]:
        name = member["name"]
        _, source = self.live.member(primary)
        site, inv_member = self.live.member(name)
        user = self.ctx.inventory.credentials.superuser
        conninfo = f"host={source.host} port={source.pg_port} user={user.username} dbname=postgres"
        data, bin_dir = shlex.quote(member["data_dir"]), shlex.quote(member["bin_dir"])
        files = " ".join(CONFIG_FILES)
        # The password comes on stdin, never on a command line; the config files go back whatever
        # pg_rewind did.
        script = (
            f"d={data}; b=$(mktemp -d) || exit 1; "
            f'for f in {files}; do if [ -e "$d/$f" ]; then cp -p "$d/$f" "$b/"; fi; done; '
            "IFS= read -r PGPASSWORD; export PGPASSWORD; "
            f'LC_ALL=C {bin_dir}/pg_rewind -D "$d" --source-server={shlex.quote(conninfo)} 2>&1; rc=$?; '
            'for f in "$b"/*; do if [ -e "$f" ]; then cp -p "$f" "$d/"; fi; done; rm -rf "$b"; '
            f'echo "{REWIND_MARK}$rc"'
        )
        self.ctx.progress(f"{name}: pg_rewind from {primary} ({source.host})")
        result = self.live.ssh(
            name,
            as_postgres(site.ssh_for(inv_member).user, script),
            timeout=max(600.0, self.timeout),
            stdin=user.password.reveal() + "\n",
        )
        lines = [line for line in result.stdout.splitlines() if line.strip()]
        code = next((line[len(REWIND_MARK) :] for line in lines if line.startswith(REWIND_MARK)), "")
        output = [line for line in lines if not line.startswith(REWIND_MARK)]
        if code != "0":
            last = (output or result.stderr.strip().splitlines() or ["no output"])[-1]
            raise PreflightError(
                f"{name}: pg_rewind failed ({last}); its data is unchanged or half-rewound: move it "
                f"aside by hand (runbooks/reattach.md, 'rewind failed') and run `migrate reattach --resume`"
            )
        said = next((line for line in output if "diverged at" in line), None) or next(
            (line for line in output if "no rewind required" in line), "rewound"
        )
        return {"action": "rewind", "from": primary, "pg_rewind": said.strip()}

    def _set_aside(self, member: dict[str, Any]) -> dict[str, Any]:
        name = member["name"]
        site, inv_member = self.live.member(name)
        aside = f"{member['data_dir']}.migrator-aside-{_stamp()}"
        command = (
            f"d={shlex.quote(member['data_dir'])}; "
            'if [ -e "$d/postmaster.pid" ]; then echo running; exit 1; fi; '
            f'if [ -d "$d" ]; then touch "$d/{self._marker()}" && mv "$d" {shlex.quote(aside)} && echo moved; fi'
        )
        result = self.live.ssh(name, _privileged(site.ssh_for(inv_member).user, command), timeout=90)
        if "running" in result.stdout:
            raise UnsafeStateError(f"{name}: PostgreSQL still runs in {member['data_dir']}; stop it first")
        if "moved" not in result.stdout:
            return {"action": "reclone", "aside": None}  # no data directory: nothing to set aside
        self.ctx.progress(f"{name}: data directory moved aside to {aside} (never deleted)")
        return {"action": "reclone", "aside": aside}


@step_kind("start_reattached_members")
class StartReattachedMembers(Step):
    """Patroni started member by member with the site's own service command; the first becomes the
    standby leader (following the new primary over the slot), the others cascade from it. Every
    poll checks that no member of the site accepts writes."""

    def _patroni(self, name: str) -> dict[str, Any] | None:
        try:
            return self.live.patroni(name)
        except UnreachableError:
            return None

    def precheck(self) -> bool:
        for m in self.args["members"]:
            patroni = self._patroni(m["name"])
            if patroni is None or patroni.get("role") not in ("standby_leader", "replica"):
                return False
        return True

    def _forget_initialize(self) -> None:
        site = self.live.site(self.args["site"])
        key = f"{site.namespace.rstrip('/')}/{site.scope}/initialize"
        try:
            site_dcs(site, self.live.timeout, self.args["site"]).client().delete(key)
        except Exception as exc:  # noqa: BLE001 - etcd3gw raises its own and requests' errors
            raise UnreachableError(f"cannot remove {key} from {self.args['site']}'s etcd ({exc})") from None

    def _enable(self, member: dict[str, Any]) -> None:
        """patroni.enable_command (undoes a failover's disable_command): before the start, so that a
        member that streams also starts again after a reboot. Nothing is started if it fails."""
        name, command = member["name"], member.get("enable_command")
        if not command:
            return
        self.ctx.progress(f"{name}: {command}")
        result = self.live.ssh(name, command, timeout=max(30.0, self.live.timeout * 6))
        if not result.ok:
            reason = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])[-1]
            raise UnreachableError(
                f"{name}: patroni.enable_command `{command}` failed (exit {result.exit_code}): {reason}; "
                "fix it on the host, then migrate reattach --resume"
            )

    def _start(self, member: dict[str, Any]) -> None:
        self._enable(member)
        name, command = member["name"], member["start_command"]
        self.ctx.progress(f"{name}: {command}")
        result = self.live.ssh(name, command, timeout=max(30.0, self.live.timeout * 6))
        if not result.ok:
            reason = (result.stderr.strip().splitlines() or result.stdout.strip().splitlines() or ["no output"])[-1]
            raise UnreachableError(f"{name}: the start command `{command}` failed (exit {result.exit_code}): {reason}")

    def _following(self, name: str) -> tuple[bool, str]:
        """Whether `name` streams as it should: the standby leader from a host of the new site over
        the slot, a replica from the standby leader."""
        site, source = self.args["site"], self.args["source"]
        _refuse_writers(self, site, "while it is being reattached")
        patroni = self._patroni(name)
        if patroni is None:
            return False, "Patroni not answering yet"
        role = patroni.get("role")
        receiver = self.live.wal_receiver(name)
        if role == "standby_leader":
            hosts = {m.host for m in self.live.site(source).members}
            if not receiver or not receiver.streaming:
                return False, f"standby leader, WAL receiver {receiver.status if receiver else 'absent'}"
            if receiver.sender_host not in hosts or receiver.slot_name != self.args["slot"]:
                return False, f"streams from {receiver.sender_host} with slot {receiver.slot_name}"
            return True, f"standby leader, streams from {receiver.sender_host}"
        if role == "replica":
            if not receiver or not receiver.streaming:
                return False, f"replica, WAL receiver {receiver.status if receiver else 'absent'}"
            return True, f"replica, streams from {receiver.sender_host}"
        return False, f"role {role}, state {patroni.get('state')}"

    def _wait_member(self, name: str) -> None:
        why = {"text": "starting"}

        def ok() -> bool:
            good, why["text"] = self._following(name)
            return good

        self.wait(
            ok, f"{name} to stream as a standby of {self.args['source']}", interval=0.5, describe=lambda: why["text"]
        )

    def apply(self) -> dict[str, Any]:
        started = []
        for index, member in enumerate(self.args["members"]):
            _refuse_writers(self, self.args["site"], "before its Patroni starts")
            if self._patroni(member["name"]) is None:
                if index == 0 and self.args.get("forget_initialize"):
                    self._forget_initialize()
                self._start(member)
                started.append(member["name"])
            self._wait_member(member["name"])
        return {"started": started}

    def _lag(self, primary: str, name: str) -> int | None:
        receiver = self.live.wal_receiver(name)
        if receiver is None or receiver.replayed is None:
            return None
        return max(0, self.live.wal_head(primary) - receiver.replayed)

    def gate(self) -> dict[str, Any]:
        primary = _primary_of(self, self.args["source"])
        limit = self.ctx.inventory.gates.max_replay_lag_bytes
        lags: dict[str, int | None] = {}
        why = {"text": ""}

        def all_streaming() -> bool:
            for m in self.args["members"]:
                good, text = self._following(m["name"])
                if not good:
                    why["text"] = f"{m['name']}: {text}"
                    return False
                lags[m["name"]] = lag = self._lag(primary, m["name"])
                if lag is None or lag > limit:
                    why["text"] = f"{m['name']}: replay lag {lag} bytes (gate {limit})"
                    return False
            return True

        self.wait(
            all_streaming,
            f"every {self.args['site']} member streaming, lag under {limit} bytes",
            interval=0.5,
            describe=lambda: why["text"],
        )
        removed = [m["name"] for m in self.args["members"] if self._remove_fence_marker(m)]
        roles = {m["name"]: (self._patroni(m["name"]) or {}).get("role") for m in self.args["members"]}
        leader = next((name for name, role in roles.items() if role == "standby_leader"), None)
        return {
            "standby_leader": leader,
            "roles": roles,
            "lag_bytes": dict(lags),
            "new_primary": primary,
            "fence_markers_removed": removed,
        }

    def _remove_fence_marker(self, member: dict[str, Any]) -> bool:
        """A failover's fence marker says the member must not run: wrong once it streams as a standby."""
        marker = member.get("fence_marker")
        if not marker:
            return False
        site, inv_member = self.live.member(member["name"])
        path = shlex.quote(marker)
        command = f"if [ -e {path} ]; then rm -f {path} && echo removed; fi"
        result = self.live.ssh(member["name"], _privileged(site.ssh_for(inv_member).user, command), timeout=30)
        return "removed" in result.stdout
