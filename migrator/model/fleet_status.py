"""`migrate fleet status`: what each service of a fleet looks like right now, judged on its snapshot.

One `ServiceStatus` per service: its snapshot (None when it could not be observed at all), a
verdict, and the problems behind the verdict, worst first. The verdict is pure logic on the
snapshot, so it is tested on plain data:

- `split-brain`: more than one writable member in the service (the alarm `migrate status` shows
  in red); exit 4, whatever the other services look like.
- `unobserved`: the observation failed, ran past its deadline, or no member of any site answered.
- `degraded`: observed, but something a move would trip over or an operator must look at: no
  writable member, two sites that are both primary clusters, a site's etcd down, a site paused,
  its dynamic config unreadable, a member that did not answer, a standby that is not streaming.
- `healthy`: none of the above.

The fleet's exit code is the worst: 4 for any split brain, else 1 for anything unobserved or
degraded, else 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from migrator.model.state import MemberState, ServiceState, SiteState

Verdict = Literal["healthy", "degraded", "unobserved", "split-brain"]
VERDICTS: tuple[Verdict, ...] = ("healthy", "degraded", "unobserved", "split-brain")
EXIT_UNHEALTHY = 1
EXIT_SPLIT_BRAIN = 4
SPLIT_BRAIN_RUNBOOK = "runbooks/switchover.md#two-primaries"


@dataclass(frozen=True)
class ServiceStatus:
    service: str
    inventory: str  # the inventory file, as the fleet names it
    state: ServiceState | None  # None: nothing could be observed (problems[0] says why)
    verdict: Verdict
    problems: tuple[str, ...] = ()  # the reasons for the verdict, worst first; empty when healthy


@dataclass(frozen=True)
class FleetStatus:
    fleet: str  # the fleet file, as the operator named it
    observed_at: str  # UTC, ISO 8601: when the observation of the fleet started
    services: tuple[ServiceStatus, ...]  # in the order of the fleet's waves

    @property
    def totals(self) -> dict[str, int]:
        counts: dict[str, int] = {verdict: 0 for verdict in VERDICTS}
        for row in self.services:
            counts[row.verdict] += 1
        return {"services": len(self.services), **counts}

    @property
    def exit_code(self) -> int:
        verdicts = {row.verdict for row in self.services}
        if "split-brain" in verdicts:
            return EXIT_SPLIT_BRAIN
        return EXIT_UNHEALTHY if verdicts - {"healthy"} else 0


def judge(service: str, inventory: str, state: ServiceState) -> ServiceStatus:
    """The verdict on one observed service, with its reasons."""
    nothing = nothing_answered(state, inventory)
    if nothing is not None:
        return ServiceStatus(service, inventory, state, "unobserved", (nothing,))
    writers = state.writable_members
    if len(writers) > 1:
        where = ", ".join(f"{m.name} ({m.site})" for m in writers)
        line = (
            f"SPLIT BRAIN: {len(writers)} writable members: {where}; stop the writes to all but one, do not "
            f"migrate, see {SPLIT_BRAIN_RUNBOOK}"
        )
        return ServiceStatus(service, inventory, state, "split-brain", (line, *_degradations(state)))
    problems = _degradations(state)
    return ServiceStatus(service, inventory, state, "degraded" if problems else "healthy", problems)


def unobserved(service: str, inventory: str, why: str) -> ServiceStatus:
    return ServiceStatus(service, inventory, None, "unobserved", (why,))


def nothing_answered(state: ServiceState, inventory: str = "<its inventory>") -> str | None:
    """`cannot be observed: ...` naming the members that did not answer, when none did (neither
    Patroni nor PostgreSQL of any member of any site); None when anything answered."""
    members = [m for site in state.sites.values() for m in site.members]
    if any(_answered(m) for m in members):
        return None
    if not members:
        return "cannot be observed: the inventory has no member"
    first = members[0]
    more = f" (nor {len(members) - 1} other member(s))" if len(members) > 1 else ""
    return (
        f"cannot be observed: no member answered: {first.name} ({first.host}): {_why(first)}{more}; check that "
        f"its hosts are up (`migrate status -i {inventory}`)"
    )


def site_role(site: SiteState) -> str:
    """What the site is, in a few words: primary, standby cluster, down, or what is odd about it."""
    if not any(_answered(m) for m in site.members):
        return "down"
    writable = bool(site.writable_members)
    if site.dynamic_config is None:  # the config did not answer: say what the members show
        if writable:
            return "primary (config unknown)"
        return "standby (config unknown)" if any(m.role == "standby_leader" for m in site.members) else "unknown"
    if site.is_standby_cluster:
        return "standby cluster, WRITABLE" if writable else "standby cluster"
    return "primary" if writable else "primary cluster, not writable"


def lag_bytes(state: ServiceState) -> int | None:
    """How far the furthest-behind standby is from the one writable member's current LSN (the
    measure `migrate status` uses); None without exactly one writable member or any standby."""
    writers = state.writable_members
    if len(writers) != 1 or writers[0].postgres is None or writers[0].postgres.current_lsn is None:
        return None
    head = writers[0].postgres.current_lsn
    behind = [
        max(head - m.postgres.position, 0)
        for site in state.sites.values()
        for m in site.members
        if m.postgres is not None and m.postgres.in_recovery and m.postgres.position is not None
    ]
    return max(behind) if behind else None


def _degradations(state: ServiceState) -> tuple[str, ...]:
    problems: list[str] = []
    writers = state.writable_members
    if not writers:
        problems.append("no writable member in any site: the service takes no writes")
    primaries = [s.name for s in state.sites.values() if s.dynamic_config is not None and not s.is_standby_cluster]
    if len(primaries) > 1:
        problems.append(f"sites {' and '.join(primaries)} are both primary clusters (no standby_cluster in either)")
    for site in state.sites.values():
        if writers and site.is_standby_cluster and site.writable_members:
            problems.append(f"{site.name} is a standby cluster with a writable member")
        if not site.dcs.healthy:
            problems.append(f"{site.name}: etcd did not answer: {site.dcs.error or 'no answer'}")
        if site.dynamic_config is None:
            problems.append(f"{site.name}: dynamic config not readable: {site.config_error or 'no answer'}")
        if site.paused:
            problems.append(f"{site.name}: Patroni is paused (maintenance mode)")
        for member in site.members:
            problems += _member_problems(member)
    return tuple(problems)


def _member_problems(member: MemberState) -> list[str]:
    if not _answered(member):
        return [f"{member.name} ({member.host}) did not answer: {_why(member)}"]
    if member.postgres is None:
        return [f"{member.name}: PostgreSQL did not answer: {member.postgres_error or 'no answer'}"]
    if member.patroni is None:
        return [f"{member.name}: Patroni did not answer: {member.patroni_error or 'no answer'}"]
    if member.postgres.in_recovery and not _streaming(member):
        state = member.patroni.state or "unknown state"
        return [f"{member.name} is a standby but not streaming (Patroni: {state})"]
    return []


def _streaming(member: MemberState) -> bool:
    patroni, pg = member.patroni, member.postgres
    receiver = pg.wal_receiver if pg is not None else None
    return (
        (patroni is not None and "streaming" in (patroni.state, patroni.replication_state))
        or (receiver is not None and receiver.status == "streaming")
    )  # fmt: skip


def _answered(member: MemberState) -> bool:
    return member.patroni is not None or member.postgres is not None


def _why(member: MemberState) -> str:
    return member.patroni_error or member.postgres_error or "no answer"
