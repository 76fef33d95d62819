"""The testbed's fixed shape: two sites of two members, each member on its own loopback address.

Every member listens on the same ports (PostgreSQL 5432, REST 8008, SSH 2222) on its own address
127.<net>.<site>.<member> (net 0 unless MIGRATOR_TESTBED_NET says otherwise), as real hosts do; sharing one address breaks Patroni's pgpass lines for host
lists (one line per host, each with the whole port list, which libpq never matches). Each site's etcd sits on 127.<net>.<site>.100.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_BASE_DIR = Path(os.environ.get("MIGRATOR_TESTBED_DIR", "/tmp/migrator-testbed"))
DEFAULT_PATRONI_VERSION = os.environ.get("MIGRATOR_TESTBED_PATRONI", "4.1.5")
PATRONI_VENVS_DIR = Path(os.environ.get("MIGRATOR_TESTBED_VENVS", "/opt/migrator-testbed"))
PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
# Second octet of every testbed address. Two testbeds on one machine (say, two worktrees testing at
# once) need different values here and different MIGRATOR_TESTBED_DIRs; ports stay the same.
NET = int(os.environ.get("MIGRATOR_TESTBED_NET", "0"))

PG_PORT = 5432
REST_PORT = 8008
SSH_PORT = 2222
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380

SERVICE = "demo"
NAMESPACE = "/service/"
SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
REST_USER = "patroni"
OS_USER = "postgres"


@dataclass(frozen=True)
class Member:
    name: str
    site: str
    host: str

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{REST_PORT}"


@dataclass(frozen=True)
class Site:
    name: str
    index: int
    members: tuple[Member, ...] = field(default_factory=tuple)

    @property
    def scope(self) -> str:
        return self.name

    @property
    def etcd_host(self) -> str:
        return f"127.{NET}.{self.index}.100"

    @property
    def etcd_url(self) -> str:
        return f"http://{self.etcd_host}:{ETCD_CLIENT_PORT}"

    @property
    def slot(self) -> str:
        # The slot this site's standby leader consumes on the other site is named after this site.
        return self.name


def _site(name: str, index: int, size: int = 2) -> Site:
    members = tuple(
        Member(name=f"{name}-{chr(ord('a') + i)}", site=name, host=f"127.{NET}.{index}.{i + 1}")
        for i in range(size)
    )
    return Site(name=name, index=index, members=members)


SITES: tuple[Site, ...] = (_site("dc1", 1), _site("dc2", 2))
SITE_BY_NAME = {s.name: s for s in SITES}
MEMBER_BY_NAME = {m.name: m for s in SITES for m in s.members}


def other_site(site: Site) -> Site:
    return next(s for s in SITES if s.name != site.name)
