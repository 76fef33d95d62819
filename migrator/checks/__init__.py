"""Preflight checks: pure functions over one snapshot, one Finding per check.

`run_checks(inventory, state, source, target)` runs every check in `CHECK_IDS` order and returns
one `Finding` each: ok / warn / block, a one-line finding that names the sites, members and
values observed, and a one-line fix (None when ok). No I/O: the planner calls this on the
snapshot that migrator/observe/observer.py built, and tests call it on fixtures.

Each check is a small function registered with `@check("id")`. It returns an `Outcome`: the text
to show when all is well and the list of `Issue`s it found; `run_checks` turns that into the
Finding (the worst issue decides the verdict, texts and fixes are joined with "; ").

Conventions shared by all checks:
- Missing inputs (a member unreachable, a probe failed, a setting not collected) are said, never
  guessed: block when the switchover depends on that input (the two leaders, the slot, the lag),
  warn otherwise. Replicas' missing data is left to `members-reachable`, which reports every probe
  error once, so one member down does not turn every other check into a warning.
- "Involved" sites are the source and the target. Topology checks (single writer, lineage,
  names, DCS, pause, Patroni version, watchdog) look at every site of the snapshot; settings
  checks look at the involved sites only.
- When the target is already the primary site (the move is done: the source follows it, or
  source == target because the planner derives the source from the primary site), the
  direction-dependent checks say "not applicable" and stay ok; `source-is-primary` warns with
  "nothing to move", and the planner turns that state into an empty plan.
- A check that raises on an unexpected snapshot becomes a BLOCK finding naming the exception,
  never a crash of the whole preflight.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from migrator.errors import UsageError, one_line
from migrator.model.findings import Finding, Verdict
from migrator.model.inventory import Inventory, default_slot_name
from migrator.model.state import MemberState, PostgresState, ServiceState, SiteState, lsn_text, lsn_value
from migrator.rules.patroni_version import GRACEFUL_DEMOTE_MIN_PATRONI, graceful_demote_possible, version_tuple
from migrator.rules.patroni_version import patroni_version as reported_patroni_version
from migrator.rules.sync_mode import settings_text, sync_mode_carry, sync_mode_on
from migrator.rules.upstream import stray_upstream

# A probe's error quoted in a finding: long enough for the adapters' own one-line diagnoses (the
# TLS ones end with the inventory key to fix), short enough to cut a foreign library's essay.
MAX_ERROR_CHARS = 320

_SEVERITY = {Verdict.OK: 0, Verdict.WARN: 1, Verdict.BLOCK: 2}


# --- what a check returns ---------------------------------------------------------------------


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


# --- what every check gets --------------------------------------------------------------------


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
CHECKS: list[tuple[str, CheckFunction]] = []


def check(check_id: str) -> Callable[[CheckFunction], CheckFunction]:
    def register(function: CheckFunction) -> CheckFunction:
        CHECKS.append((check_id, function))
        return function

    return register


# --- small helpers ----------------------------------------------------------------------------


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


def _cluster_members(site: SiteState) -> list[dict[str, Any]]:
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


def _all_members(sites: Iterable[SiteState]) -> list[MemberState]:
    return [m for s in sites for m in s.members]


# --- reachability and topology ----------------------------------------------------------------


def _probe_errors(member: MemberState) -> list[str]:
    errors = []
    if member.patroni is None:
        errors.append(f"patroni: {short(member.patroni_error)}")
    if member.postgres is None:
        errors.append(f"postgres: {short(member.postgres_error)}")
    return errors


@check("members-reachable")
def members_reachable(ctx: Context) -> Outcome:
    issues = []
    for site in ctx.sites:
        involved = site.name in (ctx.source, ctx.target)
        leader = site.leader
        for m in site.members:
            errors = _probe_errors(m)
            if errors:
                is_leader = leader is None or leader.name == m.name
                what = (
                    "leader"
                    if leader is not None and is_leader
                    else ("leader unknown" if leader is None else "replica")
                )
                text = f"{m.name} ({site.name} {what}) at {m.host}: {'; '.join(errors)}"
                if involved and is_leader:
                    issues.append(
                        block(
                            text,
                            f"restore {m.name}'s Patroni and PostgreSQL (or let {site.name} "
                            "elect another leader), then observe again",
                            site.name,
                            [m.name],
                        )
                    )
                else:
                    issues.append(
                        warn(
                            text,
                            f"bring {m.name} back or accept that it sits the move out "
                            "(it is re-cloned or re-pointed afterwards)",
                            site.name,
                            [m.name],
                        )
                    )
            if m.host_facts is None:
                issues.append(
                    warn(
                        f"{m.name} ({site.name}) over SSH: {short(m.host_error)}",
                        f"fix SSH to {m.host} (key, known_hosts, user): the clean-stop path and the token read need it",
                        site.name,
                        [m.name],
                    )
                )
    count = len(_all_members(ctx.sites))
    return outcome(f"all {count} members answered (Patroni, PostgreSQL, SSH)", issues)


@check("dcs-quorum")
def dcs_quorum(ctx: Context) -> Outcome:
    issues, seen = [], []
    for site in ctx.sites:
        dcs, involved = site.dcs, site.name in (ctx.source, ctx.target)
        where = f"{site.name} etcd at {', '.join(dcs.endpoints) or 'no endpoint'}"
        if not dcs.healthy:
            make = block if involved else warn
            issues.append(
                make(
                    f"{where} is not healthy: {short(dcs.error)}",
                    f"restore {site.name}'s etcd quorum first: Patroni cannot change roles without it "
                    "(a primary without its DCS demotes itself)",
                    site.name,
                )
            )
        elif dcs.cluster_size is None:
            issues.append(
                warn(
                    f"{where} answers but its cluster size is unknown",
                    f"check `etcdctl member list` against {site.name}'s etcd",
                    site.name,
                )
            )
        else:
            seen.append(f"{site.name} ({dcs.cluster_size} member(s))")
    return outcome(f"etcd healthy in {', '.join(seen)}", issues)


@check("paused")
def paused(ctx: Context) -> Outcome:
    issues = []
    for site in ctx.sites:
        if not site.paused:
            continue
        reporters = [m.name for m in site.members if m.patroni is not None and m.patroni.pause]
        why = (
            "pause: true in its dynamic config"
            if (config_of(site) or {}).get("pause")
            else (f"reported by {', '.join(reporters)}")
        )
        issues.append(
            block(
                f"{site.name} is paused ({why})",
                f"find out who paused {site.name} and why, then `patronictl resume {site.scope}`: "
                "a paused Patroni does not act on role changes (the tool pauses by itself only on "
                "the old-Patroni path)",
                site.name,
            )
        )
    return outcome("no site is paused", issues)


@check("system-identifier")
def system_identifier(ctx: Context) -> Outcome:
    found: dict[str, list[tuple[str, str]]] = {}  # identifier -> [(site, where seen)]
    for site in ctx.sites:
        for m in site.members:
            ident = (
                m.postgres.system_identifier
                if m.postgres
                else (m.patroni.database_system_identifier if m.patroni else None)
            )
            if ident:
                found.setdefault(str(ident), []).append((site.name, m.name))
        if site.dcs.initialize:
            found.setdefault(str(site.dcs.initialize), []).append((site.name, f"{site.name} DCS"))
    everyone = _all_members(ctx.sites)
    if not found:
        return outcome(
            "",
            [
                block(
                    "no system identifier observed on any member or DCS", "make the members reachable and observe again"
                )
            ],
        )
    if len(found) == 1:
        return outcome(f"all members share system identifier {next(iter(found))}{unseen_note(everyone)}")
    leader = ctx.src.leader
    reference = (leader.postgres.system_identifier if leader and leader.postgres else None) or max(
        found, key=lambda ident: len(found[ident])
    )
    odd = [(site, where) for ident, seen in found.items() if ident != reference for site, where in seen]
    listing = "; ".join(f"{ident} on {', '.join(w for _, w in seen)}" for ident, seen in found.items())
    odd_sites = ", ".join(dict.fromkeys(site for site, _ in odd))
    return outcome(
        "",
        [
            block(
                f"system identifiers differ: {listing}",
                f"{', '.join(w for _, w in odd)} are not copies of {ctx.source}'s leader (system "
                f"identifier {reference}): re-seed {odd_sites} from {ctx.source}",
                odd_sites if "," not in odd_sites else None,
                [w for _, w in odd if not w.endswith(" DCS")],
            )
        ],
    )


@check("unique-member-names")
def unique_member_names(ctx: Context) -> Outcome:
    by_name: dict[str, list[str]] = {}  # Patroni member name -> sites reporting it
    issues = []
    for site in ctx.sites:
        reported = {m.name for m in site.members}
        reported |= {str(e.get("name")) for e in _cluster_members(site) if e.get("name")}
        reported |= set(site.dcs.members)
        for name in sorted(reported):
            by_name.setdefault(name, []).append(site.name)
        known = (
            {m.name for m in ctx.inventory.sites[site.name].members} if (site.name in ctx.inventory.sites) else reported
        )
        for stranger in sorted(reported - known):
            issues.append(
                warn(
                    f"{site.name}'s Patroni reports member {stranger}, which is not in the inventory",
                    f"add {stranger} to {site.name} in the inventory, or remove it from the cluster",
                    site.name,
                    [stranger],
                )
            )
    for name, sites in by_name.items():
        if len(sites) > 1:
            issues.append(
                block(
                    f"member name {name} is used in {' and '.join(sites)}",
                    "give every Patroni member a name unique across sites (`name:` in patroni.yml): "
                    "otherwise a walsender from the other site can satisfy synchronous_standby_names",
                    members=[name],
                )
            )
    return outcome(f"{len(by_name)} member names, unique across sites", issues)


@check("single-writer")
def single_writer(ctx: Context) -> Outcome:
    writable = ctx.state.writable_members
    unseen = [m for m in _all_members(ctx.sites) if m.postgres is None]
    if not writable:
        return outcome(
            "",
            [
                block(
                    f"no writable member in any site{unseen_note(unseen)}",
                    f"find out why {ctx.source} has no primary (patronictl list) before moving anything",
                )
            ],
        )
    fix = (
        "stop the writable member that does not hold its site's leader key (an orphan left by "
        "a killed Patroni agent), re-clone it, then observe again"
    )
    if len(writable) > 1:
        issues = []
        for site in ctx.sites:
            mine = [m for m in writable if m.site == site.name]
            if len(mine) > 1:
                key = f", DCS leader key: {site.dcs.leader}" if site.dcs.leader else ""
                issues.append(
                    block(
                        f"{len(mine)} writable members in {site.name}: {names(mine)} (split brain{key})",
                        fix,
                        site.name,
                        [m.name for m in mine],
                    )
                )
        if not issues:
            listing = ", ".join(f"{m.name} ({m.site})" for m in writable)
            issues.append(
                block(f"writable members in several sites: {listing}", fix, members=[m.name for m in writable])
            )
        return outcome("", issues)
    only = writable[0]
    issues = []
    if unseen:
        issues.append(
            warn(
                f"{only.name} ({only.site}) is the only writable member seen, but {names(unseen)} could not be asked",
                "reach those members to rule out a second primary",
                members=[m.name for m in unseen],
            )
        )
    return outcome(f"{only.name} ({only.site}) is the only writable member", issues)


@check("source-is-primary")
def source_is_primary(ctx: Context) -> Outcome:
    src, dst = ctx.src, ctx.dst
    if ctx.already_moved:
        follower = "" if src.name == dst.name else f" and {src.name} is its standby cluster"
        return outcome(
            "",
            [
                warn(
                    f"{dst.name} is already the primary site{follower}: nothing to move",
                    "nothing to do; to move the primary elsewhere, target another site",
                    dst.name,
                )
            ],
        )
    issues = []
    unknown_fix = "make the site's Patroni REST API or etcd reachable and observe again"
    src_standby = is_standby(src)
    if src_standby is None:
        issues.append(
            block(
                f"cannot tell whether {src.name} is a standby cluster: dynamic config not observed "
                f"({short(src.config_error)})",
                unknown_fix,
                src.name,
            )
        )
    elif src_standby:
        host = (src.standby_cluster or {}).get("host")
        issues.append(
            block(
                f"{src.name} is a standby cluster (follows {host}), not the primary site",
                "name the site that is primary now as the source",
                src.name,
            )
        )
    leader = src.leader
    if leader is None:
        issues.append(
            block(
                f"{src.name} has no leader",
                f"find out why (patronictl list {src.scope}); a site without a leader cannot be demoted",
                src.name,
            )
        )
    else:
        if leader.patroni is None:
            issues.append(
                block(
                    f"{src.name}'s leader {leader.name}: Patroni not observed ({short(leader.patroni_error)})",
                    unknown_fix,
                    src.name,
                    [leader.name],
                )
            )
        elif leader.role != "primary" and not src_standby:
            issues.append(
                block(
                    f"{src.name}'s leader {leader.name} has role {leader.role}, not primary",
                    f"wait until {leader.name} reports role primary",
                    src.name,
                    [leader.name],
                )
            )
        if leader.postgres is None:
            issues.append(
                block(
                    f"{src.name}'s leader {leader.name}: PostgreSQL not observed ({short(leader.postgres_error)})",
                    unknown_fix,
                    src.name,
                    [leader.name],
                )
            )
        elif leader.postgres.in_recovery and not src_standby:
            issues.append(
                block(
                    f"{src.name}'s leader {leader.name} is in recovery (read-only)",
                    f"wait until {leader.name} accepts writes",
                    src.name,
                    [leader.name],
                )
            )
    dst_standby = is_standby(dst)
    if dst_standby is None:
        issues.append(
            block(
                f"cannot tell whether {dst.name} is a standby cluster: dynamic config not observed "
                f"({short(dst.config_error)})",
                unknown_fix,
                dst.name,
            )
        )
    elif not dst_standby:
        issues.append(
            block(
                f"{dst.name} is not a standby cluster (no standby_cluster in its dynamic config)",
                f"make {dst.name} a standby cluster of {src.name} before moving the primary to it",
                dst.name,
            )
        )
    standby_leader = dst.leader
    if standby_leader is None:
        issues.append(
            block(f"{dst.name} has no standby leader", f"find out why (patronictl list {dst.scope})", dst.name)
        )
    elif standby_leader.patroni is None:
        issues.append(
            block(
                f"{dst.name}'s leader {standby_leader.name}: Patroni not observed "
                f"({short(standby_leader.patroni_error)})",
                unknown_fix,
                dst.name,
                [standby_leader.name],
            )
        )
    elif dst_standby and standby_leader.role != "standby_leader":
        issues.append(
            block(
                f"{dst.name}'s leader {standby_leader.name} has role {standby_leader.role}, not standby_leader",
                f"wait until {standby_leader.name} reports standby_leader",
                dst.name,
                [standby_leader.name],
            )
        )
    if not issues:
        assert leader is not None and standby_leader is not None  # each missing one is an issue above
        return outcome(
            f"{src.name} is primary (leader {leader.name}, writable); {dst.name} is a "
            f"standby cluster (standby leader {standby_leader.name})"
        )
    return outcome("", issues)


# --- replication ------------------------------------------------------------------------------


@check("token-readable")
def token_readable(ctx: Context) -> Outcome:
    """The token step reads the source leader's pg_control over SSH right after the demotion;
    observe ran that very command once (same user, privilege path, paths, locale), so a failure
    known now blocks here instead of stalling the run with the source already demoted."""
    if (skip := ctx.not_applicable()) is not None:
        return skip
    leader = ctx.src.leader
    if leader is None:
        return outcome(f"not checked: no leader observed in {ctx.source} (see source-is-primary)")
    where = f"{leader.name} ({ctx.source} leader)"
    fix_ssh = (
        f"fix SSH to {leader.host} (key, known_hosts, user) and that user's way to run commands as "
        "postgres (root: runuser; others: sudo -n -u postgres)"
    )
    facts = leader.host_facts
    if facts is None:
        return outcome(
            "",
            [
                block(
                    f"{where}: pg_controldata could not be run over SSH: {short(leader.host_error)}",
                    fix_ssh,
                    ctx.source,
                    [leader.name],
                )
            ],
        )
    if facts.controldata_error is not None:
        bin_dir = ctx.inventory.sites[ctx.source].postgres.bin_dir
        return outcome(
            "",
            [
                block(
                    f"{where}: the token read (pg_controldata as postgres) failed: {short(facts.controldata_error)}",
                    f"check postgres.bin_dir ({bin_dir}: it must hold pg_controldata) and the member's data_dir "
                    f"in the inventory, and {fix_ssh}",
                    ctx.source,
                    [leader.name],
                )
            ],
        )
    checkpoint = facts.controldata.get("Latest checkpoint location")
    if not checkpoint:
        return outcome(
            "",
            [
                block(
                    f"{where}: pg_controldata printed no 'Latest checkpoint location'",
                    f"check the member's data_dir in the inventory points at {leader.name}'s PostgreSQL data directory",
                    ctx.source,
                    [leader.name],
                )
            ],
        )
    return outcome(
        f"{leader.name}'s pg_control readable the way the token step reads it (latest checkpoint {checkpoint})"
    )


def _standby_host_issue(ctx: Context) -> Issue | None:
    section = (config_of(ctx.dst) or {}).get("standby_cluster") or {}
    hosts = [h.strip() for h in str(section.get("host") or "").split(",") if h.strip()]
    source_hosts = {m.host: m.name for m in ctx.src.members}
    listing = ",".join(source_hosts)
    fix = (
        f"set {ctx.target}'s standby_cluster.host to {listing} (Patroni >= 2.1.3) or a stable "
        f"endpoint of {ctx.source}'s primary, so it follows whichever member is primary"
    )
    if len(hosts) == 1 and hosts[0] in source_hosts:
        return warn(
            f"{ctx.target}'s standby_cluster.host is the single address {hosts[0]} "
            f"({source_hosts[hosts[0]]}): after a leader change in {ctx.source} it follows a "
            "replica ('session is read-only')",
            fix,
            ctx.target,
        )
    missing = [f"{name} ({host})" for host, name in source_hosts.items() if host not in hosts]
    if len(hosts) > 1 and missing:
        return warn(
            f"{ctx.target}'s standby_cluster.host {','.join(hosts)} leaves out {', '.join(missing)}", fix, ctx.target
        )
    return None


@check("target-follows-source-leader")
def target_follows_source_leader(ctx: Context) -> Outcome:
    if skipped := ctx.not_applicable():
        return skipped
    standby, leader = ctx.dst.leader, ctx.src.leader
    issues = []
    recheck = f"check {ctx.target}'s standby_cluster section and its standby leader's log"
    if standby is None or standby.postgres is None:
        who = f"{standby.name}'s PostgreSQL" if standby else "its standby leader"
        issues.append(
            block(
                f"{ctx.target}: {who} not observed: cannot see where it streams from",
                "make it reachable and observe again",
                ctx.target,
            )
        )
    elif (receiver := standby.postgres.wal_receiver) is None:
        issues.append(
            block(
                f"{standby.name} has no WAL receiver: it streams from nowhere",
                recheck + " (slot missing? authentication?)",
                ctx.target,
                [standby.name],
            )
        )
    elif receiver.status != "streaming":
        issues.append(
            block(
                f"{standby.name}'s WAL receiver is {receiver.status}, not streaming (from "
                f"{sender_text(ctx.state, receiver.sender_host, receiver.sender_port)})",
                recheck,
                ctx.target,
                [standby.name],
            )
        )
    elif leader is None:
        issues.append(
            block(
                f"{ctx.source}'s leader is unknown: cannot tell whether {standby.name} follows it",
                "make the source's members reachable and observe again",
                ctx.source,
            )
        )
    elif stray := stray_upstream(ctx.state, ctx.source, ctx.target):
        # Cascading from a replica works; the plan re-points the target before the cut-over.
        issues.append(
            warn(
                f"{standby.name} streams from {ctx.source}'s replica {stray.name} ({stray.host}), "
                f"not from its leader {leader.name} ({leader.host})",
                f"the plan re-points {ctx.target} at every {ctx.source} member first (step "
                f"repoint-target-at-source-leader); by hand: runbooks/standby-follows-replica.md",
                ctx.target,
                [standby.name, stray.name, leader.name],
            )
        )
    elif not streams_from(ctx.state, standby, leader):
        issues.append(
            block(
                f"{standby.name} streams from "
                f"{sender_text(ctx.state, receiver.sender_host, receiver.sender_port)}, not from "
                f"{ctx.source}'s leader {leader.name} ({leader.host})",
                f"re-point {ctx.target} at {leader.name}: a standby cluster that follows a replica "
                f"('session is read-only') leaves slot {ctx.slot_of(ctx.target)} on {leader.name} "
                "inactive; list all source members in standby_cluster.host",
                ctx.target,
                [standby.name, leader.name],
            )
        )
    if host_issue := _standby_host_issue(ctx):
        issues.append(host_issue)
    if issues:
        return outcome("", issues)
    assert standby is not None and leader is not None  # each missing one is an issue above
    section = (config_of(ctx.dst) or {}).get("standby_cluster") or {}
    return outcome(
        f"{standby.name} streams from {ctx.source}'s leader {leader.name} ({leader.host}); "
        f"standby_cluster.host is {section.get('host')}",
        issues,
    )


@check("target-replicas-cascade")
def target_replicas_cascade(ctx: Context) -> Outcome:
    """A replica that does not stream is a warning, not a block: the move does not depend on it,
    and the cascade gate waits for it (or the operator re-clones it) before the demotion."""
    if skipped := ctx.not_applicable():
        return skipped
    standby = ctx.dst.leader
    replicas = [m for m in ctx.dst.members if standby is None or m.name != standby.name]
    if not replicas:
        return outcome(f"{ctx.target} has no replicas")
    if standby is None:
        return outcome(
            "",
            [
                warn(
                    f"{ctx.target} has no standby leader for its replicas to follow",
                    "see source-is-primary",
                    ctx.target,
                )
            ],
        )
    issues = []
    fix = (
        f"check the replica's PostgreSQL log; Patroni re-clones one that cannot follow "
        f"(patronictl reinit {ctx.dst.scope} <member>)"
    )
    for m in replicas:
        receiver = m.postgres.wal_receiver if m.postgres else None
        if m.postgres is None:
            continue  # members-reachable reports it
        if receiver is None or receiver.status != "streaming":
            status = receiver.status if receiver else "absent"
            issues.append(warn(f"{m.name} is not streaming (WAL receiver {status})", fix, ctx.target, [m.name]))
        elif not streams_from(ctx.state, m, standby):
            issues.append(
                warn(
                    f"{m.name} streams from {sender_text(ctx.state, receiver.sender_host)}, not from "
                    f"{ctx.target}'s standby leader {standby.name}",
                    fix,
                    ctx.target,
                    [m.name],
                )
            )
    verb = "streams" if len(replicas) == 1 else "stream"
    return outcome(
        f"{names(replicas)} {verb} from {ctx.target}'s standby leader {standby.name}{unseen_note(replicas)}", issues
    )


def _config_slot_issue(ctx: Context, site: SiteState, slot: str, make: Callable[..., Issue], fix: str) -> Issue | None:
    config = config_of(site)
    if config is None:
        return make(
            f"{site.name}'s dynamic config not observed: cannot tell whether slot {slot} is permanent", fix, site.name
        )
    entry = (config.get("slots") or {}).get(slot)
    if entry is None:
        return make(f"slot {slot} is not a permanent slot in {site.name}'s dynamic config", fix, site.name)
    if isinstance(entry, dict) and entry.get("type", "physical") != "physical":
        return make(
            f"permanent slot {slot} in {site.name}'s dynamic config is {entry.get('type')}, not physical",
            fix,
            site.name,
        )
    return None


@check("slot-for-target")
def slot_for_target(ctx: Context) -> Outcome:
    if skipped := ctx.not_applicable():
        return skipped
    slot, src = ctx.slot_of(ctx.target), ctx.source
    permanent = (
        f"add slots: {{{slot}: {{type: physical}}}} to {src}'s dynamic config "
        f"(patronictl edit-config {ctx.src.scope}); Patroni drops slots it does not know"
    )
    issues = []
    if issue := _config_slot_issue(ctx, ctx.src, slot, block, permanent):
        issues.append(issue)
    wanted = ((config_of(ctx.dst) or {}).get("standby_cluster") or {}).get("primary_slot_name")
    if wanted is not None and wanted != slot:
        issues.append(
            block(
                f"{ctx.target}'s standby_cluster.primary_slot_name is {wanted}, but the inventory "
                f"says {ctx.target} uses slot {slot}",
                f"make sites.{ctx.target}.replication_slot and primary_slot_name agree",
                ctx.target,
            )
        )
    leader = ctx.src.leader
    if leader is None or leader.postgres is None:
        issues.append(
            block(f"{src}'s leader not observed: cannot read slot {slot}", "make it reachable and observe again", src)
        )
        return outcome("", issues)
    found = leader.postgres.slot(slot)
    at = (src, [leader.name])
    if found is None:
        issues.append(
            block(
                f"slot {slot} missing on {src} (leader {leader.name})",
                permanent + f", and check that {ctx.target}'s standby_cluster.primary_slot_name is {slot}",
                *at,
            )
        )
        return outcome("", issues)
    if found.slot_type != "physical":
        issues.append(
            block(
                f"slot {slot} on {src} is {found.slot_type}, not physical",
                f"drop it and let Patroni create the physical slot {slot}",
                *at,
            )
        )
    if found.wal_status == "lost":
        issues.append(
            block(
                f"WAL needed by slot {slot} is no longer on {src} (wal_status lost on {leader.name})",
                f"re-seed the target: re-clone {ctx.target} from {src} (its standby leader can never catch up)",
                *at,
            )
        )
    elif found.wal_status == "unreserved":
        issues.append(
            block(
                f"WAL needed by slot {slot} on {src} is about to be removed (wal_status unreserved on {leader.name})",
                f"let {ctx.target} catch up now or raise max_slot_wal_keep_size on {src}; otherwise re-seed the target",
                *at,
            )
        )
    if not found.active and (stray := stray_upstream(ctx.state, ctx.source, ctx.target)):
        issues.append(
            warn(
                f"slot {slot} on {src} is inactive: {ctx.target} streams from {stray.name}, a replica",
                f"the plan re-points {ctx.target} at {src}'s leader first (step "
                "repoint-target-at-source-leader), which makes the slot active",
                *at,
            )
        )
    elif not found.active:
        issues.append(
            block(
                f"slot {slot} on {src} is inactive: {ctx.target}'s standby leader does not consume it",
                f"check {ctx.target}'s standby_cluster (host list, primary_slot_name {slot}) and its "
                "standby leader's log",
                *at,
            )
        )
    return outcome(
        f"slot {slot} on {src} ({leader.name}) is physical, active, wal_status "
        f"{found.wal_status or 'unknown'}, and permanent in {src}'s config",
        issues,
    )


@check("slot-for-source")
def slot_for_source(ctx: Context) -> Outcome:
    """Absent from the target's config is a warning, not a block: the pre-seed step adds the
    permanent slot (and waits for Patroni to create it) before the demotion needs it."""
    if skipped := ctx.not_applicable():
        return skipped
    slot, dst = ctx.slot_of(ctx.source), ctx.target
    fix = f"the pre-seed step adds it (or add slots: {{{slot}: {{type: physical}}}} to {dst}'s dynamic config now)"
    if issue := _config_slot_issue(ctx, ctx.dst, slot, warn, fix):
        return outcome("", [issue])
    standby = ctx.dst.leader
    if standby is not None and standby.postgres is not None and (standby.postgres.slot(slot) is None):
        return outcome(
            "",
            [
                warn(
                    f"slot {slot} is permanent in {dst}'s config but not yet on {standby.name}",
                    "Patroni creates it within a loop; the pre-seed step waits for it",
                    dst,
                    [standby.name],
                )
            ],
        )
    where = f" (present on {standby.name})" if standby and standby.postgres else ""
    return outcome(f"slot {slot} is permanent in {dst}'s config, ready for {ctx.source} after the move{where}")


@check("replay-lag")
def replay_lag(ctx: Context) -> Outcome:
    if skipped := ctx.not_applicable():
        return skipped
    leader, standby = ctx.src.leader, ctx.dst.leader
    gate = ctx.inventory.gates.max_replay_lag_bytes
    current = leader.postgres.current_lsn if leader and leader.postgres else None
    replayed = standby.postgres.replay_lsn if standby and standby.postgres else None
    if current is None or replayed is None:
        missing = []
        if current is None:
            missing.append(f"{ctx.source} leader's current LSN")
        if replayed is None:
            missing.append(f"{ctx.target} standby leader's replay LSN")
        return outcome(
            "",
            [
                block(
                    f"cannot measure replay lag: no {' and no '.join(missing)}",
                    "make both leaders reachable and observe again",
                )
            ],
        )
    assert leader is not None and standby is not None  # each LSN above was read from its leader
    lag = max(0, current - replayed)  # probes run in parallel: a standby may look ahead
    if lag > gate:
        return outcome(
            "",
            [
                block(
                    f"{standby.name} has replayed to {lsn_text(replayed)}, {size_text(lag)} behind "
                    f"{leader.name} at {lsn_text(current)}: over the {gate}-byte gate",
                    f"wait for {ctx.target} to catch up (disk, network, long queries on {standby.name}) "
                    "or raise gates.max_replay_lag_bytes",
                    ctx.target,
                    [standby.name, leader.name],
                )
            ],
        )
    return outcome(f"{standby.name} replay lag {lag} bytes behind {leader.name} (gate {gate} bytes)")


@check("synchronous-mode")
def synchronous_mode(ctx: Context) -> Outcome:
    config = config_of(ctx.src)
    if config is None:
        return outcome(
            "",
            [
                warn(
                    f"{ctx.source}'s dynamic config not observed: synchronous_mode unknown",
                    "make its REST API reachable and observe again",
                    ctx.source,
                )
            ],
        )
    issues = []
    target_mode = (config_of(ctx.dst) or {}).get("synchronous_mode")
    if sync_mode_on(target_mode) and not ctx.already_moved:
        issues.append(
            warn(
                f"{ctx.target} has synchronous_mode {target_mode}: ignored while it is a standby "
                "cluster, enforced once it is promoted",
                f"make sure {ctx.target} has a replica streaming at promotion",
                ctx.target,
            )
        )
    mode = config.get("synchronous_mode")
    if not sync_mode_on(mode):
        return outcome(f"synchronous_mode off on {ctx.source}", issues)
    strict = truthy(config.get("synchronous_mode_strict"))
    leader = ctx.src.leader
    if leader is None or leader.postgres is None:
        make = block if strict else warn
        issues.append(
            make(
                f"{ctx.source} uses synchronous_mode{' strict' if strict else ''} and its leader's "
                "pg_stat_replication was not observed",
                "make it reachable and observe again",
                ctx.source,
            )
        )
        return outcome("", issues)
    sync = [r.application_name for r in leader.postgres.replication if r.sync_state in ("sync", "quorum")]
    carried = f"the plan carries it to {ctx.target} (in force from its first commit as primary)"
    if strict and not sync:
        # Observed on Patroni 4.1.5: the demotion does not block. Patroni empties
        # synchronous_standby_names before the demote-cluster shutdown, which releases the
        # waiting commits (acknowledged while on the leader only); the catch-up gate then waits
        # for the target to replay them like every other commit.
        issues.append(
            warn(
                f"{ctx.source} has synchronous_mode_strict and no synchronous standby in "
                f"{leader.name}'s pg_stat_replication: its commits wait now; at the demotion Patroni "
                "empties synchronous_standby_names and they are acknowledged with no standby having "
                "them",
                f"bring a synchronous standby back in {ctx.source} before the move (patronictl "
                f"list {ctx.src.scope}), or accept that the target's catch-up is their only copy; " + carried,
                ctx.source,
                [leader.name],
            )
        )
    elif not sync:
        issues.append(
            warn(
                f"{ctx.source} uses synchronous_mode {mode} but {leader.name} has no synchronous "
                "standby: its commits are asynchronous now",
                f"find out why no {ctx.source} replica is synchronous (patronictl list {ctx.src.scope}); {carried}",
                ctx.source,
                [leader.name],
            )
        )
    else:
        local = {m.name for m in ctx.src.members}
        foreign = [name for name in sync if name not in local]
        if foreign:
            issues.append(
                warn(
                    f"{ctx.source}'s synchronous standby is {', '.join(foreign)}, outside "
                    f"{ctx.source} ('*' in synchronous_standby_names when no {ctx.source} replica "
                    "qualifies): every commit waits for the other site",
                    f"bring a {ctx.source} replica back so Patroni names it; {carried}",
                    ctx.source,
                    foreign,
                )
            )
    standbys = ", ".join(sync) or "none"
    return outcome(
        f"{ctx.source} uses synchronous_mode {mode}{' (strict)' if strict else ''} "
        f"with synchronous standby {standbys}; {carried}",
        issues,
    )


@check("nofailover-target")
def nofailover_target(ctx: Context) -> Outcome:
    seen = [m for m in ctx.dst.members if m.patroni is not None]
    if not seen:
        return outcome(
            "",
            [
                warn(
                    f"no {ctx.target} member's Patroni tags observed",
                    "make their REST APIs reachable and observe again",
                    ctx.target,
                )
            ],
        )

    def refuses(m: MemberState) -> bool:
        tags = m.patroni.tags if m.patroni else {}
        return truthy(tags.get("nofailover")) or str(tags.get("failover_priority")) == "0"

    flagged = [m for m in seen if refuses(m)]
    fix = "remove nofailover (and failover_priority: 0) from the tags in patroni.yml and reload"
    if flagged and len(flagged) == len(seen):
        return outcome(
            "",
            [
                block(
                    f"every observed {ctx.target} member has nofailover: {names(flagged)}: none may lead {ctx.target}",
                    fix,
                    ctx.target,
                    [m.name for m in flagged],
                )
            ],
        )
    if flagged:
        return outcome(
            "",
            [
                warn(
                    f"nofailover on {names(flagged)}: {'it' if len(flagged) == 1 else 'they'} never lead {ctx.target}",
                    "fine if intended; otherwise " + fix,
                    ctx.target,
                    [m.name for m in flagged],
                )
            ],
        )
    return outcome(f"no {ctx.target} member has nofailover{unseen_note(ctx.dst.members)}")


# --- versions and settings --------------------------------------------------------------------


@check("patroni-version")
def patroni_version(ctx: Context) -> Outcome:
    older, unknown, versions = [], [], set()
    for m in _all_members(ctx.sites):
        text = reported_patroni_version(m)
        parsed = version_tuple(text)
        if parsed is None:
            unknown.append(m.name)
        elif parsed < GRACEFUL_DEMOTE_MIN_PATRONI:
            older.append(f"{m.name} ({text})")
        else:
            versions.add(str(text))
    issues = []
    if older:
        issues.append(
            warn(
                f"older Patroni on {', '.join(older)}: the pause / clean stop / resume path is used",
                "fine (about 0.1 s more write gap); upgrade to Patroni >= 4.1 for the graceful demote path",
                members=[o.split()[0] for o in older],
            )
        )
    if unknown:
        issues.append(
            warn(
                f"Patroni version unknown on {', '.join(unknown)}",
                "make their REST API (GET /patroni) reachable so the demote path can be chosen",
                members=unknown,
            )
        )
    return outcome(f"Patroni {', '.join(sorted(versions))} on every member: graceful demote path", issues)


@check("rewind-fallback")
def rewind_fallback(ctx: Context) -> Outcome:
    issues = []
    fix = (
        "set postgresql.use_pg_rewind: true and postgresql.parameters.wal_log_hints: on in "
        "the dynamic config (restart needed), so a diverged site is rewound, not re-cloned"
    )
    for site in ctx.involved:
        config = config_of(site)
        if config is None:
            issues.append(warn(f"{site.name}'s dynamic config not observed: use_pg_rewind unknown", fix, site.name))
        elif not truthy((config.get("postgresql") or {}).get("use_pg_rewind")):
            issues.append(warn(f"use_pg_rewind is not true in {site.name}'s dynamic config", fix, site.name))
        for m in observed(site.members):
            hints, sums = setting(m, "wal_log_hints"), setting(m, "data_checksums")
            if truthy(hints) or truthy(sums):
                continue
            if hints is None and sums is None:
                text = f"wal_log_hints and data_checksums not observed on {m.name}"
            else:
                text = f"wal_log_hints {hints or '?'} and data_checksums {sums or '?'} on {m.name}"
            issues.append(warn(text + ": pg_rewind cannot run there", fix, site.name, [m.name]))
    sites = " and ".join(s.name for s in ctx.involved)
    return outcome(
        f"use_pg_rewind true and wal_log_hints or data_checksums on in {sites}"
        f"{unseen_note(_all_members(ctx.involved))}",
        issues,
    )


@check("walsender-headroom")
def walsender_headroom(ctx: Context) -> Outcome:
    """max_wal_senders must exceed the senders in use by at least 2 on both leaders: one for the
    other site's standby leader (or the tool's replication probe), one spare for a re-clone."""
    issues, seen = [], []
    for site in ctx.involved:
        leader = site.leader
        if leader is None or leader.postgres is None:
            issues.append(
                warn(
                    f"cannot count WAL senders on {site.name}'s leader: not observed",
                    "make it reachable and observe again",
                    site.name,
                )
            )
            continue
        limit = int_setting(leader, "max_wal_senders")
        used = len(leader.postgres.replication)
        fix = f"raise max_wal_senders in {site.name}'s dynamic config (postgresql.parameters; needs a restart)"
        if limit is None:
            issues.append(warn(f"max_wal_senders not observed on {leader.name}", fix, site.name, [leader.name]))
            continue
        free, text = limit - used, f"max_wal_senders {limit} on {leader.name} with {used} in use"
        if free <= 0:
            issues.append(block(f"{text}: no free WAL sender", fix, site.name, [leader.name]))
        elif free == 1:
            issues.append(warn(f"{text}: one free, none spare for a re-clone", fix, site.name, [leader.name]))
        seen.append(f"{leader.name} {free} of {limit}")
    return outcome(f"free WAL senders: {', '.join(seen)}", issues)


@check("slot-headroom")
def slot_headroom(ctx: Context) -> Outcome:
    """Patroni creates permanent slots on every member, so each member needs room for the slot of
    the other site; block when a leader that still lacks it has no room, warn otherwise."""
    if skipped := ctx.not_applicable():
        return skipped
    issues, seen = [], []
    for site, other in ((ctx.src, ctx.target), (ctx.dst, ctx.source)):
        needed = ctx.slot_of(other)
        leader = site.leader
        for m, pg in observed_postgres(site.members):
            limit = int_setting(m, "max_replication_slots")
            fix = (
                f"raise max_replication_slots in {site.name}'s dynamic config (postgresql.parameters; needs a restart)"
            )
            if limit is None:
                issues.append(warn(f"max_replication_slots not observed on {m.name}", fix, site.name, [m.name]))
                continue
            used = len(pg.slots)
            seen.append(f"{m.name} {used} of {limit}")
            if used < limit:
                continue
            lacks = pg.slot(needed) is None
            make = block if lacks and leader is not None and m.name == leader.name else warn
            room = f": no room for slot {needed}" if lacks else ": none free"
            issues.append(
                make(f"max_replication_slots {limit} on {m.name} with {used} used{room}", fix, site.name, [m.name])
            )
    return outcome(f"replication slots used: {', '.join(seen)}", issues)


@check("max-slot-wal-keep-size")
def max_slot_wal_keep_size(ctx: Context) -> Outcome:
    members = observed(_all_members(ctx.involved))
    values: dict[str, list[str]] = {}
    for m in members:
        values.setdefault(setting(m, "max_slot_wal_keep_size") or "?", []).append(m.name)
    issues = []
    if unlimited := values.pop("-1", None):
        issues.append(
            warn(
                f"max_slot_wal_keep_size is -1 (unlimited) on {', '.join(unlimited)}: a lagging or "
                "absent standby's slot can fill the disk (a standby site does not advance the other "
                "site's permanent slot)",
                "set max_slot_wal_keep_size in both sites' dynamic config, above the WAL written "
                "during the longest outage to ride out",
                members=unlimited,
            )
        )
    if unknown := values.pop("?", None):
        issues.append(
            warn(
                f"max_slot_wal_keep_size not observed on {', '.join(unknown)}",
                "collect it (pg_settings) and observe again",
                members=unknown,
            )
        )
    listing = "; ".join(f"{value} on {', '.join(where)}" for value, where in values.items())
    return outcome(f"max_slot_wal_keep_size {listing}{unseen_note(_all_members(ctx.involved))}", issues)


@check("logical-slots")
def logical_slots(ctx: Context) -> Outcome:
    issues, found = [], []
    leader = ctx.src.leader
    if leader is None or leader.postgres is None:
        issues.append(
            warn(
                f"cannot list slots on {ctx.source}'s leader: not observed",
                "make it reachable and observe again",
                ctx.source,
            )
        )
    for m, pg in observed_postgres(ctx.src.members):
        found += [f"{s.name} ({m.name})" for s in pg.slots if s.slot_type == "logical"]
    config_slots = (config_of(ctx.src) or {}).get("slots") or {}
    found += [
        f"{name} (permanent in {ctx.source}'s config)"
        for name, entry in config_slots.items()
        if isinstance(entry, dict) and entry.get("type") == "logical"
    ]
    if found:
        issues.append(
            warn(
                f"logical slots on {ctx.source} do not follow to a standby cluster: {', '.join(found)}",
                f"plan to recreate them on {ctx.target} after the move and re-point their consumers "
                "(changes in between must be resynced)",
                ctx.source,
            )
        )
    return outcome(f"no logical slots on {ctx.source}", issues)


@check("archiving")
def archiving(ctx: Context) -> Outcome:
    issues, archiving_members = [], []
    for m, pg in observed_postgres(_all_members(ctx.involved)):
        if (setting(m, "archive_mode") or "off").lower() not in ("on", "always"):
            continue
        archiving_members.append(m.name)
        if pg.archiver_failed_count > 0:
            last = pg.archiver_last_failed_wal
            issues.append(
                warn(
                    f"archiving failed {pg.archiver_failed_count} time(s) on {m.name}"
                    + (f", last on {last}" if last else ""),
                    "check archive_command and the archive's free space; Patroni 4.1 archives the "
                    "shutdown checkpoint's WAL on demotion",
                    m.site,
                    [m.name],
                )
            )
    if archiving_members:
        return outcome(f"archiving without failures on {', '.join(archiving_members)}", issues)
    return outcome("archive_mode off (or not observed) on the source and target members", issues)


@check("watchdog")
def watchdog(ctx: Context) -> Outcome:
    off, modes = [], []
    for m in _all_members(ctx.sites):
        mode = m.host_facts.watchdog_mode if m.host_facts else None
        if mode is None:
            off.append(f"{m.name} (not readable)")
        elif mode.strip().lower() in ("off", "false", "no", "0", ""):
            off.append(m.name)
        else:
            modes.append(f"{m.name} {mode}")
    if off:
        return outcome(
            "",
            [
                warn(
                    f"watchdog off on {', '.join(off)}: a killed Patroni agent with PostgreSQL still "
                    "running leaves two primaries in one site",
                    "set watchdog.mode: required in each member's patroni.yml (with /dev/watchdog)",
                    members=[o.split()[0] for o in off],
                )
            ],
        )
    return outcome(f"watchdog on every member: {', '.join(modes)}")


def _target_position(ctx: Context) -> tuple[int | None, str]:
    """How far the target got, from the best source available: its members' own LSNs when they
    run, else the last position its standby leader wrote to the DCS (/status optime), else
    pg_controldata over SSH. Each is a lower bound of where the target resumes streaming."""
    seen: list[tuple[int, str]] = []
    for m in ctx.dst.members:
        pg = m.postgres
        if pg is not None and pg.in_recovery:
            lsn = max((v for v in (pg.receive_lsn, pg.replay_lsn) if v is not None), default=None)
            if lsn is not None:
                seen.append((lsn, f"{m.name}'s received WAL"))
        elif pg is None and m.host_facts is not None:
            text = m.host_facts.controldata.get("Latest checkpoint location")
            if text and "/" in text:
                seen.append((lsn_value(text), f"{m.name}'s last restartpoint (pg_controldata)"))
    optime = (ctx.dst.dcs.status or {}).get("optime")
    if isinstance(optime, int):
        seen.append((optime, f"{ctx.target}'s last position in its DCS"))
    if not seen:
        return None, ""
    return max(seen)


@check("target-wal-available")
def target_wal_available(ctx: Context) -> Outcome:
    """The WAL the target's standby leader needs next is still on the source: either its slot
    holds it (wal_status not lost), or the oldest segment in the source's pg_wal is not newer
    than the target's position. When it is gone, only a re-seed (a new base backup) helps."""
    if skipped := ctx.not_applicable():
        return skipped
    leader = ctx.src.leader
    slot = ctx.slot_of(ctx.target)
    if leader is None or leader.postgres is None:
        return outcome(
            "",
            [
                warn(
                    f"{ctx.source}'s leader not observed: cannot tell whether the "
                    f"WAL {ctx.target} needs is still there",
                    "make it reachable and observe again",
                    ctx.source,
                )
            ],
        )
    kept = leader.postgres.slot(slot)
    if kept is not None and kept.wal_status != "lost":
        return outcome(
            f"slot {slot} on {leader.name} keeps the WAL {ctx.target} needs (wal_status {kept.wal_status or 'unknown'})"
        )
    oldest = leader.postgres.oldest_wal_lsn
    position, where = _target_position(ctx)
    if oldest is None or position is None:
        missing = "the source's pg_wal" if oldest is None else f"{ctx.target}'s position"
        return outcome(
            "",
            [
                warn(
                    f"slot {slot} does not keep WAL for {ctx.target} and {missing} "
                    "was not observed: cannot tell whether the WAL it needs is still "
                    f"on {ctx.source}",
                    "make both reachable and observe again",
                    ctx.target,
                )
            ],
        )
    if position < oldest:
        return outcome(
            "",
            [
                block(
                    f"WAL needed from LSN {lsn_text(position)} ({where}) no longer on {ctx.source}: "
                    f"the oldest segment in {leader.name}'s pg_wal starts at {lsn_text(oldest)}",
                    f"re-seed {ctx.target}: `migrate plan --dc {ctx.target}` plans it (its members are "
                    f"stopped, their data moved aside, then cloned again from {ctx.source})",
                    ctx.target,
                    [leader.name],
                )
            ],
        )
    return outcome(
        f"{ctx.target} resumes from {lsn_text(position)} ({where}); {leader.name} still has WAL from {lsn_text(oldest)}"
    )


@check("pause-path-reaches-source")
def pause_path_reaches_source(ctx: Context) -> Outcome:
    """The pause / clean stop path waits until every source member reports pause: one whose REST
    API does not answer would make it time out and undo after a full gate, having changed the site
    meanwhile. An unknown version alone already puts the plan on that path, so say it up front."""
    if (na := ctx.not_applicable()) is not None:
        return na
    if graceful_demote_possible(ctx.state, [s.name for s in ctx.involved]):
        return outcome("graceful demote path: no member needs to report pause")
    silent = [m for m in ctx.src.members if m.patroni is None]
    issues = [
        block(
            f"the plan takes the pause / clean stop path, which waits for every {ctx.source} member to "
            f"report pause, and {m.name}'s Patroni REST API does not answer ({short(m.patroni_error)})",
            f"make {m.name}'s REST API answer (start its Patroni, or fix rest_api / its api_url in the "
            "inventory), then run again",
            ctx.source,
            [m.name],
        )
        for m in silent
    ]
    return outcome(f"every {ctx.source} member answers on its REST API, as the pause path needs", issues)


@check("synchronous-mode-target")
def synchronous_mode_target(ctx: Context) -> Outcome:
    """The plan carries the source's synchronous settings to the target; once promoted, the target
    needs streaming replicas to name synchronous. Without them, strict mode makes its commits wait
    until a standby streams ('*' then accepts any, even the other site's standby leader), and
    plain synchronous mode runs asynchronously."""
    if skipped := ctx.not_applicable():
        return skipped
    carry = sync_mode_carry(config_of(ctx.src), config_of(ctx.dst))
    if carry is None:
        return outcome(f"{ctx.source} does not use synchronous_mode: nothing to carry")
    settings = carry["settings"]
    strict = truthy(settings.get("synchronous_mode_strict"))
    needed = int(settings.get("synchronous_node_count") or 1)
    standby = ctx.dst.leader
    replicas = [m for m in ctx.dst.members if standby is None or m.name != standby.name]
    able = [
        m
        for m in replicas
        if m.postgres is not None
        and m.postgres.wal_receiver is not None
        and m.postgres.wal_receiver.status == "streaming"
        and not truthy((m.patroni.tags if m.patroni else {}).get("nosync"))
    ]
    if len(able) >= needed:
        return outcome(
            f"{ctx.target} gets {settings_text(settings)} at the promotion; "
            f"{names(able)} can be its "
            "synchronous standby"
        )
    text = (
        f"{ctx.target} has {len(able)} streaming replica(s) that can be synchronous "
        f"({names(able) or 'none'}), synchronous_node_count needs {needed}"
    )
    if strict:
        text += (
            f": after the promotion, commits on {ctx.target} wait until a standby streams "
            "(the write gap grows by that time)"
        )
    else:
        text += f": {ctx.target} commits asynchronously after the promotion until one streams"
    return outcome(
        "",
        [
            warn(
                text,
                f"bring {ctx.target}'s replicas back to streaming before the move (patronictl list "
                f"{ctx.dst.scope}), or set synchronous_mode_strict: false on {ctx.source} for it",
                ctx.target,
                [m.name for m in replicas],
            )
        ],
    )


@check("orphaned-standby")
def orphaned_standby(ctx: Context) -> Outcome:
    """A member whose Patroni agent does not answer while its PostgreSQL still streams over its
    site's slot (agent killed, PostgreSQL left running): it keeps the slot active on the followed
    site, so the member that took the leader key cannot stream ('replication slot ... is active
    for PID'), and the site falls behind for as long as the orphan lives."""
    issues = []
    for site in ctx.sites:
        if not is_standby(site):
            continue
        slot = ctx.slot_of(site.name)
        for m in site.members:
            receiver = m.postgres.wal_receiver if m.postgres else None
            if (
                m.patroni is not None
                or receiver is None
                or receiver.status != "streaming"
                or (receiver.slot_name != slot)
            ):
                continue
            leader = site.leader
            others = (
                f"; {site.name}'s leader {leader.name} cannot stream"
                if (leader is not None and leader.name != m.name)
                else ""
            )
            issues.append(
                block(
                    f"{m.name}'s Patroni does not answer while its "
                    f"PostgreSQL streams from {sender_text(ctx.state, receiver.sender_host)} over slot "
                    f"{slot}{others}",
                    f"start Patroni on {m.name} (or stop its PostgreSQL), then observe again "
                    "(runbooks/standby-leader-changes.md)",
                    site.name,
                    [m.name],
                )
            )
    return outcome("no standby member streams without its Patroni agent", issues)


# --- running them -----------------------------------------------------------------------------

CHECK_IDS: tuple[str, ...] = tuple(check_id for check_id, _ in CHECKS)


def _finding(check_id: str, result: Outcome) -> Finding:
    if not result.issues:
        return Finding(check=check_id, verdict=Verdict.OK, finding=one_line(result.ok))
    issues = sorted(result.issues, key=lambda i: -_SEVERITY[i.verdict])  # stable: blocks first
    sites = {i.site for i in issues}
    return Finding(
        check=check_id,
        verdict=issues[0].verdict,
        finding=one_line("; ".join(i.text for i in issues)),
        fix=one_line("; ".join(dict.fromkeys(i.fix for i in issues))),
        site=sites.pop() if len(sites) == 1 else None,
        members=tuple(dict.fromkeys(m for i in issues for m in i.members)),
    )


def _run_one(check_id: str, function: CheckFunction, ctx: Context) -> Finding:
    try:
        return _finding(check_id, function(ctx))
    except Exception as exc:  # noqa: BLE001 - one odd snapshot must not hide the other findings
        return Finding(
            check=check_id,
            verdict=Verdict.BLOCK,
            finding=one_line(f"the check could not read this snapshot: {type(exc).__name__}: {exc}"),
            fix="report this as a bug in migrator, with the snapshot (migrate status --json)",
        )


def run_checks(inventory: Inventory, state: ServiceState, source: str, target: str) -> list[Finding]:
    """One Finding per id in CHECK_IDS, in that order. Raises UsageError only for a site that
    is not in both the inventory and the snapshot; never for what the snapshot contains.
    source == target is allowed: it is how "the target is already primary" arrives."""
    for role, name in (("source", source), ("target", target)):
        if name not in inventory.sites or name not in state.sites:
            raise UsageError(
                f"{role} site '{name}' is not in the inventory and the snapshot; sites: {', '.join(inventory.sites)}"
            )
    ctx = Context(inventory, state, source, target)
    return [_run_one(check_id, function, ctx) for check_id, function in CHECKS]


def worst(findings: Iterable[Finding]) -> Verdict:
    """The most severe verdict among `findings` (OK when there are none)."""
    return max((f.verdict for f in findings), key=_SEVERITY.__getitem__, default=Verdict.OK)
