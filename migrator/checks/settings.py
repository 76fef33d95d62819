"""Preflight checks of versions and settings: Patroni version (the demotion path), rewind fallback,
walsender and slot headroom, max_slot_wal_keep_size, logical slots, archiving, watchdog."""

from __future__ import annotations

from migrator.checks.base import (
    Context,
    Outcome,
    all_members,
    block,
    check,
    config_of,
    int_setting,
    observed,
    observed_postgres,
    outcome,
    setting,
    truthy,
    unseen_note,
    warn,
)
from migrator.rules.patroni_version import GRACEFUL_DEMOTE_MIN_PATRONI, version_tuple
from migrator.rules.patroni_version import patroni_version as reported_patroni_version


@check("patroni-version")
def patroni_version(ctx: Context) -> Outcome:
    older, unknown, versions = [], [], set()
    for m in all_members(ctx.sites):
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
        f"use_pg_rewind true and wal_log_hints or data_checksums on in {sites}{unseen_note(all_members(ctx.involved))}",
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
    members = observed(all_members(ctx.involved))
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
    return outcome(f"max_slot_wal_keep_size {listing}{unseen_note(all_members(ctx.involved))}", issues)


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
    for m, pg in observed_postgres(all_members(ctx.involved)):
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
    for m in all_members(ctx.sites):
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
