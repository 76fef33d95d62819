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


def _failover_plan_file(tmp_path, executable: bool):
    """A failover plan as `migrate plan --failover --out` writes it: the source's etcd down, every
    dc1 member reachable over SSH (executable), or dc1-a unreachable too (refused)."""
    from migrator.planning.failover import plan_failover
    from migrator.render.failover_report import render_failover
    from tests.helpers.snapshots import example_inventory, load_baseline, unreachable, with_site

    state = with_site(load_baseline(), "dc1", dcs={"healthy": False, "error": "etcd: connection refused"})
    if not executable:
        state = unreachable(state, "dc1-a", probes=("patroni", "postgres", "host"))
    found = plan_failover(example_inventory(), state, "dc2")
    assert found.executable is executable
    path = tmp_path / "failover.json"
    path.write_text(render_failover(found, "json"))
    return found, path


@pytest.mark.parametrize("executable", [True, False])
@pytest.mark.parametrize("fmt", ["text", "md", "json", "runbook"])
def test_show_renders_a_saved_failover_plan_as_plan_failover_did(tmp_path, fmt, executable, capsys):
    from migrator.render.failover_report import render_failover

    found, path = _failover_plan_file(tmp_path, executable)
    assert cli.run(["show", str(path), "--format", fmt]) == (0 if executable else 1)
    printed = capsys.readouterr()
    assert printed.out == render_failover(found, fmt) and printed.err == ""  # type: ignore[arg-type]


def test_a_failover_plan_edited_after_it_was_written_is_flagged(tmp_path, capsys):
    _, path = _failover_plan_file(tmp_path, True)
    data = json.loads(path.read_text())
    data["plan"]["service"] = "another-service"  # part of the fingerprint
    path.write_text(json.dumps(data))
    assert cli.run(["show", str(path)]) == 1
    assert "was changed after `migrate plan` wrote it" in capsys.readouterr().err


def test_a_failover_plan_given_to_execute_plan_is_refused_naming_what_it_is(tmp_path):
    from migrator.errors import UsageError
    from migrator.run.commands import _check_reviewed

    _, path = _failover_plan_file(tmp_path, True)
    with pytest.raises(UsageError, match="is a failover plan .* not a switchover plan; `migrate failover --dc DC`"):
        _check_reviewed(make_plan(), path)
