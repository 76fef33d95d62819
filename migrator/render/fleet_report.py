"""The fleet plan for a change board: terminal text (rich), Markdown, or JSON.

Text and Markdown carry the same content in the same order, from one view (`fleet_view`): the
header (target, fleet fingerprint, verdict), a row per service in wave order (verdict, playbook,
expected write unavailability, the first blocking finding with its fix, the Patroni version path),
the totals, and the waves in order. JSON is the fleet plan itself, each service's full plan
included. Nothing here reads an inventory or a secret: the caller masks.
"""

from __future__ import annotations

import json
from typing import Any

from rich.table import Table
from rich.text import Text

from migrator.model.fleet_plan import FleetPlan, FleetServicePlan
from migrator.render.plan_report import _console, _md_cell

FORMATS: tuple[str, ...] = ("text", "md", "json")
_PLAYBOOK = {"switchover": "switchover", "seed": "seed", "reseed": "re-seed", "noop": "no-op"}
_VERDICT = {"executable": "executable", "no-op": "no-op", "blocked": "BLOCKED", "skipped": "skipped (blocked)"}
COLUMNS = [
    ("wave", "wave"),
    ("service", "service"),
    ("verdict", "verdict"),
    ("playbook", "playbook"),
    ("unavailable", "write unavailable"),
    ("versions", "Patroni version path"),
    ("blocking", "first blocking finding; fix"),
]


def render(fleet_plan: FleetPlan, fmt: str = "text", *, color: bool = False) -> str:
    if fmt == "json":
        return json.dumps(fleet_plan.model_dump(mode="json"), sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    if fmt == "md":
        return _markdown(fleet_view(fleet_plan))
    if fmt == "text":
        return _text(fleet_view(fleet_plan), color=color)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


def verdict_line(fleet_plan: FleetPlan) -> str:
    totals = fleet_plan.totals
    counts = ", ".join(f"{totals[key]} {key}" for key in ("executable", "no-op", "blocked", "skipped") if totals[key])
    if totals["blocked"]:
        head = "BLOCKED: fix the blocked services, or pass --skip-blocked to plan the others without them"
    elif totals["skipped"]:
        head = (
            f"executable without the {totals['skipped']} skipped (blocked) service(s), which the run leaves as they are"
        )
    else:
        head = "executable: every service can move or has nothing to do"
    return f"{head} ({counts})"


def _unavailable(row: FleetServicePlan) -> str:
    if row.write_unavailable_seconds is None:
        return "-"
    worst = f" (worst {row.worst_case_seconds:g}s)" if row.worst_case_seconds is not None else ""
    return f"~{row.write_unavailable_seconds:g}s{worst}"


def _versions(row: FleetServicePlan) -> str:
    versions = ", ".join(row.patroni_versions) or "unknown"
    return f"{versions}: {row.demote_path}" if row.demote_path else versions


def _row_view(row: FleetServicePlan) -> dict[str, str]:
    return {
        "wave": str(row.wave),
        "service": row.service,
        "verdict": _VERDICT[row.verdict],
        "playbook": _PLAYBOOK.get(row.proposal or "", "-"),
        "unavailable": _unavailable(row),
        "versions": _versions(row),
        "blocking": row.blocking or "-",
        "inventory": row.inventory,
        "fingerprint": row.fingerprint[:12] if row.fingerprint else "-",
    }


def fleet_view(fleet_plan: FleetPlan) -> dict[str, Any]:
    totals = fleet_plan.totals
    longest = totals["expected_write_unavailable_seconds_max"]
    waves = []
    for wave in fleet_plan.waves:
        label = f"wave {wave.number}" + (" (implicit: the services named in no wave)" if wave.implicit else "")
        skipped = {row.service for row in fleet_plan.services if row.verdict in ("skipped", "blocked")}
        names = [f"{name} (skipped)" if name in skipped and fleet_plan.skip_blocked else name for name in wave.services]
        waves.append(f"{label}: {', '.join(names) or '(empty)'}")
    return {
        "title": f"Fleet plan {fleet_plan.fleet}: {len(fleet_plan.services)} service(s) -> {fleet_plan.target}",
        "header": [
            f"observed at        {fleet_plan.observed_at}",
            f"fleet fingerprint  {fleet_plan.fingerprint}",
            f"parallel           {fleet_plan.parallel}; max_failures {fleet_plan.max_failures}; "
            f"pause between waves: {'yes' if fleet_plan.pause_between_waves else 'no'}",
        ],
        "verdict": verdict_line(fleet_plan),
        "skip_note": (
            "--skip-blocked: the skipped services are not part of the run and stay as they are"
            if fleet_plan.skip_blocked and totals["skipped"]
            else None
        ),
        "rows": [_row_view(row) for row in fleet_plan.services],
        "totals": [
            f"services: {totals['services']}; executable {totals['executable']}, no-op {totals['no-op']}, "
            f"blocked {totals['blocked']}, skipped {totals['skipped']}",
            "expected write unavailability: "
            + (
                f"longest ~{longest:g}s, summed ~{totals['expected_write_unavailable_seconds_sum']:g}s "
                "(each service's own window; services in parallel overlap)"
                if longest is not None
                else "none (no service moves)"
            ),
        ],
        "waves": waves,
        "warnings": [f"{row.service}: {w}" for row in fleet_plan.services for w in row.warnings],
        "fingerprints": [(row.service, row.fingerprint or "-", row.inventory) for row in fleet_plan.services],
    }


def _markdown(view: dict[str, Any]) -> str:
    lines = [f"# {view['title']}", "", *(f"- {h}" for h in view["header"]), "", f"**{view['verdict']}**", ""]
    if view["skip_note"]:
        lines += [f"_{view['skip_note']}_", ""]
    if view["warnings"]:
        lines += ["## Warnings", "", *(f"- {_md_cell(w)}" for w in view["warnings"]), ""]
    lines += ["## Services", "", "| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_md_cell(row[key]) for key, _ in COLUMNS) + " |" for row in view["rows"]]
    lines += ["", "## Totals", "", *(f"- {t}" for t in view["totals"]), "", "## Waves, in order", ""]
    lines += [f"{i}. {w}" for i, w in enumerate(view["waves"], start=1)]
    lines += ["", "## Plan fingerprints", "", "| service | plan fingerprint | inventory |", "|---|---|---|"]
    lines += [f"| {_md_cell(s)} | `{f}` | {_md_cell(i)} |" for s, f, i in view["fingerprints"]]
    return "\n".join(lines) + "\n"


def _text(view: dict[str, Any], *, color: bool) -> str:
    console, out = _console(color)

    def line(text: str = "", style: str | None = None) -> None:
        console.print(Text(text, style=style or ""), soft_wrap=True)

    line(view["title"], "bold")
    for header in view["header"]:
        line(header)
    line(view["verdict"], "bold red" if view["verdict"].startswith("BLOCKED") else "bold green")
    if view["skip_note"]:
        line(view["skip_note"], "yellow")
    for warning in view["warnings"]:
        line(f"WARNING {warning}", "bold yellow")
    line()
    table = Table(title="Services", title_justify="left", expand=False)
    for key, header in COLUMNS:
        table.add_column(header, overflow="fold", no_wrap=key in ("wave", "verdict"))
    for row in view["rows"]:
        style = "red" if row["verdict"] == "BLOCKED" else ("yellow" if row["verdict"].startswith("skipped") else "")
        table.add_row(*(Text(row[key], style=style if key == "verdict" else "") for key, _ in COLUMNS))
    console.print(table)
    line()
    line("Totals", "bold")
    for total in view["totals"]:
        line(f"  {total}")
    line("Waves, in order", "bold")
    for wave in view["waves"]:
        line(f"  {wave}")
    line("Plan fingerprints", "bold")
    for service, fingerprint, inventory in view["fingerprints"]:
        line(f"  {service}  {fingerprint}  {inventory}")
    return out.getvalue()
