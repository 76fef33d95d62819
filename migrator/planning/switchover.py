"""The planner: (inventory, observed snapshot, playbook, target, findings) -> Plan. Pure.

No network, no clock, no environment: the same inputs always give the same Plan, so it is tested
with plain data (pyinfra style). The only files it reads are the project's own templates, once
per process (cached). Secret values are never read: the context handed to the playbook holds
user names, hosts, ports and paths only.
"""

from __future__ import annotations

import copy
import difflib
import io
import json
from functools import lru_cache
from typing import Any, Literal

from jinja2 import TemplateError, Undefined
from ruamel.yaml import YAML

from migrator.adapters.remote import prefix_for
from migrator.errors import InventoryError, PreflightError, UsageError
from migrator.model.findings import Finding, Verdict, blocking
from migrator.model.inventory import Inventory, Member, Site
from migrator.model.plan import (
    MemberView,
    Plan,
    PlanGate,
    PlanStep,
    PlanUndo,
    SiteView,
    WriteUnavailability,
    fingerprint_of,
)
from migrator.model.playbook import (
    TEMPLATE_DIR,
    Playbook,
    PlaybookError,
    StepSpec,
    compile_expression,
    compile_template,
)
from migrator.model.state import MemberState, ServiceState, SiteState
from migrator.model.yaml_problems import quick_load
from migrator.planning.hooks import plan_hooks
from migrator.planning.yaml_block import block_yaml
from migrator.rules.patroni_version import graceful_demote_possible, patroni_version
from migrator.rules.sync_mode import configs_with_sync_mode_carried, sync_mode_carry
from migrator.rules.trust import insecure_ssh_sites, insecure_transport_warnings
from migrator.rules.upstream import common_pg_port, target_repoint

NO_LEADER = "(no leader observed)"
SOURCE_LEADER_AFTER = "decided by Patroni at demotion"

# Write-unavailability measured on the testbed (docs/architecture.md, "Patroni behaviour"): last commit on the source to
# first commit on the target.
GRACEFUL_GAP_SECONDS = 0.3  # Patroni 4.1.5, PATCH standby_cluster: 0.28-0.39 s
PAUSE_STOP_GAP_SECONDS = 0.4  # Patroni 3.3.11, pause + pg_ctl stop: 0.40-0.42 s


# --- standby_cluster --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _standby_cluster_template() -> Any:
    text = (TEMPLATE_DIR / "standby_cluster.yml.j2").read_text(encoding="utf-8")
    return compile_template(text)


def render_standby_cluster_text(
    follow_hosts: list[str],
    port: int,
    slot: str,
    *,
    restore_command: str | None = None,
    recovery_min_apply_delay: str | int | None = None,
) -> str:
    """The YAML text of a `standby_cluster` section (with the `standby_cluster:` key)."""
    if not follow_hosts:
        raise InventoryError("standby_cluster: the followed site has no members")
    return _standby_cluster_template().render(
        follow_hosts=follow_hosts,
        port=port,
        slot=slot,
        restore_command=restore_command,
        recovery_min_apply_delay=recovery_min_apply_delay,
    )


def render_standby_cluster(
    follow_hosts: list[str],
    port: int,
    slot: str,
    *,
    restore_command: str | None = None,
    recovery_min_apply_delay: str | int | None = None,
) -> dict[str, Any]:
    """The `standby_cluster` section as a mapping (rendered from the template, parsed back)."""
    text = render_standby_cluster_text(
        follow_hosts,
        port,
        slot,
        restore_command=restore_command,
        recovery_min_apply_delay=recovery_min_apply_delay,
    )
    # quick_load's per-thread loader: a fresh YAML instance's first load costs a few ms per plan.
    parsed = quick_load(text)
    if parsed is None:  # not plain data after all: ruamel's own types, then the JSON round trip below
        parsed = YAML(typ="safe", pure=True).load(text)
    section = parsed["standby_cluster"]
    return json.loads(json.dumps(section))  # plain dict/list/str/int


def standby_cluster_following(inventory: Inventory, follower: str, followed: str) -> dict[str, Any]:
    """The section `follower` needs to replicate from `followed`: every member host of
    `followed` (survives its in-site switchovers), its one port, the follower's own slot."""
    follower_site, followed_site = inventory.site(follower), inventory.site(followed)
    return render_standby_cluster(
        [m.host for m in followed_site.members],
        common_pg_port(followed, followed_site),
        follower_site.replication_slot or follower,
        # Not in the inventory schema yet; picked up as soon as Site grows these fields.
        restore_command=getattr(follower_site, "restore_command", None),
        recovery_min_apply_delay=getattr(follower_site, "recovery_min_apply_delay", None),
    )


# --- configs and diffs ------------------------------------------------------------------------


def _sorted_deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _sorted_deep(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [_sorted_deep(v) for v in value]
    return value


def yaml_text(value: dict[str, Any]) -> str:
    if not value:
        return ""
    ordered = _sorted_deep(value)
    quick = block_yaml(ordered)  # the same text, written directly when the config is simple
    if quick is not None:
        return quick
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(ordered, out)
    return out.getvalue()


def config_diff(site: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    """Unified diff of a site's dynamic config, as YAML with sorted keys; "" when unchanged."""
    lines = difflib.unified_diff(
        yaml_text(before).splitlines(),
        yaml_text(after).splitlines(),
        fromfile=f"{site} dynamic config (observed)",
        tofile=f"{site} dynamic config (planned)",
        lineterm="",
    )
    text = "\n".join(lines)
    return text + "\n" if text else ""


def _with_slot(config: dict[str, Any], slot: str) -> dict[str, Any]:
    slots = config.get("slots") or {}
    if slot not in slots:
        config["slots"] = {**slots, slot: {"type": "physical"}}
    return config


def configs_after(
    inventory: Inventory,
    state: ServiceState,
    source: str,
    target: str,
    source_standby_cluster: dict[str, Any],
) -> dict[str, dict[str, Any]]:
    """Each site's dynamic config after the switchover (other sites unchanged)."""
    after = {name: copy.deepcopy(_dynamic_config(state, name)) for name in inventory.sites}
    target_config = after[target]
    target_config.pop("standby_cluster", None)
    _with_slot(target_config, inventory.site(source).replication_slot or source)
    source_config = after[source]
    source_config["standby_cluster"] = copy.deepcopy(source_standby_cluster)
    _with_slot(source_config, inventory.site(target).replication_slot or target)
    return after


def _dynamic_config(state: ServiceState, site: str) -> dict[str, Any]:
    site_state = state.sites.get(site)
    return dict(site_state.dynamic_config or {}) if site_state else {}


# --- topology ---------------------------------------------------------------------------------


def _follows(inventory: Inventory, site_name: str, site: SiteState) -> str | None:
    section = site.standby_cluster
    if not section:
        return None
    hosts = {h.strip() for h in str(section.get("host", "")).split(",") if h.strip()}
    for other_name, other in inventory.sites.items():
        if other_name != site_name and hosts & {m.host for m in other.members}:
            return other_name
    return f"{section.get('host')}:{section.get('port')}"


def _member_view(member: MemberState, primary_lsn: int | None) -> MemberView:
    pg, patroni = member.postgres, member.patroni
    lag = None
    if pg is not None and primary_lsn is not None:
        if not pg.in_recovery:
            lag = 0 if pg.current_lsn is not None else None
        elif pg.replay_lsn is not None:
            # Members are probed at slightly different moments: never show a negative lag.
            lag = max(0, primary_lsn - pg.replay_lsn)
    timeline = pg.timeline if pg is not None else (patroni.timeline if patroni else None)
    errors = [e for e in (member.patroni_error, member.postgres_error, member.host_error) if e]
    return MemberView(
        name=member.name,
        host=member.host,
        role=member.role,
        state=patroni.state if patroni else None,
        timeline=timeline,
        writable=member.writable if pg is not None else None,
        replay_lag_bytes=lag,
        patroni_version=patroni_version(member),
        error="; ".join(errors) or None,
    )


def _site_role(site: SiteState) -> Literal["primary", "standby", "unknown"]:
    if site.is_standby_cluster:
        return "standby"
    if site.dynamic_config is None and site.leader is None:
        # Nothing answered: an empty site waiting to be seeded, or one that is down.
        return "unknown"
    return "primary"


def topology_before(inventory: Inventory, state: ServiceState, primary_lsn: int | None) -> dict[str, SiteView]:
    views = {}
    for name in inventory.sites:
        site = state.sites[name]
        leader = site.leader
        members = tuple(_member_view(m, primary_lsn) for m in site.members)
        views[name] = SiteView(
            name=name,
            scope=site.scope,
            role=_site_role(site),
            follows=_follows(inventory, name, site),
            leader=leader.name if leader else None,
            leader_note=None if leader else "no leader observed",
            replicas=tuple(m.name for m in site.members if leader is None or m.name != leader.name),
            timelines=tuple(sorted({m.timeline for m in members if m.timeline is not None})),
            replay_lag_bytes=max((m.replay_lag_bytes for m in members if m.replay_lag_bytes is not None), default=None),
            members=members,
        )
    return views


def predicted_topology(before: dict[str, SiteView], source: str, target: str) -> dict[str, SiteView]:
    after = {name: view.model_copy(update={"predicted": True}) for name, view in before.items()}
    timelines = before[target].timelines + before[source].timelines
    new_timeline = (max(timelines) + 1,) if timelines else ()
    target_view, source_view = before[target], before[source]
    after[target] = SiteView(
        name=target,
        scope=target_view.scope,
        role="primary",
        follows=None,
        leader=target_view.leader,
        leader_note="its standby leader, promoted in place" if target_view.leader else None,
        replicas=target_view.replicas,
        timelines=new_timeline,
        predicted=True,
        members=tuple(
            MemberView(name=m.name, host=m.host, role="primary" if m.name == target_view.leader else "replica")
            for m in target_view.members
        ),
    )
    after[source] = SiteView(
        name=source,
        scope=source_view.scope,
        role="standby",
        follows=target,
        leader=None,
        leader_note=SOURCE_LEADER_AFTER,
        replicas=(),
        timelines=new_timeline,
        predicted=True,
        members=tuple(MemberView(name=m.name, host=m.host) for m in source_view.members),
    )
    return after


# --- the playbook's context -------------------------------------------------------------------


def _member_context(inventory: Inventory, site_name: str, site: Site, member: Member) -> dict[str, Any]:
    ssh = site.ssh_for(member)
    superuser = inventory.credentials.superuser.username
    return {
        "name": member.name,
        "host": member.host,
        "pg_port": member.pg_port,
        "api_url": member.api_url,
        "data_dir": site.data_dir_for(member),
        "patroni_config": site.patroni_config_for(member),
        "ssh": ssh.for_manual_commands(),
        "run_as_postgres": prefix_for(ssh.user),
        "patronictl": f"patronictl -c {site.patroni_config_for(member)}",
        "psql": f"psql -h {member.host} -p {member.pg_port} -U {superuser} -d postgres",
    }


def _site_context(inventory: Inventory, state: ServiceState, site_name: str) -> dict[str, Any]:
    site = inventory.site(site_name)
    observed = state.sites[site_name]
    members = [_member_context(inventory, site_name, site, m) for m in site.members]
    leader = observed.leader
    leader_member = next((m for m in members if leader and m["name"] == leader.name), None)
    if leader_member is None:
        leader_member = {
            **{k: NO_LEADER for k in members[0]},
            "ssh": {"host": NO_LEADER, "port": 22, "user": NO_LEADER},
        }
    ports = sorted({m.pg_port for m in site.members})
    return {
        "name": site_name,
        "scope": site.scope,
        "namespace": site.namespace,
        "slot": site.replication_slot or site_name,
        "rest_api_user": site.rest_api.username,
        "bin_dir": site.postgres.bin_dir,
        "dcs_endpoints": list(site.dcs.endpoints),
        "members": members,
        "member_names": [m["name"] for m in members],
        "hosts": [m["host"] for m in members],
        "hosts_csv": ",".join(m["host"] for m in members),
        "pg_port": ports[0],
        "leader": leader.name if leader else None,
        "leader_member": leader_member,
        "replicas": [m["name"] for m in members if not leader or m["name"] != leader.name],
        "config_slots": sorted((observed.dynamic_config or {}).get("slots") or {}),
        "paused": observed.paused,
        "standby_cluster": copy.deepcopy(observed.standby_cluster),
    }


def build_context(
    inventory: Inventory,
    state: ServiceState,
    source: str,
    target: str,
    source_standby_cluster: dict[str, Any],
    graceful_demote: bool,
) -> dict[str, Any]:
    credentials = inventory.credentials
    return {
        "service": inventory.service,
        "source": _site_context(inventory, state, source),
        "target": _site_context(inventory, state, target),
        "gates": inventory.gates.model_dump(mode="json"),
        "graceful_demote": graceful_demote,
        "source_standby_cluster": source_standby_cluster,
        # User names only: a secret (or its reference) never enters a plan.
        "credentials": {
            "superuser": {"username": credentials.superuser.username},
            "replication": {"username": credentials.replication.username},
        },
    }


# --- resolving steps --------------------------------------------------------------------------


class _Resolver:
    def __init__(self, playbook: Playbook, context: dict[str, Any]) -> None:
        self.playbook, self.context = playbook, context

    def _fail(self, step: StepSpec, field: str, problem: object) -> PlaybookError:
        source = self.playbook.source_file or self.playbook.name
        return PlaybookError(f"playbook {source}: step '{step.id}': {field}: {problem}")

    def expression(self, step: StepSpec, field: str, source: Any) -> Any:
        if not isinstance(source, str):
            return source  # a literal number or boolean
        try:
            value = compile_expression(source)(**self.context)
            # Round trip: plain JSON types only, and an undefined name anywhere fails here.
            return json.loads(json.dumps(value, default=_undefined_to_error))
        except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            raise self._fail(step, field, f"{source!r}: {exc}") from None

    def template(self, step: StepSpec, field: str, source: str) -> str:
        try:
            return compile_template(source).render(**self.context).strip()
        except (TemplateError, TypeError, ValueError, ArithmeticError) as exc:
            raise self._fail(step, field, exc) from None

    def step(self, step: StepSpec) -> PlanStep | None:
        if step.when is not None and not self.expression(step, "when", step.when):
            return None
        gate = None
        if step.gate is not None:
            timeout = self.expression(step, "gate.timeout", step.gate.timeout)
            if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
                raise self._fail(step, "gate.timeout", f"{timeout!r} is not a positive number")
            gate = PlanGate(
                wait_for=self.template(step, "gate.wait_for", step.gate.wait_for),
                threshold=(self.template(step, "gate.threshold", step.gate.threshold) if step.gate.threshold else None),
                timeout_seconds=float(timeout),
            )
        manual: list[str] = []
        for index, text in enumerate(step.manual):
            rendered = self.template(step, f"manual[{index}]", text)
            # A loop in one entry gives one command per line.
            manual.extend(line.strip() for line in rendered.splitlines() if line.strip())
        satisfied = False
        if step.satisfied_if is not None:
            satisfied = bool(self.expression(step, "satisfied_if", step.satisfied_if))
        return PlanStep(
            id=step.id,
            phase=step.phase,
            kind=step.kind,
            title=self.template(step, "title", step.title),
            args={name: self.expression(step, f"args.{name}", value) for name, value in step.args.items()},
            gate=gate,
            undo=PlanUndo(
                kind=step.undo.kind,
                description=(
                    self.template(step, "undo.description", step.undo.description) if step.undo.description else None
                ),
            ),
            manual=tuple(manual),
            write_unavailable=step.write_unavailable,
            already_satisfied=satisfied,
            when=step.when,
        )


def _undefined_to_error(value: Any) -> Any:
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError, naming the missing variable
    raise TypeError(f"{type(value).__name__} is not plain data")


# --- the plan ---------------------------------------------------------------------------------


def _write_unavailability(inventory: Inventory, source: str, target: str, graceful: bool) -> WriteUnavailability:
    catchup = inventory.gates.catchup_timeout_seconds
    promote = inventory.gates.promote_timeout_seconds
    worst = (
        f"At worst {catchup:g} s (the catch-up timeout): if {target} has not replayed past the "
        f"token by then, the demotion is undone and {source} takes writes again, nothing lost "
        f"(a promotion that stalls adds up to {promote:g} s more)."
    )
    if graceful:
        return WriteUnavailability(
            path="graceful-demote",
            expected_seconds=GRACEFUL_GAP_SECONDS,
            worst_case_seconds=catchup,
            summary=(
                f"About {GRACEFUL_GAP_SECONDS:g} s from {source}'s last commit to {target}'s "
                "first (0.28-0.39 s measured with Patroni 4.1.5, demotion and promotion by REST "
                f"PATCH). {worst}"
            ),
        )
    return WriteUnavailability(
        path="pause-and-clean-stop",
        expected_seconds=PAUSE_STOP_GAP_SECONDS,
        worst_case_seconds=catchup,
        summary=(
            f"About {PAUSE_STOP_GAP_SECONDS:g} s from {source}'s last commit to {target}'s first "
            "(0.40-0.42 s measured with Patroni 3.3.11: pause, pg_ctl stop -m fast, promote the "
            f"target, resume {source} once its /patroni says stopped). {worst}"
        ),
    )


def _planner_findings(inventory: Inventory, state: ServiceState, source: str, target: str) -> list[Finding]:
    found = []
    target_leader = state.sites[target].leader
    if target_leader is None:
        found.append(
            Finding(
                check="plan-target-leader",
                verdict=Verdict.BLOCK,
                site=target,
                finding=f"{target} has no observed standby leader, so no step can name one",
                fix=f"repair {target} (patronictl list on one of its members) and plan again",
            )
        )
    others = [name for name in inventory.sites if name not in (source, target)]
    for name in others:
        found.append(
            Finding(
                check="plan-untouched-site",
                verdict=Verdict.WARN,
                site=name,
                finding=f"site {name} is not changed by this plan "
                f"(it follows {_follows(inventory, name, state.sites[name]) or 'no site'})",
                fix=f"re-point {name} after the switchover if it follows {source}",
            )
        )
    return found


def _check_sites(inventory: Inventory, state: ServiceState, target: str) -> None:
    inventory.site(target)  # UsageError naming the sites when unknown
    missing = [name for name in inventory.sites if name not in state.sites]
    if missing:
        raise UsageError(
            f"the observed snapshot has no site {', '.join(missing)}; observe every inventory site before planning"
        )
    if state.service != inventory.service:
        raise UsageError(f"the snapshot is of service '{state.service}', the inventory of '{inventory.service}'")


def _find_source(state: ServiceState) -> str:
    primary = state.primary_site
    if primary is not None:
        return primary.name
    writable = [f"{m.name} ({m.site})" for m in state.writable_members]
    if writable:
        detail = f"writable members: {', '.join(writable)}"
    else:
        detail = "no member accepts writes"
    raise PreflightError(
        f"cannot plan: there is not exactly one primary site ({detail}); run `migrate status` "
        "and repair the service first"
    )


def plan(
    inventory: Inventory,
    state: ServiceState,
    playbook: Playbook,
    target: str,
    findings: list[Finding],
) -> Plan:
    """The switchover of `state`'s primary site to `target`, resolved from `playbook`."""
    _check_sites(inventory, state, target)
    source = _find_source(state)
    primary = state.sites[source].leader
    primary_lsn = primary.postgres.current_lsn if primary and primary.postgres else None
    before = topology_before(inventory, state, primary_lsn)
    configs_before = {name: _dynamic_config(state, name) for name in inventory.sites}
    graceful = graceful_demote_possible(state, [source, target])
    common: dict[str, Any] = dict(
        service=inventory.service,
        playbook=playbook.name,
        source=source,
        target=target,
        observed_at=state.observed_at,
        graceful_demote=graceful,
        topology_before=before,
        config_before=configs_before,
        insecure_ssh_sites=insecure_ssh_sites(inventory),
        insecure_transport=insecure_transport_warnings(inventory),
    )

    if source == target:
        all_findings = tuple(findings)
        return _finish(
            Plan(
                **common,
                noop_reason=f"{target} is already the primary site; there is nothing to move",
                findings=all_findings,
                executable=not blocking(list(all_findings)),
                topology_after=before,
                config_after=copy.deepcopy(configs_before),
                config_diff={name: "" for name in inventory.sites},
                steps=(),
                write_unavailability=None,
                fingerprint="",
            )
        )

    source_standby_cluster = standby_cluster_following(inventory, source, target)
    after_configs = configs_after(inventory, state, source, target, source_standby_cluster)
    context = build_context(inventory, state, source, target, source_standby_cluster, graceful)
    context["target_repoint"] = target_repoint(inventory, state, source, target)
    carry = sync_mode_carry(configs_before[source], configs_before[target])
    context["sync_mode_carry"] = carry
    after_configs = configs_with_sync_mode_carried(after_configs, source, target, carry)
    resolver = _Resolver(playbook, context)
    steps = tuple(s for s in (resolver.step(spec) for spec in playbook.steps) if s is not None)
    all_findings = tuple(findings) + tuple(_planner_findings(inventory, state, source, target))
    return _finish(
        Plan(
            **common,
            findings=all_findings,
            executable=not blocking(list(all_findings)),
            topology_after=predicted_topology(before, source, target),
            config_after=after_configs,
            config_diff={
                name: config_diff(name, configs_before[name], after_configs[name]) for name in inventory.sites
            },
            steps=steps,
            hooks=plan_hooks(inventory.hooks, steps),
            write_unavailability=_write_unavailability(inventory, source, target, graceful),
            fingerprint="",
        )
    )


def _finish(draft: Plan) -> Plan:
    # Through JSON once, so a fresh plan equals the same plan read back from its file.
    done = Plan.from_json(draft.to_json())
    return done.model_copy(update={"fingerprint": fingerprint_of(done.fingerprint_material())})
