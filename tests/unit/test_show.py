"""`migrate show PLAN_FILE`: a saved plan rendered again without any site, in every format; a
file edited since it was written is flagged, and a file that is not a plan is one line, exit 2."""

from __future__ import annotations

import json

import pytest

from migrator import cli
from migrator.model.findings import Finding, Verdict
from migrator.model.plan import Plan
from migrator.render.plan_report import render, render_runbook
from tests.unit.test_planner import make_plan


@pytest.fixture
def saved(tmp_path):
    plan = make_plan()
    path = tmp_path / "plan.json"
    path.write_text(render(plan, "json"))
    return plan, path


@pytest.mark.parametrize("fmt", ["text", "md", "json", "runbook"])
def test_show_renders_a_saved_plan_as_plan_did(saved, fmt, capsys):
    plan, path = saved
    assert cli.run(["show", str(path), "--format", fmt]) == 0
    printed = capsys.readouterr()
    expected = render_runbook(plan) if fmt == "runbook" else render(plan, fmt)
    assert printed.out.rstrip("\n") == expected.rstrip("\n") and printed.err == ""
    if fmt == "json":
        assert Plan.from_json(printed.out).fingerprint == plan.fingerprint
    if fmt == "md":
        assert f"{plan.fingerprint[:12]}" in printed.out and "| " in printed.out


def test_a_blocked_plan_shows_with_exit_1(tmp_path, capsys):
    blocked = make_plan(findings=[Finding(check="paused", verdict=Verdict.BLOCK, finding="dc2 is paused",
                                          fix="resume it", site="dc2")])
    path = tmp_path / "plan.json"
    path.write_text(render(blocked, "json"))
    assert cli.run(["show", str(path)]) == 1
    assert "BLOCKED" in capsys.readouterr().out


def test_a_plan_edited_after_it_was_written_is_flagged(saved, capsys):
    plan, path = saved
    data = json.loads(path.read_text())
    data["steps"][0]["args"] = {**data["steps"][0].get("args", {}), "sneaky": "yes"}
    path.write_text(json.dumps(data))
    assert cli.run(["show", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "was changed after `migrate plan` wrote it" in err
    assert plan.fingerprint[:12] in err


@pytest.mark.parametrize("content", [None, "not json", '{"schema": 1}'])
def test_a_file_that_is_not_a_plan_is_one_line_exit_2(tmp_path, content, capsys):
    path = tmp_path / "plan.json"
    if content is not None:
        path.write_text(content)
    assert cli.run(["show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"migrate: error: plan file {path}")
    assert "migrate plan --dc NAME --out FILE" in err and "Traceback" not in err
