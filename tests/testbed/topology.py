"""The testbed's fixed shape: two sites of two members, each member on its own loopback address.

Every member listens on the same ports (PostgreSQL 5432, REST 8008, SSH 2222) on its own address
127.<net>.<site>.<member> (net 0 unless MIGRATOR_TESTBED_NET says otherwise), as real hosts do; sharing one address breaks Patroni's pgpass lines for host
lists (one line per host, each with the whole port list, which libpq never matches). Each site's etcd sits on 127.<net>.<site>.100.

Under pytest-xdist each worker gets its own net and directory (`use_worker_testbed`).
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from pathlib import Path

FALLBACK_BASE_DIR = "/tmp/migrator-testbed"
# Set once a process has moved MIGRATOR_TESTBED_NET/DIR to its pytest-xdist worker's own testbed:
# children inherit the moved values and this marker, so nothing moves them a second time.
WORKER_MARKER = "MIGRATOR_TESTBED_WORKER"


def use_worker_testbed(environ: MutableMapping[str, str]) -> str | None:
    """Under pytest-xdist (PYTEST_XDIST_WORKER=gw<i>), give worker i its own testbed: net base+i and
    directory <base dir>-gw<i>, written back into `environ` so that every process the worker starts
    (migrate, the patroni-service script) sees the same values. Returns the worker id, or None in
    a serial run. Runs at import, before NET is read, so no import order can bypass it."""
    worker = environ.get("PYTEST_XDIST_WORKER", "")
    if not worker or environ.get(WORKER_MARKER) == worker:
        return worker or None
    match = re.fullmatch(r"gw(\d+)", worker)
    if not match:
        raise RuntimeError(f"PYTEST_XDIST_WORKER={worker!r}: expected gw<number>; cannot pick a testbed")
    net = int(environ.get("MIGRATOR_TESTBED_NET", "0")) + int(match.group(1))
    if net > 255:
        raise RuntimeError(f"testbed net {net} for worker {worker} is not an address octet: "
                           "lower MIGRATOR_TESTBED_NET or the number of workers")
    environ["MIGRATOR_TESTBED_NET"] = str(net)
    environ["MIGRATOR_TESTBED_DIR"] = f"{environ.get('MIGRATOR_TESTBED_DIR', FALLBACK_BASE_DIR)}-{worker}"
    environ[WORKER_MARKER] = worker
    return worker


use_worker_testbed(os.environ)

DEFAULT_BASE_DIR = Path(os.environ.get("MIGRATOR_TESTBED_DIR", FALLBACK_BASE_DIR))
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
# A third dc2 host that runs nothing until a test seeds dc2 with three members (its inventory lists
# it): not in SITES, so the baseline and every other test see two members per site. It has an
# address, an SSH listener and a directory, as a fresh host would.
SPARE_MEMBERS: tuple[Member, ...] = (Member(name="dc2-c", site="dc2", host=f"127.{NET}.2.3"),)
KNOWN_MEMBERS = {**MEMBER_BY_NAME, **{m.name: m for m in SPARE_MEMBERS}}


def other_site(site: Site) -> Site:
    return next(s for s in SITES if s.name != site.name)
