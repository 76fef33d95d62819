"""`migrate fleet plan` on the real testbed: a fleet of the testbed's service and a second service
whose members do not answer (another service name, every host on an unused loopback address of
this testbed's net). The first is executable with the very plan `migrate plan` writes, the second
blocked naming its host; nothing on the testbed changes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from migrator.model.plan import Plan
from tests.e2e.test_execute import explain, migrate
from tests.testbed import SITE_BY_NAME
from tests.testbed.topology import NET

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
# Sites 7 and 8 of this testbed's net: addresses nothing listens on (the testbed uses 1 and 2).
NOWHERE = {f"127.{NET}.1.": f"127.{NET}.7.", f"127.{NET}.2.": f"127.{NET}.8."}


def nowhere_inventory(testbed, path: Path) -> Path:
    """The testbed's inventory as service `orders`, every member and etcd on an unused address."""
    text = testbed.inventory_path.read_text()
    text = re.sub(r"(?m)^service: .*$", "service: orders", text)
    for used, unused in NOWHERE.items():
        text = text.replace(used, unused)
    path.write_text(text)
    return path


def test_fleet_plan_shows_the_testbed_executable_and_a_silent_service_blocked_naming_its_host(baseline, tmp_path):
    configs_before = {site.name: baseline.get_config(site) for site in (DC1, DC2)}
    nowhere_inventory(baseline, tmp_path / "orders.yml")
    fleet = tmp_path / "fleet.yml"
    fleet.write_text(f"services:\n  - {baseline.inventory_path}\n  - orders.yml\nwaves:\n  - [demo]\n")

    blocked = migrate("fleet", "plan", "--fleet", str(fleet), "--dc", "dc2", "--format", "md")
    assert blocked.returncode == 1, explain(blocked)
    rows = {line.split("|")[2].strip(): line for line in blocked.stdout.splitlines() if line.startswith("| ")}
    assert "| executable | switchover |" in rows["demo"], rows
    assert "| BLOCKED |" in rows["orders"] and f"127.{NET}.7.1" in rows["orders"], rows
    assert "wave 1: demo" in blocked.stdout and "wave 2 (implicit: the services named in no wave): orders" in (
        blocked.stdout
    )

    out_file = tmp_path / "fleet-plan.json"
    skipped = migrate("fleet", "plan", "--fleet", str(fleet), "--dc", "dc2", "--skip-blocked", "--out", str(out_file))
    assert skipped.returncode == 0, explain(skipped)
    assert "--skip-blocked: the skipped services are not part of the run" in skipped.stdout
    assert "written to" in skipped.stderr

    document = json.loads(out_file.read_text())
    services = {row["service"]: row for row in document["services"]}
    assert set(services) == {"demo", "orders"}
    assert services["demo"]["verdict"] == "executable" and services["orders"]["verdict"] == "skipped"
    demo_plan = Plan.model_validate(services["demo"]["plan"])
    assert demo_plan.verify_fingerprint() and demo_plan.fingerprint == services["demo"]["fingerprint"]
    orders_plan = Plan.model_validate(services["orders"]["plan"])  # what `migrate plan` would write for it
    assert orders_plan.service == "orders" and not orders_plan.executable

    # The same observation and checks as `migrate plan`: the same plan fingerprint for the service.
    single = migrate("plan", "-i", str(baseline.inventory_path), "--dc", "dc2", "--format", "json")
    assert single.returncode == 0, explain(single)
    assert json.loads(single.stdout)["fingerprint"] == services["demo"]["fingerprint"]

    outputs = [blocked.stdout, blocked.stderr, skipped.stdout, skipped.stderr, out_file.read_text()]
    for secret in baseline.passwords().values():
        assert not any(secret in text for text in outputs)
    assert {site.name: baseline.get_config(site) for site in (DC1, DC2)} == configs_before
