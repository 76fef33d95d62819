"""Preflight checks of synchronous replication: it moves with the primary role
(rules/sync_mode.py), and no target member is kept from being promoted."""

from __future__ import annotations

from migrator.checks.base import Context, Outcome, block, check, config_of, names, outcome, truthy, unseen_note, warn
from migrator.model.state import MemberState
from migrator.rules.sync_mode import settings_text, sync_mode_carry, sync_mode_on


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
