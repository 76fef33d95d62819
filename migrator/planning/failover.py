"""Pure: the failover plan (`migrate plan --failover`, `migrate failover`) from what answered.

Facts in, steps out (pyinfra style): the observed snapshot (an unreachable member is data there),
the inventory, the target, the members the operator says are fenced, and whether data loss is
accepted. Out: per source member what answered, how it will be fenced, what the no-loss proof can
say now, why the failover would be refused, and the engine plan (fence, prove, promote, verify).

The order is the safety argument: every source member is fenced before anything is promoted; the
token (the highest shutdown checkpoint among the fenced members) is read after the stop; the target
is promoted only once it has replayed past it, unless a gap was accepted explicitly.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from migrator.errors import UsageError
from migrator.model.failover import FENCE_MARKER, FailoverPlan, Fence, MemberReach, Proof
from migrator.model.inventory import Inventory
from migrator.model.plan import Plan, PlanGate, PlanStep, PlanUndo
from migrator.model.state import MemberState, ServiceState, SiteState, lsn_text, lsn_value
from migrator.planning.hooks import plan_hooks
from migrator.planning.seed_config import member_command
from migrator.planning.switchover import _finish, standby_cluster_following, topology_before
from migrator.rules.trust import insecure_ssh_sites, insecure_transport_warnings

# pg_controldata states after a clean stop (a standby shut down cleanly says "in recovery").
SHUT_DOWN = ("shut down", "shut down in recovery")
PLAYBOOK = "failover"


def source_of(inventory: Inventory, target: str) -> str:
    others = [name for name in inventory.sites if name != target]
    if len(others) != 1:
        raise UsageError(
            f"--dc {target}: a failover needs exactly one other site to fail over from, the inventory has "
            f"{len(others)} ({', '.join(others) or 'none'})"
        )
    return others[0]


def _first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0][:160] if text and text.strip() else text


def member_reach(member: MemberState) -> MemberReach:
    facts = member.host_facts
    control = facts.controldata if facts is not None else {}
    checkpoint = control.get("Latest checkpoint location")
    timeline = control.get("Latest checkpoint's TimeLineID")
    ssh_error = member.host_error or (facts.controldata_error if facts is not None else None)
    return MemberReach(
        name=member.name,
        host=member.host,
        rest=_first_line(member.patroni_error) if member.patroni is None else None,
        postgres=_first_line(member.postgres_error) if member.postgres is None else None,
        ssh=_first_line(ssh_error) if facts is None or ssh_error else None,
        role=member.role,
        writable=None if member.postgres is None else member.writable,
        control_state=control.get("Database cluster state"),
        checkpoint=lsn_value(checkpoint) if checkpoint and "/" in checkpoint else None,
        checkpoint_timeline=int(timeline) if timeline and timeline.isdigit() else None,
    )


def fence_of(reach: MemberReach, fenced: set[str], hook: bool) -> Fence:
    if reach.name in fenced:
        return Fence(member=reach.name, method="operator", detail="fenced by the operator (--fenced)")
    if reach.ssh is None:
        return Fence(
            member=reach.name,
            method="ssh",
            detail="over SSH: stop Patroni (stop_command), pg_ctl stop -m fast, disable_command if set, fence marker",
        )
    if hook:
        return Fence(member=reach.name, method="hook", detail=f"hooks.fence (SSH does not answer: {reach.ssh})")
    why = "; ".join(f"{what}: {err}" for what, err in (("SSH", reach.ssh), ("REST", reach.rest)) if err)
    return Fence(member=reach.name, method="unfenced", detail=f"cannot be reached ({why})")


def _target_leader(site: SiteState) -> MemberState | None:
    leaders = [m for m in site.members if m.role == "standby_leader"]
    return leaders[0] if len(leaders) == 1 else None


def proof_now(members: Iterable[MemberReach], fences: Iterable[Fence], leader: MemberState | None) -> Proof:
    """What the proof can say before anything is touched. Final only when every member that will
    be fenced over SSH is shut down already; else the token is read after the stop."""
    by_name = {f.member: f for f in fences}
    members = list(members)
    readable = [m for m in members if by_name[m.name].method == "ssh"]
    unread = tuple(m.name for m in members if by_name[m.name].method != "ssh")
    target = leader.name if leader else None
    replayed = leader.postgres.replay_lsn if leader and leader.postgres else None
    if not readable:
        return Proof(
            status="unknown",
            summary="loss unknown: no source member's pg_control can be read (none answers over SSH)",
            target_member=target,
            target_replayed=replayed,
            unread=unread,
        )
    running = [m.name for m in readable if m.control_state not in SHUT_DOWN]
    if running:
        return Proof(
            status="after-fencing",
            summary=(
                f"the token is read from the pg_control of {', '.join(m.name for m in readable)} once stopped "
                f"({', '.join(running)} still running); {target or 'the target'} has replayed {lsn_text(replayed)}"
            ),
            target_member=target,
            target_replayed=replayed,
            unread=unread,
        )
    return judge(
        {m.name: (m.checkpoint, m.checkpoint_timeline) for m in readable if m.checkpoint is not None},
        target,
        replayed,
        unread,
    )


def judge(
    checkpoints: dict[str, tuple[int | None, int | None]],
    target: str | None,
    replayed: int | None,
    unread: tuple[str, ...],
) -> Proof:
    """The proof from the fenced members' shutdown checkpoints and the target's replay: pure, used
    by the plan and by the prove step alike."""
    known = {name: lsn for name, (lsn, _) in checkpoints.items() if lsn is not None}
    if not known:
        return Proof(
            status="unknown",
            summary="loss unknown: no fenced member's pg_control shows a shutdown checkpoint",
            target_member=target,
            target_replayed=replayed,
            unread=tuple(sorted(set(unread) | set(checkpoints))),
        )
    token_member = max(known, key=lambda name: known[name])
    token = known[token_member]
    not_read = f"; not proven for {', '.join(unread)} (pg_control not read)" if unread else ""
    if replayed is not None and replayed > token:
        return Proof(
            status="lossless",
            summary=(
                f"lossless: {target} replayed {lsn_text(replayed)}, past the token {lsn_text(token)} "
                f"({token_member}'s shutdown checkpoint){not_read}"
            ),
            token=token,
            token_member=token_member,
            target_member=target,
            target_replayed=replayed,
            unread=unread,
        )
    start = replayed or 0
    holders = tuple(sorted(name for name, lsn in known.items() if lsn >= start))
    gap = token - start
    return Proof(
        status="gap",
        summary=(
            f"gap: {target or 'the target'} lacks WAL {lsn_text(replayed)} .. {lsn_text(token)} ({gap} bytes "
            f"before the shutdown checkpoint), held by {', '.join(holders)}{not_read}"
        ),
        token=token,
        token_member=token_member,
        target_member=target,
        target_replayed=replayed,
        gap_bytes=gap,
        holders=holders,
        unread=unread,
    )


def _blocked(
    state: ServiceState,
    source: str,
    target: str,
    members: list[MemberReach],
    fences: list[Fence],
    proof: Proof,
    accept_data_loss: bool,
    leader: MemberState | None,
) -> list[str]:
    lines = []
    target_site = state.sites[target]
    if target_site.dcs.error or not target_site.dcs.healthy:
        lines.append(
            f"{target}'s etcd does not answer ({_first_line(target_site.dcs.error) or 'unhealthy'}): the lock and the "
            f"promotion need it; bring {target}'s etcd back first"
        )
    if not target_site.is_standby_cluster and target_site.dynamic_config is not None:
        lines.append(
            f"{target} is not a standby cluster (no standby_cluster in its dynamic config): nothing to promote"
        )
    if leader is None:
        lines.append(f"{target} has no standby leader answering: the member to promote is not known")
    for fence in fences:
        if fence.method == "unfenced":
            lines.append(
                f"{fence.member} {fence.detail} and so may still take writes: fence it by other means and pass "
                f"--fenced {fence.member}, or configure hooks.fence"
            )
    for member in members:
        fence = next(f for f in fences if f.member == member.name)
        if fence.method == "operator" and member.writable:
            lines.append(
                f"--fenced {member.name}, but its PostgreSQL answers and takes writes: it is not fenced; stop it "
                "or leave it to the SSH fence"
            )
    if proof.status in ("gap", "unknown") and not accept_data_loss:
        lines.append(f"{proof.summary}: promoting would lose it; only with --accept-data-loss")
    return lines


def _step(
    step_id: str,
    phase: str,
    kind: str,
    title: str,
    args: dict[str, Any],
    timeout: float | None,
    wait_for: str | None,
    manual: tuple[str, ...],
    write_unavailable: bool,
) -> PlanStep:
    gate = PlanGate(wait_for=wait_for, timeout_seconds=timeout) if wait_for and timeout else None
    return PlanStep(
        id=step_id,
        phase=phase,
        kind=kind,
        title=title,
        args=args,
        gate=gate,
        undo=PlanUndo(kind="none", description="a fence is never undone by the tool (reattach)"),
        manual=manual,
        write_unavailable=write_unavailable,
    )


def steps_for(
    inventory: Inventory,
    state: ServiceState,
    source: str,
    target: str,
    fences: list[Fence],
    leader: str | None,
    accept_data_loss: bool,
) -> tuple[PlanStep, ...]:
    site = inventory.site(source)
    gates = inventory.gates
    steps: list[PlanStep] = []
    source_state = state.sites[source]
    if source_state.dcs.healthy and not source_state.dcs.error and source_state.dynamic_config is not None:
        section = standby_cluster_following(inventory, source, target)
        steps.append(
            _step(
                f"fence-config-{source}",
                "fence",
                "fence_source_config",
                f"{source}'s dynamic config gets standby_cluster -> {target} (its DCS answers: the graceful fence)",
                {"site": source, "standby_cluster": section},
                gates.connect_timeout_seconds * 6,
                f"{source}'s config to show standby_cluster",
                (
                    f"patronictl -c <patroni.yml of a {source} member> edit-config --force "
                    f"-s standby_cluster.host={section.get('host')} -s standby_cluster.port={section.get('port')}",
                ),
                True,
            )
        )
    for fence in fences:
        member = next(m for m in site.members if m.name == fence.member)
        ssh = site.ssh_for(member)
        data_dir = site.data_dir_for(member)
        config = site.patroni_config_for(member)
        marker = f"{config.rsplit('/', 1)[0] or '/'}/{FENCE_MARKER}"
        stop = member_command(site.patroni.stop_command, member)
        disable = member_command(site.patroni.disable_command, member) if site.patroni.disable_command else None
        manual = {
            "ssh": (
                f"ssh -p {ssh.port} {ssh.user}@{ssh.host} {shlex.quote(stop)}",
                f"ssh -p {ssh.port} {ssh.user}@{ssh.host} "
                f"'runuser -u postgres -- {site.postgres.bin_dir}/pg_ctl stop -D {data_dir} -m fast -w'",
                f"ssh -p {ssh.port} {ssh.user}@{ssh.host} {shlex.quote(disable or 'systemctl disable patroni')}",
                f"ssh -p {ssh.port} {ssh.user}@{ssh.host} 'touch {marker}'",
                f"ssh -p {ssh.port} {ssh.user}@{ssh.host} "
                f"'runuser -u postgres -- {site.postgres.bin_dir}/pg_controldata {data_dir}'",
            ),
            "operator": (f"# {fence.member}: confirm it is powered off or cut off (the operator's --fenced)",),
            "hook": (f"MIGRATOR_FENCE_MEMBER={fence.member} MIGRATOR_FENCE_HOST={member.host} <hooks.fence>",),
            "unfenced": (f"# {fence.member}: fence it by other means, then --fenced {fence.member}",),
        }[fence.method]
        steps.append(
            _step(
                f"fence-{fence.member}",
                "fence",
                "fence_member",
                f"fence {fence.member}: {fence.detail}",
                {
                    "site": source,
                    "member": fence.member,
                    "host": member.host,
                    "method": fence.method,
                    "stop_command": stop,
                    "disable_command": disable,
                    "bin_dir": site.postgres.bin_dir,
                    "data_dir": data_dir,
                    "marker": marker,
                },
                gates.promote_timeout_seconds,
                f"{fence.member} to be stopped (no postmaster) and its pg_control read",
                manual,
                True,
            )
        )
    fence_ids = [s.id for s in steps if s.kind == "fence_member"]
    steps.append(
        _step(
            "prove",
            "prove",
            "prove_failover",
            f"token = highest shutdown checkpoint of the fenced {source} members; {target}'s standby leader "
            "replays past it (or the gap is stated)",
            {
                "source": source,
                "site": target,
                "member": leader,
                "fences": fence_ids,
                "accept_data_loss": accept_data_loss,
            },
            gates.catchup_timeout_seconds,
            f"{target} to replay what it received, past the token",
            (f"psql -h <{target} standby leader> -Atc 'SELECT pg_last_wal_replay_lsn(), pg_last_wal_receive_lsn()'",),
            True,
        )
    )
    steps.append(
        _step(
            f"promote-{target}",
            "promote",
            "promote_failover",
            f"{target}'s dynamic config loses standby_cluster: Patroni promotes its standby leader",
            {"site": target, "leader": leader, "proof_from": "prove"},
            gates.promote_timeout_seconds,
            f"{target} to have one writer on a new timeline forked at the proven point",
            (f"patronictl -c <patroni.yml of a {target} member> edit-config --force -s standby_cluster=null",),
            True,
        )
    )
    steps.append(
        _step(
            "verify",
            "verify",
            "verify_failover",
            f"exactly one writable member, in {target}; no {source} member writable",
            {"site": target, "source": source},
            gates.connect_timeout_seconds * 6,
            f"one writer in {target}, none in {source}",
            (f"curl -s <each {target} member's api_url>/patroni",),
            False,
        )
    )
    return tuple(steps)


def plan_failover(
    inventory: Inventory,
    state: ServiceState,
    target: str,
    fenced: Iterable[str] = (),
    accept_data_loss: bool = False,
) -> FailoverPlan:
    source = source_of(inventory, target)
    fenced = set(fenced)
    names = {m.name for m in inventory.site(source).members}
    if unknown := sorted(fenced - names):
        raise UsageError(f"--fenced {unknown[0]}: not a member of {source} (its members: {', '.join(sorted(names))})")
    hook = bool(getattr(inventory.hooks, "fence", None))
    # The members that lead last: a replica stopped first cannot be promoted by its site when the
    # primary's Patroni stops (a stopped Patroni hands its leader key over at once).
    members = sorted(
        (member_reach(m) for m in state.sites[source].members),
        key=lambda m: m.role in ("primary", "standby_leader") or m.writable is True,
    )
    fences = [fence_of(m, fenced, hook) for m in members]
    leader = _target_leader(state.sites[target])
    proof = proof_now(members, fences, leader)
    blocked = _blocked(state, source, target, members, fences, proof, accept_data_loss, leader)
    steps = steps_for(inventory, state, source, target, fences, leader.name if leader else None, accept_data_loss)
    before = topology_before(inventory, state, None)
    plan = _finish(
        Plan(
            service=inventory.service,
            playbook=PLAYBOOK,
            source=source,
            target=target,
            observed_at=state.observed_at,
            graceful_demote=False,
            executable=not blocked,
            topology_before=before,
            topology_after=before,
            config_before={},
            config_after={},
            config_diff={},
            steps=steps,
            hooks=plan_hooks(inventory.hooks, steps),
            insecure_ssh_sites=insecure_ssh_sites(inventory),
            insecure_transport=insecure_transport_warnings(inventory),
            fingerprint="",
        )
    )
    return FailoverPlan(
        service=inventory.service,
        source=source,
        target=target,
        observed_at=state.observed_at,
        dcs={
            name: (None if s.dcs.healthy and not s.dcs.error else (_first_line(s.dcs.error) or "unhealthy"))
            for name, s in state.sites.items()
        },
        members=tuple(members),
        fences=tuple(fences),
        proof=proof,
        blocked=tuple(blocked),
        accept_data_loss=accept_data_loss,
        plan=plan,
    )
