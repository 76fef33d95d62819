"""The replay lag a run's gates measured, as data, from its journal.

A streaming gate journals, while it waits, a `gate-sample` with `lag_bytes` (the worst member's
replay lag behind the followed primary's WAL head) and `replay_lsn` (the standby leader's replay
position), and ends with the same two numbers in its `step-done` facts (the measurement that let
it pass: a gate that passes at once journals no sample). Journals written before these fields
carried the lag only in the sample's text (`dc1-a -> dc2-a, lag 0 bytes`): that is still read.

Pure: the timeline's lag line, the JSON run document and the run report read this one function.
Journal values are untrusted: a number that is not a non-negative int is left out, never raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from migrator.model.state import lsn_text

_LAG_IN_DETAIL = re.compile(r"\blag (\d{1,20}) bytes\b")


@dataclass(frozen=True)
class GateSample:
    ts: str  # the record's UTC time, as journalled
    step: str  # the gate that measured it
    lag_bytes: int
    replay_lsn: int | None  # None where the gate did not know it (older journals)
    final: bool  # the passing measurement (from step-done), not a sample taken while waiting

    def as_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "step": self.step,
            "lag_bytes": self.lag_bytes,
            "replay_lsn": lsn_text(self.replay_lsn) if self.replay_lsn is not None else None,
            "final": self.final,
        }


def _count(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    return None


def sample_lag_bytes(record: dict[str, Any]) -> int | None:
    """The lag a gate-sample record carries: its `lag_bytes` number, else the `lag N bytes` of
    its detail (journals before the field)."""
    found = _count(record.get("lag_bytes"))
    if found is not None:
        return found
    detail = record.get("detail")
    match = _LAG_IN_DETAIL.search(detail) if isinstance(detail, str) else None
    return int(match.group(1)) if match else None


def gate_samples(records: list[Any], migration: str) -> list[GateSample]:
    """Every lag measurement of one migration's gates, in journal order."""
    found: list[GateSample] = []
    for record in records:
        if not isinstance(record, dict) or record.get("migration") != migration:
            continue
        event, ts, step = record.get("event"), record.get("ts"), record.get("step")
        if not isinstance(ts, str) or not isinstance(step, str):
            continue
        if event == "gate-sample":
            lag, lsn = sample_lag_bytes(record), _count(record.get("replay_lsn"))
            final = False
        elif event == "step-done" and isinstance(record.get("facts"), dict):
            lag, lsn = _count(record["facts"].get("lag_bytes")), _count(record["facts"].get("replay_lsn"))
            final = True
        else:
            continue
        if lag is not None:
            found.append(GateSample(ts, step, lag, lsn, final))
    return found


def lag_lines(samples: list[GateSample]) -> list[str]:
    """One report line per gate: how many measurements, the largest lag and the passing one."""
    lines = []
    for step in dict.fromkeys(s.step for s in samples):
        mine = [s for s in samples if s.step == step]
        last = mine[-1]
        where = f" at replay LSN {lsn_text(last.replay_lsn)}" if last.replay_lsn is not None else ""
        ending = "passed with" if last.final else "last sample"
        lines.append(
            f"replay lag, {step}: {len(mine)} measurement{'s' if len(mine) != 1 else ''}, "
            f"largest {max(s.lag_bytes for s in mine)} bytes, {ending} {last.lag_bytes} bytes{where}"
        )
    return lines
