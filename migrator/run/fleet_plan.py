"""`migrate fleet plan`: observe and plan every service of a fleet, at most `parallel` at a time,
each through the same observation and preflight `migrate plan` and `migrate check` use
(`planning.preflight.check_outcome`), and gather one fleet plan.

A service that cannot be observed or planned at all is a blocked row with its one-line error, not
a crash of the whole fleet: one unreachable service must not hide the others' plans. Changes
nothing on any site.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from migrator.durable import write_private
from migrator.errors import FleetError, MigratorError, one_line
from migrator.model.findings import first_blocking_line
from migrator.model.fleet import Fleet, FleetService, load_fleet
from migrator.model.fleet_plan import FleetPlan, FleetServicePlan, FleetWavePlan, fleet_fingerprint
from migrator.model.inventory import Inventory
from migrator.model.plan import Plan
from migrator.model.secrets import mask, mask_values
from migrator.model.state import ServiceState
from migrator.observe.observer import observe
from migrator.planning.preflight import CheckOutcome, SeedObserver, check_outcome
from migrator.run.bounded_pool import Ended, run_bounded

Observer = Callable[[Inventory], ServiceState]
# How long one service's observation may take, in network timeouts of its inventory: observe
# probes every member in parallel, each call bounded by the timeout, and the seeding checks add an
# SSH round or two. Past it the row is blocked (the observation is abandoned, not awaited).
SERVICE_DEADLINE_TIMEOUTS = 12
_LEAD = "blocked"


def run_fleet_plan(
    fleet_file: Path,
    target: str,
    fmt: str,
    out: Path | None,
    skip_blocked: bool,
    render: Callable[[FleetPlan, str], str],
    remember_secrets: Callable[[list[str]], None] = lambda secrets: None,
) -> int:
    """The command's body: load, refuse a --dc some inventory lacks, plan, print (`render`, from
    the CLI: run/ does not import render/), write --out; `remember_secrets` masks the log."""
    fleet = load_fleet(fleet_file)
    remember_secrets(fleet.secrets())  # every log line is masked with every inventory's secrets
    if missing := fleet.missing_site_lines(target):
        raise FleetError(missing[0] if len(missing) == 1 else f"{missing[0]} (and {len(missing) - 1} more)",
                         missing, fleet.source)  # fmt: skip
    fleet_plan = plan_fleet(fleet, target, skip_blocked)
    secrets = fleet.secrets()
    text = mask(render(fleet_plan, fmt), secrets)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if out is not None:
        write_private(out, mask(render(fleet_plan, "json"), secrets))
        sys.stderr.write(
            f"fleet plan for {len(fleet_plan.services)} service(s) -> {target} written to {out} "
            f"(fleet fingerprint {fleet_plan.fingerprint[:12]})\n"
        )
    return fleet_plan.exit_code


def plan_fleet(
    fleet: Fleet,
    target: str,
    skip_blocked: bool = False,
    observe_state: Observer | None = None,
    observe_seed_facts: SeedObserver | None = None,
) -> FleetPlan:
    """Every service observed and planned, in the fleet's wave order. `observe_state` and
    `observe_seed_facts` stand in for observation in unit tests, as in planning.preflight."""
    started = datetime.now(UTC).isoformat(timespec="milliseconds")
    rows = _observe_all(fleet, target, skip_blocked, observe_state or _observe, observe_seed_facts)
    by_name = {row.service: row for row in rows}
    ordered = tuple(by_name[name] for wave in fleet.waves for name in wave.services)
    return FleetPlan(
        fleet=fleet.source,
        target=target,
        observed_at=started,
        parallel=fleet.parallel,
        max_failures=fleet.max_failures,
        pause_between_waves=fleet.pause_between_waves,
        skip_blocked=skip_blocked,
        waves=tuple(FleetWavePlan(number=w.number, services=w.services, implicit=w.implicit) for w in fleet.waves),
        services=ordered,
        fingerprint=fleet_fingerprint([(row.service, row.fingerprint) for row in ordered]),
    )


def _observe(inventory: Inventory) -> ServiceState:
    return observe(inventory)


def _observe_all(
    fleet: Fleet, target: str, skip_blocked: bool, observe_state: Observer, seed_facts: SeedObserver | None
) -> list[FleetServicePlan]:
    wave_of = {name: wave.number for wave in fleet.waves for name in wave.services}
    members = list(fleet.services)
    outcomes = run_bounded(
        members,
        lambda member: _plan_one(member.inventory, target, observe_state, seed_facts),
        fleet.parallel,
        service_deadline,
        "fleet-plan",
    )
    rows = []
    for member, outcome in zip(members, outcomes, strict=True):
        wave = wave_of[member.name]
        if not isinstance(outcome, Ended):
            waited = (
                "no worker was free in time"
                if outcome.started is None
                else (f"not observed within {service_deadline(member):.0f}s (the network timeouts of its inventory)")
            )
            rows.append(_unplanned(member, target, wave, skip_blocked,
                                   f"{waited}; check that its members answer (`migrate check`)"))  # fmt: skip
            continue
        try:
            checked, nothing_answered = outcome.future.result()
        except MigratorError as exc:
            rows.append(_unplanned(member, target, wave, skip_blocked, str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - one service's failure must not hide the others' plans
            rows.append(_unplanned(member, target, wave, skip_blocked, f"internal error: {type(exc).__name__}: {exc}"))
            continue
        rows.append(_row(member, target, wave, skip_blocked, checked, nothing_answered))
    return rows


def service_deadline(member: FleetService) -> float:
    """How long one service's observation may take: a number of its inventory's network timeouts
    (every member is probed in parallel, each call bounded)."""
    return member.inventory.gates.connect_timeout_seconds * SERVICE_DEADLINE_TIMEOUTS


def _plan_one(
    inventory: Inventory, target: str, observe_state: Observer, seed_facts: SeedObserver | None
) -> tuple[CheckOutcome, str | None]:
    state = observe_state(inventory)
    return check_outcome(inventory, state, target, seed_facts), unobserved(state)


def unobserved(state: ServiceState) -> str | None:
    """Why nothing of the service could be observed, naming its members and hosts; None when any
    member's Patroni or PostgreSQL answered. Such a service has a plan (a seeding of an empty
    target, from what was seen), but the row says what is true: nothing answered."""
    members = [m for site in state.sites.values() for m in site.members]
    if not members or any(m.patroni is not None or m.postgres is not None for m in members):
        return None
    shown = [f"{m.name} ({m.host}): {m.patroni_error or m.postgres_error or 'no answer'}" for m in members[:1]]
    more = f" (nor {len(members) - 1} other member(s))" if len(members) > 1 else ""
    return (
        f"cannot be observed: no member answered: {'; '.join(shown)}{more}; check that the hosts of its inventory "
        "are right and up (`migrate status`)"
    )


def _unplanned(member: FleetService, target: str, wave: int, skip_blocked: bool, error: str) -> FleetServicePlan:
    return FleetServicePlan(
        service=member.name,
        inventory=member.inventory_file,
        wave=wave,
        verdict="skipped" if skip_blocked else "blocked",
        target=target,
        blocking=mask(one_line(error), member.inventory.secrets()),
    )


def _row(
    member: FleetService,
    target: str,
    wave: int,
    skip_blocked: bool,
    outcome: CheckOutcome,
    nothing_answered: str | None = None,
) -> FleetServicePlan:
    secrets = member.inventory.secrets()
    plan = outcome.plan
    if plan is None:
        return _unplanned(member, target, wave, skip_blocked, nothing_answered or outcome.plan_error or "no plan")
    proposal: str | None = outcome.proposal
    if plan.noop_reason is not None:
        verdict, proposal = "no-op", "noop"
    else:
        verdict = "executable" if plan.executable else ("skipped" if skip_blocked else "blocked")
    line = first_blocking_line(_LEAD, plan.findings)
    blocking = None if line is None else line[len(_LEAD) + 2 :]
    if nothing_answered is not None:
        verdict, proposal, blocking = ("skipped" if skip_blocked else "blocked"), None, nothing_answered
    unavailable = plan.write_unavailability
    return FleetServicePlan(
        service=member.name,
        inventory=member.inventory_file,
        wave=wave,
        verdict=verdict,  # type: ignore[arg-type]
        proposal=proposal,  # type: ignore[arg-type]
        source=plan.source,
        target=plan.target,
        blocking=None if blocking is None else mask(one_line(blocking), secrets),
        write_unavailable_seconds=None if unavailable is None else unavailable.expected_seconds,
        worst_case_seconds=None if unavailable is None else unavailable.worst_case_seconds,
        demote_path=None if plan.noop_reason is not None or nothing_answered else _demote_path(plan),
        patroni_versions=_versions(plan),
        warnings=tuple(mask(w, secrets) for w in plan.warnings),
        fingerprint=plan.fingerprint,
        plan=mask_values(plan.model_dump(mode="json"), secrets),
    )


def _demote_path(plan: Plan) -> str:
    if plan.write_unavailability is not None:
        return plan.write_unavailability.path
    return "graceful-demote" if plan.graceful_demote else "pause-and-clean-stop"


def _versions(plan: Plan) -> tuple[str, ...]:
    found = {m.patroni_version for site in plan.topology_before.values() for m in site.members if m.patroni_version}
    return tuple(sorted(found))
