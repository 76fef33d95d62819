"""The real two-site testbed: etcd per site, Patroni 4.1 (or another version) with PostgreSQL 15,
and one sshd, all on loopback, all real processes.

dc1 is a primary cluster, dc2 a standby cluster of dc1 whose replica cascades from its standby
leader. `Testbed.up()` builds it from nothing; `restore_baseline()` brings a testbed that a test
changed back to that shape, restarting only what it must.
"""

from __future__ import annotations

import secrets as random_secrets
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
import requests
from ruamel.yaml import YAML

from .etcd import etcd_process_name, start_etcd
from .patroni_config import dynamic_config, member_dir, patroni_config
from .patroni_install import ensure_patroni, patroni_bin
from .processes import ProcessRegistry, chown_to_os_user, make_dir, pid_alive, send_signal
from .service import write_service_script
from .services import ExtraServices, extra_services, members_on_disk, running_member_processes
from .waiting import TestbedError, wait_until
from .sshd import SshdLayout, start_sshd
from .topology import (
    DEFAULT_BASE_DIR, DEFAULT_PATRONI_VERSION, KNOWN_MEMBERS, MEMBER_BY_NAME, NAMESPACE, NET, PG_PORT,
    REST_USER, SITE_BY_NAME, SITES, SPARE_MEMBERS, SUPERUSER, Member, Site,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_INVENTORY = REPO_ROOT / "examples" / "testbed.yml"
EXAMPLE_BASE_DIR = "/tmp/migrator-testbed"
SECRET_NAMES = ("superuser", "replication", "restapi")
HTTP_TIMEOUT = 3.0


class Testbed:
    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, base: Path = DEFAULT_BASE_DIR, patroni_version: str = DEFAULT_PATRONI_VERSION):
        self.base = Path(base)
        self.patroni_version = patroni_version
        self.registry = ProcessRegistry(self.base / "state.json")
        self.ssh = SshdLayout(self.base)
        self.inventory_path = self.base / "inventory.yml"
        self.dc2_cluster = True

    # ---- secrets -------------------------------------------------------------------------
    @property
    def secrets_dir(self) -> Path:
        return self.base / "secrets"

    def passwords(self) -> dict[str, str]:
        return {n: (self.secrets_dir / n).read_text().strip() for n in SECRET_NAMES}

    # What a variant of the testbed (tls.py) changes in `up`; the plain one has no certificates.
    def _layout(self, dc2_cluster: bool) -> str:
        return f"patroni={self.patroni_version}\ndc2_cluster={dc2_cluster}\n"

    def _make_certificates(self) -> None:
        pass

    def _start_etcd(self, site: Site) -> None:
        start_etcd(self.base, site, self.registry)

    def _member_config(self, config: dict[str, Any], member: Member) -> dict[str, Any]:
        return config

    def _make_passwords(self) -> None:
        make_dir(self.secrets_dir, 0o700)
        for name in SECRET_NAMES:
            path = self.secrets_dir / name
            if not path.exists():
                path.write_text(random_secrets.token_urlsafe(18) + "\n")
                path.chmod(0o600)

    # ---- life cycle ----------------------------------------------------------------------
    def up(self, dc2_cluster: bool = True, timeout: float = 90.0) -> float:
        """Build both sites from nothing; return the seconds it took until all were healthy."""
        started = time.monotonic()
        ensure_patroni(self.patroni_version)
        self.down()
        if self.base.exists():
            shutil.rmtree(self.base)
        make_dir(self.base, 0o755)
        self.dc2_cluster = dc2_cluster
        (self.base / "layout.txt").write_text(self._layout(dc2_cluster))
        self._make_passwords()
        self._make_certificates()
        start_sshd(self.base, self.registry)
        for site in SITES:
            self._start_etcd(site)
        for site in SITES:
            self._prepare_site(site, with_cluster=site.name == "dc1" or dc2_cluster)
        self.prepare_spare_hosts()
        self.write_inventory(self.inventory_path)
        for site in SITES:
            wait_until(lambda s=site: self.etcd_healthy(s), 30, f"etcd of {site.name}")
        dc1, dc2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
        # One member first: members started together race for the initialize key.
        self.start_patroni(dc1.members[0])
        wait_until(lambda: self.patroni_state(dc1.members[0]).get("role") == "primary", timeout,
                   "dc1's first member to become primary")
        for member in dc1.members[1:]:
            self.start_patroni(member)
        if dc2_cluster:
            self.start_patroni(dc2.members[0])
            wait_until(lambda: self.patroni_state(dc2.members[0]).get("role") == "standby_leader",
                       timeout, "dc2's first member to become standby leader")
            for member in dc2.members[1:]:
                self.start_patroni(member)
        self.wait_healthy(timeout)
        return time.monotonic() - started

    def _prepare_site(self, site: Site, with_cluster: bool) -> None:
        standby_of = None if site.name == "dc1" else SITE_BY_NAME["dc1"]
        yaml = YAML()
        yaml.default_flow_style = False
        for member in site.members:
            home = make_dir(member_dir(self.base, member), 0o700, owned_by_os_user=True)
            make_dir(self.base / member.site, 0o755)
            for sub in ("sock", "pglog"):
                make_dir(home / sub, 0o700, owned_by_os_user=True)
            if not with_cluster:
                continue  # the host exists (address, ssh, directory) but runs no cluster yet
            config_file = home / "patroni.yml"
            with open(config_file, "w") as fh:
                yaml.dump(self._member_config(
                    patroni_config(self.base, site, member, self.passwords(), standby_of), member), fh)
            config_file.chmod(0o600)
            chown_to_os_user(config_file)

    def down(self) -> None:
        """Stop every process the testbed started (Patroni first, so PostgreSQL stops cleanly)."""
        patronis = [f"patroni-{m}" for m in KNOWN_MEMBERS]
        self.registry.stop(patronis + running_member_processes(self.registry), timeout=30)
        self._stop_orphan_postgres()
        ExtraServices(self).stop_all()
        self.registry.stop([etcd_process_name(s) for s in SITES] + ["sshd"], timeout=10)

    def _stop_orphan_postgres(self) -> None:
        for member in KNOWN_MEMBERS.values():
            pid = self.postmaster_pid(member)
            if pid and pid_alive(pid):
                send_signal(pid, signal.SIGQUIT)  # immediate shutdown: nobody manages it any more
                wait_until(lambda p=pid: not pid_alive(p), 15, f"orphan PostgreSQL of {member.name} to stop")

    def postmaster_pid(self, member: Member) -> int | None:
        try:
            first = (member_dir(self.base, member) / "data" / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    # ---- members -------------------------------------------------------------------------
    def patroni_config_file(self, member: Member) -> Path:
        return member_dir(self.base, member) / "patroni.yml"

    def start_patroni(self, member: Member) -> None:
        home = member_dir(self.base, member)
        self.registry.start(f"patroni-{member.name}",
                            [str(patroni_bin(self.patroni_version)), str(home / "patroni.yml")],
                            home / "patroni.log", as_os_user=True, cwd=home,
                            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(home)})

    def stop_patroni(self, member: Member, timeout: float = 30.0) -> None:
        self.registry.stop([f"patroni-{member.name}"], timeout=timeout)

    def kill_patroni(self, member: Member) -> None:
        """SIGKILL the agent only: its PostgreSQL keeps running (a fault tests provoke)."""
        self.registry.kill(f"patroni-{member.name}", signal.SIGKILL)

    def patroni_alive(self, member: Member) -> bool:
        return self.registry.alive(f"patroni-{member.name}")

    def patroni_state(self, member: Member) -> dict[str, Any]:
        state = requests.get(f"{member.api_url}/patroni", timeout=HTTP_TIMEOUT).json()
        if state.get("role") == "master":  # Patroni < 4 says master
            state["role"] = "primary"
        return state

    def etcd_healthy(self, site: Site) -> bool:
        resp = requests.get(f"{site.etcd_url}/health", timeout=HTTP_TIMEOUT)
        return resp.ok and resp.json().get("health") in ("true", True)

    def get_config(self, site: Site) -> dict[str, Any]:
        return requests.get(f"{self.live_member(site).api_url}/config", timeout=HTTP_TIMEOUT).json()

    def patch_config(self, site: Site, patch: dict[str, Any], member: Member | None = None) -> requests.Response:
        target = member or self.live_member(site)
        resp = requests.patch(f"{target.api_url}/config", json=patch, timeout=HTTP_TIMEOUT,
                              auth=(REST_USER, self.passwords()["restapi"]))
        resp.raise_for_status()
        return resp

    def live_member(self, site: Site) -> Member:
        for member in site.members:
            try:
                self.patroni_state(member)
                return member
            except requests.RequestException:
                continue
        raise TestbedError(f"no member of {site.name} answers on its REST API")

    def connect(self, member: Member, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection:
        return psycopg.connect(host=member.host, port=PG_PORT, user=SUPERUSER, dbname=dbname,
                               password=self.passwords()["superuser"], connect_timeout=5,
                               autocommit=True, **kwargs)

    def sql(self, member: Member, query: str, params: Any = None) -> list[tuple]:
        with self.connect(member) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def ssh_command(self, host: str, command: str) -> list[str]:
        """The ssh(1) command line that reaches a testbed host as the tool would (host key checked)."""
        return ["ssh", "-p", "2222", "-i", str(self.ssh.client_key), "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.ssh.known_hosts}",
                "-o", "ConnectTimeout=5", f"root@{host}", command]

    # ---- health --------------------------------------------------------------------------
    def wait_healthy(self, timeout: float = 60.0) -> None:
        wait_until(lambda: not self.baseline_problems(), timeout, "both sites healthy",
                   interval=0.3)

    def baseline_problems(self) -> list[str]:
        """What differs from the baseline: dc1 primary, dc2 standby cluster of dc1, all streaming."""
        problems: list[str] = []
        for name in [etcd_process_name(s) for s in SITES] + ["sshd"]:
            if not self.registry.alive(name):
                problems.append(f"{name} is not running")
        sites = SITES if self.dc2_cluster else SITES[:1]
        with ThreadPoolExecutor(max_workers=8) as pool:
            states = dict(zip(MEMBER_BY_NAME, pool.map(self._state_or_error, MEMBER_BY_NAME.values())))
        for site in sites:
            try:
                problems += self._site_problems(site, {m.name: states[m.name] for m in site.members})
            except Exception as exc:  # noqa: BLE001 - e.g. /config hangs while the site's etcd is down
                problems.append(f"{site.name}: could not be inspected ({type(exc).__name__}: {exc})")
        return problems

    def _state_or_error(self, member: Member) -> dict[str, Any]:
        try:
            return self.patroni_state(member)
        except Exception as exc:  # noqa: BLE001 - an unreachable member is a finding here
            return {"error": str(exc)}

    def _site_problems(self, site: Site, states: dict[str, dict[str, Any]]) -> list[str]:
        problems = []
        leader_role = "primary" if site.name == "dc1" else "standby_leader"
        leaders = [n for n, s in states.items() if s.get("role") == leader_role]
        if len(leaders) != 1:
            problems.append(f"{site.name}: expected one {leader_role}, found {leaders or 'none'}")
        for name, state in states.items():
            if "error" in state:
                problems.append(f"{name}: REST API unreachable ({state['error']})")
                continue
            if state.get("pause"):
                problems.append(f"{name}: cluster paused")
            if state.get("role") == "replica" and state.get("replication_state") != "streaming":
                problems.append(f"{name}: replica not streaming ({state.get('state')}, "
                                f"{state.get('replication_state')})")
            if state.get("state") not in ("running", "streaming"):
                problems.append(f"{name}: state {state.get('state')}")
        if leaders and site.name == "dc2":
            problems += self._standby_leader_problems(MEMBER_BY_NAME[leaders[0]], states[leaders[0]])
        if not problems:
            problems += self._config_problems(site)
        return problems

    def _standby_leader_problems(self, member: Member, state: dict[str, Any]) -> list[str]:
        if state.get("replication_state") not in (None, "streaming"):
            return [f"{member.name}: standby leader not streaming ({state.get('replication_state')})"]
        rows = self.sql(member, "SELECT status, sender_host FROM pg_stat_wal_receiver")
        if not rows or rows[0][0] != "streaming":
            return [f"{member.name}: WAL receiver not streaming ({rows})"]
        return []

    def _config_problems(self, site: Site) -> list[str]:
        want = dynamic_config(site, None if site.name == "dc1" else SITE_BY_NAME["dc1"])
        have = self.get_config(site)
        return [f"{site.name}: dynamic config {key} is {have.get(key)!r}, baseline {want.get(key)!r}"
                for key in sorted(set(want) | set(have)) if have.get(key) != want.get(key)]

    # ---- back to the baseline ------------------------------------------------------------
    def restore_baseline(self, timeout: float = 60.0) -> str:
        """Return the testbed to its baseline; say how ('already', 'repaired' or 'rebuilt')."""
        if not self.baseline_problems():
            return "already"
        try:
            self._repair(timeout)
            return "repaired"
        except Exception:  # noqa: BLE001 - whatever the repair tripped on, a rebuild fixes it
            self.up(dc2_cluster=self.dc2_cluster)
            return "rebuilt"

    def _repair(self, timeout: float) -> None:
        """Restart what died and put the dynamic configs back, when dc1 is still the only writer."""
        if self.dc2_cluster and not self.patroni_config_file(SITE_BY_NAME["dc2"].members[0]).exists():
            self.restore_dc2_cluster(timeout)
        for site in SITES:
            if not self.registry.alive(etcd_process_name(site)):
                start_etcd(self.base, site, self.registry)
        if not self.registry.alive("sshd"):
            start_sshd(self.base, self.registry)
        members = [m for s in (SITES if self.dc2_cluster else SITES[:1]) for m in s.members]
        for member in members:
            if not self.patroni_alive(member):
                self.start_patroni(member)
        dc1, dc2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
        wait_until(lambda: self._only_dc1_writes(), 40, "dc1 to be the only site with a primary")
        for site in (dc1, dc2) if self.dc2_cluster else (dc1,):
            # A Patroni whose etcd just came back may be slow to answer: retry until the deadline.
            wait_until(lambda s=site: self._reset_dynamic_config(s), 30, f"{site.name}'s config reset")
        self.wait_healthy(timeout)

    def _reset_dynamic_config(self, site: Site) -> bool:
        dc1 = SITE_BY_NAME["dc1"]
        want = dynamic_config(site, None if site is dc1 else dc1)
        have = self.get_config(site)
        patch = {k: want.get(k) for k in set(want) | set(have) if have.get(k) != want.get(k)}
        if patch:
            self.patch_config(site, patch)
        return True

    def _only_dc1_writes(self) -> bool:
        roles = {m: self._state_or_error(MEMBER_BY_NAME[m]).get("role") for m in MEMBER_BY_NAME}
        dc1_primaries = [m for m, r in roles.items() if r == "primary" and m.startswith("dc1")]
        others = [m for m, r in roles.items() if r == "primary" and not m.startswith("dc1")]
        if others:
            raise TestbedError(f"a site other than dc1 has a primary: {others}")
        return len(dc1_primaries) == 1

    # ---- dc2 without a cluster (for seeding) --------------------------------------------
    def remove_dc2_cluster(self) -> None:
        """Take dc2's cluster away, leaving its hosts as `up --no-dc2-cluster` makes them: Patroni
        stopped, data directories and patroni.yml gone, no key under dc2's scope in its etcd, and
        no permanent slot for dc2 on dc1."""
        dc1, dc2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
        self._stop_spare_members()
        self.registry.stop([f"patroni-{m.name}" for m in dc2.members], timeout=30)
        for member in dc2.members:
            pid = self.postmaster_pid(member)
            if pid and pid_alive(pid):
                send_signal(pid, signal.SIGQUIT)
                wait_until(lambda p=pid: not pid_alive(p), 15, f"PostgreSQL of {member.name} to stop")
            home = member_dir(self.base, member)
            for leftover in home.iterdir():
                if leftover.name not in ("sock", "pglog"):
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        self.delete_dcs_prefix(dc2, f"{NAMESPACE}{dc2.scope}/")
        if "dc2" in (self.get_config(dc1).get("slots") or {}):
            self.patch_config(dc1, {"slots": {"dc2": None}})
        primary = next(m for m in dc1.members if self.patroni_state(m).get("role") == "primary")
        wait_until(lambda: not self.sql(primary, "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'dc2'"),
                   30, "slot dc2 to be dropped on dc1")

    def prepare_spare_hosts(self) -> list[Member]:
        """The spare hosts (SPARE_MEMBERS) as fresh hosts: a directory with its socket and log
        directories, nothing running. Idempotent."""
        for member in SPARE_MEMBERS:
            home = make_dir(member_dir(self.base, member), 0o700, owned_by_os_user=True)
            for sub in ("sock", "pglog"):
                make_dir(home / sub, 0o700, owned_by_os_user=True)
        return list(SPARE_MEMBERS)

    def _stop_spare_members(self) -> None:
        """Whatever a test made of a spare host goes: Patroni, PostgreSQL, data and patroni.yml."""
        self.registry.stop([f"patroni-{m.name}" for m in SPARE_MEMBERS], timeout=30)
        for member in SPARE_MEMBERS:
            home = member_dir(self.base, member)
            if not home.is_dir():
                continue
            pid = self.postmaster_pid(member)
            if pid and pid_alive(pid):
                send_signal(pid, signal.SIGQUIT)
                wait_until(lambda p=pid: not pid_alive(p), 15, f"PostgreSQL of {member.name} to stop")
            for leftover in home.iterdir():
                if leftover.name not in ("sock", "pglog"):
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()

    def restore_dc2_cluster(self, timeout: float = 90.0) -> None:
        """dc2 built again the testbed's own way, after remove_dc2_cluster (or a seed that failed)."""
        dc2 = SITE_BY_NAME["dc2"]
        self.registry.stop([f"patroni-{m.name}" for m in dc2.members + SPARE_MEMBERS], timeout=30)
        self._stop_spare_members()
        for member in dc2.members:
            for leftover in member_dir(self.base, member).glob("data*"):
                shutil.rmtree(leftover)
        self.delete_dcs_prefix(dc2, f"{NAMESPACE}{dc2.scope}/")
        self._prepare_site(dc2, with_cluster=True)
        self.dc2_cluster = True
        self.start_patroni(dc2.members[0])
        wait_until(lambda: self.patroni_state(dc2.members[0]).get("role") == "standby_leader", timeout,
                   "dc2's first member to become standby leader")
        for member in dc2.members[1:]:
            self.start_patroni(member)

    def delete_dcs_prefix(self, site: Site, prefix: str) -> None:
        import base64

        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        resp = requests.post(f"{site.etcd_url}/v3/kv/deleterange", timeout=HTTP_TIMEOUT, json={
            "key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode(end.encode()).decode()})
        resp.raise_for_status()

    # ---- extra services beside demo (services.py) ----------------------------------------
    def up_services(self, count: int, timeout: float = 90.0) -> dict[str, str]:
        """svc1..svc<count> (one member per site, sharing the sites' etcd) healthy beside demo,
        built or repaired as needed; says per service how ('already', 'repaired', 'rebuilt')."""
        return ExtraServices(self).ensure(count, timeout)

    def services_problems(self, count: int) -> dict[str, list[str]]:
        extra = ExtraServices(self)
        return {s.name: extra.problems(s) for s in extra_services(count)}

    # ---- inventory -----------------------------------------------------------------------
    def write_inventory(self, path: Path) -> Path:
        """The example inventory, with this testbed's base directory in place of the default one."""
        write_service_script(self.base, REPO_ROOT, self.patroni_version)
        path.write_text(self.inventory_text())
        return path

    def inventory_text(self) -> str:
        """The demo service's inventory for this testbed (addresses on its net, paths in its base)."""
        text = EXAMPLE_INVENTORY.read_text().replace(EXAMPLE_BASE_DIR, str(self.base))
        return text.replace("127.0.", f"127.{NET}.")

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"base": str(self.base), "processes": {}}
        for name, pid in sorted(self.registry.load().items()):
            out["processes"][name] = {"pid": pid, "alive": pid_alive(pid)}
        out["members"] = {n: self._state_or_error(m) for n, m in MEMBER_BY_NAME.items()}
        out["extra_service_members"] = {m.name: self._state_or_error(m) for m in members_on_disk(self.base)}
        return out


def run_as_os_user(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    from .processes import os_user_ids
    uid, gid = os_user_ids()
    return subprocess.run(argv, user=uid, group=gid, extra_groups=[], **kwargs)
