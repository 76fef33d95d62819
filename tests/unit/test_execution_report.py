"""The end-of-run report, from a journal written the way the engine writes it."""

from __future__ import annotations

from migrator.engine import Outcome
from migrator.execution_report import render_outcome
from migrator.journal import Journal


def test_a_resumed_run_stopped_before_any_step_reports_its_exit_4_message(tmp_path):
    # A resumed run whose done step no longer holds fails with no current step (step: null).
    journal = Journal(tmp_path, [])
    journal.append("migration-started", migration="m1", plan_file="p", fingerprint="f",
                   source="dc1", target="dc2", steps=["demote-source"], reverse_of=None)
    journal.append("step-started", migration="m1", step="demote-source", kind="demote_site",
                   phase="demote")
    journal.append("step-done", migration="m1", step="demote-source", facts={})
    journal.append("run-started", migration="m1", resume=True)
    journal.append("step-failed", migration="m1", step=None, error="no longer holds")
    outcome = Outcome(4, "step demote-source was done, but its change no longer holds", "m1",
                      "stopped-unsafe")
    text, markdown = render_outcome(journal, outcome)
    assert "no longer holds" in text and "(exit 4)" in text
    assert "demote-source" in text and "None" not in text and "None" not in markdown
