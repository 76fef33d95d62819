"""The unknown-host-key opt-in is repeated as a warning in every report format, the JSON plan
included, and a plan read back from its file still carries it."""

from __future__ import annotations

import json

import pytest

from migrator.plan import Plan
from migrator.report import render, render_runbook
from migrator.trust import insecure_ssh_sites, unknown_host_key_warnings
from tests.unit.test_planner import EXAMPLE_INVENTORY, example_inventory, make_plan

OPT_IN = "WARNING: site dc2 accepts unknown SSH host keys"


def _opted_in_plan() -> Plan:
    text = EXAMPLE_INVENTORY.read_text()
    dc2 = text.index("  dc2:")
    marker = "known_hosts: /tmp/migrator-testbed/ssh/known_hosts"
    text = text[:dc2] + text[dc2:].replace(marker, marker + "\n      accept_unknown_host_keys: true", 1)
    inventory = example_inventory(text)
    assert insecure_ssh_sites(inventory) == ("dc2",)
    return make_plan(inventory=inventory)


@pytest.mark.parametrize("fmt", ["text", "md", "json", "runbook"])
def test_every_plan_format_carries_the_opt_in_warning(fmt):
    plan = _opted_in_plan()
    report = render_runbook(plan) if fmt == "runbook" else render(plan, fmt)
    assert OPT_IN in report
    plain = make_plan()
    plain_report = render_runbook(plain) if fmt == "runbook" else render(plain, fmt)
    assert "accepts unknown SSH host keys" not in plain_report


def test_the_json_plan_names_the_warning_and_reads_back_with_the_same_fingerprint():
    plan = _opted_in_plan()
    data = json.loads(plan.to_json())
    assert data["warnings"] == unknown_host_key_warnings(["dc2"])
    again = Plan.from_json(plan.to_json(pretty=True))
    assert again == plan and again.warnings == plan.warnings and again.verify_fingerprint()
    # The opt-in is a report matter, not a topology change: the fingerprint does not move.
    assert plan.fingerprint == make_plan().fingerprint
