"""Preflight checks of the topology: every member reachable, the DCS quorum, pause, one lineage,
unique names, one writer, the source is the primary site, the pause path reaches the source."""

from __future__ import annotations

from migrator.checks.base import (
    Context,
    Outcome,
    all_members,
    block,
    check,
    cluster_members,
    config_of,
    is_standby,
    names,
    outcome,
    short,
    unseen_note,
    warn,
)
from migrator.model.state import MemberState
from migrator.rules.patroni_version import graceful_demote_possible


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
    count = len(all_members(ctx.sites))
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
    everyone = all_members(ctx.sites)
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
        reported |= {str(e.get("name")) for e in cluster_members(site) if e.get("name")}
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
    unseen = [m for m in all_members(ctx.sites) if m.postgres is None]
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
