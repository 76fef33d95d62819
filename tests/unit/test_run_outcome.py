"""The end-of-run report, from a journal written the way the engine writes it."""

from __future__ import annotations

import json

from migrator.run.engine import Outcome
from migrator.render.run_outcome import render_outcome
from migrator.run.journal import Journal


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


def _demoted(tmp_path, then: str) -> Journal:
    """A demotion applied at 03:00:00 and, when `then` is "undone", undone 2.5 s later (records
    written with fixed times, as Journal.append would have written them then)."""
    records = [
        {"event": "migration-started", "migration": "m1", "plan_file": "p", "source": "dc1",
         "target": "dc2", "ts": "2026-11-21T02:59:59.000+00:00"},
        {"event": "step-started", "migration": "m1", "step": "demote-source",
         "ts": "2026-11-21T02:59:59.500+00:00"},
        {"event": "step-applied", "migration": "m1", "step": "demote-source",
         "facts": {"source_read_only_at": "2026-11-21T03:00:00.000+00:00"},
         "ts": "2026-11-21T03:00:00.000+00:00"},
    ]
    if then == "undone":
        records.append({"event": "undo-done", "migration": "m1", "step": "demote-source",
                        "changed": True, "ts": "2026-11-21T03:00:02.500+00:00"})
    journal = Journal(tmp_path, [])
    journal.path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return journal


def test_an_undone_demotion_reports_how_long_the_source_took_no_writes(tmp_path):
    text, _ = render_outcome(_demoted(tmp_path, "undone"),
                             Outcome(3, "catch-up timed out; undone", "m1", "rolled-back"))
    assert "write unavailability: 2.500 s (source read-only -> writable again" in text


def test_a_demotion_left_in_place_is_not_reported_as_no_unavailability(tmp_path):
    text, _ = render_outcome(_demoted(tmp_path, "left"),
                             Outcome(4, "undo failed", "m1", "stopped-unsafe"))
    assert "write unavailability: from 2026-11-21T03:00:00.000+00:00 on" in text
    assert "none" not in text.split("write unavailability:")[1].splitlines()[0]


def test_the_learned_facts_read_as_one_line_each(tmp_path):
    """Token, catch-up, the proof right before the promotion and the new primary, from the facts
    the steps journal, in the words operators and the e2e tests read."""
    journal = Journal(tmp_path, [])
    journal.append("migration-started", migration="m1", plan_file="p", source="dc1", target="dc2")
    learned = {
        "token": {"token": 84017464, "token_text": "0/5020038", "token_state": "shut down", "token_timeline": 3},
        "catch-up": {"caught_up_member": "dc2-b", "replayed": 84017600},
        "promote": {"proven_member": "dc2-b", "proven_replayed": 84017600, "proven_timeline": 3,
                    "primary": "dc2-b", "timeline_before": 3, "new_timeline": 4},
    }
    for step, facts in learned.items():
        journal.append("step-started", migration="m1", step=step, kind="k", phase="p")
        journal.append("step-done", migration="m1", step=step, facts=facts)
    text, markdown = render_outcome(journal, Outcome(0, "done", "m1", "done"))
    lines = text.splitlines()
    assert "token: 0/5020038 (pg_control 'shut down', timeline 3)" in lines
    assert "caught up: dc2-b replayed past the token" in lines
    assert "proven again right before the promotion: dc2-b replayed 0/50201C0 on timeline 3" in lines
    assert "new primary: dc2-b, timeline 3 -> 4" in lines
    assert "- caught up: dc2-b replayed past the token" in markdown.splitlines()
