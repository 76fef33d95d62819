"""The seeding plan: build the target's standby cluster from nothing, up to a healthy cascade.

Pure, like the planner: (inventory, snapshot, seed playbook, switchover playbook, target,
findings) -> Plan. The cut-over is not part of it: once the target runs, `migrate execute`
observes again and plans the switchover on the real, seeded topology.
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

from migrator.model.findings import Finding, blocking
from migrator.model.inventory import Inventory
from migrator.model.plan import MemberView, Plan, SiteView
from migrator.model.playbook import Playbook
from migrator.model.state import ServiceState
from migrator.planning.seed_config import bootstrap_dcs, member_command, render_member_config
from migrator.planning.switchover import (
    _finish,
    _Resolver,
    build_context,
    config_diff,
    standby_cluster_following,
    topology_before,
)
from migrator.rules.patroni_version import graceful_demote_possible
from migrator.rules.trust import insecure_ssh_sites, insecure_transport_warnings
from migrator.steps.kinds import declared

# Phases of the seeding plan, in order: the seed playbook's, then the switchover's that follow.
SEED_PHASES = ("wipe", "preflight", "seed", "pre-seed", "cascade")
TAKEN_FROM_SWITCHOVER = ("pre-seed", "cascade")


def _seed_context(inventory: Inventory, source: str, target: str, dcs: dict[str, Any], reseed: bool) -> dict[str, Any]:
    site = inventory.site(target)
    configs, members = [], []
    for index, member in enumerate(site.members):
        # The member started first makes the one copy that crosses sites (see _predicted_target).
        crosses_sites = index == 0
        configs.append(
            {
                "member": member.name,
                "path": site.patroni_config_for(member),
                "text": render_member_config(inventory, source, target, member, dcs, crosses_sites=crosses_sites),
            }
        )
        ssh = site.ssh_for(member)
        members.append(
            {
                "name": member.name,
                "host": member.host,
                "api_url": member.api_url,
                "ssh": ssh.for_manual_commands(),
                "data_dir": site.data_dir_for(member),
                "start_command": member_command(site.patroni.start_command, member),
                "stop_command": member_command(site.patroni.stop_command, member),
            }
        )
    return {
        "configs": configs,
        "leader": members[0],
        "replicas": members[1:],
        "members": members,
        "reseed": reseed,
        # pg_basebackup --max-rate of the one inter-site copy (None: not limited).
        "cross_site_max_rate": site.patroni.basebackup_max_rate,
    }


def _predicted_target(context: dict[str, Any]) -> None:
    """Patroni makes the member started alone first the standby leader: name it in the steps."""
    target = context["target"]
    first = target["members"][0]
    target["leader"] = first["name"]
    target["leader_member"] = first
    target["replicas"] = [m["name"] for m in target["members"][1:]]


def _topology_after(before: dict[str, SiteView], source: str, target: str, leader: str) -> dict[str, SiteView]:
    after = {name: view.model_copy(update={"predicted": True}) for name, view in before.items()}
    view = before[target]
    after[target] = SiteView(
        name=target,
        scope=view.scope,
        role="standby",
        follows=source,
        leader=leader,
        leader_note="the member started first",
        predicted=True,
        replicas=tuple(m.name for m in view.members if m.name != leader),
        timelines=before[source].timelines,
        members=tuple(
            MemberView(name=m.name, host=m.host, role="standby_leader" if m.name == leader else "replica")
            for m in view.members
        ),
    )
    return after


def _file_diffs(configs: list[dict[str, str]]) -> dict[str, str]:
    """Each patroni.yml to write, as a diff from nothing (passwords as placeholders), so that
    every report shows the files beside the dynamic config changes."""
    diffs = {}
    for entry in configs:
        lines = difflib.unified_diff(
            [],
            entry["text"].splitlines(),
            fromfile="/dev/null",
            tofile=f"{entry['member']}:{entry['path']}",
            lineterm="",
        )
        diffs[f"{entry['member']} patroni.yml"] = "\n".join(lines) + "\n"
    return diffs


def seed_plan(
    inventory: Inventory,
    state: ServiceState,
    seed: Playbook,
    switchover: Playbook,
    source: str,
    target: str,
    findings: list[Finding],
    reseed: bool = False,
) -> Plan:
    """With `reseed`, the target has a cluster that can never stream again: its members are
    stopped and their data moved aside first (the seed playbook's wipe step)."""
    source_config = dict(state.sites[source].dynamic_config or {})
    dcs = bootstrap_dcs(inventory, source, target, source_config)
    source_standby_cluster = standby_cluster_following(inventory, source, target)
    graceful = graceful_demote_possible(state, [source])
    context = build_context(inventory, state, source, target, source_standby_cluster, graceful)
    _predicted_target(context)
    context["seed"] = _seed_context(inventory, source, target, dcs, reseed)
    # A site being built follows the source's host list from its first start and has no dynamic
    # config of its own to carry synchronous settings into: the later cut-over plan does both.
    context["target_repoint"] = None
    context["sync_mode_carry"] = None

    steps = [s for s in (_Resolver(seed, context).step(spec) for spec in seed.steps) if s]
    taken = {s.id for s in steps}
    resolver = _Resolver(switchover, context)
    for spec in switchover.steps:
        if spec.phase in TAKEN_FROM_SWITCHOVER and spec.id not in taken:
            resolved = resolver.step(spec)
            if resolved is not None:
                steps.append(resolved)

    primary = state.sites[source].leader
    primary_lsn = primary.postgres.current_lsn if primary and primary.postgres else None
    before = topology_before(inventory, state, primary_lsn)
    configs_before = {name: dict(state.sites[name].dynamic_config or {}) for name in inventory.sites}
    configs_after = copy.deepcopy(configs_before)
    slots = dict(configs_after[source].get("slots") or {})
    slots.setdefault(inventory.site(target).replication_slot or target, {"type": "physical"})
    configs_after[source]["slots"] = slots
    configs_after[target] = dcs
    return _finish(
        Plan(
            service=inventory.service,
            playbook=seed.name,
            source=source,
            target=target,
            observed_at=state.observed_at,
            graceful_demote=graceful,
            findings=tuple(findings),
            executable=not blocking(list(findings)),
            topology_before=before,
            topology_after=_topology_after(before, source, target, context["target"]["leader"]),
            config_before=configs_before,
            config_after=configs_after,
            config_diff={
                **{name: config_diff(name, configs_before[name], configs_after[name]) for name in inventory.sites},
                **_file_diffs(context["seed"]["configs"]),
            },
            steps=tuple(steps),
            write_unavailability=None,
            insecure_ssh_sites=insecure_ssh_sites(inventory),
            insecure_transport=insecure_transport_warnings(inventory),
            fingerprint="",
        )
    )


def seed_files(plan: Plan) -> list[dict[str, str]]:
    """The patroni.yml files a seeding plan writes (passwords as placeholders), for reports."""
    for step in plan.steps:
        found = declared(step.kind)
        if found is not None and found.writes_member_configs:
            return list(step.args.get("files") or [])
    return []
