"""`migrate fleet status`: observe both sites of every service of a fleet, at most `parallel` at a
time, each within its own deadline, and judge each (model/fleet_status.py). Read-only.

The observation is `migrate status`'s (Patroni REST, etcd and PostgreSQL of every member; no
SSH). A service whose observation raises, or runs past its deadline, is an `unobserved` row naming
why, never a crash of the whole table: one dead service must not hide the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path

from migrator.errors import MigratorError, one_line
from migrator.model.fleet import Fleet, FleetService, load_fleet
from migrator.model.fleet_status import FleetStatus, ServiceStatus, judge, unobserved
from migrator.model.inventory import Inventory
from migrator.model.secrets import mask
from migrator.model.state import ServiceState
from migrator.observe.observer import observe
from migrator.run.bounded_pool import Ended, run_bounded
from migrator.run.fleet_plan import service_deadline

Observer = Callable[[Inventory], ServiceState]
WATCH_INTERVAL_SECONDS = 2.0


def run_fleet_status(
    fleet_file: Path,
    watch: bool,
    show: Callable[[FleetStatus], None],
    remember_secrets: Callable[[list[str]], None] = lambda secrets: None,
    interval: float = WATCH_INTERVAL_SECONDS,
) -> int:
    """The command's body: load the fleet, observe it, hand the result to `show` (the CLI's view:
    run/ does not import render/); with `watch`, again every `interval` seconds until Ctrl-C."""
    fleet = load_fleet(fleet_file)
    remember_secrets(fleet.secrets())
    while True:
        status = observe_fleet(fleet)
        show(status)
        if not watch:
            return status.exit_code
        time.sleep(interval)


def observe_fleet(fleet: Fleet, observe_state: Observer | None = None) -> FleetStatus:
    """Every service observed and judged, in the fleet's wave order. `observe_state` stands in for
    the observation in unit tests."""
    started = datetime.now(UTC).isoformat(timespec="milliseconds")
    rows = {row.service: row for row in _observe_all(fleet, observe_state or _observe)}
    ordered = tuple(rows[name] for wave in fleet.waves for name in wave.services)
    return FleetStatus(fleet=fleet.source, observed_at=started, services=ordered)


def _observe(inventory: Inventory) -> ServiceState:
    return observe(inventory, host_facts=False)


def _observe_all(fleet: Fleet, observe_state: Observer) -> list[ServiceStatus]:
    members = list(fleet.services)
    outcomes = run_bounded(
        members, lambda member: observe_state(member.inventory), fleet.parallel, service_deadline, "fleet-status"
    )
    return [
        _judged(member, outcome.future)
        if isinstance(outcome, Ended)
        else unobserved(member.name, member.inventory_file, _late_line(member, outcome.started))
        for member, outcome in zip(members, outcomes, strict=True)
    ]


def _judged(member: FleetService, future: Future[ServiceState]) -> ServiceStatus:
    secrets = member.inventory.secrets()
    try:
        state = future.result()
    except MigratorError as exc:
        line = f"cannot be observed: {one_line(str(exc))}"
        return unobserved(member.name, member.inventory_file, mask(line, secrets))
    except Exception as exc:  # noqa: BLE001 - one service's failure must not hide the others
        line = f"cannot be observed: internal error: {type(exc).__name__}: {one_line(str(exc))}"
        return unobserved(member.name, member.inventory_file, mask(line, secrets))
    status = judge(member.name, member.inventory_file, state)
    return ServiceStatus(
        status.service, status.inventory, status.state, status.verdict, tuple(mask(p, secrets) for p in status.problems)
    )


def _late_line(member: FleetService, start: float | None) -> str:
    if start is None:
        return (
            "cannot be observed: no worker was free before the fleet's deadline (other services' observations "
            "hung); raise `parallel` in the fleet file or look at the services marked late"
        )
    hosts = ", ".join(sorted({m.host for site in member.inventory.sites.values() for m in site.members}))
    return (
        f"cannot be observed: no answer within {service_deadline(member):.0f}s (the network timeouts of its "
        f"inventory) from its members ({hosts}) or etcd; check that they answer (`migrate status -i "
        f"{member.inventory_file}`)"
    )
