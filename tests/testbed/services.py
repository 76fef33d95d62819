"""Extra services beside `demo`: svc1..svcN, sharing each site's etcd as a data center's services
share its DCS. The ground a fleet of moves is tested on.

Each extra service is the lightest shape that is still a two-site service: ONE member per site.
svc<k>'s dc1 cluster (scope `svc<k>-dc1`) is a primary cluster; its dc2 cluster (scope
`svc<k>-dc2`) is a standby cluster of it, streaming through the permanent slot `dc2` on dc1 (and
keeping one named `dc1` for the way back), exactly like demo's two sites. Same namespace
(`/service/`) and same etcd per site as demo: no extra etcd.

Addresses: member `svc<k>-<site>-a` on 127.<net>.<site index>.<10+k> (dc1 127.<net>.1.1x, dc2
127.<net>.2.1x), with the ports every testbed member has (PostgreSQL 5432, REST 8008, SSH 2222).
Its home is <base>/<site>/svc<k>-<site>-a/, like a demo member's, so its inventory's path templates
are demo's; the inventory itself is <base>/services/svc<k>.yml (`inventory_file`).

SSH: sshd refuses more than 16 listen sockets and demo's sshd has 5, so the extra services' members
get a second sshd (`sshd-services`) listening on all 16 addresses of MAX_SERVICES services, with
the same host and client keys and its own known_hosts file. Hence at most 8 extra services.

`ExtraServices(testbed).ensure(n)` makes svc1..svcn healthy: keeps a healthy one, repairs one whose
processes died or whose dynamic config drifted, rebuilds (in parallel) any other.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml import YAML

from .etcd import etcd_process_name, start_etcd
from .patroni_config import dynamic_config, member_dir, patroni_config
from .processes import ProcessRegistry, chown_to_os_user, make_dir, pid_alive, send_signal
from .sshd import SshdLayout, write_sshd_config
from .topology import NAMESPACE, NET, PG_PORT, SITE_BY_NAME, SITES, Member, Site
from .waiting import TestbedError, wait_until

if TYPE_CHECKING:
    from .testbed import Testbed

MAX_SERVICES = 8  # 2 addresses each, 16 listen sockets per sshd
SHARED_BUFFERS = "8MB"  # half of demo's: these services carry a write ledger, not a benchmark
SSHD_NAME = "sshd-services"
_MEMBER = re.compile(r"svc([1-9][0-9]*)-(dc1|dc2)-a")


@dataclass(frozen=True)
class ServiceSite(Site):
    """A site of an extra service: demo's site (its etcd, its index), the service's own scope."""

    service: str = ""

    @property
    def scope(self) -> str:
        return f"{self.service}-{self.name}"


@dataclass(frozen=True)
class ExtraService:
    name: str
    index: int
    dc1: ServiceSite
    dc2: ServiceSite

    @property
    def sites(self) -> tuple[ServiceSite, ServiceSite]:
        return (self.dc1, self.dc2)

    @property
    def members(self) -> tuple[Member, ...]:
        return self.dc1.members + self.dc2.members


def extra_service(index: int) -> ExtraService:
    if not 1 <= index <= MAX_SERVICES:
        raise ValueError(f"extra service {index}: the testbed holds svc1..svc{MAX_SERVICES}")
    name = f"svc{index}"

    def site(demo_site: Site) -> ServiceSite:
        member = Member(
            name=f"{name}-{demo_site.name}-a", site=demo_site.name, host=f"127.{NET}.{demo_site.index}.{10 + index}"
        )
        return ServiceSite(name=demo_site.name, index=demo_site.index, members=(member,), service=name)

    return ExtraService(name, index, site(SITE_BY_NAME["dc1"]), site(SITE_BY_NAME["dc2"]))


def extra_services(count: int) -> list[ExtraService]:
    if not 0 <= count <= MAX_SERVICES:
        raise ValueError(f"{count} extra services: the testbed holds 0 to {MAX_SERVICES}")
    return [extra_service(k) for k in range(1, count + 1)]


def service_member(name: str) -> Member | None:
    """The extra services' member called `name` (svc<k>-<site>-a), or None."""
    match = _MEMBER.fullmatch(name)
    if not match or int(match.group(1)) > MAX_SERVICES:
        return None
    service = extra_service(int(match.group(1)))
    return next(m for m in service.members if m.name == name)


def inventory_file(base: Path, service: ExtraService) -> Path:
    return Path(base) / "services" / f"{service.name}.yml"


def known_hosts_file(base: Path) -> Path:
    return SshdLayout(Path(base)).dir / "known_hosts_services"


def _patroni_name(member: Member) -> str:
    return f"patroni-{member.name}"


def running_member_processes(registry: ProcessRegistry) -> list[str]:
    """The registry names of every extra-service Patroni this testbed started."""
    return [n for n in registry.load() if n.startswith("patroni-") and service_member(n[8:])]


def members_on_disk(base: Path) -> list[Member]:
    """Extra-service members with a home under `base` (what may still run after a crash)."""
    found = (service_member(home.name) for site in SITES for home in (Path(base) / site.name).glob("svc*"))
    return [m for m in found if m is not None]


class ExtraServices:
    """Life cycle and health of the extra services of one testbed (they live in its base dir,
    its process registry and its etcd)."""

    def __init__(self, testbed: Testbed):
        self.testbed = testbed
        self.base = testbed.base
        self.registry = testbed.registry

    # ---- the whole set -------------------------------------------------------------------
    def ensure(self, count: int, timeout: float = 90.0) -> dict[str, str]:
        """svc1..svc<count> healthy; say per service how ('already', 'repaired' or 'rebuilt')."""
        services = extra_services(count)
        self._ensure_shared_processes()
        how: dict[str, str] = {}
        rebuild = []
        for service in services:
            if not self.problems(service):
                how[service.name] = "already"
            elif not all(self.testbed.patroni_config_file(m).exists() for m in service.members):
                rebuild.append(service)
            else:
                try:
                    self._repair(service, timeout)
                    how[service.name] = "repaired"
                except Exception:  # noqa: BLE001 - whatever the repair tripped on, a rebuild fixes it
                    rebuild.append(service)
        if rebuild:
            self._rebuild(rebuild, timeout)
            how.update({s.name: "rebuilt" for s in rebuild})
        for service in services:
            self.write_inventory(service)
        return how

    def stop_all(self) -> None:
        """Stop every extra-service process: Patroni first (PostgreSQL stops cleanly with it),
        then any PostgreSQL left without its agent, then their sshd."""
        self.registry.stop(running_member_processes(self.registry), timeout=30)
        self._stop_orphan_postgres(members_on_disk(self.base))
        self.registry.stop([SSHD_NAME], timeout=10)

    # ---- one service ---------------------------------------------------------------------
    def problems(self, service: ExtraService) -> list[str]:
        """What differs from its baseline: dc1 member primary, dc2 member a standby leader
        streaming from it, dynamic configs as built, the site etcds and the sshd running."""
        problems = [
            f"{name} is not running"
            for name in [etcd_process_name(s) for s in SITES] + [SSHD_NAME]
            if not self.registry.alive(name)
        ]
        states = {m.name: self.testbed._state_or_error(m) for m in service.members}
        for site, role in ((service.dc1, "primary"), (service.dc2, "standby_leader")):
            (member,) = site.members
            state = states[member.name]
            if "error" in state:
                problems.append(f"{member.name}: REST API unreachable ({state['error']})")
                continue
            if state.get("role") != role:
                problems.append(f"{member.name}: role {state.get('role')}, baseline {role}")
            if state.get("pause"):
                problems.append(f"{member.name}: cluster paused")
            if state.get("state") not in ("running", "streaming"):
                problems.append(f"{member.name}: state {state.get('state')}")
        if problems:
            return problems
        (standby,) = service.dc2.members
        try:
            rows = self.testbed.sql(standby, "SELECT status FROM pg_stat_wal_receiver")
            if rows != [("streaming",)]:
                problems.append(f"{standby.name}: WAL receiver not streaming ({rows})")
            for site in service.sites:
                want, have = self._want_config(service, site), self.testbed.get_config(site)
                problems += [
                    f"{site.scope}: dynamic config {key} is {have.get(key)!r}, baseline {want.get(key)!r}"
                    for key in sorted(set(want) | set(have))
                    if have.get(key) != want.get(key)
                ]
        except Exception as exc:  # noqa: BLE001 - e.g. PostgreSQL restarting: a finding here
            problems.append(f"{service.name}: could not be inspected ({type(exc).__name__}: {exc})")
        return problems

    def write_inventory(self, service: ExtraService) -> Path:
        """demo's inventory with the service's name, scopes, members and sshd known_hosts."""
        yaml = YAML()
        yaml.width = 4096  # never fold a long path onto a second line
        text = self.testbed.inventory_text()
        body = text[text.index("service:") :]  # demo's header comment describes demo
        data = yaml.load(body)
        data["service"] = service.name
        for site in service.sites:
            entry = data["sites"][site.name]
            entry["scope"] = site.scope
            entry["ssh"]["known_hosts"] = str(known_hosts_file(self.base))
            entry["patroni"]["local_parameters"]["shared_buffers"] = SHARED_BUFFERS
            entry["members"] = [
                {"name": m.name, "host": m.host, "pg_port": PG_PORT, "api_url": m.api_url} for m in site.members
            ]
        path = inventory_file(self.base, service)
        make_dir(path.parent, 0o755)
        with open(path, "w") as fh:
            fh.write(
                f"# Inventory of the testbed's extra service {service.name} (tests/testbed/services.py):\n"
                "# one member per site, sharing each site's etcd with demo and the other services.\n"
            )
            yaml.dump(data, fh)
        return path

    # ---- building and repairing ----------------------------------------------------------
    def _ensure_shared_processes(self) -> None:
        for site in SITES:
            if not self.registry.alive(etcd_process_name(site)):
                start_etcd(self.base, site, self.registry)
        if not self.registry.alive(SSHD_NAME):
            layout = SshdLayout(self.base)
            config = layout.dir / "sshd_services_config"
            hosts = [m.host for s in extra_services(MAX_SERVICES) for m in s.members]
            write_sshd_config(layout, hosts, config, layout.dir / "sshd-services.pid", known_hosts_file(self.base))
            self.registry.start(
                SSHD_NAME,
                ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
                layout.dir / "sshd-services.log",
                as_os_user=False,
            )
        for site in SITES:
            wait_until(lambda s=site: self.testbed.etcd_healthy(s), 30, f"etcd of {site.name}")

    def _want_config(self, service: ExtraService, site: ServiceSite) -> dict[str, Any]:
        return dynamic_config(site, None if site is service.dc1 else service.dc1)

    def _repair(self, service: ExtraService, timeout: float) -> None:
        """Restart a dead agent and put the dynamic configs back, while dc1 is the only writer."""
        for member in service.members:
            if not self.testbed.patroni_alive(member):
                self.testbed.start_patroni(member)
        (primary,), (standby,) = service.dc1.members, service.dc2.members

        def only_dc1_writes() -> bool:
            if self.testbed._state_or_error(standby).get("role") == "primary":
                raise TestbedError(f"{standby.name} is a primary: {service.name} moved, rebuild it")
            return self.testbed._state_or_error(primary).get("role") == "primary"

        wait_until(only_dc1_writes, 40, f"{service.name}: dc1 the only site with a primary")
        for site in service.sites:
            wait_until(lambda s=site: self._reset_config(service, s), 30, f"{site.scope}'s config reset")
        wait_until(lambda: not self.problems(service), timeout, f"{service.name} healthy", interval=0.3)

    def _reset_config(self, service: ExtraService, site: ServiceSite) -> bool:
        want, have = self._want_config(service, site), self.testbed.get_config(site)
        patch = {k: want.get(k) for k in set(want) | set(have) if have.get(k) != want.get(k)}
        if patch:
            self.testbed.patch_config(site, patch)
        return True

    def _rebuild(self, services: Sequence[ExtraService], timeout: float) -> None:
        """From nothing, all at once: dc1 members first, then (once each is primary) dc2's."""
        members = [m for s in services for m in s.members]
        self.registry.stop([_patroni_name(m) for m in members], timeout=30)
        self._stop_orphan_postgres(members)
        for service in services:
            for site in service.sites:
                self.testbed.delete_dcs_prefix(site, f"{NAMESPACE}{site.scope}/")
                (member,) = site.members
                home = member_dir(self.base, member)
                if home.exists():
                    shutil.rmtree(home)
                self._prepare_member(site, member, None if site is service.dc1 else service.dc1)
        self._start_and_wait([s.dc1.members[0] for s in services], "primary", timeout)
        self._start_and_wait([s.dc2.members[0] for s in services], "standby_leader", timeout)
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            list(
                pool.map(
                    lambda s: wait_until(lambda: not self.problems(s), timeout, f"{s.name} healthy", interval=0.3),
                    services,
                )
            )

    def _start_and_wait(self, members: list[Member], role: str, timeout: float) -> None:
        for member in members:
            self.testbed.start_patroni(member)
        deadline = time.monotonic() + timeout
        for member in members:
            wait_until(
                lambda m=member: self.testbed.patroni_state(m).get("role") == role,
                max(1.0, deadline - time.monotonic()),
                f"{member.name} to become {role}",
            )

    def _prepare_member(self, site: ServiceSite, member: Member, standby_of: ServiceSite | None) -> None:
        make_dir(self.base / site.name, 0o755)
        home = make_dir(member_dir(self.base, member), 0o700, owned_by_os_user=True)
        for sub in ("sock", "pglog"):
            make_dir(home / sub, 0o700, owned_by_os_user=True)
        config = patroni_config(self.base, site, member, self.testbed.passwords(), standby_of)
        config["postgresql"]["parameters"]["shared_buffers"] = SHARED_BUFFERS
        yaml = YAML()
        yaml.default_flow_style = False
        config_file = home / "patroni.yml"
        with open(config_file, "w") as fh:
            yaml.dump(config, fh)
        config_file.chmod(0o600)
        chown_to_os_user(config_file)

    def _stop_orphan_postgres(self, members: Sequence[Member]) -> None:
        for member in members:
            pid = self.testbed.postmaster_pid(member)
            if pid and pid_alive(pid):
                send_signal(pid, signal.SIGQUIT)  # immediate shutdown: nobody manages it any more
                wait_until(lambda p=pid: not pid_alive(p), 15, f"orphan PostgreSQL of {member.name} to stop")
