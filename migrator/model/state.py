"""The observed state of a service: one immutable snapshot per site, built by migrator/observe/observer.py.

Every decision (checks, planner, gates) is made on a snapshot, never on live calls scattered
through the logic, as Patroni does with its `Cluster` object. A probe that failed is data: the
section is None and its `*_error` field says why, so one unreachable member never hides the rest.
LSNs are kept as byte positions (int) so they compare and subtract; `lsn_text` renders them the
way PostgreSQL prints them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def lsn_text(lsn: int | None) -> str:
    if lsn is None:
        return "-"
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_value(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


# ---- PostgreSQL -------------------------------------------------------------------------------
class ReplicationConnection(Frozen):
    """One row of pg_stat_replication: a standby streaming from this member."""

    application_name: str
    client_addr: str | None = None
    state: str | None = None
    sync_state: str | None = None
    sent_lsn: int | None = None
    replay_lsn: int | None = None
    replay_lag_seconds: float | None = None


class WalReceiver(Frozen):
    """pg_stat_wal_receiver: where this standby streams from."""

    status: str
    sender_host: str | None = None
    sender_port: int | None = None
    slot_name: str | None = None
    flushed_lsn: int | None = None
    received_tli: int | None = None


class ReplicationSlot(Frozen):
    name: str
    slot_type: str  # physical | logical
    active: bool
    restart_lsn: int | None = None
    wal_status: str | None = None  # reserved | extended | unreserved | lost
    database: str | None = None


class PostgresState(Frozen):
    system_identifier: str
    server_version: int
    timeline: int
    in_recovery: bool
    current_lsn: int | None = None  # primary only: pg_current_wal_lsn()
    receive_lsn: int | None = None  # standby only
    replay_lsn: int | None = None  # standby only
    replay_timestamp: str | None = None
    replication: tuple[ReplicationConnection, ...] = ()
    wal_receiver: WalReceiver | None = None
    slots: tuple[ReplicationSlot, ...] = ()
    settings: dict[str, str] = {}
    archiver_failed_count: int = 0
    archiver_last_failed_wal: str | None = None
    database_size_bytes: int | None = None
    oldest_wal_lsn: int | None = None  # start of the oldest WAL segment still in pg_wal

    @property
    def position(self) -> int | None:
        """How far this member's data goes: written WAL on a primary, replayed WAL on a standby."""
        return self.replay_lsn if self.in_recovery else self.current_lsn

    def slot(self, name: str) -> ReplicationSlot | None:
        return next((s for s in self.slots if s.name == name), None)


# ---- Patroni ----------------------------------------------------------------------------------
class PatroniState(Frozen):
    """A member's own view, GET /patroni (fresher than the DCS view during transitions)."""

    role: str | None = None  # primary | replica | standby_leader | demoted (Patroni 3: master)
    state: str | None = None  # running | streaming | stopping | stopped | starting ...
    timeline: int | None = None
    version: str | None = None
    pause: bool = False
    tags: dict[str, Any] = {}
    replication_state: str | None = None
    database_system_identifier: str | None = None

    @property
    def normalized_role(self) -> str | None:
        # Patroni < 4 calls the primary "master".
        return "primary" if self.role == "master" else self.role


class HostFacts(Frozen):
    """What only the host itself can tell, over SSH."""

    controldata: dict[str, str] = {}
    # Why the token step's pg_controldata command failed on this host; None when it worked.
    controldata_error: str | None = None
    patroni_version: str | None = None
    watchdog_mode: str | None = None  # from the member's patroni.yml; None when not readable


class MemberState(Frozen):
    name: str
    site: str
    host: str
    api_url: str
    patroni: PatroniState | None = None
    patroni_error: str | None = None
    postgres: PostgresState | None = None
    postgres_error: str | None = None
    host_facts: HostFacts | None = None
    host_error: str | None = None

    @property
    def writable(self) -> bool:
        return self.postgres is not None and not self.postgres.in_recovery

    @property
    def role(self) -> str | None:
        return self.patroni.normalized_role if self.patroni else None


# ---- DCS --------------------------------------------------------------------------------------
class DcsState(Frozen):
    """The site's etcd: health and the keys Patroni keeps under /<namespace>/<scope>/."""

    endpoints: tuple[str, ...]
    healthy: bool = False
    cluster_size: int | None = None  # etcd members: quorum needs a majority of these
    error: str | None = None
    leader: str | None = None
    members: dict[str, dict[str, Any]] = {}
    config: dict[str, Any] | None = None
    status: dict[str, Any] | None = None
    initialize: str | None = None
    history: list[Any] | None = None
    sync: dict[str, Any] | None = None
    failover: dict[str, Any] | None = None


# ---- site and service -------------------------------------------------------------------------
class SiteState(Frozen):
    name: str
    scope: str
    dynamic_config: dict[str, Any] | None = None  # GET /config
    config_error: str | None = None
    cluster: dict[str, Any] | None = None  # GET /cluster
    history: list[Any] | None = None  # GET /history
    dcs: DcsState
    members: tuple[MemberState, ...]

    def member(self, name: str) -> MemberState | None:
        return next((m for m in self.members if m.name == name), None)

    @property
    def standby_cluster(self) -> dict[str, Any] | None:
        """The `standby_cluster` section of the dynamic config; None on a primary cluster."""
        return (self.dynamic_config or {}).get("standby_cluster") or None

    @property
    def is_standby_cluster(self) -> bool:
        return self.standby_cluster is not None

    @property
    def paused(self) -> bool:
        return bool((self.dynamic_config or {}).get("pause")) or any(
            m.patroni is not None and m.patroni.pause for m in self.members
        )

    @property
    def leader(self) -> MemberState | None:
        """The member that leads the site by its own word (primary or standby leader), else the
        holder of the DCS leader key."""
        leading = [m for m in self.members if m.role in ("primary", "standby_leader")]
        if len(leading) == 1:
            return leading[0]
        return self.member(self.dcs.leader) if self.dcs.leader else None

    @property
    def writable_members(self) -> tuple[MemberState, ...]:
        return tuple(m for m in self.members if m.writable)

    @property
    def system_identifier(self) -> str | None:
        ids = {m.postgres.system_identifier for m in self.members if m.postgres}
        if len(ids) == 1:
            return ids.pop()
        return self.dcs.initialize if not ids else None


class ServiceState(Frozen):
    service: str
    observed_at: str  # UTC, ISO 8601
    sites: dict[str, SiteState]

    @property
    def writable_members(self) -> tuple[MemberState, ...]:
        return tuple(m for s in self.sites.values() for m in s.writable_members)

    @property
    def primary_site(self) -> SiteState | None:
        """The one site that is not a standby cluster and has a writable leader, if exactly one."""
        primaries = [
            s for s in self.sites.values() if not s.is_standby_cluster and s.leader is not None and s.leader.writable
        ]
        return primaries[0] if len(primaries) == 1 else None


# --- seeding an empty target: what observe/seed_facts.py reads over SSH and SQL --------------


class SeedHost(Frozen):
    """One target host, as seen over SSH before seeding."""

    member: str
    data_dir: str
    entries: int | None = None  # files in the data directory; None when it does not exist
    system_identifier: str | None = None  # from pg_controldata, when the directory holds a cluster
    free_bytes: int | None = None  # df on the data directory (or its nearest existing parent)
    config_exists: bool = False
    error: str | None = None


class SeedFacts(Frozen):
    """What a seed plan needs beyond the snapshot: the target hosts and the source's WAL size."""

    hosts: tuple[SeedHost, ...] = ()
    source_wal_bytes: int | None = None
    source_error: str | None = None
