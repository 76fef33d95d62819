"""The change-review report: the same content in text, Markdown and JSON."""

from __future__ import annotations

import json

import pytest

from migrator.checks import run_checks
from migrator.model.findings import Finding, Verdict
from migrator.model.plan import Plan
from migrator.render.plan_report import render, render_findings
from tests.helpers.snapshots import load_baseline
from tests.unit.test_planner import (
    EXAMPLE_INVENTORY,
    blocking_finding,
    example_inventory,
    make_plan,
    with_patroni_version,
)

FORMATS = ("text", "md")


def checked_plan(state=None) -> Plan:
    state = state or load_baseline()
    inventory = example_inventory()
    return make_plan(state, findings=run_checks(inventory, state, "dc1", "dc2"),
                     inventory=inventory)


PLANS = {
    "graceful": lambda: checked_plan(),
    "pre-4.1": lambda: checked_plan(with_patroni_version(load_baseline(), "dc1-b", "3.3.11")),
}


@pytest.mark.parametrize("path", PLANS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_report_has_every_step_title_and_every_check_id(path, fmt):
    plan = PLANS[path]()
    assert plan.findings and plan.steps
    report = render(plan, fmt)
    for step in plan.steps:
        assert step.title in report, step.id
    for finding in plan.findings:
        assert finding.check in report


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_shows_gates_undo_manual_commands_diffs_and_unavailability(fmt):
    plan = checked_plan()
    report = render(plan, fmt)
    for step in plan.steps:
        if step.gate is not None:
            assert step.gate.wait_for in report
            assert f"{step.gate.timeout_seconds:g} s" in report
        if step.undo.description:
            assert step.undo.description in report
        for command in step.manual:
            assert command in report, (step.id, command)
    for site, diff in plan.config_diff.items():
        for line in diff.splitlines():
            assert line in report
    assert plan.write_unavailability.summary in report
    assert plan.fingerprint in report and plan.observed_at in report
    assert "dc1 -> dc2" in report
    assert "EXECUTABLE" in report


@pytest.mark.parametrize("fmt", FORMATS)
def test_blocked_report_leads_with_the_blocking_findings(fmt):
    ok = Finding(check="paused", verdict=Verdict.OK, finding="no site is paused")
    plan = make_plan(findings=[ok, blocking_finding("replay-lag")])
    report = render(plan, fmt)
    assert "BLOCKED" in report
    first_block = report.index("replay-lag")
    assert first_block < report.index("paused")
    assert first_block < report.index(plan.steps[0].title)
    assert "wait for it to catch up" in report


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_ssh_host_keys_opt_in_gives_a_warning_line(fmt):
    text = EXAMPLE_INVENTORY.read_text().replace(
        "known_hosts: /tmp/migrator-testbed/ssh/known_hosts",
        "known_hosts: /tmp/migrator-testbed/ssh/known_hosts\n"
        "      accept_unknown_host_keys: true", 1)
    plan = make_plan(inventory=example_inventory(text))
    assert plan.insecure_ssh_sites == ("dc1",)
    report = render(plan, fmt)
    assert "WARNING: site dc1 accepts unknown SSH host keys" in report
    assert "accepts unknown SSH host keys" not in render(make_plan(), fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_noop_report_says_there_is_nothing_to_do(fmt):
    report = render(make_plan(target="dc1"), fmt)
    assert "NOTHING TO DO" in report
    assert "already the primary site" in report


def test_json_report_is_the_plan():
    plan = checked_plan()
    report = render(plan, "json")
    assert Plan.from_json(report) == plan
    assert json.loads(report) == json.loads(plan.to_json())


def test_reports_are_stable():
    plan = checked_plan()
    for fmt in ("text", "md", "json"):
        assert render(plan, fmt) == render(plan, fmt)


def test_text_report_has_no_ansi_codes_unless_asked():
    plan = checked_plan()
    assert "\x1b[" not in render(plan, "text")
    assert "\x1b[" in render(plan, "text", color=True)


def test_text_report_keeps_commands_on_one_line_past_the_width():
    plan = checked_plan()
    longest = max((c for s in plan.steps for c in s.manual), key=len)
    assert len(longest) > 120
    assert any(line.endswith(longest) for line in render(plan, "text").splitlines())


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="unknown report format"):
        render(make_plan(), "html")  # type: ignore[arg-type]


def test_check_report_puts_blocking_findings_first_and_names_every_check():
    findings = [Finding(check="paused", verdict=Verdict.OK, finding="no site is paused"),
                blocking_finding("replay-lag")]
    text = render_findings(findings, "dc1", "dc2")
    assert text.startswith("Preflight checks: BLOCKED: 1 blocking finding for dc1 -> dc2")
    assert text.index("replay-lag") < text.index("paused")
    assert "\x1b[" not in text
    assert "no blocking finding" in render_findings(findings[:1], "dc1", "dc2")
