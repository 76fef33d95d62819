"""Seeding an empty target site: is there nothing there yet, and is it safe to build it?

`needs_seed` decides from the snapshot alone. `observe_seed` (migrator/observe/seed_facts.py) asks
what the snapshot does not hold (each target host's data directory and free disk over SSH, the
source's WAL size), read-only. `seed_findings` is pure: the refusals of the seeding plan, one
Finding each, and the checks of the switchover that still make sense while the target has no
cluster.
"""

from __future__ import annotations

from migrator.checks import truthy
from migrator.model.findings import Finding, Verdict
from migrator.model.inventory import Inventory
from migrator.model.state import SeedFacts, ServiceState, SiteState

# Switchover checks that hold for a source with an empty target; the others look at the target's
# cluster, which does not exist yet (their place is taken by the seed checks below).
# (system-identifier too: seed-target-dcs and seed-target-data-dir say it for the target.)
KEPT_CHECKS = (
    "dcs-quorum",
    "paused",
    "single-writer",
    "unique-member-names",
    "slot-headroom",
    "max-slot-wal-keep-size",
    "logical-slots",
    "archiving",
)


def needs_seed(state: ServiceState, target: str) -> bool:
    """No target member's Patroni answers, the target's DCS holds no member and no leader, and
    it is not a stopped site of this very lineage (that one is restarted, or re-seeded when the
    WAL it needs is gone: see `needs_reseed`)."""
    site = state.sites[target]
    if any(m.patroni is not None for m in site.members) or site.dcs.members or site.dcs.leader:
        return False
    primary = state.primary_site
    lineage = _source_system_identifier(primary) if primary is not None else None
    return not (lineage is not None and site.dcs.initialize == lineage)


def needs_reseed(findings: list[Finding]) -> Finding | None:
    """The blocking finding that says the target can never stream again (its WAL is gone)."""
    return next((f for f in findings if f.check == "target-wal-available" and f.verdict is Verdict.BLOCK), None)


def reseed_findings(
    inventory: Inventory,
    state: ServiceState,
    facts: SeedFacts,
    source: str,
    target: str,
    switchover_findings: list[Finding],
    reason: Finding,
) -> list[Finding]:
    """A re-seed moves the target's data aside and clears its DCS keys first, so those two
    refusals do not apply; the reason for the re-seed is kept as a warning."""
    found = [
        f
        for f in seed_findings(inventory, state, facts, source, target, switchover_findings)
        if f.check not in ("seed-target-data-dir", "seed-target-dcs")
    ]
    # A missing slot is usually how the WAL came to be gone; the re-seed creates it again, so its
    # blocking finding is not kept, but its words are (`migrate check` shows this finding).
    slot = next((f for f in switchover_findings if f.check == "slot-for-target" and f.verdict is Verdict.BLOCK), None)
    causes = "; ".join(f.finding for f in (reason, slot) if f is not None)
    why = Finding(
        check="reseed-target",
        verdict=Verdict.WARN,
        site=target,
        finding=f"{target} cannot stream from {source} any more: {causes}",
        fix=f"this plan re-seeds {target}: its members are stopped, their data directories "
        f"moved aside (kept), its DCS keys removed, then it is cloned again from {source}",
    )
    return [why] + found


# --- findings (pure) ----------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def _ok(check: str, text: str) -> Finding:
    return Finding(check=check, verdict=Verdict.OK, finding=text)


def _block(check: str, text: str, fix: str, site: str, members: list[str] | None = None) -> Finding:
    return Finding(check=check, verdict=Verdict.BLOCK, finding=text, fix=fix, site=site, members=tuple(members or ()))


def _source_primary(state: ServiceState, source: str) -> Finding:
    primary = state.primary_site
    if primary is None or primary.name != source or primary.leader is None:
        return _block(
            "seed-source-primary",
            f"{source} is not the one primary site",
            "seed only from a healthy primary site (migrate status)",
            source,
        )
    leader = primary.leader
    return _ok("seed-source-primary", f"{source} is primary (leader {leader.name}, writable)")


def _source_system_identifier(src: SiteState) -> str | None:
    leader = src.leader
    return leader.postgres.system_identifier if leader and leader.postgres else None


def _data_dirs(facts: SeedFacts, target: str, lineage: str | None) -> Finding:
    check = "seed-target-data-dir"
    for host in facts.hosts:
        if host.error:
            return _block(
                check,
                f"{host.member}: cannot look at {host.data_dir} over SSH: {host.error}",
                f"fix SSH to {host.member} (key, known_hosts, user)",
                target,
                [host.member],
            )
        if host.entries and host.system_identifier != lineage:
            what = (
                f"a cluster with system identifier {host.system_identifier}"
                if host.system_identifier
                else f"{host.entries} entries but no PostgreSQL cluster"
            )
            return _block(
                check,
                f"data directory {host.data_dir} on {host.member} is not empty and not of "
                f"this lineage ({what}; the source's is {lineage})",
                f"move it aside on {host.member} (mv {host.data_dir} {host.data_dir}.old) or set "
                f"sites.{target}.postgres.data_dir to an empty place",
                target,
                [host.member],
            )
    reused = [h.member for h in facts.hosts if h.entries]
    note = f"; {', '.join(reused)} hold a copy of this lineage, which Patroni reuses" if reused else ""
    return _ok(check, f"every {target} data directory is empty or absent{note}")


def _dcs(dst: SiteState, target: str, lineage: str | None, namespace: str) -> Finding:
    check = "seed-target-dcs"
    dcs = dst.dcs
    where = f"{target}'s etcd ({', '.join(dcs.endpoints)})"
    if not dcs.healthy:
        return _block(
            check,
            f"{where} is not healthy: {dcs.error}",
            f"start {target}'s etcd first: Patroni needs it to bootstrap",
            target,
        )
    if dcs.initialize and dcs.initialize != lineage:
        return _block(
            check,
            f"{where} already holds a different cluster under scope {dst.scope} "
            f"(system identifier {dcs.initialize}; the source's is {lineage})",
            f"if that cluster is really gone, remove its keys (patronictl remove {dst.scope}), or "
            f"give {target} another scope",
            target,
        )
    if dcs.config is not None or dcs.initialize:
        return _block(
            check,
            f"{where} holds keys of scope {dst.scope} but no member runs (left over from an earlier cluster)",
            f"remove them (patronictl remove {dst.scope}, or etcdctl del --prefix "
            f"{namespace}{dst.scope}/) and plan again",
            target,
        )
    return _ok(check, f"{where} holds nothing under scope {dst.scope}")


def _disk(state: ServiceState, facts: SeedFacts, source: str, target: str) -> Finding:
    check = "seed-target-disk"
    leader = state.sites[source].leader
    size = leader.postgres.database_size_bytes if leader and leader.postgres else None
    if size is None or facts.source_wal_bytes is None:
        return _block(
            check,
            f"cannot measure {source}'s size: {facts.source_error or 'not observed'}",
            f"make {source}'s leader reachable and plan again",
            source,
        )
    need = size + facts.source_wal_bytes
    short = [(h, h.free_bytes) for h in facts.hosts if h.free_bytes is not None and h.free_bytes < need]
    unknown = [h.member for h in facts.hosts if h.free_bytes is None and not h.error]
    if short:
        h, free_bytes = short[0]
        return _block(
            check,
            f"not enough disk on {h.member} for {h.data_dir}: {_size(free_bytes)} free, "
            f"{source} needs {_size(need)} (databases {_size(size)} + WAL {_size(facts.source_wal_bytes)})",
            f"free or add space on {h.member} (df -h {h.data_dir}), or put the data directory on a bigger file system",
            target,
            [h.member for h, _ in short],
        )
    if unknown:
        return _block(
            check,
            f"free disk unknown on {', '.join(unknown)}",
            "make df work over SSH on those hosts and plan again",
            target,
            unknown,
        )
    # A host SSH failed on has no free size: seed-target-data-dir blocks with its error.
    free = ", ".join(
        f"{h.member} {_size(h.free_bytes) if h.free_bytes is not None else 'not measured'}" for h in facts.hosts
    )
    return _ok(check, f"{source} needs {_size(need)}; free: {free}")


def _rewind(src: SiteState, source: str) -> Finding:
    check = "seed-rewind-fallback"
    config = src.dynamic_config or {}
    if not truthy((config.get("postgresql") or {}).get("use_pg_rewind")):
        return _ok(check, f"use_pg_rewind is off in {source}'s config: no rewind fallback planned")
    leader = src.leader
    settings = leader.postgres.settings if leader and leader.postgres else {}
    hints, sums = settings.get("wal_log_hints"), settings.get("data_checksums")
    if leader is not None and (truthy(hints) or truthy(sums)):
        return _ok(check, f"use_pg_rewind with wal_log_hints {hints} / data_checksums {sums} on {leader.name}")
    return _block(
        check,
        f"{source} plans use_pg_rewind as the fallback but {leader.name if leader else 'its leader'} "
        f"has wal_log_hints {hints or '?'} and data_checksums {sums or '?'}: the seeded copy could "
        "never be rewound",
        f"set postgresql.parameters.wal_log_hints: on in {source}'s dynamic config and restart "
        f"its members (patronictl restart {src.scope}), then seed",
        source,
    )


def seed_findings(
    inventory: Inventory,
    state: ServiceState,
    facts: SeedFacts,
    source: str,
    target: str,
    switchover_findings: list[Finding],
) -> list[Finding]:
    src, dst = state.sites[source], state.sites[target]
    lineage = _source_system_identifier(src)
    kept = [f for f in switchover_findings if f.check in KEPT_CHECKS]
    # The seeding refusals first: the first blocking finding is the one-line error.
    return [
        _source_primary(state, source),
        _data_dirs(facts, target, lineage),
        _dcs(dst, target, lineage, inventory.site(target).namespace),
        _disk(state, facts, source, target),
        _rewind(src, source),
    ] + kept
