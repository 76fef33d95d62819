"""The reattach plan: make the old primary site (after any failover) a standby cluster of the new one.

Pure: (inventory, snapshot, the new primary's timeline history, the reattach playbook) -> Plan.
Each old-site member is judged on its pg_control (read over SSH by the observer while it is
stopped) against the new primary's timeline history, the way Patroni judges a member before it
follows a new leader (patroni/postgresql/rewind.py):

- follows cleanly: it is on the new primary's timeline, or on an older timeline of its history and
  its WAL ends before the point where the new primary left that timeline (the fork);
- diverged: it has WAL past the fork on the old timeline (commits the new primary never got). The
  range [fork, its last checkpoint / minimum recovery point] is stated; the member is rewound
  (pg_rewind, possible when wal_log_hints is on or data checksums are) or, when neither is, its
  data directory is moved aside (never deleted) and Patroni re-clones it.
"""

from __future__ import annotations

import copy
import posixpath
from dataclasses import dataclass
from typing import Any, Literal

from migrator.model.failover import FENCE_MARKER  # removed once the member streams again
from migrator.model.findings import Finding, Verdict, blocking
from migrator.model.inventory import Inventory
from migrator.model.plan import Plan, SiteView
from migrator.model.playbook import Playbook
from migrator.model.state import MemberState, ServiceState, lsn_text, lsn_value
from migrator.planning.seed_config import member_command
from migrator.planning.switchover import (
    _finish,
    _Resolver,
    build_context,
    config_diff,
    standby_cluster_following,
    topology_before,
)
from migrator.rules.trust import insecure_ssh_sites, insecure_transport_warnings

Action = Literal["follow", "rewind", "reclone", "running"]
CLEAN_STATES = ("shut down", "shut down in recovery", "in archive recovery")


@dataclass(frozen=True)
class MemberVerdict:
    """What one old-site member needs before Patroni may start it as a standby."""

    member: str
    action: Action
    reason: str
    timeline: int | None = None
    lsn: int | None = None  # its last checkpoint (primary) or minimum recovery point (standby)
    fork: int | None = None  # where the new primary left the member's timeline
    diverged_from: int | None = None
    diverged_to: int | None = None  # None: the end of its WAL is not known (not shut down cleanly)

    @property
    def diverged(self) -> bool:
        return self.action in ("rewind", "reclone")

    def range_text(self) -> str:
        """`0/5000000..0/5001200 (4608 bytes)` or `from 0/5000000 (end unknown)`; "" when none."""
        if not self.diverged:
            return ""
        if self.diverged_from is None and self.diverged_to is None:
            return "none (re-cloned on request)"
        start = lsn_text(self.diverged_from) if self.diverged_from is not None else "an unknown fork"
        if self.diverged_to is None:
            return f"from {start} (end unknown: not shut down cleanly)"
        if self.diverged_from is None:
            return f"up to {lsn_text(self.diverged_to)} on another history"
        return f"{start}..{lsn_text(self.diverged_to)} ({self.diverged_to - self.diverged_from} bytes)"

    def as_args(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "timeline": self.timeline,
            "lsn": lsn_text(self.lsn) if self.lsn is not None else None,
            "fork": lsn_text(self.fork) if self.fork is not None else None,
            "diverged_from": lsn_text(self.diverged_from) if self.diverged_from is not None else None,
            "diverged_to": lsn_text(self.diverged_to) if self.diverged_to is not None else None,
            "diverged_bytes": (
                self.diverged_to - self.diverged_from
                if self.diverged_to is not None and self.diverged_from is not None
                else None
            ),
            "diverged_range": self.range_text(),
        }


# --- the new primary's timeline history -------------------------------------------------------


def parse_history(text: str) -> list[tuple[int, int]]:
    """(parent timeline, switch point) per line of a .history file; comments and blanks skipped.
    A line that is not `<tli>\\t<X/Y>\\t<reason>` is skipped too: the text is network data."""
    entries = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].isdigit():
            continue
        try:
            entries.append((int(parts[0]), lsn_value(parts[1])))
        except ValueError:
            continue
    return entries


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _lsn(value: str | None) -> int | None:
    try:
        return lsn_value(value) if value else None
    except ValueError:
        return None


def _can_rewind(controldata: dict[str, str]) -> bool:
    hints = controldata.get("wal_log_hints setting", "").lower() == "on"
    checksums = controldata.get("Data page checksum version", "0") not in ("0", "")
    return hints or checksums


def member_verdict(
    member: str, controldata: dict[str, str], history: list[tuple[int, int]], primary_timeline: int
) -> MemberVerdict:
    """Judge one stopped member by its pg_control against the new primary's history (the same
    positions Patroni uses: the minimum recovery point of a standby, the last checkpoint of a
    primary)."""
    state = controldata.get("Database cluster state", "")
    in_recovery = False
    lsn: int | None
    timeline: int | None
    if state in ("shut down in recovery", "in archive recovery"):
        in_recovery = True
        lsn = _lsn(controldata.get("Minimum recovery ending location"))
        timeline = _int(controldata.get("Min recovery ending loc's timeline"))
        if not lsn or not timeline:  # it was a primary when it stopped
            in_recovery = False
    if not in_recovery:
        lsn = _lsn(controldata.get("Latest checkpoint location"))
        timeline = _int(controldata.get("Latest checkpoint's TimeLineID"))
    clean = state in CLEAN_STATES
    if lsn is None or timeline is None:
        raise ValueError(f"{member}: pg_control has no readable checkpoint or timeline (state {state or 'unknown'})")
    fix: Action = "rewind" if _can_rewind(controldata) else "reclone"
    how = "" if fix == "rewind" else " (neither wal_log_hints nor data checksums: no pg_rewind)"
    at = f"timeline {timeline} at {lsn_text(lsn)}"
    if timeline == primary_timeline:
        return MemberVerdict(member, "follow", f"on the new primary's timeline ({at})", timeline, lsn)
    fork = next((switch for parent, switch in history if parent == timeline), None)
    if fork is None:
        return MemberVerdict(
            member,
            fix,
            f"its {at} is not on the new primary's history (timeline {primary_timeline}){how}",
            timeline,
            lsn,
            diverged_to=lsn,
        )
    if not clean:
        # WAL may go past the last checkpoint: only pg_rewind (which runs crash recovery first)
        # or a re-clone can tell or repair it.
        return MemberVerdict(
            member,
            fix,
            f"not shut down cleanly ({state}); its WAL after {at} may pass the fork {lsn_text(fork)}{how}",
            timeline,
            lsn,
            fork,
            diverged_from=fork,
            diverged_to=None,
        )
    ahead = lsn > fork if in_recovery else lsn >= fork
    if not ahead:
        return MemberVerdict(
            member, "follow", f"{at}, before the fork {lsn_text(fork)}: follows cleanly", timeline, lsn, fork
        )
    return MemberVerdict(
        member,
        fix,
        f"{at} is past the fork {lsn_text(fork)}: it has WAL the new primary never got{how}",
        timeline,
        lsn,
        fork,
        diverged_from=fork,
        diverged_to=lsn,
    )


# --- findings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReattachJudgement:
    findings: list[Finding]
    verdicts: list[MemberVerdict]
    noop_reason: str | None = None


def _member_running(member: MemberState) -> bool:
    return member.patroni is not None or member.postgres is not None


def _forced_reclone(verdict: MemberVerdict) -> MemberVerdict:
    """The operator asked for a re-clone (`--reclone`): a clean member's data is set aside too."""
    if verdict.action == "reclone":
        return verdict
    return MemberVerdict(
        verdict.member,
        "reclone",
        f"re-clone asked (--reclone); {verdict.reason}",
        verdict.timeline,
        verdict.lsn,
        verdict.fork,
        verdict.diverged_from,
        verdict.diverged_to,
    )


def judge(
    inventory: Inventory,
    state: ServiceState,
    old: str,
    new: str,
    history_text: str | None,
    history_error: str | None,
    reclone: frozenset[str] = frozenset(),
) -> ReattachJudgement:
    """Every finding of a reattach plan, and each old-site member's verdict; `reclone` names the
    members to re-clone whatever their verdict (e.g. after a failed rewind)."""
    findings: list[Finding] = []
    old_state, new_state = state.sites[old], state.sites[new]
    old_site = inventory.site(old)
    stop_hint = member_command(old_site.patroni.stop_command, old_site.members[0]).replace(
        old_site.members[0].name, "<member>"
    )

    # The new primary site: a writable leader, no standby_cluster.
    leader = new_state.leader
    old_is_primary = not old_state.is_standby_cluster and any(m.writable for m in old_state.members)
    if new_state.is_standby_cluster or leader is None or not leader.writable:
        findings.append(
            Finding(
                check="reattach-new-primary",
                verdict=Verdict.BLOCK,
                site=new,
                finding=f"{new} is not a writable primary site (it has no writable leader, or is a standby cluster)"
                + (f"; {old} still takes writes: nothing was failed over" if old_is_primary else ""),
                fix=f"promote {new} first (`migrate failover --dc {new}`), then reattach {old}",
            )
        )
    else:
        findings.append(
            Finding(
                check="reattach-new-primary",
                verdict=Verdict.OK,
                site=new,
                finding=f"{new} is primary: {leader.name} takes writes on timeline "
                f"{leader.postgres.timeline if leader.postgres else '?'}",
            )
        )

    # The old site's DCS must answer: standby_cluster is written there before any Patroni starts.
    if old_state.dcs.error or not old_state.dcs.healthy:
        findings.append(
            Finding(
                check="reattach-old-dcs",
                verdict=Verdict.BLOCK,
                site=old,
                finding=f"{old}'s etcd does not answer ({old_state.dcs.error or 'unhealthy'})",
                fix=f"bring {old}'s etcd back first; nothing of {old} may start before its DCS says standby_cluster",
            )
        )
    elif old_state.dcs.config is None:
        findings.append(
            Finding(
                check="reattach-old-dcs",
                verdict=Verdict.BLOCK,
                site=old,
                finding=f"{old}'s etcd holds no config key for scope {old_state.scope}",
                fix=f"re-seed {old} instead: `migrate plan --dc {old}` proposes it",
            )
        )

    # Already done: the old site follows the new one, every member running as a standby.
    following = (old_state.standby_cluster or {}).get("host")
    wanted = standby_cluster_following(inventory, old, new)
    if following == wanted["host"] and all(
        m.role in ("standby_leader", "replica") and not m.writable for m in old_state.members
    ):
        return ReattachJudgement(findings, [], noop_reason=f"{old} is already a standby cluster of {new}")

    writers = [m.name for m in old_state.members if m.writable or m.role == "primary"]
    if writers:
        findings.append(
            Finding(
                check="reattach-old-not-writable",
                verdict=Verdict.BLOCK,
                site=old,
                members=tuple(writers),
                finding=f"{', '.join(writers)} of {old} runs as a writable primary",
                fix=f"a site that takes writes is never reattached; if {new} is the primary now, stop it at once "
                f"(`{stop_hint}`, then `pg_ctl stop -m fast`): see runbooks/reattach.md",
            )
        )
    running = [m.name for m in old_state.members if _member_running(m) and m.name not in writers]
    if running and following != wanted["host"]:
        findings.append(
            Finding(
                check="reattach-old-stopped",
                verdict=Verdict.BLOCK,
                site=old,
                members=tuple(running),
                finding=f"{', '.join(running)} of {old} runs, but {old}'s DCS does not say standby_cluster yet",
                fix=f"stop Patroni there (`{stop_hint}`), then reattach",
            )
        )

    primary_timeline = leader.postgres.timeline if leader is not None and leader.postgres else None
    history = parse_history(history_text or "")
    if primary_timeline is not None and primary_timeline > 1 and history_text is None:
        findings.append(
            Finding(
                check="reattach-history",
                verdict=Verdict.BLOCK,
                site=new,
                finding=f"the timeline history of {new}'s primary cannot be read ({history_error or 'no answer'})",
                fix="the fork point decides rewinds: make the primary's pg_wal/*.history readable by the superuser",
            )
        )

    new_sysid = new_state.system_identifier
    verdicts: list[MemberVerdict] = []
    for member in old_state.members:
        if member.name in writers:
            continue
        if member.name in running:
            verdicts.append(MemberVerdict(member.name, "running", "runs already, as a standby"))
            continue
        facts = member.host_facts
        control = facts.controldata if facts else {}
        if not control or (facts and facts.controldata_error):
            why = member.host_error or (facts.controldata_error if facts else None) or "no output"
            findings.append(
                Finding(
                    check="reattach-pg-control",
                    verdict=Verdict.BLOCK,
                    site=old,
                    members=(member.name,),
                    finding=f"{member.name}: its pg_control cannot be read over SSH ({why})",
                    fix="fix SSH to the host (inventory ssh keys), or move its data directory aside by hand",
                )
            )
            continue
        sysid = control.get("Database system identifier")
        if new_sysid and sysid and sysid != new_sysid:
            findings.append(
                Finding(
                    check="reattach-same-cluster",
                    verdict=Verdict.BLOCK,
                    site=old,
                    members=(member.name,),
                    finding=f"{member.name} holds another cluster (system identifier {sysid}, {new} has {new_sysid})",
                    fix=f"check the inventory; a foreign cluster is never rewound: re-seed {old}",
                )
            )
            continue
        if primary_timeline is None:
            continue
        try:
            verdict = member_verdict(member.name, control, history, primary_timeline)
        except ValueError as exc:
            findings.append(
                Finding(
                    check="reattach-pg-control",
                    verdict=Verdict.BLOCK,
                    site=old,
                    members=(member.name,),
                    finding=str(exc),
                    fix="move its data directory aside by hand (never delete it); Patroni re-clones it",
                )
            )
            continue
        if member.name in reclone:
            verdict = _forced_reclone(verdict)
        verdicts.append(verdict)
        if verdict.diverged and verdict.diverged_from is None and verdict.diverged_to is None:
            findings.append(
                Finding(
                    check="reattach-member",
                    verdict=Verdict.OK,
                    site=old,
                    members=(member.name,),
                    finding=f"{member.name}: {verdict.reason}; its data directory is moved aside and re-cloned",
                )
            )
        elif verdict.diverged:
            what = "rewound (pg_rewind)" if verdict.action == "rewind" else "moved aside and re-cloned"
            findings.append(
                Finding(
                    check="reattach-diverged",
                    verdict=Verdict.WARN,
                    site=old,
                    members=(member.name,),
                    finding=f"{member.name} diverged: WAL {verdict.range_text()} is not in {new} "
                    f"({verdict.reason}); it will be {what}",
                    fix="those changes were never on the new primary: see runbooks/reattach.md, 'diverged range'",
                )
            )
        else:
            findings.append(
                Finding(
                    check="reattach-member",
                    verdict=Verdict.OK,
                    site=old,
                    members=(member.name,),
                    finding=f"{member.name}: {verdict.reason}",
                )
            )
    disable = getattr(old_site.patroni, "disable_command", None)  # set by `migrate failover`'s inventory key
    if disable and verdicts and not old_site.patroni.enable_command:
        findings.append(
            Finding(
                check="reattach-service-disabled",
                verdict=Verdict.WARN,
                site=old,
                finding=f"a failover fence may have run `{disable}` on {old}'s members: the start command still "
                "starts Patroni now, but not after a reboot",
                fix=f"re-enable Patroni for boots on each {old} member once it streams "
                "(e.g. `systemctl enable patroni`)",
            )
        )
    if verdicts and all(v.action == "reclone" for v in verdicts):
        findings.append(
            Finding(
                check="reattach-all-recloned",
                verdict=Verdict.WARN,
                site=old,
                finding=f"every {old} member is re-cloned: the first clones {new} over its slot, the others it",
            )
        )
    return ReattachJudgement(findings, verdicts)


# --- the plan ---------------------------------------------------------------------------------


def _start_order(verdicts: list[MemberVerdict]) -> list[MemberVerdict]:
    """Members with data first (the first one started becomes the standby leader); re-cloned ones
    last, so they clone the standby leader, not the other site."""
    rank = {"running": 0, "follow": 1, "rewind": 2, "reclone": 3}
    return sorted(verdicts, key=lambda v: rank[v.action])


def _members_context(inventory: Inventory, old: str, verdicts: list[MemberVerdict]) -> list[dict[str, Any]]:
    site = inventory.site(old)
    by_name = {m.name: m for m in site.members}
    out = []
    for verdict in _start_order(verdicts):
        member = by_name[verdict.member]
        out.append(
            {
                "name": member.name,
                "host": member.host,
                "api_url": member.api_url,
                "ssh": site.ssh_for(member).for_manual_commands(),
                "data_dir": site.data_dir_for(member),
                "bin_dir": site.postgres.bin_dir,
                "start_command": member_command(site.patroni.start_command, member),
                "enable_command": (
                    member_command(site.patroni.enable_command, member) if site.patroni.enable_command else None
                ),
                "fence_marker": posixpath.join(posixpath.dirname(site.patroni_config_for(member)), FENCE_MARKER),
                "stop_command": member_command(site.patroni.stop_command, member),
                **verdict.as_args(),
            }
        )
    return out


def _topology_after(before: dict[str, SiteView], old: str, new: str, first: str | None) -> dict[str, SiteView]:
    after = {name: view.model_copy(update={"predicted": True}) for name, view in before.items()}
    view = before[old]
    after[old] = view.model_copy(
        update={
            "role": "standby",
            "follows": new,
            "leader": first,
            "leader_note": "the member started first" if first else None,
            "replicas": tuple(m.name for m in view.members if m.name != first),
            "predicted": True,
            "members": tuple(
                m.model_copy(update={"role": "standby_leader" if m.name == first else "replica", "writable": False})
                for m in view.members
            ),
        }
    )
    return after


def reattach_plan(
    inventory: Inventory,
    state: ServiceState,
    playbook: Playbook,
    old: str,
    new: str,
    judgement: ReattachJudgement,
) -> Plan:
    """`old` (the failed-over site) becomes a standby cluster of `new` (the primary now)."""
    section = standby_cluster_following(inventory, old, new)
    context = build_context(inventory, state, new, old, section, graceful_demote=True)
    members = _members_context(inventory, old, judgement.verdicts)
    context["reattach"] = {
        "standby_cluster": section,
        "members": members,
        "diverged": [m for m in members if m["action"] in ("rewind", "reclone")],
        # Patroni clones an empty standby site only without an initialize key (it waits for a
        # leader otherwise): removed only when no member keeps its data.
        "forget_initialize": bool(members) and all(m["action"] == "reclone" for m in members),
    }
    findings = judgement.findings
    noop = judgement.noop_reason
    steps = [] if noop else [s for s in (_Resolver(playbook, context).step(spec) for spec in playbook.steps) if s]

    leader = state.sites[new].leader
    primary_lsn = leader.postgres.current_lsn if leader and leader.postgres else None
    before = topology_before(inventory, state, primary_lsn)
    # An old site whose Patroni is stopped: the observer reads its config from the DCS key.
    configs_before = {name: dict(state.sites[name].dynamic_config or {}) for name in inventory.sites}
    configs_after = copy.deepcopy(configs_before)
    if not noop:
        slot = inventory.site(old).replication_slot or old
        slots = dict(configs_after[new].get("slots") or {})
        slots.setdefault(slot, {"type": "physical"})
        configs_after[new]["slots"] = slots
        configs_after[old]["standby_cluster"] = section
        configs_after[old].pop("pause", None)  # the same write resumes a paused site (as a standby)
    first = members[0]["name"] if members else None
    return _finish(
        Plan(
            service=inventory.service,
            playbook=playbook.name,
            source=new,
            target=old,
            observed_at=state.observed_at,
            noop_reason=noop,
            graceful_demote=True,
            findings=tuple(findings),
            executable=not blocking(findings),
            topology_before=before,
            topology_after=before if noop else _topology_after(before, old, new, first),
            config_before=configs_before,
            config_after=configs_after,
            config_diff={
                name: config_diff(name, configs_before[name], configs_after[name]) for name in inventory.sites
            },
            steps=tuple(steps),
            write_unavailability=None,
            insecure_ssh_sites=insecure_ssh_sites(inventory),
            insecure_transport=insecure_transport_warnings(inventory),
            fingerprint="",
        )
    )


def diverged_summary(steps_args: list[dict[str, Any]]) -> list[str]:
    """One line per diverged member, for the run's outcome and report."""
    lines = []
    for m in steps_args:
        if m.get("action") == "reclone" and not m.get("diverged_from") and not m.get("diverged_to"):
            lines.append(f"{m['name']} re-cloned on request (its old data moved aside)")
        elif m.get("action") in ("rewind", "reclone"):
            what = "rewound" if m["action"] == "rewind" else "re-cloned (its old data moved aside)"
            lines.append(f"{m['name']} diverged: WAL {m.get('diverged_range')} never reached the new primary; {what}")
    return lines


def reattach_playbook() -> Playbook:
    from migrator.model.playbook import PLAYBOOK_DIR, load_playbook

    return load_playbook(PLAYBOOK_DIR / "reattach.yml")


def observe_and_plan_reattach(inventory: Inventory, old: str, reclone: tuple[str, ...] = ()) -> Plan:
    """Observe every site (the old site's pg_control over SSH with it), read the new primary's
    timeline history, and plan `old`'s reattachment to the one other site that is primary."""
    from migrator.errors import UsageError
    from migrator.observe.observer import observe
    from migrator.observe.reattach_facts import primary_history

    names = [m.name for m in inventory.site(old).members]
    for name in reclone:
        if name not in names:
            raise UsageError(f"--reclone {name}: not a member of {old} (its members: {', '.join(names)})")
    others = [name for name in inventory.sites if name != old]
    state = observe(inventory)
    primaries = [name for name in others if any(m.writable for m in state.sites[name].members)]
    if len(others) == 1:
        new = others[0]
    elif len(primaries) == 1:
        new = primaries[0]
    else:
        raise UsageError(f"cannot tell which site {old} should follow: {len(primaries)} other sites take writes")
    history_text, history_error = primary_history(inventory, state, new)
    judgement = judge(inventory, state, old, new, history_text, history_error, frozenset(reclone))
    return reattach_plan(inventory, state, reattach_playbook(), old, new, judgement)
