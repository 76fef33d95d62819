"""Preflight checks of replication: the token can be read, the target follows the source's leader
and its replicas cascade, the permanent slots both ways, replay lag, the WAL the target needs,
no standby streaming without its Patroni."""

from __future__ import annotations

from collections.abc import Callable

from migrator.checks.base import (
    Context,
    Issue,
    Outcome,
    block,
    check,
    config_of,
    is_standby,
    names,
    outcome,
    sender_text,
    short,
    size_text,
    streams_from,
    unseen_note,
    warn,
)
from migrator.model.state import SiteState, lsn_text, lsn_value
from migrator.rules.upstream import stray_upstream


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
