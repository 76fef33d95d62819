"""What every check is made of: its result (`Issue`, `Outcome`), what it gets (`Context`), the
`@check` decorator that registers it, and the small readings of a snapshot several checks share.
The order the checks run in is not here: it is the table in migrator/checks/__init__.py."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from migrator.errors import one_line
from migrator.model.findings import Verdict
from migrator.model.inventory import Inventory, default_slot_name
from migrator.model.state import MemberState, PostgresState, ServiceState, SiteState

# A probe's error quoted in a finding: long enough for the adapters' own one-line diagnoses (the
# TLS ones end with the inventory key to fix), short enough to cut a foreign library's essay.
MAX_ERROR_CHARS = 320

SEVERITY = {Verdict.OK: 0, Verdict.WARN: 1, Verdict.BLOCK: 2}


@dataclass(frozen=True)
class Issue:
    verdict: Verdict
    text: str
    fix: str
    site: str | None = None
    members: tuple[str, ...] = ()


def warn(text: str, fix: str, site: str | None = None, members: Iterable[str] = ()) -> Issue:
    return Issue(Verdict.WARN, text, fix, site, tuple(members))


def block(text: str, fix: str, site: str | None = None, members: Iterable[str] = ()) -> Issue:
    return Issue(Verdict.BLOCK, text, fix, site, tuple(members))


@dataclass(frozen=True)
class Outcome:
    ok: str  # shown when there is no issue
    issues: tuple[Issue, ...] = ()


def outcome(ok: str, issues: Iterable[Issue] = ()) -> Outcome:
    return Outcome(ok, tuple(issues))


@dataclass(frozen=True)
class Context:
    inventory: Inventory
    state: ServiceState
    source: str
    target: str

    @property
    def src(self) -> SiteState:
        return self.state.sites[self.source]

    @property
    def dst(self) -> SiteState:
        return self.state.sites[self.target]

    @property
    def involved(self) -> tuple[SiteState, ...]:
        return (self.src,) if self.source == self.target else (self.src, self.dst)

    @property
    def sites(self) -> tuple[SiteState, ...]:
        return tuple(self.state.sites.values())

    def slot_of(self, site: str) -> str:
        """The permanent slot `site`'s standby leader consumes on the site it follows."""
        return self.inventory.sites[site].replication_slot or default_slot_name(site)

    @property
    def already_moved(self) -> bool:
        """The target is the primary site already (and the source, when it is another site, is
        a standby cluster): nothing to move. The planner derives the source from the primary
        site, so a finished move reaches here as source == target."""
        leader = self.dst.leader
        target_leads = is_standby(self.dst) is False and leader is not None and leader.writable
        return target_leads and (self.source == self.target or is_standby(self.src) is True)

    def not_applicable(self) -> Outcome | None:
        if self.already_moved:
            return outcome(f"not applicable: {self.target} is already the primary site")
        return None


CheckFunction = Callable[[Context], Outcome]


# Every check by its id, as its module registers it. The order they run in (the findings order,
# part of a plan's fingerprint) is the explicit table ORDER in migrator/checks/__init__.py.
REGISTERED: dict[str, CheckFunction] = {}


def check(check_id: str) -> Callable[[CheckFunction], CheckFunction]:
    def register(function: CheckFunction) -> CheckFunction:
        if check_id in REGISTERED:
            raise ValueError(f"check {check_id} is registered twice")
        REGISTERED[check_id] = function
        return function

    return register


def config_of(site: SiteState) -> dict[str, Any] | None:
    """The dynamic config from GET /config, else the DCS copy of it."""
    if site.dynamic_config is not None:
        return site.dynamic_config
    return site.dcs.config


def is_standby(site: SiteState) -> bool | None:
    """Whether `site` is a standby cluster; None when neither its config nor its roles tell."""
    config = config_of(site)
    if config is not None:
        return bool(config.get("standby_cluster"))
    roles = {m.role for m in site.members}
    if "standby_leader" in roles:
        return True
    if "primary" in roles:
        return False
    return None


def cluster_members(site: SiteState) -> list[dict[str, Any]]:
    members = (site.cluster or {}).get("members") or []
    return [m for m in members if isinstance(m, dict)]


def member_by_host(state: ServiceState, host: str | None) -> MemberState | None:
    if not host:
        return None
    return next((m for s in state.sites.values() for m in s.members if m.host == host), None)


def serves(upstream: MemberState, standby: MemberState) -> bool:
    """`upstream`'s pg_stat_replication shows `standby` streaming (Patroni sets application_name
    to the member name; loopback client addresses all look alike, names do not)."""
    if upstream.postgres is None:
        return False
    return any(r.application_name == standby.name and r.state == "streaming" for r in upstream.postgres.replication)


def streams_from(state: ServiceState, standby: MemberState, upstream: MemberState) -> bool:
    """`standby`'s WAL receiver is connected to `upstream` (by address, else by upstream's view)."""
    receiver = standby.postgres.wal_receiver if standby.postgres else None
    if receiver is None:
        return False
    sender = member_by_host(state, receiver.sender_host)
    if sender is not None:
        return sender.name == upstream.name
    return serves(upstream, standby)


def sender_text(state: ServiceState, host: str | None, port: int | None = None) -> str:
    if not host:
        return "an unknown host"
    address = f"{host}:{port}" if port else host
    member = member_by_host(state, host)
    return f"{member.name} ({address})" if member else address


def setting(member: MemberState, name: str) -> str | None:
    return member.postgres.settings.get(name) if member.postgres else None


def int_setting(member: MemberState, name: str) -> int | None:
    value = setting(member, name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("on", "true", "yes", "1")
    return bool(value)


def names(members: Iterable[MemberState | str]) -> str:
    return ", ".join(m if isinstance(m, str) else m.name for m in members)


def short(text: str | None, default: str = "no answer") -> str:
    text = one_line(text or default)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def size_text(n: int) -> str:
    return f"{n} bytes ({n / 1048576:.1f} MiB)"


def observed(members: Iterable[MemberState]) -> list[MemberState]:
    return [m for m in members if m.postgres is not None]


def observed_postgres(members: Iterable[MemberState]) -> list[tuple[MemberState, PostgresState]]:
    """`observed`, each member with its PostgreSQL state (typed as present)."""
    return [(m, m.postgres) for m in members if m.postgres is not None]


def unseen_note(members: Iterable[MemberState]) -> str:
    missing = [m.name for m in members if m.postgres is None]
    return f" (not observed: {', '.join(missing)})" if missing else ""


def all_members(sites: Iterable[SiteState]) -> list[MemberState]:
    return [m for s in sites for m in s.members]
