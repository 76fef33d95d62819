"""What a seed plan needs that the snapshot does not hold, read-only: each target host's data
directory, its cluster's system identifier and free disk (over SSH), and the source's WAL size
(one SQL query). The pure findings over these facts are in migrator/checks/seed.py."""

from __future__ import annotations

import shlex
from concurrent.futures import ThreadPoolExecutor

import psycopg

from migrator.adapters.pg import connect_args, one_row
from migrator.adapters.ssh import SshSession
from migrator.errors import MigratorError
from migrator.model.inventory import Inventory, Member, Site
from migrator.model.state import SeedFacts, SeedHost, ServiceState

MARK = "migrator-seed:"


def _host_command(site: Site, member: Member) -> str:
    data_dir = shlex.quote(site.data_dir_for(member))
    config = shlex.quote(site.patroni_config_for(member))
    controldata = shlex.quote(f"{site.postgres.bin_dir}/pg_controldata")
    return (
        f"d={data_dir}; "
        f'if [ -d "$d" ]; then echo "{MARK}entries=$(ls -A "$d" | wc -l)"; fi; '
        # LC_ALL=C: the "Database system identifier" key is translated in other locales.
        f'if [ -f "$d/global/pg_control" ]; then LC_ALL=C {controldata} "$d" | '
        f"sed -n 's/^Database system identifier: *\\(.*\\)$/{MARK}sysid=\\1/p'; fi; "
        'p="$d"; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; '
        f'echo "{MARK}free=$(df -P -B1 "$p" | awk \'NR==2 {{print $4}}\')"; '
        f'if [ -e {config} ]; then echo "{MARK}config=yes"; fi'
    )


def _seed_host(site: Site, member: Member, timeout: float) -> SeedHost:
    data_dir = site.data_dir_for(member)
    try:
        with SshSession(member.name, site.ssh_for(member), timeout) as ssh:
            out = ssh.run(_host_command(site, member)).stdout
    except MigratorError as exc:
        return SeedHost(member=member.name, data_dir=data_dir, error=str(exc))
    found = dict(line[len(MARK) :].split("=", 1) for line in out.splitlines() if line.startswith(MARK) and "=" in line)
    return SeedHost(
        member=member.name,
        data_dir=data_dir,
        entries=int(found["entries"]) if found.get("entries", "").isdigit() else None,
        system_identifier=found.get("sysid") or None,
        free_bytes=int(found["free"]) if found.get("free", "").isdigit() else None,
        config_exists=found.get("config") == "yes",
    )


def _wal_bytes(inventory: Inventory, state: ServiceState, source: str) -> int:
    leader = state.sites[source].leader
    if leader is None:
        raise MigratorError(f"{source} has no leader to measure its WAL on")
    _, _, member = inventory.member(leader.name)
    timeout = inventory.gates.connect_timeout_seconds
    try:
        # The observer's read-only probe arguments (statement_timeout included): one bounded read.
        with psycopg.connect(**connect_args(member, inventory.credentials.superuser, timeout, kept_open=False)) as conn:
            return int(one_row(conn.execute("SELECT coalesce(sum(size), 0) FROM pg_ls_waldir()"))[0])
    except psycopg.Error as exc:
        raise MigratorError(f"{leader.name}: cannot measure pg_wal ({str(exc).strip().splitlines()[0]})") from None


def observe_seed(inventory: Inventory, state: ServiceState, source: str, target: str) -> SeedFacts:
    site = inventory.site(target)
    timeout = inventory.gates.connect_timeout_seconds
    with ThreadPoolExecutor(max_workers=8) as pool:
        hosts = list(pool.map(lambda m: _seed_host(site, m, timeout), site.members))
    try:
        wal, error = _wal_bytes(inventory, state, source), None
    except MigratorError as exc:
        wal, error = None, str(exc)
    return SeedFacts(hosts=tuple(hosts), source_wal_bytes=wal, source_error=error)
