"""The per-plan runbook (`migrate plan --format runbook`) and runbooks/switchover.md, which it
points at: every step with its gate, undo and manual commands, blocking findings first, no
secret, and no link to a section the runbook does not have."""

from __future__ import annotations

import re

import pytest

from migrator import cli
from migrator.checks import run_checks
from migrator.model.findings import Finding, Verdict
from migrator.model.plan import Plan
from migrator.planning.switchover import plan
from migrator.model.playbook import SWITCHOVER_PHASES, switchover_playbook
from migrator.render.plan_report import RUNBOOK_DOC, render_runbook
from migrator.steps.registry import STEP_CLASSES
from tests.helpers.snapshots import load_baseline
from tests.unit.test_planner import (
    REPO_ROOT,
    blocking_finding,
    example_inventory,
    inventory_with_secrets,
    make_plan,
    with_patroni_version,
)

SWITCHOVER_DOC = REPO_ROOT / RUNBOOK_DOC


def checked_plan(state=None):
    state = state or load_baseline()
    inventory = example_inventory()
    return make_plan(state, findings=run_checks(inventory, state, "dc1", "dc2"), inventory=inventory)


PLANS = {
    "graceful": lambda: checked_plan(),
    "pre-4.1": lambda: checked_plan(with_patroni_version(load_baseline(), "dc1-b", "3.3.11")),
}


def anchors_in_doc() -> set[str]:
    return set(re.findall(r'<a id="([a-z0-9-]+)"></a>', SWITCHOVER_DOC.read_text()))


# --- content ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PLANS)
def test_runbook_has_every_step_with_its_gate_undo_and_manual_commands(path):
    p = PLANS[path]()
    assert p.steps
    runbook = render_runbook(p)
    assert runbook.startswith(f"# Runbook: service `demo`, {p.source} -> {p.target}\n")
    for field in (p.fingerprint, p.observed_at, p.service, "EXECUTABLE"):
        assert field in runbook
    last = -1
    for number, step in enumerate(p.steps, start=1):
        heading = f"### {number}. [{step.phase}] {step.title}"
        assert heading in runbook, step.id
        assert runbook.index(heading) > last, f"{step.id} out of order"
        last = runbook.index(heading)
        if step.gate is not None:
            assert step.gate.wait_for in runbook
            assert f"timeout: {step.gate.timeout_seconds:g} s" in runbook
            if step.gate.threshold:
                assert step.gate.threshold in runbook
        if step.undo.description:
            assert step.undo.description in runbook
        for command in step.manual:
            assert command in runbook, (step.id, command)


def test_manual_commands_sit_in_fenced_shell_blocks():
    p = checked_plan()
    runbook = render_runbook(p)
    blocks = re.findall(r"^(`{3,})sh\n(.*?)\n\1$", runbook, flags=re.M | re.S)
    assert len(blocks) == sum(1 for s in p.steps if s.manual)
    inside = "\n".join(body for _, body in blocks)
    for step in p.steps:
        for command in step.manual:
            assert command in inside, (step.id, command)
    assert runbook.count("```") % 2 == 0


def test_blocked_runbook_lists_its_blocking_findings_first():
    ok = Finding(check="paused", verdict=Verdict.OK, finding="no site is paused")
    warning = Finding(check="watchdog", verdict=Verdict.WARN, finding="watchdog off on dc1-a",
                      fix="set watchdog.mode: required")
    p = make_plan(findings=[ok, warning, blocking_finding("replay-lag")])
    runbook = render_runbook(p)
    assert "BLOCKED" in runbook
    first_block = runbook.index("BLOCK `replay-lag`")
    assert first_block < runbook.index("watchdog off on dc1-a")
    assert first_block < runbook.index("## Before you start")
    assert first_block < runbook.index(p.steps[0].title)
    assert "wait for it to catch up" in runbook
    assert "BLOCK" not in render_runbook(make_plan(findings=[ok, warning]))


def test_noop_runbook_says_there_is_nothing_to_do():
    p = make_plan(target="dc1")
    runbook = render_runbook(p)
    assert "Nothing to do: dc1 is already the primary site" in runbook
    assert "### 1." not in runbook
    assert "## If it fails" in runbook


def test_steps_after_the_promotion_say_a_failure_is_exit_4_and_nothing_is_undone():
    p = checked_plan()
    runbook = render_runbook(p)
    promote = next(i for i, s in enumerate(p.steps) if s.kind == "promote_site")
    sections = re.split(r"^### \d+\. ", runbook, flags=re.M)[1:]
    assert len(sections) == len(p.steps)
    for index, section in enumerate(sections):
        after = "exit 4 and undoes nothing" in section
        assert after == (index >= promote), p.steps[index].id


def test_steps_the_engine_cannot_run_are_marked_manual():
    p = PLANS["pre-4.1"]()
    runbook = render_runbook(p)
    sections = re.split(r"^### \d+\. ", runbook, flags=re.M)[1:]
    for step, section in zip(p.steps, sections):
        marked = "has no implementation of step kind" in section
        assert marked == (step.kind not in STEP_CLASSES), step.id


def test_runbook_is_stable():
    p = checked_plan()
    assert render_runbook(p) == render_runbook(p)


# --- secrets ------------------------------------------------------------------------------------


def test_no_secret_value_or_reference_in_the_runbook(monkeypatch, tmp_path):
    inventory = inventory_with_secrets(monkeypatch, tmp_path)
    for state in (load_baseline(), with_patroni_version(load_baseline(), "dc1-b", "3.3.11")):
        p = plan(inventory, state, switchover_playbook(), "dc2", [blocking_finding()])
        runbook = render_runbook(p)
        for secret in inventory.secrets():
            assert secret not in runbook
        for reference in ("env:MIGRATOR_PLAN_TEST", "file:", str(tmp_path)):
            assert reference not in runbook


# --- the links into runbooks/switchover.md ------------------------------------------------------


def test_every_section_the_runbook_links_to_exists_in_the_switchover_runbook():
    anchors = anchors_in_doc()
    for make in PLANS.values():
        runbook = render_runbook(make())
        linked = set(re.findall(re.escape(RUNBOOK_DOC) + r"#([a-z0-9-]+)", runbook))
        assert linked, "no link into the switchover runbook"
        assert linked <= anchors, sorted(linked - anchors)


def test_the_switchover_runbook_covers_every_phase_and_its_internal_links_resolve():
    text = SWITCHOVER_DOC.read_text()
    anchors = anchors_in_doc()
    for phase in SWITCHOVER_PHASES:
        assert f"phase-{phase}" in anchors, phase
    internal = set(re.findall(r"\]\(#([a-z0-9-]+)\)", text))
    assert internal <= anchors, sorted(internal - anchors)
    for section in ("catch-up-timed-out", "promotion-not-confirmed", "undo-failed", "operator-crashed",
                    "second-operator", "stale-plan", "follows-a-replica", "slot-missing",
                    "source-diverged", "two-primaries", "rollback", "journal"):
        assert section in anchors, section


def test_the_runbook_index_lists_the_switchover_runbook():
    index = (REPO_ROOT / "runbooks" / "README.md").read_text()
    assert "switchover.md" in index


# --- the command line ---------------------------------------------------------------------------


def test_plan_format_runbook_writes_the_runbook(monkeypatch, tmp_path, capsys):
    inventory = inventory_with_secrets(monkeypatch, tmp_path)
    p = make_plan(inventory=inventory)
    monkeypatch.setattr("migrator.planning.preflight.observe_and_plan", lambda inv, dc: p)
    out = tmp_path / "plan.json"
    assert cli.run_plan(inventory, "dc2", cli.OutputFormat.runbook, out) == 0
    # --out always holds the JSON plan (for --plan and `migrate show`); stdout the runbook.
    assert Plan.from_json(out.read_text()).fingerprint == p.fingerprint
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    printed = capsys.readouterr()
    assert printed.out == render_runbook(p) and f"written to {out}" in printed.err
    assert cli.run_plan(inventory, "dc2", cli.OutputFormat("runbook"), None) == 0
    assert capsys.readouterr().out == render_runbook(p)
