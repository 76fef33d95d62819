"""`migrate fleet status`: observe both sites of every service of a fleet, at most `parallel` at a
time, each within its own deadline, and judge each (model/fleet_status.py). Read-only.

The observation is `migrate status`'s (Patroni REST, etcd and PostgreSQL of every member; no
SSH). A service whose observation raises, or runs past its deadline, is an `unobserved` row naming
why, never a crash of the whole table: one dead service must not hide the others.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime
from pathlib import Path

from migrator.errors import MigratorError, one_line
from migrator.model.fleet import Fleet, FleetService, load_fleet
from migrator.model.fleet_status import FleetStatus, ServiceStatus, judge, unobserved
from migrator.model.inventory import Inventory
from migrator.model.secrets import mask
from migrator.model.state import ServiceState
from migrator.observe.observer import observe
from migrator.run.fleet_plan import SERVICE_DEADLINE_TIMEOUTS

Observer = Callable[[Inventory], ServiceState]
POLL_SECONDS = 0.1
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


def service_deadline(member: FleetService) -> float:
    """How long one service's observation may take: as for `fleet plan`, a number of its
    inventory's network timeouts (every member is probed in parallel, each call bounded)."""
    return member.inventory.gates.connect_timeout_seconds * SERVICE_DEADLINE_TIMEOUTS


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
    workers = max(1, min(fleet.parallel, len(members)))
    began: dict[str, float] = {}  # service -> monotonic time its observation started (set by its worker)

    def observe_one(member: FleetService) -> ServiceState:
        began[member.name] = time.monotonic()
        return observe_state(member.inventory)

    # Each service has its own deadline from the moment a worker takes it; the whole wait is
    # bounded too (the rounds the pool needs at the slowest deadline), so a service that never got
    # a worker (others hanging past their deadlines) is a row as well, not a wait without end.
    slowest = max(service_deadline(m) for m in members)
    overall = time.monotonic() + slowest * math.ceil(len(members) / workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fleet-status")
    futures: dict[Future[ServiceState], FleetService] = {pool.submit(observe_one, m): m for m in members}
    rows: dict[str, ServiceStatus] = {}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                member = futures[future]
                rows[member.name] = _judged(member, future)
            now = time.monotonic()
            for future in list(pending):
                member = futures[future]
                start = began.get(member.name)
                late = start is not None and now - start > service_deadline(member)
                if late or now > overall:
                    future.cancel()  # a running observation ends with its own network timeouts
                    pending.discard(future)
                    rows[member.name] = unobserved(member.name, member.inventory_file, _late_line(member, start))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [rows[m.name] for m in members]


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
