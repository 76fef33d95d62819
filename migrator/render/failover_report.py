"""The failover plan for review: text, Markdown, JSON, or a runbook to follow by hand.

Every format carries the same content in the same order: verdict (and why it is refused), what
answered (each site's etcd; each source member's REST, PostgreSQL and SSH), the fence list, the
proof status, and the steps with their gates and manual equivalents. Built from one list of
sections, so text and Markdown cannot drift apart. A failover plan holds no secret.
"""

from __future__ import annotations

import json
from typing import Literal

from migrator.model.failover import FailoverPlan
from migrator.model.state import lsn_text

Format = Literal["text", "md", "json", "runbook"]


def _answer(error: str | None) -> str:
    return "answers" if error is None else f"NO ({error})"


def _sections(found: FailoverPlan) -> list[tuple[str, list[str]]]:
    plan = found.plan
    verdict = (
        f"executable: `migrate failover --dc {found.target}` fences {found.source}, proves, promotes {found.target}"
        if found.executable
        else f"REFUSED now ({len(found.blocked)} reason{'s' if len(found.blocked) != 1 else ''})"
    )
    header = [
        f"service {found.service}: failover {found.source} -> {found.target}, observed {found.observed_at}",
        f"verdict: {verdict}",
        *[f"refused: {line}" for line in found.blocked],
        f"fingerprint: {plan.fingerprint[:12]}",
    ]
    if found.accept_data_loss:
        header.append("data loss: ACCEPTED by the operator (--accept-data-loss); the lost range is recorded")
    answered = [f"{name}'s etcd: {_answer(error)}" for name, error in found.dcs.items()]
    for m in found.members:
        pg = _answer(m.postgres) + ("" if m.writable is None else (", writable" if m.writable else ", read-only"))
        answered.append(
            f"{m.name} ({m.host}): REST {_answer(m.rest)}"
            + (f" role {m.role}" if m.role else "")
            + f"; PostgreSQL {pg}; SSH {_answer(m.ssh)}"
            + (f"; pg_control {m.control_state}, checkpoint {lsn_text(m.checkpoint)}" if m.control_state else "")
        )
    fences = [f"{f.member}: {f.method.upper()} - {f.detail}" for f in found.fences]
    proof = found.proof
    proof_lines = [f"status: {proof.status}", proof.summary]
    if proof.status == "gap":
        proof_lines.append(
            f"lost if accepted: {lsn_text(proof.target_replayed)} .. {lsn_text(proof.token)}, "
            f"{proof.gap_bytes} bytes, held by {', '.join(proof.holders)}"
        )
    if proof.unread:
        proof_lines.append(f"pg_control not readable (not in the proof): {', '.join(proof.unread)}")
    steps = []
    for number, step in enumerate(plan.steps, 1):
        gate = f"; gate: {step.gate.wait_for} ({step.gate.timeout_seconds:g}s)" if step.gate else ""
        steps.append(f"{number}. [{step.phase}] {step.id}: {step.title}{gate}")
    hooks = [f"{h.name}: {h.command} ({h.timeout_seconds:g}s)" for h in plan.hooks]
    sections = [
        ("Failover plan", header),
        ("What answered", answered),
        ("Fence list", fences),
        ("Proof", proof_lines),
        ("Steps", steps),
    ]
    if hooks:
        sections.append(("Hooks", hooks))
    return sections


def render_failover(found: FailoverPlan, fmt: Format = "text") -> str:
    if fmt == "json":
        data = found.model_dump(mode="json")
        data["executable"] = found.executable
        return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
    if fmt == "runbook":
        return _runbook(found)
    sections = _sections(found)
    out: list[str] = []
    for title, lines in sections:
        if fmt == "md":
            out += [f"## {title}", "", *[f"- {line}" for line in lines], ""]
        else:
            out += [title, *[f"  {line}" for line in lines], ""]
    if fmt == "md":
        out[0] = f"# Failover {found.source} -> {found.target} ({found.service})"
    return "\n".join(out).rstrip() + "\n"


def _runbook(found: FailoverPlan) -> str:
    """The same failover by hand, step by step, with each step's manual commands."""
    out = [f"# Failover {found.source} -> {found.target} by hand ({found.service})", ""]
    out += ["Read runbooks/failover.md first: when to fail over, the fences, the proof, the data-loss decision.", ""]
    for title, lines in _sections(found)[:4]:
        out += [f"## {title}", "", *[f"- {line}" for line in lines], ""]
    out += ["## Steps", ""]
    for number, step in enumerate(found.plan.steps, 1):
        out += [f"### {number}. {step.title}", ""]
        if step.gate:
            out += [f"Wait for: {step.gate.wait_for} (at most {step.gate.timeout_seconds:g}s).", ""]
        if step.manual:
            out += ["```sh", *step.manual, "```", ""]
    return "\n".join(out).rstrip() + "\n"
