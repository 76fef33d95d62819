"""What a preflight check says: a verdict, one line of finding, and the fix."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from pydantic import BaseModel, ConfigDict


class Verdict(str, Enum):  # noqa: UP042 - StrEnum changes str() of a member; output stays as is
    OK = "ok"
    WARN = "warn"
    BLOCK = "block"


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    check: str  # stable id, e.g. "slot-for-target"
    verdict: Verdict
    finding: str  # one line: what was observed
    fix: str | None = None  # one line: what to do about it (None when ok)
    site: str | None = None
    members: tuple[str, ...] = ()


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.verdict is Verdict.BLOCK]


def first_blocking_line(lead: str, findings: Iterable[Finding]) -> str | None:
    """The one error line for a refusal by findings: `<lead>: <check>: <finding>; <fix>`, then
    how many more block (`migrate check` lists them all); None when nothing blocks. The CLI,
    planning and the preflight steps all refuse with this line, so a refusal reads the same
    wherever it is met."""
    found = blocking(findings)
    if not found:
        return None
    first = found[0]
    line = f"{lead}: {first.check}: {first.finding}"
    if first.fix:
        line += f"; {first.fix}"
    if len(found) > 1:
        line += f" (and {len(found) - 1} more blocking)"
    return line
