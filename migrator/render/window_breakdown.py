"""The write-unavailability window, part by part, from the tool's own clock.

The steps of the cut-over journal the instants they saw as facts (UTC, milliseconds; see
`TOOL_MILESTONES` for which step records which): the demotion PATCH sent and answered, the source
seen read-only, the token read, the catch-up proven, the proof taken again right before the
promotion, the promotion PATCH sent and answered, the target seen writable on a new timeline.
Each part runs from one milestone to the next, so the parts never overlap and the parts between
"source seen read-only" and "target seen writable" add up to the window the report states.

A milestone the journal lacks (an older journal, the Patroni < 4.1 path that stops PostgreSQL
instead of PATCHing, a run that stopped half-way) leaves the parts on either side of it "not
measured": nothing is interpolated. What only the hosts can see (Patroni acting on a PATCH, the
shutdown checkpoint in the server log, the first commit a client got acknowledged) is not in the
journal; `bench/switchover.py` adds those milestones from the testbed's logs and its write ledger
and reuses `parts` and the tables here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# (milestone, the step fact holding its instant), in the order they happen on the tool's clock.
TOOL_MILESTONES: tuple[tuple[str, str], ...] = (
    ("demote PATCH sent", "demote_patch_sent_at"),  # demote-source, step-applied
    ("demote PATCH answered", "demote_sent_at"),  # demote-source, step-applied
    ("source seen read-only", "source_read_only_at"),  # demote-source (stop-source-primary), step-done
    ("token read", "token_read_at"),  # read-token, step-done
    ("catch-up proven", "caught_up_at"),  # catch-up, step-done
    ("catch-up proven again", "proven_at"),  # promote-target, step-applied: right before the PATCH
    ("promote PATCH sent", "promote_patch_sent_at"),  # promote-target, step-applied
    ("promote PATCH answered", "promote_sent_at"),  # promote-target, step-applied
    ("target seen writable", "target_writable_at"),  # promote-target, step-done
)
# The window the report states (migrator/run/engine.py `summary`): source read-only -> target writable.
TOOL_WINDOW = ("source seen read-only", "target seen writable")
NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class Milestone:
    name: str
    at: datetime | None  # None: no evidence of when it happened


@dataclass(frozen=True)
class Part:
    name: str  # "<from milestone> -> <to milestone>"
    start: datetime | None
    end: datetime | None
    in_window: bool

    @property
    def seconds(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return round((self.end - self.start).total_seconds(), 3)


def instant(value: Any) -> datetime | None:
    """An ISO timestamp with its zone, else None (a journal is data: a wrong type is no instant)."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def step_facts(records: Iterable[dict[str, Any]], migration: str) -> dict[str, Any]:
    """Every fact the steps of `migration` journalled (applied, then done), the latest value of each
    key: a resumed run keeps the facts of steps done before the crash."""
    found: dict[str, Any] = {}
    for record in records:
        if record.get("migration") != migration or record.get("event") not in ("step-applied", "step-done"):
            continue
        facts = record.get("facts")
        if isinstance(facts, dict):
            found.update(facts)
    return found


def journal_milestones(records: Iterable[dict[str, Any]], migration: str) -> list[Milestone]:
    facts = step_facts(records, migration)
    return [Milestone(name, instant(facts.get(key))) for name, key in TOOL_MILESTONES]


def parts(milestones: Sequence[Milestone], window: tuple[str, str] | None = TOOL_WINDOW) -> list[Part]:
    """Consecutive milestones as parts; a part is in the window when both its ends lie between the
    window's first and last milestone (by name)."""
    names = [m.name for m in milestones]
    first, last = (names.index(window[0]), names.index(window[1])) if window else (-1, -1)
    return [
        Part(f"{a.name} -> {b.name}", a.at, b.at, first <= i and i + 1 <= last)
        for i, (a, b) in enumerate(zip(milestones, milestones[1:], strict=False))
    ]


def journal_parts(records: Iterable[dict[str, Any]], migration: str) -> list[Part]:
    """The tool's parts of one migration; [] when it never reached the demotion (nothing to explain)."""
    milestones = journal_milestones(records, migration)
    if not any(m.at is not None for m in milestones):
        return []
    return parts(milestones)


def _clock(at: datetime | None) -> str:
    return at.isoformat(timespec="milliseconds")[11:23] if at is not None else "-"


def _seconds(part: Part) -> str:
    return f"{part.seconds:.3f}" if part.seconds is not None else NOT_MEASURED


def window_total(found: Sequence[Part]) -> str:
    """The sum of the parts inside the window, or why there is none."""
    inside = [p for p in found if p.in_window]
    if not inside or any(p.seconds is None for p in inside):
        return f"{NOT_MEASURED} (a part of the window has no journalled instant)"
    return f"{sum(p.seconds or 0.0 for p in inside):.3f} s in {len(inside)} parts"


def text_table(
    found: Sequence[Part], title: str = "write unavailability, part by part (UTC, the tool's clock):"
) -> list[str]:
    if not found:
        return []
    width = max(len(p.name) for p in found)
    lines = [title, f"  {'part':<{width}}  {'from':>12}  {'to':>12}  {'seconds':>12}  window"]
    lines += [
        f"  {p.name:<{width}}  {_clock(p.start):>12}  {_clock(p.end):>12}  {_seconds(p):>12}  {_where(found, i)}"
        for i, p in enumerate(found)
    ]
    lines.append(f"  inside the window: {window_total(found)}")
    return lines


def _where(found: Sequence[Part], index: int) -> str:
    """in, before or after the window (parts before it: writes may still commit on the source)."""
    if found[index].in_window:
        return "in"
    first = next((i for i, p in enumerate(found) if p.in_window), len(found))
    return "before" if index < first else "after"


def markdown_table(found: Sequence[Part], title: str = "Write unavailability, part by part") -> list[str]:
    if not found:
        return []
    return [
        f"**{title}** (UTC, the tool's clock; inside the window: {window_total(found)})",
        "",
        "| part | from | to | seconds | window |",
        "|---|---|---|---|---|",
    ] + [
        f"| {p.name} | {_clock(p.start)} | {_clock(p.end)} | {_seconds(p)} | {_where(found, i)} |"
        for i, p in enumerate(found)
    ]
