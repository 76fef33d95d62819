"""The picture of a run (migrator/render/timeline.py), from journals the real engine writes.

The steps are the in-memory fakes of tests/helpers/fake_steps.py (the real ones need the testbed,
where tests/e2e/test_execute.py checks the picture of real runs): the point here is what the
engine journals for a clean run, a rolled-back one and a resumed one, and how that is drawn. The
fakes' gates journal the facts and samples the real steps journal (the read-only and writable
times, the token, `lag N bytes` in a streaming gate's detail)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

import migrator.run.engine as engine_module
from migrator.errors import GateTimeout
from migrator.render.timeline import (
    ServiceRun,
    add_timeline,
    fleet_gantt,
    service_run,
    timeline_from_records,
    timeline_svg,
    timeline_text,
)
from migrator.run.engine import Engine, latest_migration, summary
from migrator.run.journal import Journal, utc_now
from tests.helpers.fake_steps import FakeSites, install_fake_steps
from tests.helpers.snapshots import example_inventory
from tests.unit.test_planner import make_plan

SVG = "{http://www.w3.org/2000/svg}"


def _token() -> dict:
    return {"token": 84017464, "token_text": "0/5020038", "token_state": "shut down", "token_timeline": 3}


@pytest.fixture
def world(monkeypatch):
    """Fake sites whose gates take 20 ms and learn what the real steps learn."""
    sites = FakeSites()
    sites.gate_seconds = 0.02
    sites.learned = {
        "demote-source": lambda: {"source_read_only_at": utc_now()},
        "read-token": _token,
        "promote-target": lambda: {"primary": "dc2-a", "timeline_before": 3, "new_timeline": 4,
                                   "target_writable_at": utc_now()},
    }
    sites.samples = {"wait-cascade": [{"waiting_for": "dc2 streaming", "detail": "dc1-a -> dc2-a, lag 4096 bytes",
                                       "seconds_left": 9.0},
                                      {"waiting_for": "dc2 streaming", "detail": "dc1-a -> dc2-a, lag 0 bytes",
                                       "seconds_left": 8.0}]}
    monkeypatch.setattr(engine_module, "SAMPLE_EVERY_SECONDS", 0.0)  # keep every sample
    return sites


def _run(monkeypatch, tmp_path, sites, plan=None, fault=None):
    plan = plan or make_plan()
    install_fake_steps(monkeypatch, plan, sites)
    sites.fault = fault
    engine = Engine(example_inventory(), plan, tmp_path)
    outcome = engine.start()
    return engine.journal, outcome, plan


def _svg(journal: Journal, migration: str) -> ET.Element:
    return ET.fromstring(timeline_svg(timeline_from_records(journal.records(), migration)))


def _classes(element: ET.Element) -> set[str]:
    return set(element.get("class", "").split())


def _bars(root: ET.Element) -> dict[str, list[ET.Element]]:
    bars: dict[str, list[ET.Element]] = {}
    for rect in root.iter(f"{SVG}rect"):
        if "bar" in _classes(rect):
            bars.setdefault(rect.get("data-row"), []).append(rect)
    return bars


def _x(root: ET.Element, seconds: float) -> float:
    """Where `seconds` is on the picture's time axis (the plot rect spans 0..data-seconds)."""
    plot = next(r for r in root.iter(f"{SVG}rect") if "plot" in _classes(r))
    return float(plot.get("x")) + seconds / float(plot.get("data-seconds")) * float(plot.get("width"))


def _seconds(ts: str, origin: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts).timestamp() - datetime.fromisoformat(origin).timestamp()


def test_a_clean_run_draws_a_bar_per_step_the_window_at_its_place_and_both_marks(monkeypatch, tmp_path, world):
    journal, outcome, plan = _run(monkeypatch, tmp_path, world)
    assert outcome.exit_code == 0, outcome.message
    root = _svg(journal, outcome.migration)
    bars = _bars(root)
    assert set(bars) == {s.id for s in plan.steps}
    assert all(len(b) == 1 and "bar-done" in _classes(b[0]) for b in bars.values())
    # The window is engine.summary's, measured from the same facts, and drawn where it belongs.
    records = journal.records()
    origin = records[0]["ts"]
    done = {r["step"]: r["facts"] for r in records if r["event"] == "step-done"}
    start = _seconds(done["demote-source"]["source_read_only_at"], origin)
    end = _seconds(done["promote-target"]["target_writable_at"], origin)
    assert end - start == pytest.approx(summary(journal, outcome.migration)["write_unavailable_seconds"], abs=2e-3)
    assert end - start > 0.05  # four 20 ms gates lie inside it
    windows = [r for r in root.iter(f"{SVG}rect") if "window" in _classes(r)]
    assert len(windows) == 1
    assert float(windows[0].get("x")) == pytest.approx(_x(root, start), abs=0.01)
    assert float(windows[0].get("width")) == pytest.approx(_x(root, end) - _x(root, start), abs=0.02)
    # Every bar sits on the same axis: the demotion's bar starts before the window, the
    # promotion's ends after it.
    assert float(bars["demote-source"][0].get("x")) <= float(windows[0].get("x"))
    promote = bars["promote-target"][0]
    assert float(promote.get("x")) + float(promote.get("width")) >= float(windows[0].get("x")) + float(
        windows[0].get("width")) - 0.02
    markers = {m.get("class"): "".join(m.itertext()) for m in root.iter(f"{SVG}g") if "marker" in _classes(m)}
    assert "token 0/5020038" in markers["marker marker-token"]
    assert "promotion sent" in markers["marker marker-promotion"]
    lag = next(p for p in root.iter(f"{SVG}polyline") if "lag-line" in _classes(p))
    assert len(lag.get("points").split()) == 2
    ys = [float(p.split(",")[1]) for p in lag.get("points").split()]
    assert ys[0] < ys[1], "4096 bytes of lag is drawn higher than 0 bytes"


def test_the_text_version_has_a_bar_per_step_and_marks_the_window(monkeypatch, tmp_path, world):
    journal, outcome, plan = _run(monkeypatch, tmp_path, world)
    text = timeline_text(timeline_from_records(journal.records(), outcome.migration))
    lines = text.splitlines()
    assert len(lines) == 1 + len(plan.steps) + 2  # header, steps, the window's row, the marks
    for step, line in zip(plan.steps, lines[1:], strict=False):
        label = line.split()[0]  # a long id is cut in the middle, keeping both ends
        assert "#" in line and label[:10] == step.id[:10] and label[-10:] == step.id[-10:], line
    window_row = next(line for line in lines if line.lstrip().startswith("write unavailable"))
    assert "|" in window_row and window_row.rstrip().endswith(" s")
    # The demotion's bar is left of (or on) the window's first column, the promotion's right of it.
    column = window_row.index("|")
    demote = next(line for line in lines if line.lstrip().startswith("demote-source"))
    promote = next(line for line in lines if line.lstrip().startswith("promote-target"))
    assert demote.index("#") <= column <= promote.rindex("#")
    assert "token 0/5020038 at" in lines[-1] and "promotion sent at" in lines[-1]


def test_a_rolled_back_run_draws_the_failed_step_and_its_undo_as_an_undo(monkeypatch, tmp_path, world):
    journal, outcome, _ = _run(monkeypatch, tmp_path, world, fault=("catch-up", "gate", GateTimeout("gave up")))
    assert outcome.exit_code == 3, outcome.message
    root = _svg(journal, outcome.migration)
    bars = _bars(root)
    assert "bar-failed" in _classes(bars["catch-up"][0])
    assert "promote-target" not in bars
    undo = bars["undo demote-source"]
    assert len(undo) == 1 and "bar-undo" in _classes(undo[0]) and undo[0].get("data-kind") == "undo"
    assert float(undo[0].get("x")) >= float(bars["catch-up"][0].get("x"))
    # No promotion: the window is the source's read-only time until the undo was confirmed.
    window = next(r for r in root.iter(f"{SVG}rect") if "window" in _classes(r))
    assert "window-undone" in _classes(window)
    assert float(window.get("data-end")) == pytest.approx(float(undo[0].get("data-end")), abs=1e-3)
    assert not [m for m in root.iter(f"{SVG}g") if "marker-promotion" in _classes(m)]
    text = timeline_text(timeline_from_records(journal.records(), outcome.migration))
    assert any(line.lstrip().startswith("undo demote-source") and "<" in line for line in text.splitlines())


def test_a_resumed_run_draws_the_interrupted_attempt_and_the_one_that_finished(monkeypatch, tmp_path, world):
    plan = make_plan()
    install_fake_steps(monkeypatch, plan, world)
    world.fault = ("catch-up", "gate", SystemExit(137))  # killed inside the catch-up gate
    with pytest.raises(SystemExit):
        Engine(example_inventory(), plan, tmp_path).start()
    world.fault = None
    engine = Engine(example_inventory(), plan, tmp_path)
    outcome = engine.resume(latest_migration(engine.journal))
    assert outcome.exit_code == 0, outcome.message
    root = _svg(engine.journal, outcome.migration)
    catch_up = _bars(root)["catch-up"]
    assert [sorted(_classes(b) - {"bar"}) for b in catch_up] == [["bar-interrupted"], ["bar-done"]]
    assert float(catch_up[0].get("data-end")) <= float(catch_up[1].get("data-start"))
    assert [m for m in root.iter(f"{SVG}g") if "marker-resumed" in _classes(m)]
    assert [r for r in root.iter(f"{SVG}rect") if "window-promoted" in _classes(r)]


def test_untrusted_step_ids_and_facts_are_escaped(monkeypatch, tmp_path, world):
    plan = make_plan()
    hostile = '<script>alert("x")</script> & co'
    steps = tuple(s.model_copy(update={"id": hostile}) if s.id == "wait-cascade" else s for s in plan.steps)
    plan = plan.model_copy(update={"steps": steps})
    world.samples = {}
    world.learned["read-token"] = lambda: {**_token(), "token_text": "0/1 <b>&amp;"}
    journal, outcome, _ = _run(monkeypatch, tmp_path, world, plan=plan)
    assert outcome.exit_code == 0, outcome.message
    svg = timeline_svg(timeline_from_records(journal.records(), outcome.migration))
    assert "<script" not in svg and "<b>" not in svg
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in svg
    root = ET.fromstring(svg)  # still one well-formed document
    assert hostile in _bars(root)
    assert not list(root.iter(f"{SVG}script"))
    token = next(m for m in root.iter(f"{SVG}g") if "marker-token" in _classes(m))
    assert "token 0/1 <b>&amp;" in "".join(token.itertext())


def test_characters_xml_cannot_carry_and_secrets_never_reach_the_picture(tmp_path):
    journal = Journal(tmp_path, [])
    journal.append("migration-started", migration="m1", plan_file="p", source="dc1", target="dc2")
    journal.append("run-started", migration="m1", resume=False)
    journal.append("step-started", migration="m1", step="bad\x00\x1b[31m\ud800-s3cr3t", kind="k", phase="p")
    journal.append("step-failed", migration="m1", step="bad\x00\x1b[31m\ud800-s3cr3t", error="pw s3cr3t refused")
    svg = timeline_svg(timeline_from_records(journal.records(), "m1"), ["s3cr3t"])
    root = ET.fromstring(svg)
    assert "s3cr3t" not in svg and list(_bars(root)) == ["bad??[31m?-********"]
    svg.encode()  # nothing that cannot be written


def test_records_that_do_not_parse_are_left_out_not_raised(tmp_path):
    records = [
        {"event": "migration-started", "migration": "m1", "ts": "2026-11-21T03:00:00.000+00:00"},
        {"event": "step-started", "migration": "m1", "step": "a", "ts": "not a time"},
        {"event": "step-started", "migration": "m1", "step": ["a", 1], "ts": "2026-11-21T03:00:01.000+00:00"},
        {"event": "step-done", "migration": "m1", "step": ["a", 1], "facts": "not a dict",
         "ts": "2026-11-21T03:00:02.000+00:00"},
        {"event": "step-done", "migration": "m1", "step": "b",
         "facts": {"source_read_only_at": 17, "target_writable_at": "yesterday"}, "ts": "2026-11-21T03:00:03.000+00:00"},
        {"event": "gate-sample", "migration": "m1", "detail": {"lag": 3}, "lag_bytes": "9",
         "ts": "2026-11-21T03:00:03.000+00:00"},
        "not a record",
    ]
    timeline = timeline_from_records(records, "m1")
    assert timeline.window is None and timeline.lag == [] and timeline.duration == 3.0
    ET.fromstring(timeline_svg(timeline))
    assert timeline_text(timeline)


def test_twenty_steps_fit_one_row_each_without_overlapping_labels(tmp_path):
    journal = Journal(tmp_path, [])
    journal.append("migration-started", migration="m1", plan_file="p", source="dc1", target="dc2")
    for n in range(20):
        journal.append("step-started", migration="m1", step=f"a-rather-long-step-name-number-{n:02d}-x" * 2)
        journal.append("step-done", migration="m1", step=f"a-rather-long-step-name-number-{n:02d}-x" * 2)
    root = _svg(journal, "m1")
    labels = [t for t in root.iter(f"{SVG}text") if "label" in _classes(t)]
    ys = [float(t.get("y")) for t in labels]
    assert len(labels) == 20 and all(b - a >= 14 for a, b in zip(ys, ys[1:], strict=False))
    assert all(len(t.text) <= 34 for t in labels)  # cut to the label column; the whole id in <title>
    view = [float(v) for v in root.get("viewBox").split()]
    assert view[3] >= ys[-1] + 40  # the axis and the legend below the last row


def test_add_timeline_writes_the_svg_beside_the_report_and_embeds_it(monkeypatch, tmp_path, world):
    journal, outcome, _ = _run(monkeypatch, tmp_path, world)
    text, markdown, path = add_timeline(tmp_path, journal.records(), outcome.migration, ["s3cr3t"], "head", "# md\n")
    assert path == tmp_path / f"report-{outcome.migration}.svg"
    assert path.stat().st_mode & 0o077 == 0
    assert f"]({path.name})" in markdown and text.startswith("head\ntimeline: 0 to")
    ET.fromstring(path.read_text())


def test_the_fleet_gantt_has_a_row_per_service_with_its_own_window(monkeypatch, tmp_path, world):
    journal, outcome, _ = _run(monkeypatch, tmp_path, world)
    first = service_run("orders", journal.records(), outcome.migration)
    assert first.outcome == "done" and first.window_start and first.window_end
    rows = [
        first,
        ServiceRun("billing", "2026-11-21T03:00:00.000+00:00", "2026-11-21T03:00:40.000+00:00", "rolled-back",
                   "2026-11-21T03:00:20.000+00:00", "2026-11-21T03:00:22.500+00:00"),
        ServiceRun("<auth & co>", "2026-11-21T03:00:10.000+00:00", None, "running"),
    ]
    root = ET.fromstring(fleet_gantt(rows, "wave 1"))
    bars = _bars(root)
    assert set(bars) == {"orders", "billing", "<auth & co>"}
    assert "bar-undo" in _classes(bars["billing"][0]) and "bar-interrupted" in _classes(bars["<auth & co>"][0])
    windows = [r for r in root.iter(f"{SVG}rect") if "row-window" in _classes(r)]
    assert len(windows) == 2
    billing = next(w for w in windows if w.get("data-start") == "20")
    assert float(billing.get("x")) == pytest.approx(_x(root, 20.0), abs=0.01)
    assert float(billing.get("width")) == pytest.approx(_x(root, 22.5) - _x(root, 20.0), abs=0.02)


def test_the_end_of_a_run_writes_the_picture_beside_the_report_and_names_it(monkeypatch, tmp_path, world, capsys):
    """What `migrate execute --format json` ends with (cli._finish), after an engine run."""
    import json

    from migrator.cli import _console, _finish
    from migrator.run.journal import state_dir_for

    inventory = example_inventory()
    plan = make_plan()
    install_fake_steps(monkeypatch, plan, world)
    directory = state_dir_for(tmp_path, inventory.service)
    outcome = Engine(inventory, plan, directory).start()
    assert _finish(_console(stderr=True), inventory, tmp_path, outcome, "execute") == 0
    printed = capsys.readouterr()
    document = json.loads(printed.out)
    assert "\ntimeline: 0 to " in printed.err and "  write unavailable " in printed.err  # the text version
    svg = directory / f"report-{outcome.migration}.svg"
    assert document["timeline_file"] == str(svg)
    report = (directory / f"report-{outcome.migration}.md").read_text()
    assert f"![timeline of migration {outcome.migration}]({svg.name})" in report
    root = ET.fromstring(svg.read_text())
    assert set(_bars(root)) == {s.id for s in plan.steps}
    assert [r for r in root.iter(f"{SVG}rect") if "window" in _classes(r)]
