"""The change-review report of a Plan: terminal text (rich), Markdown, or JSON.

All three carry the same content, in the same order: header and verdict (blocking findings
first), warnings, expected write-unavailability, topology before and after, every check with its
verdict, finding and fix, every step (phase, title, gate with threshold and timeout, undo, manual
equivalent commands), and each site's config diff. Text and Markdown are built from one view
(`report_view`), so they cannot drift apart; JSON is the plan itself.

Nothing here reads the inventory or a secret: a report shows what the plan holds, and plans hold
no secrets.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any, Literal

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from rich.console import Console
from rich.table import Table
from rich.text import Text

from migrator.model.findings import Finding, Verdict
from migrator.model.plan import MemberView, Plan, PlanHook, PlanStep, SiteView
from migrator.model.playbook import TEMPLATE_DIR
from migrator.resources import shipped_file, shown_path
from migrator.steps.kinds import HOOK_KINDS, STEP_KINDS, declared, promotes

Format = Literal["text", "md", "json"]
FORMATS: tuple[str, ...] = ("text", "md", "json")
TEXT_WIDTH = 120


def render(plan: Plan, fmt: Format = "text", *, color: bool = False) -> str:
    """The report as a string. `color` (text only) keeps ANSI styles: pass True only when the
    string goes straight to a terminal."""
    if fmt == "json":
        return plan.to_json(pretty=True)
    if fmt == "md":
        return _markdown(report_view(plan))
    if fmt == "text":
        return _text(report_view(plan), color=color)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")


def render_findings(findings: list[Finding], source: str, target: str, *, color: bool = False) -> str:
    """`migrate check` in the terminal: the verdict, then every check (blocking first)."""
    ordered = sorted(findings, key=lambda f: _RANK[f.verdict])
    blocked = [f for f in ordered if f.verdict is Verdict.BLOCK]
    console, out = _console(color)
    if blocked:
        verdict = f"BLOCKED: {len(blocked)} blocking finding{'s' if len(blocked) != 1 else ''} for {source} -> {target}"
    else:
        verdict = f"no blocking finding for {source} -> {target}"
    style = "bold red" if blocked else "bold green"
    console.print(Text(f"Preflight checks: {verdict}", style=style), soft_wrap=True)
    if ordered:
        console.print(
            _table("", _FINDING_COLUMNS, [_finding_view(f) for f in ordered], no_wrap=("verdict", "check", "site"))
        )
    return out.getvalue()


_RANK = {Verdict.BLOCK: 0, Verdict.WARN: 1, Verdict.OK: 2}


# --- the shared view --------------------------------------------------------------------------


def _dash(value: Any) -> str:
    if value is None or value == "" or value == ():
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _seconds(value: float) -> str:
    return f"{value:g} s"


def verdict_line(plan: Plan) -> str:
    if plan.noop_reason is not None:
        suffix = "" if plan.executable else f" (and BLOCKED: {len(plan.blocking_findings)} blocking finding(s))"
        return f"NOTHING TO DO: {plan.noop_reason}{suffix}"
    if plan.executable:
        return "EXECUTABLE: no blocking finding"
    count = len(plan.blocking_findings)
    return f"BLOCKED: {count} blocking finding{'s' if count != 1 else ''}; nothing will be changed"


def _site_row(view: SiteView) -> dict[str, str]:
    leader = view.leader or view.leader_note or "-"
    if view.leader and view.leader_note:
        leader = f"{view.leader} ({view.leader_note})"
    return {
        "site": view.name,
        "scope": view.scope,
        "role": view.role,
        "follows": _dash(view.follows),
        "leader": leader,
        "replicas": ", ".join(view.replicas) if view.replicas else "-",
        "timelines": ", ".join(str(t) for t in view.timelines) if view.timelines else "-",
        "lag": _dash(view.replay_lag_bytes),
    }


def _member_row(site: str, member: MemberView) -> dict[str, str]:
    return {
        "site": site,
        "member": member.name,
        "host": member.host,
        "role": _dash(member.role),
        "state": _dash(member.state),
        "timeline": _dash(member.timeline),
        "writable": _dash(member.writable),
        "lag": _dash(member.replay_lag_bytes),
        "patroni": _dash(member.patroni_version),
        "error": _dash(member.error),
    }


def _step_view(number: int, step: PlanStep) -> dict[str, Any]:
    flags = []
    if step.write_unavailable:
        flags.append("inside the write-unavailability window")
    if step.already_satisfied:
        flags.append("already satisfied at plan time (the engine's precheck will skip it)")
    if step.when:
        flags.append(f"selected because: {step.when}")
    gate = None
    if step.gate is not None:
        gate = {
            "wait_for": step.gate.wait_for,
            "threshold": step.gate.threshold or "-",
            "timeout": _seconds(step.gate.timeout_seconds),
        }
    undo = step.undo.kind if step.undo.kind != "none" else "none"
    if step.undo.description:
        undo = f"{undo}: {step.undo.description}"
    return {
        "number": number,
        "id": step.id,
        "phase": step.phase,
        "kind": step.kind,
        "title": step.title,
        "flags": flags,
        "gate": gate,
        "undo": undo,
        "manual": list(step.manual),
    }


# How a step's line in the report names the hooks that run with it.
_HOOK_FLAG = {
    "before_demote": "runs hook before_demote first",
    "before_promote": "runs hook before_promote right before the PATCH",
    "after_promote": "runs hook after_promote once the target is primary",
    "on_undo": "when this step is undone, runs hook on_undo afterwards",
}


def _hook_flags(plan: Plan, step: PlanStep) -> list[str]:
    """On the first step of each hook's kinds: that the hook runs there, with its command."""
    first = {name: next((s.id for s in plan.steps if s.kind in kinds), None) for name, kinds in HOOK_KINDS.items()}
    return [
        f"{_HOOK_FLAG[hook.name]}: `{hook.command}` (timeout {_seconds(hook.timeout_seconds)})"
        for hook in plan.hooks
        if first.get(hook.name) == step.id
    ]


def _hook_view(hook: PlanHook) -> dict[str, str]:
    return {"name": hook.name, "command": hook.command, "timeout": _seconds(hook.timeout_seconds), "when": hook.when}


def report_view(plan: Plan) -> dict[str, Any]:
    """Everything a report shows, as plain strings and lists, in the order shown."""
    findings = plan.ordered_findings()
    warnings = plan.warnings
    unavailability = None
    if plan.write_unavailability is not None:
        w = plan.write_unavailability
        unavailability = {
            "path": w.path,
            "expected": _seconds(w.expected_seconds),
            "worst": _seconds(w.worst_case_seconds),
            "summary": w.summary,
        }
    return {
        "service": plan.service,
        "source": plan.source,
        "target": plan.target,
        "observed_at": plan.observed_at,
        "fingerprint": plan.fingerprint,
        "playbook": plan.playbook,
        "path": "graceful demote (Patroni >= 4.1 everywhere)"
        if plan.graceful_demote
        else "pause, clean stop, promote, resume (Patroni < 4.1 somewhere, or unknown)",
        "verdict": verdict_line(plan),
        "executable": plan.executable,
        "noop_reason": plan.noop_reason,
        "blocking": [_finding_view(f) for f in plan.blocking_findings],
        "warnings": warnings,
        "unavailability": unavailability,
        "sites_before": [_site_row(v) for v in plan.topology_before.values()],
        "sites_after": [_site_row(v) for v in plan.topology_after.values()],
        "members_before": [_member_row(v.name, m) for v in plan.topology_before.values() for m in v.members],
        "findings": [_finding_view(f) for f in findings],
        "steps": [_with_flags(_step_view(i, s), _hook_flags(plan, s)) for i, s in enumerate(plan.steps, start=1)],
        "hooks": [_hook_view(h) for h in plan.hooks],
        "diffs": [{"site": site, "diff": diff} for site, diff in plan.config_diff.items()],
    }


def _with_flags(view: dict[str, Any], flags: list[str]) -> dict[str, Any]:
    return {**view, "flags": [*view["flags"], *flags]}


def _finding_view(finding: Finding) -> dict[str, str]:
    return {
        "verdict": finding.verdict.value.upper(),
        "check": finding.check,
        "site": _dash(finding.site),
        "finding": finding.finding,
        "fix": _dash(finding.fix),
    }


# --- Markdown ---------------------------------------------------------------------------------


def _md_cell(value: Any) -> str:
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return " <br> ".join(text.splitlines()) or " "


def _fence(text: str) -> str:
    """A backtick fence longer than any backtick run inside `text`."""
    longest, run = 0, 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


@lru_cache(maxsize=1)
def _markdown_env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = _md_cell
    env.filters["fence"] = _fence
    return env


def _md_template() -> Any:
    return _markdown_env().get_template("report.md.j2")


def _markdown(view: dict[str, Any]) -> str:
    return _md_template().render(**view)


# --- terminal text ----------------------------------------------------------------------------


def _table(
    title: str, columns: list[tuple[str, str]], rows: list[dict[str, str]], no_wrap: tuple[str, ...] = ()
) -> Table:
    table = Table(title=title, title_justify="left", show_lines=False, expand=False)
    for key, header in columns:
        table.add_column(header, no_wrap=key in no_wrap, overflow="fold")
    for row in rows:
        table.add_row(*(Text(row[key]) for key, _ in columns))
    return table


_SITE_COLUMNS = [
    ("site", "site"),
    ("role", "role"),
    ("follows", "follows"),
    ("leader", "leader"),
    ("replicas", "replicas"),
    ("timelines", "timelines"),
    ("lag", "max replay lag (bytes)"),
]
_MEMBER_COLUMNS = [
    ("site", "site"),
    ("member", "member"),
    ("host", "host"),
    ("role", "role"),
    ("state", "state"),
    ("timeline", "TL"),
    ("writable", "writable"),
    ("lag", "replay lag (bytes)"),
    ("patroni", "Patroni"),
    ("error", "error"),
]
_FINDING_COLUMNS = [
    ("verdict", "verdict"),
    ("check", "check"),
    ("site", "site"),
    ("finding", "finding"),
    ("fix", "fix"),
]


def _console(color: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    console = Console(
        file=out,
        width=TEXT_WIDTH,
        force_terminal=color,
        color_system="standard" if color else None,
        no_color=not color,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=False,
    )
    return console, out


def _text(view: dict[str, Any], *, color: bool) -> str:
    console, out = _console(color)

    def line(text: str = "", style: str | None = None) -> None:
        # soft_wrap: long lines (commands) stay whole, so they can be copied.
        console.print(Text(text, style=style or ""), soft_wrap=True)

    def heading(text: str) -> None:
        line()
        line(text, "bold")
        line("=" * len(text))

    kind = {"seed": "Seeding plan", "reattach": "Reattach plan"}.get(view["playbook"], "Switchover plan")
    line(f"{kind} for service {view['service']}: {view['source']} -> {view['target']}", "bold")
    line(f"observed at   {view['observed_at']}")
    line(f"fingerprint   {view['fingerprint']}")
    line(f"playbook      {view['playbook']} ({view['path']})")
    line(
        f"verdict       {view['verdict']}",
        "bold green" if view["executable"] and not view["noop_reason"] else "bold red",
    )
    for finding in view["blocking"]:
        line(f"  BLOCK {finding['check']} [{finding['site']}]: {finding['finding']}", "red")
        line(f"        fix: {finding['fix']}")
    for warning in view["warnings"]:
        line(warning, "bold yellow")

    heading("Expected write-unavailability")
    if view["unavailability"]:
        u = view["unavailability"]
        line(f"expected {u['expected']}, worst case {u['worst']} ({u['path']})")
        line(u["summary"])
    elif view["playbook"] == "seed":
        line("none: seeding neither demotes nor promotes; the cut-over is planned afterwards")
    elif view["playbook"] == "reattach":
        line("none: the new primary keeps taking writes; the old site comes back as a standby")
    else:
        line("none: no step is planned")

    heading("Topology")
    console.print(_table("Before (observed)", _SITE_COLUMNS, view["sites_before"], no_wrap=("site", "role")))
    console.print(_table("After (predicted)", _SITE_COLUMNS, view["sites_after"], no_wrap=("site", "role")))
    console.print(
        _table(
            "Members (observed)", _MEMBER_COLUMNS, view["members_before"], no_wrap=("site", "member", "host", "role")
        )
    )

    heading("Checks")
    if view["findings"]:
        console.print(_table("", _FINDING_COLUMNS, view["findings"], no_wrap=("verdict", "check", "site")))
    else:
        line("no check results in this plan")

    heading("Hooks (run on this machine; the fingerprint covers them)")
    if not view["hooks"]:
        line("none configured for this plan's steps")
    for hook in view["hooks"]:
        line(f"{hook['name']} (timeout {hook['timeout']}): {hook['when']}")
        line(f"  $ {hook['command']}")

    heading("Steps")
    if not view["steps"]:
        line("no steps" + (f": {view['noop_reason']}" if view["noop_reason"] else ""))
    for step in view["steps"]:
        line()
        line(f"{step['number']:>2}. [{step['phase']}] {step['title']}", "bold")
        line(f"    id {step['id']}, kind {step['kind']}")
        for flag in step["flags"]:
            line(f"    - {flag}")
        if step["gate"]:
            gate = step["gate"]
            line(f"    gate: {gate['wait_for']}")
            line(f"      threshold: {gate['threshold']}; timeout: {gate['timeout']}")
        else:
            line("    gate: none")
        line(f"    undo: {step['undo']}")
        if step["manual"]:
            line("    manual equivalent:")
            for command in step["manual"]:
                line(f"      $ {command}")

    heading("Dynamic config changes")
    for diff in view["diffs"]:
        line()
        if diff["diff"]:
            line(f"{diff['site']}:", "bold")
            for text in diff["diff"].splitlines():
                style = "green" if text.startswith("+") else "red" if text.startswith("-") else None
                line(text, style)
        else:
            line(f"{diff['site']}: unchanged")
    return out.getvalue()


# --- the per-plan runbook (`migrate plan --format runbook`) -------------------------------------

RUNBOOK_DOC = "runbooks/switchover.md"

# Sections of runbooks/switchover.md (each has an <a id="..."> anchor there): anchor, title, when.
RUNBOOK_FAILURES: tuple[tuple[str, str, str], ...] = (
    (
        "catch-up-timed-out",
        "Catch-up gate timed out",
        "exit 3: a gate timed out before the promotion; the tool undid the demotion",
    ),
    (
        "promotion-not-confirmed",
        "Promotion sent but not confirmed",
        "exit 4 once the promotion was sent: never re-promote the source",
    ),
    (
        "undo-failed",
        "Undo failed",
        "exit 4 before the promotion: undoing failed too; decide which site may take writes",
    ),
    (
        "operator-crashed",
        "The operator's machine crashed",
        "the machine running migrate crashed or the run was killed: --resume",
    ),
    ("second-operator", "A second operator was refused", "exit 2: another run holds the lock"),
    ("stale-plan", "The reviewed plan is stale", "exit 1: the --plan fingerprint no longer matches"),
    (
        "follows-a-replica",
        "The standby site follows a replica",
        "'session is read-only' in Patroni's log; the standby leader's sender is a replica",
    ),
    (
        "slot-missing",
        "A slot is missing, or the WAL is gone",
        "'replication slot ... does not exist' or WAL already removed: re-seed",
    ),
    (
        "source-diverged",
        "The source diverged after the promotion",
        "'forked off' or pg_rewind lines after the promotion",
    ),
    ("two-primaries", "Two primaries in one site", "two writable members in one site"),
    ("older-patroni", "Patroni < 4.1", "the pause / clean stop / resume path (manual)"),
    ("hooks", "Hooks: holding and moving traffic", "a hook failed or was killed at its timeout"),
    ("rollback", "Rollback", "moving back, before or after the promotion"),
    ("journal", "Reading the journal", "what the journal's events say"),
)
_RUNBOOK_TITLES = {anchor: title for anchor, title, _ in RUNBOOK_FAILURES}

# Phases with a runbook page of their own, besides the switchover runbook's sections (a step
# kind's own sections and page are in its declaration, migrator/steps/kinds.py).
_PHASE_PAGES = {"seed": "runbooks/seed.md", "wipe": "runbooks/slot-or-wal-gone.md"}


def runbook_link(target: str) -> str:
    """A runbook page (`runbooks/seed.md`, with or without `#anchor`) as a link that opens from
    the working directory: the repo-relative name in the project's tree, the installed file's
    absolute path from a wheel (migrator/resources.py)."""
    page, hash_sign, anchor = target.partition("#")
    return shown_path(shipped_file(page)) + hash_sign + anchor


def _step_links(phase: str, kind: str) -> list[dict[str, str]]:
    """Where the runbooks say what to do when this step fails: the phase's section (or its own
    page), the switchover runbook's failure sections for the kind, then the kind's own page."""
    if phase in _PHASE_PAGES:
        links = [{"target": _PHASE_PAGES[phase], "title": f"phase {phase}"}]
    else:
        links = [{"target": f"{RUNBOOK_DOC}#phase-{phase}", "title": f"phase {phase}"}]
    found = declared(kind)
    links += [
        {"target": f"{RUNBOOK_DOC}#{a}", "title": _RUNBOOK_TITLES.get(a, a)}
        for a in (found.runbook_sections if found else ())
    ]
    page = found.runbook_page if found else None
    if page and all(link["target"] != page for link in links):
        links.append({"target": page, "title": page.removeprefix("runbooks/")})
    return [{**link, "target": runbook_link(link["target"])} for link in links]


def runbook_view(plan: Plan) -> dict[str, Any]:
    """What the per-plan runbook shows: the report's header and steps, plus, per step, what a
    failure means there and which sections of runbooks/switchover.md apply."""
    view = report_view(plan)
    promote_at = next((i for i, s in enumerate(plan.steps) if promotes(s.kind)), None)
    steps = []
    for index, (step, shown) in enumerate(zip(plan.steps, view["steps"], strict=True)):
        if promote_at is not None and index >= promote_at:
            on_failure = (
                "on failure (the promotion was sent): the tool stops with exit 4 and "
                "undoes nothing; never make the source primary again"
            )
        else:
            on_failure = (
                "on failure: the tool undoes what this run changed, newest first "
                "(exit 3 for a gate that timed out, 1 otherwise)"
            )
        steps_links = _step_links(step.phase, step.kind)
        steps.append(
            {
                **shown,
                "on_failure": on_failure,
                "links": steps_links,
                # Every declared kind has a step class (tests/unit/test_step_registry.py).
                "manual_only": step.kind not in STEP_KINDS,
            }
        )
    return {
        **view,
        "steps": steps,
        "cautions": [_finding_view(f) for f in plan.findings if f.verdict is Verdict.WARN],
        "doc": runbook_link(RUNBOOK_DOC),
        "failures": [{"anchor": a, "title": t, "when": w} for a, t, w in RUNBOOK_FAILURES],
    }


def _runbook_template() -> Any:
    return _markdown_env().get_template("runbook.md.j2")


def render_runbook(plan: Plan) -> str:
    """The per-plan runbook in Markdown: header, blocking findings first, every step with its
    gate, undo and manual commands, and where runbooks/switchover.md says what to do on failure.
    Like the reports, it shows only what the plan holds, and plans hold no secrets."""
    return _runbook_template().render(**runbook_view(plan))
