"""`migrate fleet execute` and `migrate fleet rollback`: many ordinary single-service runs driven
by the scheduler (run/fleet_scheduler.py), not a second engine.

Each service is moved by a child `migrate execute -i INV --dc DC --yes --format json
[--plan FILE] [--resume] --state-dir BASE` (run/fleet_child.py) with its own lock, journal, gates
and undo; the fleet process re-plans the service right before starting it (a blocked service
fails, or is left untouched with --skip-blocked), records what it did in the fleet journal
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
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from migrator.durable import write_private
from migrator.errors import FleetError, MigratorError, UsageError, one_line
from migrator.model.fleet import Fleet, FleetService, load_fleet
from migrator.model.fleet_plan import FleetPlan
from migrator.model.fleet_run import FleetRunSummary, ServiceProgress, ServiceResult, status_of
from migrator.model.plan import Plan
from migrator.model.secrets import mask
from migrator.planning.preflight import observe_and_plan
from migrator.run.engine import latest_migration
from migrator.run.fleet_child import (
    Child,
    child_files,
    deadline_seconds,
    is_migrate_child,
    read_document,
    service_progress,
)
from migrator.run.fleet_journal import FleetLock, FleetRunRecord, fleet_state_dir, latest_run
from migrator.run.fleet_scheduler import Scheduler
from migrator.run.journal import Journal, utc_now

# A finished single-service migration whose fleet child left no document: its exit code from the
# journal's outcome.
OUTCOME_EXIT = {"done": 0, "rolled-back": 3, "stopped-unsafe": 4}


class FleetView(Protocol):
    """The live view (render/fleet_live.py): a table on a terminal, else a line per event."""

    def event(self, text: str) -> None: ...

    def refresh(self, rows: list[ServiceProgress]) -> None: ...

    def close(self) -> None: ...


@dataclass
class FleetRenderers:
    """What the CLI passes in from render/ (run/ does not import render/)."""

    markdown: Callable[[FleetRunSummary, str | None], str]  # the summary, the Gantt file's name
    gantt: Callable[[list[tuple[str, list[dict[str, Any]], str]]], str]  # (service, records, migration) rows


@dataclass
class FleetRequest:
    fleet_file: Path
    state_base: Path
    target: str | None = None  # execute: --dc
    plan_file: Path | None = None
    parallel: int | None = None
    yes: bool = False
    skip_blocked: bool = False
    resume: bool = False
    only: tuple[str, ...] = ()  # rollback: --service (a subset)


@dataclass
class _Context:
    fleet: Fleet
    request: FleetRequest
    directory: Path
    journal: Journal
    run_id: str
    run_dir: Path
    command: str
    view: FleetView
    previous: FleetRunRecord | None = None  # the run being resumed
    reviewed: FleetPlan | None = None
    progress: dict[str, ServiceProgress] = field(default_factory=dict)
    since: dict[str, str] = field(default_factory=dict)  # service -> when its child started
    deadlines: dict[str, float] = field(default_factory=dict)  # service -> monotonic deadline
    lock: threading.Lock = field(default_factory=threading.Lock)


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
                plan_file=str(request.plan_file) if request.plan_file else None,
                parallel=request.parallel or fleet.parallel,
                max_failures=fleet.max_failures,
                skip_blocked=request.skip_blocked,
                services=names,
                pid=_pid(),
            )
        context = _context(fleet, request, directory, journal, run_id, "execute", view, pending, reviewed)
        return _drive(context, renderers, ask, lambda name, wave: _execute_one(context, name, wave))


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
            lambda name, wave: _rollback_one(context, name, wave_of.get(name, wave)),
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
    return reviewed


def _unfinished(journal: Journal) -> FleetRunRecord | None:
    last = latest_run(journal)
    return last if last is not None and last.finished is None else None


def _still_moved(journal: Journal, moved_by: FleetRunRecord) -> list[str]:
    """The services `moved_by` moved that no later fleet rollback already moved back."""
    from migrator.run.fleet_journal import fleet_runs

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
) -> _Context:
    run_dir = directory / run_id
    run_dir.mkdir(mode=0o700, exist_ok=True)
    return _Context(fleet, request, directory, journal, run_id, run_dir, command, view(), previous, reviewed)


def _drive(
    context: _Context,
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
            return ask(f"wave {number - 1} ended; start wave {number} ({', '.join(waves[number - 1])})?")

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
    try:
        outcome = scheduler.run(already)
    finally:
        signal.signal(signal.SIGINT, previous_handler)
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
        summary.wall_seconds = round(_seconds(summary.started, summary.finished) or 0.0, 3)
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


def _seconds(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _write_report(context: _Context, summary: FleetRunSummary, renderers: FleetRenderers) -> None:
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


def _tick(context: _Context) -> None:
    """Refresh the running services' phase and lag from their own journals; the view."""
    events: list[str] = []
    with context.lock:
        for name, row in context.progress.items():
            if row.state not in ("running", "overran"):
                continue
            phase, lag, _ = service_progress(context.request.state_base / name, context.since.get(name))
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


def _set(context: _Context, name: str, **changes: Any) -> None:
    with context.lock:
        row = context.progress[name]
        for key, value in changes.items():
            setattr(row, key, value)


# ---- one service -------------------------------------------------------------------------------


def _execute_one(context: _Context, name: str, wave: int) -> ServiceResult:
    member = context.fleet.service(name)
    if context.previous is not None:
        picked = _pick_up(context, member, wave)
        if picked is not None:
            return picked
    _set(context, name, state="planning")
    target = str(context.request.target)
    try:
        plan = observe_and_plan(member.inventory, target)
    except MigratorError as exc:
        return _blocked(context, member, wave, mask(str(exc), member.inventory.secrets()))
    if plan.noop_reason is None and not plan.executable:
        from migrator.model.findings import first_blocking_line

        line = first_blocking_line("blocked at start", plan.findings) or "blocked at start"
        return _blocked(context, member, wave, mask(line, member.inventory.secrets()))
    args = ["execute", "-i", member.inventory_file, "--dc", target]
    if context.reviewed is not None:
        row = next(r for r in context.reviewed.services if r.service == name)
        if row.plan is None:
            result = ServiceResult(name, wave, "failed", exit_code=6, message=(
                f"the reviewed fleet plan has no plan for {name} (it was {row.verdict} then) and it is executable "
                "now: run `migrate fleet plan` again and review it"), finished=utc_now())  # fmt: skip
            context.journal.append("service-finished", run=context.run_id, service=name, result=result.as_json())
            _set(context, name, state=result.status, exit_code=6, note=result.message)
            return result
        plan_file = context.run_dir / f"plan-{name}.json"
        write_private(plan_file, json.dumps(row.plan, indent=2, sort_keys=True) + "\n")
        args += ["--plan", str(plan_file)]
    return _launch(context, member, wave, args, deadline_seconds(plan, member.inventory))


def _rollback_one(context: _Context, name: str, wave: int) -> ServiceResult:
    member = context.fleet.service(name)
    return _launch(context, member, wave, ["rollback", "-i", member.inventory_file], _stored_deadline(context, member))


def _stored_deadline(context: _Context, member: FleetService) -> float:
    plan: Plan | None = None
    try:
        migration = latest_migration(Journal(context.request.state_base / member.name))
        plan = migration.stored_plan() if migration is not None else None
    except Exception:  # noqa: BLE001 - no readable plan: the inventory's gates give the deadline
        plan = None
    return deadline_seconds(plan, member.inventory)


def _blocked(context: _Context, member: FleetService, wave: int, message: str) -> ServiceResult:
    name = member.name
    if context.request.skip_blocked:
        result = ServiceResult(name, wave, "skipped", message=f"skipped (--skip-blocked), left untouched: {message}",
                               finished=utc_now())  # fmt: skip
        context.journal.append("service-skipped", run=context.run_id, service=name, result=result.as_json())
        context.view.event(f"{name}: {result.message}")
    else:
        result = ServiceResult(name, wave, "blocked", exit_code=1, message=message, finished=utc_now())
        context.journal.append("service-finished", run=context.run_id, service=name, result=result.as_json())
        context.view.event(f"{name}: {message} (counts as a failure; --skip-blocked leaves it untouched)")
    _set(context, name, state=result.status, exit_code=result.exit_code, note=result.message)
    return result


def _pick_up(context: _Context, member: FleetService, wave: int) -> ServiceResult | None:
    """A service the killed fleet process had started: adopt its child if it still runs, take its
    document if it wrote one, resume its own unfinished migration, or (None) start it anew."""
    assert context.previous is not None
    record = context.previous.services.get(member.name)
    if record is None or record.started is None:
        return None
    started = record.started
    files = child_files(context.run_dir, member.name, context.command)
    pid = started.get("pid")
    since = str(started.get("ts"))
    if isinstance(pid, int) and is_migrate_child(pid, member.inventory_file):
        context.view.event(f"{member.name}: its child (pid {pid}) still runs; waiting for it")
        return _watch(context, member, wave, Child(pid), files, _stored_deadline(context, member), since, adopted=True)
    if read_document(files.out) is not None:
        return _result_of(context, member, wave, files, None, since, resumed=bool(started.get("resume")))
    migration = latest_migration(Journal(context.request.state_base / member.name))
    if migration is None or not _started_since(context, member.name, migration.id, since):
        return None
    if migration.finished is not None:
        code = OUTCOME_EXIT.get(migration.finished, 1)
        result = ServiceResult(member.name, wave, status_of(code, None), exit_code=code, migration=migration.id,
                               message=f"its migration {migration.id} ended ({migration.finished}) while the fleet "
                               "process was down", started=since, finished=utc_now())  # fmt: skip
        context.journal.append("service-finished", run=context.run_id, service=member.name, result=result.as_json())
        _set(context, member.name, state=result.status, exit_code=code, note=result.message)
        return result
    context.view.event(f"{member.name}: its migration {migration.id} is unfinished; `execute --resume`")
    args = ["execute", "-i", member.inventory_file, "--dc", str(context.request.target), "--resume"]
    return _launch(context, member, wave, args, _stored_deadline(context, member), resume=True)


def _started_since(context: _Context, service: str, migration: str, since: str) -> bool:
    for record in Journal(context.request.state_base / service).records():
        if record.get("event") == "migration-started" and record.get("migration") == migration:
            return str(record.get("ts", "")) >= since
    return False


def _launch(
    context: _Context, member: FleetService, wave: int, args: list[str], deadline: float, resume: bool = False
) -> ServiceResult:
    name = member.name
    files = child_files(context.run_dir, name, context.command)
    args = [*args, "--yes", "--format", "json", "--state-dir", str(context.request.state_base)]
    since = utc_now()
    child = Child.start(args, files)
    context.journal.append(
        "service-started",
        run=context.run_id,
        service=name,
        wave=wave,
        pid=child.pid,
        resume=resume,
        deadline_seconds=deadline,
        out_file=str(files.out),
        log_file=str(files.log),
    )
    context.view.event(
        f"{name}: started {' '.join(args[:1])}{' --resume' if resume else ''} (wave {wave}, pid {child.pid})"
    )
    return _watch(context, member, wave, child, files, deadline, since, resumed=resume)


def _watch(
    context: _Context,
    member: FleetService,
    wave: int,
    child: Child,
    files: Any,
    deadline: float,
    since: str,
    adopted: bool = False,
    resumed: bool = False,
) -> ServiceResult:
    name = member.name
    until = time.monotonic() + deadline
    with context.lock:
        context.since[name] = since
        context.deadlines[name] = until
    _set(context, name, state="running")
    overran = {"noted": False}

    def on_poll(past: bool) -> None:
        if past and not overran["noted"]:
            overran["noted"] = True
            context.journal.append("service-overrun", run=context.run_id, service=name, deadline_seconds=deadline)
            context.view.event(f"{name}: OVERRAN its deadline of {deadline:.0f}s; still waiting (never killed)")
            _set(context, name, state="overran")

    child.wait(until, on_poll)
    result = _result_of(context, member, wave, files, child.returncode, since, resumed=resumed)
    result.overran = overran["noted"]
    return result


def _result_of(
    context: _Context, member: FleetService, wave: int, files: Any, returncode: int | None, since: str, resumed: bool
) -> ServiceResult:
    name = member.name
    document = read_document(files.out)
    finished = utc_now()
    if document is None:
        code = returncode if returncode is not None and returncode > 0 else 1
        result = ServiceResult(name, wave, "failed", exit_code=code, started=since, finished=finished,
                               message=f"its run wrote no result (exit {returncode}); see {files.log} and "
                               f"`migrate status -i {member.inventory_file}`", log_file=str(files.log))  # fmt: skip
    else:
        code = int(document.get("exit_code", returncode if returncode is not None else 1))
        result = ServiceResult(
            name,
            wave,
            status_of(code, document.get("verdict")),
            exit_code=code,
            message=str(document.get("message", "")),
            started=since,
            finished=finished,
            write_unavailable_seconds=document.get("write_unavailable_seconds"),
            migration=document.get("migration"),
            token=document.get("token"),
            timelines=document.get("timelines"),
            new_primary=document.get("new_primary"),
            report_file=document.get("report_file"),
            log_file=str(files.log),
        )
    result.resumed = resumed
    result.duration_seconds = _seconds(since, finished)
    context.journal.append("service-finished", run=context.run_id, service=name, result=result.as_json())
    gap = f"; write gap {result.write_unavailable_seconds:.3f}s" if result.write_unavailable_seconds else ""
    context.view.event(f"{name}: finished, exit {result.exit_code} ({result.status}{gap}) {result.message}")
    _set(context, name, state=result.status, exit_code=result.exit_code,
         write_unavailable_seconds=result.write_unavailable_seconds, note=result.message)  # fmt: skip
    return result
