"""The gates' replay lag as data (migrator/render/gate_samples.py): read from the journal the
engine writes, by the JSON run document, the run report and the timeline; older journals that
carried the lag only as text still render."""

from __future__ import annotations

import json

from migrator.render.gate_samples import gate_samples, lag_lines
from migrator.render.run_json import dumps, run_document
from migrator.render.run_outcome import render_outcome
from migrator.render.timeline import timeline_from_records
from migrator.run.engine import Outcome
from migrator.run.journal import Journal

DONE = Outcome(0, "dc2 is primary; dc1 follows it", "m1", "done")


def _journal(tmp_path, records: list[dict]) -> Journal:
    journal = Journal(tmp_path, [])
    base = [{"event": "migration-started", "migration": "m1", "plan_file": "p", "source": "dc1", "target": "dc2",
             "ts": "2026-11-21T03:00:00.000+00:00"},
            {"event": "step-started", "migration": "m1", "step": "wait-cascade", "ts": "2026-11-21T03:00:00.100+00:00"}]
    journal.path.write_text("".join(json.dumps(r) + "\n" for r in base + records))
    return journal


NEW = [
    {"event": "gate-sample", "migration": "m1", "step": "wait-cascade", "detail": "dc2-a not streaming",
     "lag_bytes": 4096, "replay_lsn": 0x5000000, "ts": "2026-11-21T03:00:01.000+00:00"},
    {"event": "step-done", "migration": "m1", "step": "wait-cascade",
     "facts": {"streaming": "dc1-a -> dc2-a, lag 0 bytes", "lag_bytes": 0, "replay_lsn": 0x50002B0},
     "ts": "2026-11-21T03:00:02.000+00:00"},
]


def test_samples_and_the_passing_measurement_are_numbers_with_the_replay_lsn(tmp_path):
    samples = gate_samples(_journal(tmp_path, NEW).records(), "m1")
    assert [(s.step, s.lag_bytes, s.replay_lsn, s.final) for s in samples] == [
        ("wait-cascade", 4096, 0x5000000, False), ("wait-cascade", 0, 0x50002B0, True)]
    assert lag_lines(samples) == [
        "replay lag, wait-cascade: 2 measurements, largest 4096 bytes, passed with 0 bytes at replay LSN 0/50002B0"]


def test_an_old_journal_with_the_lag_only_in_the_text_still_gives_its_samples(tmp_path):
    old = [{"event": "gate-sample", "migration": "m1", "step": "wait-cascade", "detail": "dc1-a -> dc2-a, lag 12 bytes",
            "ts": "2026-11-21T03:00:01.000+00:00"},
           {"event": "step-done", "migration": "m1", "step": "wait-cascade", "facts": {"streaming": "x"},
            "ts": "2026-11-21T03:00:02.000+00:00"}]
    samples = gate_samples(_journal(tmp_path, old).records(), "m1")
    assert [(s.lag_bytes, s.replay_lsn, s.final) for s in samples] == [(12, None, False)]
    assert lag_lines(samples) == ["replay lag, wait-cascade: 1 measurement, largest 12 bytes, last sample 12 bytes"]


def test_garbage_numbers_and_other_migrations_are_left_out(tmp_path):
    bad = [{"event": "gate-sample", "migration": "m1", "step": "wait-cascade", "lag_bytes": value,
            "ts": "2026-11-21T03:00:01.000+00:00"} for value in (-1, True, "9", 2**70, None, 1.5)]
    bad.append({"event": "gate-sample", "migration": "m2", "step": "wait-cascade", "lag_bytes": 7,
                "ts": "2026-11-21T03:00:01.000+00:00"})
    bad.append({"event": "gate-sample", "migration": "m1", "step": ["x"], "lag_bytes": 7, "ts": "t"})
    bad.append({"event": "step-done", "migration": "m1", "step": "wait-cascade", "facts": "no dict", "ts": "t"})
    bad.append({"event": "gate-sample", "migration": "m1", "step": "wait-cascade", "lag_bytes": 3,
                "replay_lsn": "0/1", "ts": "2026-11-21T03:00:01.500+00:00"})
    samples = gate_samples(_journal(tmp_path, bad).records(), "m1")
    assert [(s.lag_bytes, s.replay_lsn) for s in samples] == [(3, None)]


def test_the_json_document_the_report_and_the_timeline_carry_them(tmp_path):
    journal = _journal(tmp_path, NEW)
    document = json.loads(dumps(run_document("execute", "demo", journal, DONE, [], "r.md"), []))
    assert document["gate_samples"] == [
        {"ts": "2026-11-21T03:00:01.000+00:00", "step": "wait-cascade", "lag_bytes": 4096,
         "replay_lsn": "0/5000000", "final": False},
        {"ts": "2026-11-21T03:00:02.000+00:00", "step": "wait-cascade", "lag_bytes": 0,
         "replay_lsn": "0/50002B0", "final": True}]
    text, markdown = render_outcome(journal, DONE)
    line = "replay lag, wait-cascade: 2 measurements, largest 4096 bytes, passed with 0 bytes at replay LSN 0/50002B0"
    assert line in text and f"- {line}" in markdown
    timeline = timeline_from_records(journal.records(), "m1")
    assert [(round(at, 1), lag) for at, lag, _ in timeline.lag] == [(1.0, 4096), (2.0, 0)]
