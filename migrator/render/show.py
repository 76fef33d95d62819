"""`migrate show PLAN_FILE`: a saved plan (the JSON `migrate plan --out` writes, or the failover
plan `migrate plan --failover --out` writes) rendered again for a reviewer as text, Markdown, JSON
or the per-plan runbook, with no inventory and no site contacted (terraform's `show`). The file's
secrets were masked when it was written."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from migrator.errors import UsageError, one_line, shown
from migrator.model.failover import FailoverPlan, is_failover_document
from migrator.model.plan import Plan
from migrator.render.failover_report import render_failover
from migrator.render.plan_report import render, render_runbook

FORMATS = ("text", "md", "json", "runbook")


@dataclass(frozen=True)
class Shown:
    text: str
    warnings: list[str]
    exit_code: int  # 0 executable, 1 blocked or edited since written (as `migrate plan`)


def load_plan_file(path: Path) -> Plan:
    """The plan in `path`, or one line saying why it is not one and how to get one."""
    how = "write one with `migrate plan --dc NAME --out FILE`"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"plan file {shown(path, 200)}: cannot be read ({exc.strerror or exc}); {how}") from None
    try:
        return Plan.from_json(data)
    except ValueError as exc:
        first = one_line(str(exc).splitlines()[0]) if str(exc) else "not JSON"
        raise UsageError(f"plan file {shown(path, 200)} is not a plan ({shown(first, 120)}); {how}") from None


def _failover_plan(path: Path) -> FailoverPlan | None:
    """The failover plan in `path` (`plan --failover --out` writes one: the move's plan inside its
    fences and proof), or None when the file holds no such document."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None  # load_plan_file says why, in its own words
    if not is_failover_document(data):
        return None
    data.pop("executable", None)  # derived from `blocked` when it was written
    try:
        return FailoverPlan.model_validate(data)
    except ValueError as exc:
        first = one_line(str(exc).splitlines()[0]) if str(exc) else "not valid"
        raise UsageError(
            f"plan file {shown(path, 200)} is not a failover plan ({shown(first, 120)}); write one with "
            "`migrate plan --failover --dc NAME --out FILE`"
        ) from None


def show_plan(path: Path, fmt: str, *, color: bool = False) -> Shown:
    if fmt not in FORMATS:
        raise UsageError(f"show: unknown format {shown(fmt)}; use one of {', '.join(FORMATS)}")
    failover = _failover_plan(path)
    if failover is not None:
        return _shown(path, failover.plan, render_failover(failover, fmt), failover.executable)  # type: ignore[arg-type]
    plan = load_plan_file(path)
    text = render_runbook(plan) if fmt == "runbook" else render(plan, fmt, color=color)  # type: ignore[arg-type]
    return _shown(path, plan, text, plan.executable)


def _shown(path: Path, plan: Plan, text: str, executable: bool) -> Shown:
    warnings = []
    if not plan.verify_fingerprint():
        warnings.append(
            f"WARNING: plan file {shown(path, 200)} was changed after `migrate plan` wrote it (its content "
            f"no longer matches fingerprint {plan.fingerprint[:12]}); review a freshly written plan instead"
        )
    code = 0 if executable and not warnings else 1
    return Shown(text if text.endswith("\n") else text + "\n", warnings, code)
