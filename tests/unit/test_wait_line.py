"""A gate's wait shows one line rewritten in place on a terminal and a plain progress line only
every few seconds without one, while the journal still gets a sample every second."""

from __future__ import annotations

import io
import sys
import time

from migrator.steps.base import RunContext, Step
from tests.unit.test_planner import example_inventory, make_plan


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _waiting_step(lines: list[str], samples: list[dict]) -> Step:
    plan = make_plan()
    spec = next(s for s in plan.steps if s.id == "catch-up")
    ctx = RunContext(inventory=example_inventory(), plan=plan, live=None, progress=lines.append,
                     journal_sample=lambda **fields: samples.append(fields))
    return Step(spec, ctx)


def _ready_after(seconds: float):
    ready_at = time.monotonic() + seconds
    return lambda: time.monotonic() >= ready_at or None


def test_on_a_terminal_the_wait_is_one_line_rewritten_then_erased(monkeypatch):
    terminal, lines, samples = _Terminal(), [], []
    monkeypatch.setattr(sys, "stderr", terminal)
    assert _waiting_step(lines, samples).wait(_ready_after(2.3), "replay past the token", interval=0.05, timeout=30)
    written = terminal.getvalue()
    shown = [part for part in written.split("\r\033[K") if part]
    assert len(shown) >= 2 and all(p.startswith("replay past the token (") for p in shown), written
    assert "\n" not in written and written.endswith("\r\033[K")  # erased before the next line
    assert lines == []  # nothing scrolled
    assert len(samples) >= 2  # the journal's sample a second is unchanged


def test_without_a_terminal_no_line_a_second(monkeypatch):
    piped, lines, samples = io.StringIO(), [], []
    monkeypatch.setattr(sys, "stderr", piped)
    assert _waiting_step(lines, samples).wait(_ready_after(2.3), "replay past the token", interval=0.05, timeout=30)
    assert lines == [] and piped.getvalue() == ""  # the first plain line would come after 5 s
    assert len(samples) >= 2
