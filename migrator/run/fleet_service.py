"""One service inside a fleet run: its child `migrate execute|rollback` launched and watched
against its deadline, its JSON document turned into a `ServiceResult`, every step of that in the
fleet journal. The fleet does not observe or plan the service itself: the child's own preflight
(observation, plan, reviewed-plan fingerprint) is the one decision, and a child its preflight
refused (`model.fleet_run.child_status`) is a blocked service: a failure, or left untouched with
--skip-blocked. On `--resume`, a service the killed fleet process had started is picked up: its
child adopted while it runs, its document read if it wrote one, its own unfinished migration
continued with `execute --resume`, or (none of these) it starts anew.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from migrator.durable import write_private
from migrator.model.fleet import Fleet, FleetService
from migrator.model.fleet_plan import FleetPlan
from migrator.model.fleet_run import BLOCKED_EXIT, ServiceProgress, ServiceResult, child_status, status_of
from migrator.model.plan import Plan
from migrator.model.secrets import mask
from migrator.run.fleet_child import (
    Child,
    ChildFiles,
    ProgressTail,
    child_files,
    deadline_seconds,
    is_migrate_child,
    read_document,
)
from migrator.run.fleet_journal import FleetRunRecord
from migrator.run.journal import Journal, utc_now
from migrator.run.launcher_client import Launcher, LauncherError
from migrator.run.migrations import latest_migration

# A finished single-service migration whose fleet child left no document: its exit code from the
# journal's outcome.
OUTCOME_EXIT = {"done": 0, "rolled-back": 3, "stopped-unsafe": 4}


class FleetView(Protocol):
    """The live view (render/fleet_live.py): a table on a terminal, else a line per event."""

    def event(self, text: str) -> None: ...

    def refresh(self, rows: list[ServiceProgress]) -> None: ...

    def close(self) -> None: ...

    def pause(self) -> None: ...  # before a question on the terminal

    def resume(self) -> None: ...


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
class FleetContext:
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
    tails: dict[str, ProgressTail] = field(default_factory=dict)  # service -> its journal, read as it grows
    lock: threading.Lock = field(default_factory=threading.Lock)
    launcher: Launcher | None = None  # forks the children; None: each starts as a plain process


def set_progress(context: FleetContext, name: str, **changes: Any) -> None:
    with context.lock:
        row = context.progress[name]
        for key, value in changes.items():
            setattr(row, key, value)


def seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


# ---- one service -------------------------------------------------------------------------------


def execute_one(context: FleetContext, name: str, wave: int) -> ServiceResult:
    member = context.fleet.service(name)
    if context.previous is not None:
        picked = _pick_up(context, member, wave)
        if picked is not None:
            return picked
    args = ["execute", "-i", member.inventory_file, "--dc", str(context.request.target)]
    plan: Plan | None = None  # without a reviewed plan, the inventory's gates give the deadline
    if context.reviewed is not None:
        row = next(r for r in context.reviewed.services if r.service == name)
        if row.plan is None:
            # Blocked when the fleet plan was made: there is no reviewed plan to run it with, so it
            # is not run (nor observed: whether it is fixed now is for a new review to say).
            reason = row.blocking or f"it was {row.verdict} then"
            message = (f"the reviewed fleet plan has no plan for it ({reason}); once it is fixed, run "
                       "`migrate fleet plan` again and review it")  # fmt: skip
            return _ended(context, _blocked(context, member, wave, mask(message, member.inventory.secrets())))
        plan = row.stored_plan()
        # The child compares this plan's fingerprint with its own preflight's (`execute --plan`):
        # a stale one is refused there (exit 6), per service, with no observation of the fleet's own.
        plan_file = context.run_dir / f"plan-{name}.json"
        write_private(plan_file, json.dumps(row.plan, indent=2, sort_keys=True) + "\n")
        args += ["--plan", str(plan_file)]
    return _launch(context, member, wave, args, deadline_seconds(plan, member.inventory))


def rollback_one(context: FleetContext, name: str, wave: int) -> ServiceResult:
    member = context.fleet.service(name)
    return _launch(context, member, wave, ["rollback", "-i", member.inventory_file], _stored_deadline(context, member))


def _stored_deadline(context: FleetContext, member: FleetService) -> float:
    plan: Plan | None = None
    try:
        migration = latest_migration(Journal(context.request.state_base / member.name))
        plan = migration.stored_plan() if migration is not None else None
    except Exception:  # noqa: BLE001 - no readable plan: the inventory's gates give the deadline
        plan = None
    return deadline_seconds(plan, member.inventory)


def _blocked(context: FleetContext, member: FleetService, wave: int, message: str) -> ServiceResult:
    """A service refused before anything changed: skipped with --skip-blocked (no exit code: not a
    failure), else blocked (exit 1, a failure against max_failures)."""
    if context.request.skip_blocked:
        return ServiceResult(member.name, wave, "skipped", message=f"skipped (blocked: {message}), left untouched",
                             finished=utc_now())  # fmt: skip
    return ServiceResult(member.name, wave, "blocked", exit_code=BLOCKED_EXIT, message=message, finished=utc_now())


def _ended(context: FleetContext, result: ServiceResult) -> ServiceResult:
    """Into the fleet journal (a skipped service as `service-skipped`), the live view and the row."""
    name = result.service
    event = "service-skipped" if result.status == "skipped" else "service-finished"
    context.journal.append(event, run=context.run_id, service=name, result=result.as_json())
    if result.status == "skipped":
        context.view.event(f"{name}: {result.message}")
    elif result.status == "blocked":
        note = "counts as a failure; --skip-blocked leaves it untouched"
        context.view.event(f"{name}: blocked: {result.message} ({note})")
    else:
        gap = f"; write gap {result.write_unavailable_seconds:.3f}s" if result.write_unavailable_seconds else ""
        context.view.event(f"{name}: finished, exit {result.exit_code} ({result.status}{gap}) {result.message}")
    set_progress(context, name, state=result.status, exit_code=result.exit_code,
                 write_unavailable_seconds=result.write_unavailable_seconds, note=result.message)  # fmt: skip
    return result


def _pick_up(context: FleetContext, member: FleetService, wave: int) -> ServiceResult | None:
    """A service the killed fleet process had started: adopt its child if it still runs, take its
    document if it wrote one, resume its own unfinished migration, or (None) start it anew."""
    assert context.previous is not None
    record = context.previous.services.get(member.name)
    if record is None or record.started is None:
        return None
    started = record.started
    files = child_files(context.run_dir, member.name, context.command)
    pid = started.get("pid")
    ticks = started.get("pid_start")
    ticks = ticks if isinstance(ticks, int) else None
    since = str(started.get("since") or started.get("ts"))  # this child's start
    first = record.first_since or since  # the first child's: a migration since then is this run's
    resumed = bool(started.get("resume"))
    if isinstance(pid, int) and is_migrate_child(pid, member.inventory_file, ticks):
        context.view.event(f"{member.name}: its child (pid {pid}) still runs; waiting for it")
        deadline = _stored_deadline(context, member)
        child = Child(pid, start_ticks=ticks)
        return _watch(context, member, wave, child, files, deadline, since, adopted=True, resumed=resumed)
    if read_document(files.out) is not None:
        return _result_of(context, member, wave, files, None, since, resumed=resumed)
    migration = latest_migration(Journal(context.request.state_base / member.name))
    if migration is None or not _started_since(context, member.name, migration.id, first):
        return None
    if migration.finished is not None:
        code = OUTCOME_EXIT.get(migration.finished, 1)
        result = ServiceResult(member.name, wave, status_of(code, None), exit_code=code, migration=migration.id,
                               message=f"its migration {migration.id} ended ({migration.finished}) while the fleet "
                               "process was down", started=since, finished=utc_now())  # fmt: skip
        context.journal.append("service-finished", run=context.run_id, service=member.name, result=result.as_json())
        set_progress(context, member.name, state=result.status, exit_code=code, note=result.message)
        return result
    context.view.event(f"{member.name}: its migration {migration.id} is unfinished; `execute --resume`")
    args = ["execute", "-i", member.inventory_file, "--dc", str(context.request.target), "--resume"]
    return _launch(context, member, wave, args, _stored_deadline(context, member), resume=True)


def _started_since(context: FleetContext, service: str, migration: str, since: str) -> bool:
    for record in Journal(context.request.state_base / service).records():
        if record.get("event") == "migration-started" and record.get("migration") == migration:
            return str(record.get("ts", "")) >= since
    return False


def _launch(
    context: FleetContext, member: FleetService, wave: int, args: list[str], deadline: float, resume: bool = False
) -> ServiceResult:
    name = member.name
    files = child_files(context.run_dir, name, context.command)
    args = [*args, "--yes", "--format", "json", "--state-dir", str(context.request.state_base)]
    since = utc_now()
    child = _start_child(context, name, args, files)
    context.journal.append(
        "service-started",
        run=context.run_id,
        service=name,
        wave=wave,
        since=since,
        pid=child.pid,
        pid_start=child.start_ticks,
        resume=resume,
        deadline_seconds=deadline,
        out_file=str(files.out),
        log_file=str(files.log),
    )
    context.view.event(
        f"{name}: started {' '.join(args[:1])}{' --resume' if resume else ''} (wave {wave}, pid {child.pid})"
    )
    return _watch(context, member, wave, child, files, deadline, since, resumed=resume)


def _start_child(context: FleetContext, name: str, args: list[str], files: ChildFiles) -> Child:
    """Forked by the launcher; a plain process when it cannot serve (said once, then every later
    child starts plainly)."""
    launcher = context.launcher
    if launcher is not None:
        try:
            return Child.start(args, files, launcher)
        except LauncherError as exc:
            with context.lock:
                first = context.launcher is launcher
                context.launcher = None
            if first:
                context.view.event(f"{name}: children start as plain processes from now on ({exc})")
    return Child.start(args, files)


def _watch(
    context: FleetContext,
    member: FleetService,
    wave: int,
    child: Child,
    files: ChildFiles,
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
    set_progress(context, name, state="running")
    overran = {"noted": False}

    def on_poll(past: bool) -> None:
        if past and not overran["noted"]:
            overran["noted"] = True
            context.journal.append("service-overrun", run=context.run_id, service=name, deadline_seconds=deadline)
            context.view.event(f"{name}: OVERRAN its deadline of {deadline:.0f}s; still waiting (never killed)")
            set_progress(context, name, state="overran")

    child.wait(until, on_poll)
    result = _result_of(context, member, wave, files, child.returncode, since, resumed=resumed)
    result.overran = overran["noted"]
    return result


def _result_of(
    context: FleetContext,
    member: FleetService,
    wave: int,
    files: ChildFiles,
    returncode: int | None,
    since: str,
    resumed: bool,
) -> ServiceResult:
    name = member.name
    document = read_document(files.out)
    finished = utc_now()
    if document is None:
        code = returncode if returncode is not None and returncode > 0 else 1
        pending = latest_migration(Journal(context.request.state_base / name))
        ours = pending is not None and (resumed or _started_since(context, name, pending.id, since))
        if pending is not None and pending.finished is None and ours:
            # It died inside its migration (OOM killer, a kill): where it stopped is unknown, maybe
            # inside its window: an unsafe stop (4) that its own --resume finishes.
            verb = "execute --resume --dc " + str(pending.target) if context.command == "execute" else "rollback"
            result = ServiceResult(name, wave, "unsafe", exit_code=4, started=since, finished=finished,
                                   migration=pending.id, log_file=str(files.log), message=(
                                       f"its run died without a result (exit {returncode}) inside its migration "
                                       f"{pending.id}: finish it with `migrate {verb} -i {member.inventory_file}`; "
                                       f"see {files.log}"))  # fmt: skip
        else:
            result = ServiceResult(name, wave, "failed", exit_code=code, started=since, finished=finished,
                                   message=f"its run wrote no result (exit {returncode}); see {files.log} and "
                                   f"`migrate status -i {member.inventory_file}`", log_file=str(files.log))  # fmt: skip
    else:
        code = int(document.get("exit_code", returncode if returncode is not None else 1))
        kind = document.get("kind")
        # Only an error document can be a preflight refusal; then (rare) its own journal says
        # whether it had started a migration (an error out of a run is a failure, never "blocked").
        began = kind == "error" and (resumed or _began_migration(context, name, since))
        status = child_status(code, kind, document.get("verdict"), began)
        if status == "blocked":
            message = mask(str(document.get("message", "")), member.inventory.secrets())
            blocked = _blocked(context, member, wave, message)
            blocked.started, blocked.log_file = since, str(files.log)
            blocked.duration_seconds = seconds_between(since, blocked.finished)
            return _ended(context, blocked)
        result = ServiceResult(
            name,
            wave,
            status,
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
    result.duration_seconds = seconds_between(since, finished)
    return _ended(context, result)


def _began_migration(context: FleetContext, service: str, since: str) -> bool:
    migration = latest_migration(Journal(context.request.state_base / service))
    return migration is not None and _started_since(context, service, migration.id, since)
