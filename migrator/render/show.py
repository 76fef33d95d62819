"""`migrate show PLAN_FILE`: a saved plan (the JSON `migrate plan --out` writes) rendered again
for a reviewer as text, Markdown, JSON or the per-plan runbook, with no inventory and no site
contacted (terraform's `show`). The file's secrets were masked when it was written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from migrator.errors import UsageError, one_line, shown
from migrator.model.plan import Plan
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


def show_plan(path: Path, fmt: str, *, color: bool = False) -> Shown:
    if fmt not in FORMATS:
        raise UsageError(f"show: unknown format {shown(fmt)}; use one of {', '.join(FORMATS)}")
    plan = load_plan_file(path)
    warnings = []
    if not plan.verify_fingerprint():
        warnings.append(
            f"WARNING: plan file {shown(path, 200)} was changed after `migrate plan` wrote it (its content "
            f"no longer matches fingerprint {plan.fingerprint[:12]}); review a freshly written plan instead"
        )
    text = render_runbook(plan) if fmt == "runbook" else render(plan, fmt, color=color)  # type: ignore[arg-type]
    code = 0 if plan.executable and not warnings else 1
    return Shown(text if text.endswith("\n") else text + "\n", warnings, code)
