"""The fleet run report (`fleet execute` / `fleet rollback`): Markdown beside the fleet journal,
a short text version for the terminal, and the fleet Gantt from each service's own journal.

The JSON form is `FleetRunSummary.as_json()` itself (docs/fleet.md). Nothing here reads a file
or a secret: the caller passes the journals' records in and masks what is written.
"""

from __future__ import annotations

from typing import Any

from migrator.model.fleet_run import FleetRunSummary, ServiceResult
from migrator.render.plan_report import _md_cell
from migrator.render.timeline import fleet_gantt, service_run

COLUMNS = ("wave", "service", "outcome", "exit", "write gap", "duration", "token", "timelines", "report / log")
_TOTALS = (
    ("moved", "moved"),
    ("no_op", "no-op"),
    ("skipped", "skipped"),
    ("not_started", "not started"),
    ("failed", "failed"),
    ("back_where_started", "back where started"),
    ("unsafe", "stopped unsafe"),
    ("overran", "overran their deadline"),
)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def _token(result: ServiceResult) -> str:
    if not result.token:
        return "-"
    return f"{result.token.get('lsn')} (tl {result.token.get('timeline')})"


def _timelines(result: ServiceResult) -> str:
    if not result.timelines:
        return "-"
    return f"{result.timelines.get('before')} -> {result.timelines.get('after')}"


def _outcome(result: ServiceResult) -> str:
    marks = [m for m, on in (("overran", result.overran), ("resumed", result.resumed)) if on]
    return result.status + (f" ({', '.join(marks)})" if marks else "")


def rows(summary: FleetRunSummary) -> list[list[str]]:
    return [
        [
            str(r.wave),
            r.service,
            _outcome(r),
            "-" if r.exit_code is None else str(r.exit_code),
            _seconds(r.write_unavailable_seconds),
            _seconds(r.duration_seconds),
            _token(r),
            _timelines(r),
            r.report_file or r.log_file or "-",
        ]
        for r in summary.results
    ]


def totals_line(summary: FleetRunSummary) -> str:
    totals = summary.totals()
    counts = ", ".join(f"{totals[key]} {label}" for key, label in _TOTALS if totals.get(key))
    longest, median = totals["longest_gap_seconds"], totals["median_gap_seconds"]
    gaps = f"; write gap longest {_seconds(longest)}, median {_seconds(median)}" if longest is not None else ""
    return f"{totals['services']} service(s): {counts or 'none ran'}; wall time {_seconds(summary.wall_seconds)}{gaps}"


def headline(summary: FleetRunSummary) -> str:
    what = f"to {summary.target}" if summary.command == "execute" else "back"
    return f"fleet {summary.command} {summary.fleet} {what}: exit {summary.exit_code}"


def markdown(summary: FleetRunSummary, gantt_file: str | None = None) -> str:
    lines = [
        f"# Fleet {summary.command}: {summary.fleet}",
        "",
        f"- run: `{summary.run}`; started {summary.started}, finished {summary.finished}",
        f"- {'target: ' + str(summary.target) if summary.command == 'execute' else 'moving back what the run moved'}; "
        f"parallel {summary.parallel}, max_failures {summary.max_failures}",
        f"- reviewed fleet plan: {summary.fingerprint or 'none (each service planned by its own run)'}",
        f"- **exit code {summary.exit_code}** (the worst of the services': 4 > 3 > 6 > 5 > 2 > 1 > 0)",
        f"- {totals_line(summary)}",
    ]
    if summary.stopped_early:
        lines.append(f"- **no new service started after**: {summary.stopped_early}")
    lines += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows(summary)]
    messages = [r for r in summary.results if r.message]
    if messages:
        lines += ["", "## What each service said", ""]
        lines += [f"- **{r.service}** ({r.status}): {_md_cell(r.message)}" for r in messages]
    if gantt_file:
        lines += ["", "## Gantt", "", f"![fleet Gantt of run {summary.run}]({gantt_file})"]
    return "\n".join(lines) + "\n"


def text(summary: FleetRunSummary) -> str:
    widths = [max(len(c), *(len(row[i]) for row in rows(summary))) for i, c in enumerate(COLUMNS[:-1])]
    out = [headline(summary), totals_line(summary)]
    if summary.stopped_early:
        out.append(f"no new service started after: {summary.stopped_early}")
    out.append("  ".join(c.ljust(w) for c, w in zip(COLUMNS[:-1], widths, strict=True)))
    for row in rows(summary):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)))
    for result in summary.results:
        if result.exit_code not in (None, 0) or result.status == "skipped":
            out.append(f"{result.service}: {result.message}")
    return "\n".join(out) + "\n"


def gantt(items: list[tuple[str, list[dict[str, Any]], str]], title: str = "fleet") -> str:
    """The fleet Gantt: one row per service that ran, from its own journal's records."""
    return fleet_gantt([service_run(service, records, migration) for service, records, migration in items], title)
