"""Render one testbed member's patroni.yml.

Small settings (shared_buffers 16MB, 40 connections) keep four PostgreSQL instances light on a
2-core machine; the Patroni timings 20/2/5 are the smallest that Patroni accepts comfortably.
dc2 is bootstrapped as a standby cluster of dc1 through `bootstrap.dcs.standby_cluster`, with the
host list of dc1's members so it follows whichever is primary (the fixed-address trap: docs/architecture.md,
"Patroni behaviour the code relies on").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .topology import (
    ETCD_CLIENT_PORT, NAMESPACE, PG_BIN_DIR, PG_PORT, REPLICATION_USER, REST_PORT, REST_USER,
    SUPERUSER, Member, Site, other_site,
)


def member_dir(base: Path, member: Member) -> Path:
    return base / member.site / member.name


def standby_cluster_section(followed: Site, follower: Site) -> dict[str, Any]:
    return {
        "host": ",".join(m.host for m in followed.members),
        "port": PG_PORT,
        "primary_slot_name": follower.slot,
        "create_replica_methods": ["basebackup"],
    }


def dynamic_config(site: Site, standby_of: Site | None) -> dict[str, Any]:
    peer = other_site(site)
    dcs: dict[str, Any] = {
        "ttl": 20,
        "loop_wait": 2,
        "retry_timeout": 5,
        "maximum_lag_on_failover": 1048576,
        "postgresql": {
            "use_pg_rewind": True,
            "use_slots": True,
            "parameters": {
                "wal_level": "replica",
                "hot_standby": True,
                "wal_log_hints": True,
                "hot_standby_feedback": True,
                "wal_keep_size": "128MB",
                "max_wal_senders": 10,
                "max_replication_slots": 10,
                "max_connections": 40,
            },
        },
        # The other site's standby leader consumes a slot named after that site.
        "slots": {peer.slot: {"type": "physical"}},
    }
    if standby_of is not None:
        dcs["standby_cluster"] = standby_cluster_section(standby_of, site)
    return dcs


def patroni_config(base: Path, site: Site, member: Member, passwords: dict[str, str],
                   standby_of: Site | None) -> dict[str, Any]:
    home = member_dir(base, member)
    return {
        "scope": site.scope,
        "namespace": NAMESPACE,
        "name": member.name,
        "log": {"level": "INFO"},
        "restapi": {
            "listen": f"{member.host}:{REST_PORT}",
            "connect_address": f"{member.host}:{REST_PORT}",
            "authentication": {"username": REST_USER, "password": passwords["restapi"]},
        },
        "etcd3": {"hosts": [f"{site.etcd_host}:{ETCD_CLIENT_PORT}"]},
        "bootstrap": {
            "dcs": dynamic_config(site, standby_of),
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}],
        },
        "postgresql": {
            "listen": f"{member.host}:{PG_PORT}",
            "connect_address": f"{member.host}:{PG_PORT}",
            "data_dir": str(home / "data"),
            "bin_dir": str(PG_BIN_DIR),
            "pgpass": str(home / "pgpass"),
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": passwords["superuser"]},
                "replication": {"username": REPLICATION_USER, "password": passwords["replication"]},
            },
            "parameters": {
                # All members use port 5432, so each needs its own socket directory.
                "unix_socket_directories": str(home / "sock"),
                "shared_buffers": "16MB",
                "logging_collector": "on",
                "log_directory": str(home / "pglog"),
                "log_filename": "postgresql.log",
                "log_line_prefix": "%m [%p] ",
            },
            "pg_hba": [
                "local all all trust",
                # Loopback clients show up as 127.0.0.1 whatever address they dialled.
                f"host replication {REPLICATION_USER} 127.0.0.0/8 scram-sha-256",
                "host all all 127.0.0.0/8 scram-sha-256",
            ],
            "basebackup": [{"checkpoint": "fast"}],
        },
        # No watchdog device in this sandbox: the testbed runs without one, which the tool warns about.
        "watchdog": {"mode": "off"},
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }
