"""`migrate fleet execute` and `migrate fleet rollback`: many ordinary single-service runs driven
by the scheduler (run/fleet_scheduler.py), not a second engine.

Each service is moved by a child `migrate execute -i INV --dc DC --yes --format json
[--plan FILE] [--resume] --state-dir BASE` (run/fleet_child.py) with its own lock, journal, gates
and undo; the child's own preflight is the only observation and plan (a service it refuses is
blocked: a failure, or left untouched with --skip-blocked); the fleet records what it did in the fleet journal
(run/fleet_journal.py), shows a live view, and writes the fleet report beside the journal.

Ctrl-C: the first stops new starts and waits for the running children (they never get the
signal); the second says what still runs and keeps waiting. `--resume` after the fleet process
was killed: services that finished are not run again, a child still alive is adopted and waited
for, a service whose own journal has an unfinished migration is run with `execute --resume`, the
rest start normally. Nothing is demoted or promoted twice: each service's journal guarantees that.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.durable import write_private
from migrator.errors import FleetError, UsageError, one_line
from migrator.model.fleet import Fleet, load_fleet
from migrator.model.fleet_plan import FleetPlan
from migrator.model.fleet_run import FleetRunSummary, ServiceProgress, ServiceResult
from migrator.model.secrets import mask
from migrator.run.fleet_child import ProgressTail
from migrator.run.fleet_journal import FleetLock, FleetRunRecord, fleet_runs, fleet_state_dir, latest_run
from migrator.run.fleet_scheduler import Scheduler
from migrator.run.fleet_service import (
    FleetContext,
    FleetRequest,
    FleetView,
    execute_one,
    rollback_one,
    seconds_between,
)
from migrator.run.journal import Journal, utc_now
from migrator.run.launcher_client import Launcher


@dataclass
class FleetRenderers:
    """What the CLI passes in from render/ (run/ does not import render/)."""

    markdown: Callable[[FleetRunSummary, str | None], str]  # the summary, the Gantt file's name
    gantt: Callable[[list[tuple[str, list[dict[str, Any]], str]]], str]  # (service, records, migration) rows


# ---- entry points ------------------------------------------------------------------------------


def run_fleet_execute(
    request: FleetRequest,
    view: Callable[[], FleetView],
    renderers: FleetRenderers,
    ask: Callable[[str], bool],
    interactive: bool,
    remember_secrets: Callable[[list[str]], None] = lambda secrets: None,
) -> FleetRunSummary:
    fleet = load_fleet(request.fleet_file)
    remember_secrets(fleet.secrets())
    target = str(request.target)
    if missing := fleet.missing_site_lines(target):
        raise FleetError(missing[0], missing, fleet.source)
    reviewed = _reviewed(request.plan_file, fleet, target) if request.plan_file else None
    # A resumed run was confirmed when it started; only a question between waves may be left.
    if not request.resume or (fleet.pause_between_waves and len(fleet.waves) > 1):
        _can_confirm(request, interactive)
    directory = fleet_state_dir(request.state_base, request.fleet_file)
    with FleetLock(directory, fleet.source):
        journal = Journal(directory, fleet.secrets())
        pending = _unfinished(journal)
        if request.resume:
            if pending is None or pending.command != "execute":
                raise UsageError(f"nothing to resume: no unfinished fleet execute in {journal.path}")
            if pending.started.get("target") != target:
                raise UsageError(f"the unfinished fleet run {pending.run} moves to {pending.started.get('target')}, "
                                 f"not {target}; resume it with --dc {pending.started.get('target')}")  # fmt: skip
            run_id = pending.run
            if reviewed is None and pending.started.get("plan_file"):
                # The services still to start are held to the plan the run was started with.
                reviewed = _reviewed(Path(str(pending.started["plan_file"])), fleet, target)
            journal.append("fleet-run-resumed", run=run_id, pid=_pid())
        else:
            if pending is not None:
                raise UsageError(
                    f"fleet run {pending.run} ({pending.command}) of {fleet.source} did not finish; finish it with "
                    f"`migrate fleet {pending.command} --fleet {fleet.source} --resume"
                    f"{' --dc ' + str(pending.started.get('target')) if pending.command == 'execute' else ''}`"
                )
            names = [name for wave in fleet.waves for name in wave.services]
            if not request.yes and not ask(f"move {len(names)} service(s) of {fleet.source} to {target} "
                                           f"({', '.join(names)})?"):  # fmt: skip
                raise UsageError("not confirmed; nothing changed")
            run_id = _new_run_id()
            journal.append(
                "fleet-run-started",
                run=run_id,
                command="execute",
                fleet=str(request.fleet_file),
                target=target,
                fingerprint=reviewed.fingerprint if reviewed else None,
                plan_file=str(request.plan_file.resolve()) if request.plan_file else None,
                parallel=request.parallel or fleet.parallel,
                max_failures=fleet.max_failures,
                skip_blocked=request.skip_blocked,
                services=names,
                pid=_pid(),
            )
        context = _context(fleet, request, directory, journal, run_id, "execute", view, pending, reviewed)
        return _drive(context, renderers, ask, lambda name, wave: execute_one(context, name, wave))


def run_fleet_rollback(
    request: FleetRequest,
    view: Callable[[], FleetView],
    renderers: FleetRenderers,
    ask: Callable[[str], bool],
    interactive: bool,
    remember_secrets: Callable[[list[str]], None] = lambda secrets: None,
) -> FleetRunSummary:
    fleet = load_fleet(request.fleet_file)
    remember_secrets(fleet.secrets())
    _can_confirm(request, interactive)
    directory = fleet_state_dir(request.state_base, request.fleet_file)
    with FleetLock(directory, fleet.source):
        journal = Journal(directory, fleet.secrets())
        pending = _unfinished(journal)
        if pending is not None:
            raise UsageError(
                f"fleet run {pending.run} ({pending.command}) of {fleet.source} did not finish; finish it first with "
                f"`migrate fleet {pending.command} --fleet {fleet.source} --resume"
                f"{' --dc ' + str(pending.started.get('target')) if pending.command == 'execute' else ''}`"
            )
        moved_by = latest_run(journal, "execute")
        if moved_by is None:
            raise UsageError(f"no fleet execute of {fleet.source} is recorded in {journal.path}; nothing to roll back")
        moved = _still_moved(journal, moved_by)
        unknown = [name for name in request.only if name not in {s.name for s in fleet.services}]
        if unknown:
            fleet.service(unknown[0])  # raises the one line naming the fleet's services
        if request.only:
            moved = [name for name in moved if name in request.only]
        if not moved:
            raise UsageError(
                f"fleet run {moved_by.run} left no service moved"
                f"{' among ' + ', '.join(request.only) if request.only else ''}; nothing to roll back"
            )
        if not request.yes and not ask(f"move {len(moved)} service(s) back ({', '.join(moved)})?"):
            raise UsageError("not confirmed; nothing changed")
        run_id = _new_run_id()
        journal.append(
            "fleet-run-started",
            run=run_id,
            command="rollback",
            fleet=str(request.fleet_file),
            target=None,
            of_run=moved_by.run,
            parallel=request.parallel or fleet.parallel,
            max_failures=fleet.max_failures,
            services=moved,
            pid=_pid(),
        )
        context = _context(fleet, request, directory, journal, run_id, "rollback", view, None, None)
        wave_of = {name: wave.number for wave in fleet.waves for name in wave.services}
        return _drive(
            context,
            renderers,
            ask,
            lambda name, wave: rollback_one(context, name, wave_of.get(name, wave)),
            waves=[moved],
        )


# ---- checks before anything starts ------------------------------------------------------------


def _can_confirm(request: FleetRequest, interactive: bool) -> None:
    if not request.yes and not interactive:
        raise UsageError(
            "refusing to run a fleet without a terminal to confirm on; review the fleet plan and pass --yes"
        )


def _reviewed(plan_file: Path, fleet: Fleet, target: str) -> FleetPlan:
    try:
        reviewed = FleetPlan.model_validate_json(plan_file.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"--plan {plan_file}: not a readable fleet plan ({one_line(str(exc))[:160]}); write one with "
            "`migrate fleet plan --fleet F --dc DC --out FILE`"
        ) from None
    if reviewed.target != target:
        raise UsageError(f"--plan {plan_file} moves to {reviewed.target}, not {target}; plan for --dc {target}")
    planned = {row.service for row in reviewed.services}
    missing = [s.name for s in fleet.services if s.name not in planned]
    if missing:
        raise UsageError(
            f"--plan {plan_file} has no row for {', '.join(missing)} of {fleet.source}; run `migrate fleet plan` "
            "again for this fleet file and review it"
        )
    for row in reviewed.services:
        try:
            row.stored_plan()  # each service's plan is read again when it starts: refuse a bad one now
        except ValueError as exc:
            raise UsageError(
                f"--plan {plan_file}: the plan of {row.service} is not a plan ({one_line(str(exc))[:160]}); "
                "run `migrate fleet plan` again and review it"
            ) from None
    return reviewed


def _unfinished(journal: Journal) -> FleetRunRecord | None:
    last = latest_run(journal)
    return last if last is not None and last.finished is None else None


def _still_moved(journal: Journal, moved_by: FleetRunRecord) -> list[str]:
    """The services `moved_by` moved that no later fleet rollback already moved back."""
    moved = [name for name, r in moved_by.results().items() if r.status == "moved"]
    order = list(moved_by.started.get("services") or moved)
    later = False
    back: set[str] = set()
    for run in fleet_runs(journal):
        if run.run == moved_by.run:
            later = True
            continue
        if later and run.command == "rollback":
            back |= {name for name, r in run.results().items() if r.status == "moved"}
    return [name for name in order if name in moved and name not in back]


# ---- the run ----------------------------------------------------------------------------------


def _pid() -> int:
    return os.getpid()


def _new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"


def _context(
    fleet: Fleet,
    request: FleetRequest,
    directory: Path,
    journal: Journal,
    run_id: str,
    command: str,
    view: Callable[[], FleetView],
    previous: FleetRunRecord | None,
    reviewed: FleetPlan | None,
) -> FleetContext:
    run_dir = directory / run_id
    run_dir.mkdir(mode=0o700, exist_ok=True)
    return FleetContext(fleet, request, directory, journal, run_id, run_dir, command, view(), previous, reviewed)


def _drive(
    context: FleetContext,
    renderers: FleetRenderers,
    ask: Callable[[str], bool],
    run_one: Callable[[str, int], ServiceResult],
    waves: list[list[str]] | None = None,
) -> FleetRunSummary:
    fleet, request = context.fleet, context.request
    started_at = time.monotonic()
    started = utc_now()
    waves = waves or [list(w.services) for w in fleet.waves]
    already = context.previous.results() if context.previous is not None else {}
    for number, wave in enumerate(waves, start=1):
        for name in wave:
            state = already[name].status if name in already else "waiting"
            context.progress[name] = ServiceProgress(name, number, state)
    between = None
    if fleet.pause_between_waves and not request.yes and context.command == "execute":

        def between(number: int) -> bool:
            context.view.pause()  # the live table would overwrite the question
            try:
                return ask(f"wave {number - 1} ended; start wave {number} ({', '.join(waves[number - 1])})?")
            finally:
                context.view.resume()

    scheduler = Scheduler(
        waves,
        request.parallel or fleet.parallel,
        fleet.max_failures,
        run_one,
        tick=lambda: _tick(context),
        between_waves=between,
    )
    interrupts = {"count": 0}

    def on_sigint(signum: int, frame: Any) -> None:
        interrupts["count"] += 1
        running = scheduler.running_names()
        if interrupts["count"] == 1:
            scheduler.stop("interrupted (Ctrl-C)")
            context.view.event(
                f"Ctrl-C: no new service starts; waiting for the running ones to reach their end "
                f"({', '.join(running) or 'none'}); they are never interrupted"
            )
        else:
            context.view.event(
                f"still running: {', '.join(running) or 'none'}; waiting (each ends on its own deadline; "
                "killing this process leaves them running, `--resume` adopts them)"
            )

    previous_handler = signal.signal(signal.SIGINT, on_sigint)
    context.launcher = _launcher(context)
    try:
        outcome = scheduler.run(already)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        if context.launcher is not None:
            context.launcher.close()  # every child has ended here, or lives on without it
        _tick(context)
        context.view.close()
    results = [outcome.results[name] for wave in waves for name in wave if name in outcome.results]
    for result in results:
        if result.status == "not-started":
            context.journal.append(
                "service-skipped", run=context.run_id, service=result.service, result=result.as_json()
            )
    summary = FleetRunSummary(
        run=context.run_id,
        command=context.command,
        fleet=fleet.source,
        target=request.target if context.command == "execute" else None,
        started=str((context.previous.started if context.previous else {}).get("ts", started)),
        finished=utc_now(),
        wall_seconds=round(time.monotonic() - started_at, 3),
        parallel=request.parallel or fleet.parallel,
        max_failures=fleet.max_failures,
        fingerprint=context.reviewed.fingerprint if context.reviewed else None,
        results=results,
        stopped_early=outcome.stopped_early,
        journal_file=str(context.journal.path),
    )
    if context.previous is not None:  # wall time over every attempt of the run
        summary.wall_seconds = round(seconds_between(summary.started, summary.finished) or 0.0, 3)
    _write_report(context, summary, renderers)
    context.journal.append(
        "fleet-run-finished",
        run=context.run_id,
        exit_code=summary.exit_code,
        totals=summary.totals(),
        stopped_early=outcome.stopped_early,
        report_file=summary.report_file,
    )
    return summary


def _launcher(context: FleetContext) -> Launcher | None:
    """The process that forks this run's children from one warm interpreter (migrator/launcher.py);
    None (plain children) when it cannot be started."""
    try:
        return Launcher.start(context.run_dir / "launcher.log")
    except OSError as exc:
        context.view.event(f"children start as plain processes (no launcher: {exc})")
        return None


def _write_report(context: FleetContext, summary: FleetRunSummary, renderers: FleetRenderers) -> None:
    secrets = context.fleet.secrets()
    base = context.directory / f"report-{context.run_id}"
    gantt_name: str | None = None
    try:
        rows = []
        for result in summary.results:
            if result.migration is None:
                continue
            records = Journal(context.request.state_base / result.service).records()
            rows.append((result.service, records, result.migration))
        if rows:
            write_private(base.with_suffix(".svg"), mask(renderers.gantt(rows), secrets))
            gantt_name = base.with_suffix(".svg").name
            summary.gantt_file = str(base.with_suffix(".svg"))
    except Exception as exc:  # noqa: BLE001 - a picture must never hide the fleet's outcome
        context.view.event(f"fleet Gantt not drawn: {type(exc).__name__}: {exc}")
    summary.report_file = str(base.with_suffix(".md"))
    write_private(base.with_suffix(".md"), mask(renderers.markdown(summary, gantt_name), secrets))
    write_private(base.with_suffix(".json"), mask(json.dumps(summary.as_json(), indent=2) + "\n", secrets))


def _tick(context: FleetContext) -> None:
    """Refresh the running services' phase and lag from their own journals; the view."""
    events: list[str] = []
    with context.lock:
        for name, row in context.progress.items():
            if row.state not in ("running", "overran"):
                continue
            since = context.since.get(name)
            tail = context.tails.get(name)
            if tail is None or tail.since != since:  # a new child (a resume): its own migration
                tail = context.tails[name] = ProgressTail(context.request.state_base / name, since)
            phase, lag, _ = tail.read()
            if phase is not None and phase != row.phase:
                events.append(f"{name}: phase {phase}")
                row.phase = phase
            row.lag_bytes = lag
            if name in context.deadlines:
                row.deadline_seconds = round(context.deadlines[name] - time.monotonic(), 0)
        rows = [ServiceProgress(**vars(r)) for r in context.progress.values()]
    for text in events:
        context.view.event(text)
    context.view.refresh(rows)
