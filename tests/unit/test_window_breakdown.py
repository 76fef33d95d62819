"""The write-unavailability window, part by part (migrator/render/window_breakdown.py), and its
section in each run's report.

Journals built through the real engine with in-memory steps (tests/helpers/fake_steps.py) that
journal the instants the real cut-over steps journal, under the same fact names: the real steps
are proven on the testbed (tests/e2e/test_execute.py reads the section of real runs). The gaps
(an older journal, the Patroni < 4.1 path, a garbled value) are hand-written records."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

import migrator.run.engine as engine_module
from migrator.errors import GateTimeout
from migrator.render.run_outcome import render_outcome
from migrator.render.window_breakdown import (
    NOT_MEASURED,
    TOOL_MILESTONES,
    TOOL_WINDOW,
    journal_parts,
    markdown_table,
    text_table,
)
from migrator.run.engine import Engine, latest_migration, summary
from migrator.run.journal import Journal, utc_now
from tests.helpers.fake_steps import FakeSites, install_fake_steps
from tests.helpers.snapshots import example_inventory
from tests.unit.test_planner import make_plan

# Which instant each kind of the cut-over journals, in apply and in its gate (as the real steps do).
INSTANTS = {
    "demote_site": (("demote_patch_sent_at", "demote_sent_at"), ("source_read_only_at",)),
    "read_token": ((), ("token_read_at",)),
    "wait_replay_past_token": ((), ("caught_up_at",)),
    "promote_site": (("proven_at", "promote_patch_sent_at", "promote_sent_at"), ("target_writable_at",)),
}
TICK = 0.004  # between two instants, so that every part lasts a measurable time
PART_NAMES = [f"{a} -> {b}" for (a, _), (b, _) in zip(TOOL_MILESTONES, TOOL_MILESTONES[1:], strict=False)]


def _instants(keys: tuple[str, ...]) -> dict[str, Any]:
    found = {}
    for key in keys:
        time.sleep(TICK)
        found[key] = utc_now()
    return found


@pytest.fixture
def engine_for(monkeypatch, tmp_path):
    """An engine on the switchover plan whose fake steps also journal the cut-over's instants."""
    sites = FakeSites()
    plan = make_plan()
    install_fake_steps(monkeypatch, plan, sites)
    classes = dict(engine_module.STEP_CLASSES)
    for kind, (applied, gated) in INSTANTS.items():
        base = classes[kind]

        def apply(self, base=base, applied=applied):
            return {**base.apply(self), **_instants(applied)}

        def gate(self, base=base, gated=gated):
            facts = base.gate(self)  # a fault there fails the gate before it learns its instant
            return {**facts, **_instants(gated)}

        classes[kind] = type(base.__name__, (base,), {"apply": apply, "gate": gate})
    monkeypatch.setattr(engine_module, "STEP_CLASSES", classes)
    return lambda: Engine(example_inventory(), plan, tmp_path), sites


def _section(text: str) -> list[tuple[str, str]]:
    """(part, seconds) rows of the text report's breakdown."""
    lines = text.splitlines()
    start = lines.index("write unavailability, part by part (UTC, the tool's clock):") + 2
    rows = []
    for line in lines[start:]:
        if line.strip().startswith("inside the window:"):
            break
        match = re.match(r"\s+(.+?)\s{2,}\S+\s+\S+\s+(not measured|-?\d+\.\d{3})\s+(in|before|after)$", line)
        assert match, line
        rows.append((match[1], match[2]))
    return rows


def test_a_finished_run_reports_every_part_in_order_adding_up_to_the_window(engine_for):
    new_engine, _ = engine_for
    engine = new_engine()
    outcome = engine.start()
    assert outcome.exit_code == 0, outcome.message
    text, markdown = render_outcome(engine.journal, outcome)
    rows = _section(text)
    assert [name for name, _ in rows] == PART_NAMES
    seconds = [float(s) for _, s in rows]
    assert all(s >= TICK - 0.001 for s in seconds), rows
    # The parts inside the window add up to the window the report's line above states.
    window = summary(engine.journal, outcome.migration)["write_unavailable_seconds"]
    inside = [p for p in journal_parts(engine.journal.records(), outcome.migration) if p.in_window]
    assert inside[0].name.startswith(TOOL_WINDOW[0]) and inside[-1].name.endswith(TOOL_WINDOW[1])
    assert sum(p.seconds or 0 for p in inside) == pytest.approx(window, abs=0.001 * len(inside))
    lines = text.splitlines()
    assert lines[lines.index("write unavailability, part by part (UTC, the tool's clock):") - 1].startswith(
        "write unavailability: "
    )
    assert f"inside the window: {sum(p.seconds or 0 for p in inside):.3f} s in {len(inside)} parts" in text
    # The Markdown report: the same parts, a table right after the window's line.
    table = [line for line in markdown.splitlines() if line.startswith("| ") and " -> " in line]
    assert [line.split(" | ")[0][2:] for line in table] == PART_NAMES
    before_table = markdown.split("**Write unavailability, part by part**")[0].rstrip().splitlines()[-1]
    assert before_table.startswith("- write unavailability: ")


def test_a_run_rolled_back_in_the_catch_up_reports_the_parts_it_reached(engine_for):
    new_engine, sites = engine_for
    sites.fault = ("catch-up", "gate", GateTimeout("gave up"))
    engine = new_engine()
    outcome = engine.start()
    assert outcome.exit_code == 3, outcome.message
    rows = dict(_section(render_outcome(engine.journal, outcome)[0]))
    reached = PART_NAMES[:3]  # up to the token read
    assert all(rows[name] != NOT_MEASURED for name in reached), rows
    assert all(rows[name] == NOT_MEASURED for name in PART_NAMES[3:]), rows
    assert "inside the window: not measured" in render_outcome(engine.journal, outcome)[0]


def test_a_resumed_run_joins_the_instants_of_both_runs(engine_for):
    """A crash inside the catch-up gate, a resume a moment later: the catch-up part spans the
    crash (what the clients lived through), the others are as measured."""
    new_engine, sites = engine_for
    sites.fault = ("catch-up", "gate", SystemExit(137))
    with pytest.raises(SystemExit):
        new_engine().start()
    time.sleep(0.3)
    sites.fault = None
    engine = new_engine()
    outcome = engine.resume(latest_migration(engine.journal))
    assert outcome.exit_code == 0, outcome.message
    parts = {p.name: p.seconds for p in journal_parts(engine.journal.records(), outcome.migration)}
    assert list(parts) == PART_NAMES
    assert parts["token read -> catch-up proven"] >= 0.3
    assert all(s is not None and s >= 0 for s in parts.values()), parts


# --- hand-written journals: the gaps ------------------------------------------------------------


def _journal(tmp_path, facts: dict[str, dict[str, Any]]) -> Journal:
    """A journal of migration m1 whose steps journalled `facts` (step id -> step-done facts)."""
    records: list[dict[str, Any]] = [
        {"event": "migration-started", "migration": "m1", "plan_file": "p", "source": "dc1", "target": "dc2",
         "ts": "2026-11-21T02:59:59.000+00:00"},
    ]
    for step, learned in facts.items():
        records.append({"event": "step-started", "migration": "m1", "step": step, "ts": "2026-11-21T03:00:00.000+00:00"})
        records.append({"event": "step-done", "migration": "m1", "step": step, "facts": learned,
                        "ts": "2026-11-21T03:00:00.000+00:00"})
    journal = Journal(tmp_path, [])
    journal.path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return journal


def _at(seconds: float) -> str:
    return f"2026-11-21T03:00:{seconds:06.3f}+00:00"


FULL = {
    "demote-source": {"demote_patch_sent_at": _at(0.0), "demote_sent_at": _at(0.05), "source_read_only_at": _at(0.2)},
    "read-token": {"token_read_at": _at(0.25)},
    "catch-up": {"caught_up_at": _at(0.28)},
    "promote-target": {"proven_at": _at(0.3), "promote_patch_sent_at": _at(0.301), "promote_sent_at": _at(0.35),
                       "target_writable_at": _at(0.5)},
}


def test_hand_written_instants_give_these_parts_and_seconds(tmp_path):
    parts = journal_parts(_journal(tmp_path, FULL).records(), "m1")
    assert [(p.name, p.seconds, p.in_window) for p in parts] == [
        ("demote PATCH sent -> demote PATCH answered", 0.05, False),
        ("demote PATCH answered -> source seen read-only", 0.15, False),
        ("source seen read-only -> token read", 0.05, True),
        ("token read -> catch-up proven", 0.03, True),
        ("catch-up proven -> catch-up proven again", 0.02, True),
        ("catch-up proven again -> promote PATCH sent", 0.001, True),
        ("promote PATCH sent -> promote PATCH answered", 0.049, True),
        ("promote PATCH answered -> target seen writable", 0.15, True),
    ]
    text = "\n".join(text_table(parts))
    assert "inside the window: 0.300 s in 6 parts" in text
    assert "  demote PATCH sent -> demote PATCH answered" in text and "03:00:00.000  03:00:00.050" in text


def test_an_older_journal_without_the_token_instant_leaves_its_two_parts_not_measured(tmp_path):
    facts = {**FULL, "read-token": {"token": 84017464}}  # journalled before token_read_at existed
    parts = {p.name: p.seconds for p in journal_parts(_journal(tmp_path, facts).records(), "m1")}
    assert parts["source seen read-only -> token read"] is None
    assert parts["token read -> catch-up proven"] is None
    # Nothing is bridged over the gap; every other part is as measured.
    assert [name for name, s in parts.items() if s is None] == [
        "source seen read-only -> token read",
        "token read -> catch-up proven",
    ]
    text = "\n".join(text_table(journal_parts(_journal(tmp_path, facts).records(), "m1")))
    assert "inside the window: not measured" in text
    assert text.count(NOT_MEASURED) == 3  # two parts and the window's total


def test_the_older_patroni_path_has_no_demotion_patch_to_time(tmp_path):
    """Patroni < 4.1: pg_ctl stop instead of a PATCH (stop-source-primary journals only when the
    stop was sent, as source_read_only_at)."""
    facts = {"stop-source-primary": {"source_read_only_at": _at(0.2)}, **{k: v for k, v in FULL.items() if k != "demote-source"}}
    parts = {p.name: p.seconds for p in journal_parts(_journal(tmp_path, facts).records(), "m1")}
    assert parts["demote PATCH sent -> demote PATCH answered"] is None
    assert parts["demote PATCH answered -> source seen read-only"] is None
    assert parts["source seen read-only -> token read"] == 0.05


@pytest.mark.parametrize("garbage", [17, None, "yesterday", "2026-11-21T03:00:00.250", ["x"]])
def test_an_instant_that_is_not_a_zoned_timestamp_is_not_measured(tmp_path, garbage):
    facts = {**FULL, "read-token": {"token_read_at": garbage}}
    parts = {p.name: p.seconds for p in journal_parts(_journal(tmp_path, facts).records(), "m1")}
    assert parts["source seen read-only -> token read"] is None
    assert parts["catch-up proven -> catch-up proven again"] == 0.02


def test_a_run_that_never_demoted_has_no_breakdown_section(tmp_path):
    journal = _journal(tmp_path, {"wait-cascade": {"lag_bytes": 0}})
    assert journal_parts(journal.records(), "m1") == []
    text, markdown = render_outcome(journal, engine_module.Outcome(0, "done", "m1", "done"))
    assert "part by part" not in text and "part by part" not in markdown
    assert markdown_table([]) == [] and text_table([]) == []


def test_another_migrations_instants_are_not_mixed_in(tmp_path):
    journal = _journal(tmp_path, FULL)
    with journal.path.open("a") as out:
        out.write(json.dumps({"event": "step-done", "migration": "m2", "step": "read-token",
                              "facts": {"token_read_at": _at(9.0)}, "ts": _at(9.0)}) + "\n")
    parts = {p.name: p.seconds for p in journal_parts(journal.records(), "m1")}
    assert parts["source seen read-only -> token read"] == 0.05


def test_the_json_document_carries_the_same_parts_as_the_report(engine_for):
    from migrator.render.run_json import run_document

    new_engine, _ = engine_for
    engine = new_engine()
    outcome = engine.start()
    assert outcome.exit_code == 0, outcome.message
    document = run_document("execute", "demo", engine.journal, outcome, [], None)
    found = document["window_parts"]
    assert [part["name"] for part in found] == PART_NAMES
    expected = journal_parts(engine.journal.records(), outcome.migration)
    assert [(p["seconds"], p["in_window"]) for p in found] == [(p.seconds, p.in_window) for p in expected]
    assert all(p["seconds"] is not None and p["start"] <= p["end"] for p in found)
    window = summary(engine.journal, outcome.migration)["write_unavailable_seconds"]
    inside = sum(p["seconds"] for p in found if p["in_window"])
    assert inside == pytest.approx(window, abs=0.001 * len(found))
