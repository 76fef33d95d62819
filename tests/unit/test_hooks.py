"""Hooks are part of the reviewed change: the plan shows each hook's command in every format, its
fingerprint covers them, a hook's environment holds nothing inherited but PATH/HOME/LANG, and a
hook killed at its timeout takes every process it started with it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from migrator.errors import UsageError
from migrator.run.commands import _hooks_as_planned
from migrator.run.hooks import HookFailed, run_hook
from migrator.render.plan_report import render, render_runbook
from tests.unit.test_planner import EXAMPLE_INVENTORY, example_inventory, make_plan

PAUSE = "psql -h pgbouncer -p 6432 pgbouncer -c 'PAUSE shop'"
RESUME = "psql -h pgbouncer -p 6432 pgbouncer -c 'RESUME shop'"


def inventory_with_hooks(**hooks: object):
    lines = "".join(f"  {name}: {json.dumps(value)}\n" for name, value in hooks.items())
    return example_inventory(EXAMPLE_INVENTORY.read_text().replace("sites:\n", f"hooks:\n{lines}sites:\n", 1))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


# --- the plan ---------------------------------------------------------------------------------


def test_the_plan_lists_each_configured_hook_with_its_command_and_timeout():
    plan = make_plan(inventory=inventory_with_hooks(before_demote=PAUSE, on_undo=RESUME, after_promote="true",
                                                    timeout_seconds=12))
    assert [(h.name, h.command, h.timeout_seconds) for h in plan.hooks] == [
        ("before_demote", PAUSE, 12), ("after_promote", "true", 12), ("on_undo", RESUME, 12)]
    assert make_plan().hooks == ()


def test_a_changed_hook_command_or_timeout_changes_the_fingerprint():
    base = make_plan(inventory=inventory_with_hooks(before_demote=PAUSE)).fingerprint
    assert make_plan(inventory=inventory_with_hooks(before_demote=PAUSE + " ")).fingerprint != base
    assert make_plan(inventory=inventory_with_hooks(before_demote=PAUSE, timeout_seconds=31)).fingerprint != base
    assert make_plan(inventory=inventory_with_hooks(before_demote=PAUSE, on_undo=RESUME)).fingerprint != base
    assert make_plan(inventory=inventory_with_hooks(before_demote=PAUSE)).fingerprint == base
    assert make_plan().fingerprint != base


@pytest.mark.parametrize("fmt", ["text", "md", "json", "runbook"])
def test_every_format_shows_every_hook_command(fmt):
    plan = make_plan(inventory=inventory_with_hooks(before_demote=PAUSE, on_undo=RESUME,
                                                    before_promote="/usr/local/bin/hold-dns"))
    text = render_runbook(plan) if fmt == "runbook" else render(plan, fmt)
    for name, command in (("before_demote", PAUSE), ("on_undo", RESUME), ("before_promote", "/usr/local/bin/hold-dns")):
        assert name in text and command in text, (fmt, name)


def test_the_demote_step_of_the_report_names_the_hooks_that_run_with_it():
    plan = make_plan(inventory=inventory_with_hooks(before_demote=PAUSE, on_undo=RESUME))
    text = render(plan, "text")
    demote = text[text.index("] Demote"):]
    demote = demote[:demote.index("undo:")]
    assert f"runs hook before_demote first: `{PAUSE}`" in demote
    assert f"when this step is undone, runs hook on_undo afterwards: `{RESUME}`" in demote


def test_resume_refuses_hooks_changed_since_the_migration_started():
    plan = make_plan(inventory=inventory_with_hooks(before_demote=PAUSE))
    _hooks_as_planned(inventory_with_hooks(before_demote=PAUSE), plan, Path("plan.json"))
    with pytest.raises(UsageError, match=r"hooks changed since this migration started \(before_demote\)"):
        _hooks_as_planned(inventory_with_hooks(before_demote="true"), plan, Path("plan.json"))


# --- running a hook ---------------------------------------------------------------------------


def test_a_hook_gets_the_migrator_variables_and_path_but_no_inherited_secret(monkeypatch):
    monkeypatch.setenv("SECRET_SHOULD_NOT_LEAK", "hunter2")
    monkeypatch.setenv("PGPASSWORD", "hunter3")
    monkeypatch.setenv("LANG", "C.UTF-8")
    out = run_hook("before_demote", "env", 10, {"MIGRATOR_SOURCE": "dc1", "NOT_OURS": "x"})
    env = dict(line.split("=", 1) for line in out.splitlines())
    assert "hunter" not in out and "NOT_OURS" not in env
    assert env["MIGRATOR_SOURCE"] == "dc1" and env["MIGRATOR_HOOK"] == "before_demote"
    assert env["PATH"] == os.environ["PATH"] and env["LANG"] == "C.UTF-8"
    assert set(env) <= {"MIGRATOR_SOURCE", "MIGRATOR_HOOK", "PATH", "HOME", "LANG", "PWD", "SHLVL", "_"}


def test_a_hook_killed_at_its_timeout_takes_its_children_with_it(tmp_path):
    pid_file = tmp_path / "child"
    started = time.monotonic()
    with pytest.raises(HookFailed, match="hook before_demote did not finish within 0.5s and was killed"):
        run_hook("before_demote", f"sleep 300 & echo $! > {pid_file}; sleep 600", 0.5, {})
    assert time.monotonic() - started < 5
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 2  # reaped by init, which may take a moment in a container
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), f"the hook's child {child} survived"


def test_a_failing_hook_names_its_exit_code_and_last_line():
    with pytest.raises(HookFailed, match="hook on_undo exited 3: second"):
        run_hook("on_undo", "echo first >&2; echo second >&2; exit 3", 10, {})


def test_on_the_pause_path_before_demote_runs_with_the_clean_stop():
    from tests.helpers.snapshots import load_baseline
    from tests.unit.test_planner import with_patroni_version

    plan = make_plan(with_patroni_version(load_baseline(), "dc1-b", "3.3.11"),
                     inventory=inventory_with_hooks(before_demote=PAUSE, on_undo=RESUME))
    assert not plan.graceful_demote
    assert [h.name for h in plan.hooks] == ["before_demote", "on_undo"]
    text = render(plan, "text")
    stop = text[text.index("kind stop_postgres"):]
    assert f"runs hook before_demote first: `{PAUSE}`" in stop[:stop.index("undo:")]
