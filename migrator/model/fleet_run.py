"""What a fleet run did, as plain data: one `ServiceResult` per service and the totals over them.

`fleet execute` and `fleet rollback` (migrator/run/fleet_run.py) fill these from each service's
`migrate execute|rollback --format json` document; the fleet report (render/fleet_run_report.py)
and the fleet journal read them. No I/O here, so the exit-code order and the totals are tested
with plain data.

The fleet's exit code is the worst of its services', in this order (docs/fleet.md):
4 (a service stopped unsafe) > 3 (a service rolled back) > 6 (a reviewed plan was stale) >
5 (a service's lock was busy) > 2 (a service refused its input) > 1 (a service failed, nothing
unsafe left) > 0. Usage errors of the fleet command itself are refused up front with 2, a busy
fleet lock with 5, before any service starts.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

# How a service ended in a fleet run.
#   moved: its run finished (exit 0) and the primary moved; no-op: it was already where asked;
#   skipped: blocked at start and --skip-blocked left it untouched; not-started: the failure budget
#   or a Ctrl-C stopped new starts before its turn; blocked: its own preflight refused it (a
#   failure, nothing changed; `child_status`); failed: its run failed with nothing unsafe left (exit 1, 2, 5, 6);
#   rolled-back: its gate timed out and the demotion was undone (exit 3, back where it started);
#   unsafe: stopped in an unsafe state (exit 4, its message says what to do);
#   running: still running (only while the run goes on, or an interrupted fleet run).
Status = Literal["moved", "no-op", "skipped", "not-started", "blocked", "failed", "rolled-back", "unsafe", "running"]
FAILED_STATUSES = frozenset({"blocked", "failed", "rolled-back", "unsafe"})
# The worst first; a code not listed (e.g. 130, a child killed by a signal) counts as 1.
EXIT_ORDER = (4, 3, 6, 5, 2, 1, 0)


def worst_exit_code(codes: list[int]) -> int:
    """The fleet's exit code: the worst of the services' (EXIT_ORDER), 0 when there are none."""
    known = [code if code in EXIT_ORDER else 1 for code in codes]
    return min(known, key=EXIT_ORDER.index) if known else 0


# A child that ended with this exit code and an error document (no run outcome), having started no
# migration of its own, was refused by its preflight: a blocking finding, or a site that did not
# answer its observation (PreflightError, UnreachableError). Nothing was changed. Every other
# refusal (2 bad input such as an unfinished migration, 5 lock busy, 6 stale reviewed plan) wants a
# human and stays a failure even with --skip-blocked.
BLOCKED_EXIT = 1


def child_status(exit_code: int, document_kind: str | None, verdict: str | None, migration_started: bool) -> Status:
    """A finished child's status from its result: its exit code, its JSON document's kind ("run" or
    "error") and verdict, and whether its own journal recorded a migration started by it."""
    if exit_code == BLOCKED_EXIT and document_kind == "error" and not migration_started:
        return "blocked"
    return status_of(exit_code, verdict)


def status_of(exit_code: int, verdict: str | None) -> Status:
    """A finished service's status from its exit code and its document's verdict."""
    if exit_code == 0:
        return "no-op" if verdict == "nothing-to-do" else "moved"
    if exit_code == 3:
        return "rolled-back"
    if exit_code == 4:
        return "unsafe"
    return "failed"


@dataclass
class ServiceResult:
    service: str
    wave: int
    status: Status
    exit_code: int | None = None  # None: no child ran (skipped, not-started) or it still runs
    message: str = ""
    started: str | None = None  # UTC ISO, when the fleet started its child
    finished: str | None = None
    duration_seconds: float | None = None
    write_unavailable_seconds: float | None = None
    migration: str | None = None  # the service's own migration id (its journal)
    token: dict[str, Any] | None = None
    timelines: dict[str, Any] | None = None
    new_primary: str | None = None
    report_file: str | None = None  # the service's own run report
    log_file: str | None = None  # its child's progress lines
    overran: bool = False  # ran past the deadline its plan's gates give it (reported, never killed)
    resumed: bool = False  # run with `execute --resume` (an interrupted single-service run)

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FleetRunSummary:
    """A whole fleet run: its identity and one result per service, in wave order."""

    run: str
    command: str  # execute | rollback
    fleet: str
    target: str | None
    started: str
    finished: str | None
    wall_seconds: float | None
    parallel: int
    max_failures: int
    fingerprint: str | None  # the reviewed fleet plan's, when --plan was given
    results: list[ServiceResult] = field(default_factory=list)
    stopped_early: str | None = None  # why no new service started (failure budget, Ctrl-C)
    report_file: str | None = None
    gantt_file: str | None = None
    journal_file: str | None = None

    @property
    def exit_code(self) -> int:
        return worst_exit_code([r.exit_code for r in self.results if r.exit_code is not None] + self._blocked())

    def _blocked(self) -> list[int]:
        # A service blocked at start, or never started (failure budget, Ctrl-C, a declined wave):
        # the fleet did not do everything it was asked, so at least 1.
        return [1 for r in self.results if r.status in ("blocked", "not-started") and r.exit_code is None]

    def totals(self) -> dict[str, Any]:
        counts = {status: 0 for status in ("moved", "no-op", "skipped", "not-started", "failed", "unsafe")}
        back = 0
        for result in self.results:
            if result.status in ("blocked", "failed"):
                counts["failed"] += 1
            elif result.status == "rolled-back":
                counts["failed"] += 1
                back += 1
            elif result.status in counts:
                counts[result.status] += 1
        gaps = sorted(r.write_unavailable_seconds for r in self.results if r.write_unavailable_seconds is not None)
        return {
            "services": len(self.results),
            **{key.replace("-", "_"): value for key, value in counts.items()},
            "back_where_started": back,
            "running": sum(1 for r in self.results if r.status == "running"),
            "overran": sum(1 for r in self.results if r.overran),
            "wall_seconds": self.wall_seconds,
            "longest_gap_seconds": gaps[-1] if gaps else None,
            "median_gap_seconds": round(statistics.median(gaps), 3) if gaps else None,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "kind": "fleet-run",
            "command": self.command,
            "run": self.run,
            "fleet": self.fleet,
            "target": self.target,
            "started": self.started,
            "finished": self.finished,
            "parallel": self.parallel,
            "max_failures": self.max_failures,
            "fingerprint": self.fingerprint,
            "exit_code": self.exit_code,
            "stopped_early": self.stopped_early,
            "totals": self.totals(),
            "services": [r.as_json() for r in self.results],
            "report_file": self.report_file,
            "gantt_file": self.gantt_file,
            "journal_file": self.journal_file,
        }


@dataclass
class ServiceProgress:
    """One row of the live view while a fleet runs."""

    service: str
    wave: int
    state: str  # waiting | running | overran | a final Status
    phase: str | None = None
    lag_bytes: int | None = None
    deadline_seconds: float | None = None  # left before its deadline (negative: overran)
    write_unavailable_seconds: float | None = None
    exit_code: int | None = None
    note: str = ""
