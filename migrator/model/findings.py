"""What a preflight check says: a verdict, one line of finding, and the fix."""

from __future__ import annotations

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


def blocking(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.verdict is Verdict.BLOCK]
