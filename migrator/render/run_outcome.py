"""What `migrate execute` / `rollback` print at the end, and the Markdown copy kept beside the
journal: every step with its start, end and duration, the measured write-unavailability window
(source read-only to target writable, from the journal), the token, timelines before and after."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from migrator.model.state import lsn_text
from migrator.render.gate_samples import gate_samples, lag_lines
from migrator.render.window_breakdown import journal_parts, markdown_table, text_table
from migrator.run.engine import Outcome, summary
from migrator.run.journal import Journal


def _first_with(facts: dict[str, dict[str, Any]], key: str) -> dict[str, Any] | None:
    """The facts of the first step that learned `key` (each is learned by one step of a plan)."""
    return next((f for f in facts.values() if key in f), None)


def _replayed(what: str, member: str, how_far: str) -> str:
    """The catch-up and its proof right before the promotion say the same thing: who replayed how far."""
    return f"{what}: {member} replayed {how_far}"


def _facts_line(facts: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    if token := _first_with(facts, "token"):
        lines.append(
            f"token: {token['token_text']} (pg_control '{token['token_state']}', timeline {token['token_timeline']})"
        )
    if caught := _first_with(facts, "caught_up_member"):
        lines.append(_replayed("caught up", caught["caught_up_member"], "past the token"))
    if proven := _first_with(facts, "proven_member"):
        how_far = f"{lsn_text(proven.get('proven_replayed'))} on timeline {proven.get('proven_timeline')}"
        lines.append(_replayed("proven again right before the promotion", proven["proven_member"], how_far))
    if promoted := _first_with(facts, "new_timeline"):
        lines.append(
            f"new primary: {promoted['primary']}, timeline {promoted.get('timeline_before')} -> "
            f"{promoted['new_timeline']}"
        )
    return lines


def _holds(journal: Journal, migration: str) -> list[str]:
    """Each time the run held for a DCS, and how that ended (see migrator/run/dcs_hold.py)."""
    lines = []
    for record in journal.records():
        if record.get("migration") != migration:
            continue
        if record["event"] == "dcs-back":
            lines.append(f"held {record['held_seconds']} s for the DCS before {record['before']}, then continued")
        elif record["event"] == "dcs-hold-expired":
            lines.append(
                f"held for the DCS before {record['before']} until the deadline: "
                + "; ".join(record.get("problems", []))
            )
    return lines


def _lock_lost(journal: Journal, migration: str) -> list[str]:
    """When the run lost its migration lock, and whether it stopped for it (see Engine._lock_watch)."""
    for record in journal.records():
        if record.get("migration") == migration and record["event"] == "lock-lost":
            then = (
                "the run stopped and undid its changes"
                if record.get("stopped")
                else "the demotion was sent already, so the run went on"
            )
            return [f"LOCK LOST at {record['ts'][11:23]} UTC: {record['reason']}; {then}"]
    return []


def _without_promotion(journal: Journal, migration: str) -> str:
    """The window when no target became writable: a demotion this run undid (the source read-only
    until the undo was confirmed), one left in place, or none at all."""
    read_only: tuple[str, str] | None = None
    for record in journal.records():
        if record.get("migration") != migration:
            continue
        at = (record.get("facts") or {}).get("source_read_only_at")
        if record["event"] in ("step-applied", "step-done") and at and read_only is None:
            read_only = (record["step"], at)
        elif read_only and record["event"] == "undo-done" and record.get("step") == read_only[0]:
            seconds = _seconds_between(read_only[1], record["ts"])
            return f"{seconds:.3f} s (source read-only -> writable again once the undo was confirmed)"
    if read_only:
        return f"from {read_only[1]} on: the source was made read-only and no site was confirmed writable in this run"
    return "none (no demotion in this run)"


def _seconds_between(start: str, end: str) -> float:
    return datetime.fromisoformat(end).timestamp() - datetime.fromisoformat(start).timestamp()


def render_outcome(journal: Journal, outcome: Outcome) -> tuple[str, str]:
    data = summary(journal, outcome.migration)
    window = data["write_unavailable_seconds"]
    head = [
        f"migration {outcome.migration}: {outcome.outcome} (exit {outcome.exit_code})",
        outcome.message,
        "write unavailability: "
        + (
            f"{window:.3f} s (source read-only -> target writable)"
            if window is not None
            else _without_promotion(journal, outcome.migration)
        ),
    ]
    # The window's parts follow the window's line (migrator/render/window_breakdown.py).
    breakdown = journal_parts(journal.records(), outcome.migration)
    after_window = len(head)
    head += _facts_line(data["facts"])
    head += lag_lines(gate_samples(journal.records(), outcome.migration))
    head += _holds(journal, outcome.migration)
    head += _lock_lost(journal, outcome.migration)
    # A run that stopped before any step (a resumed run whose done step no longer holds) journals
    # its failure without a step: it has no row.
    rows = [
        (
            s["step"],
            s.get("started", "-")[11:23],
            s.get("done", "-")[11:23],
            f"{s['seconds']:.3f}" if "seconds" in s else "-",
        )
        for s in data["steps"]
        if s["step"]
    ]
    width = max([len(r[0]) for r in rows] + [4])
    text_rows = [f"  {r[0]:<{width}}  {r[1]:>12}  {r[2]:>12}  {r[3]:>8}" for r in rows]
    text_head = head[:after_window] + text_table(breakdown) + head[after_window:]
    text = "\n".join(text_head + [f"  {'step':<{width}}  {'started':>12}  {'done':>12}  {'seconds':>8}"] + text_rows)
    md = (
        "\n".join(
            [f"# Migration {outcome.migration}", ""]
            + [f"- {line}" for line in head[:after_window]]
            + (["", *markdown_table(breakdown), ""] if breakdown else [])
            + [f"- {line}" for line in head[after_window:]]
            + ["", "| step | started (UTC) | done (UTC) | seconds |", "|---|---|---|---|"]
            + [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows]
        )
        + "\n"
    )
    return text, md
