"""`migrate fleet status` on the real testbed, over the extra services (one member per site, all
sharing each site's etcd: tests/testbed/services.py): every service healthy (exit 0); one
service's members stopped is a row that says it cannot be observed, naming a member and its host,
while the others are still listed (exit 1); one service's dc2 promoted by hand (its
`standby_cluster` removed through PATCH /config) is a red split-brain row (exit 4). Each test puts
the services back as it found them (`up_services` repairs, or rebuilds the split service)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_execute import writable
from tests.testbed import wait_until
from tests.testbed.services import ExtraServices, inventory_file

pytestmark = pytest.mark.testbed

EXTRA_SERVICES = 3  # read by the extra_services fixture
MIGRATE = [sys.executable, "-m", "migrator.cli"]


def fleet_file(testbed, services, directory: Path) -> Path:
    path = directory / "fleet.yml"
    listed = "".join(f"  - {inventory_file(testbed.base, s)}\n" for s in services)
    path.write_text(f"services:\n{listed}parallel: 3\n")
    return path


def fleet_status(fleet: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MIGRATE, "fleet", "status", "--fleet", str(fleet), *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def document(fleet: Path, expected_exit: int) -> dict:
    result = fleet_status(fleet, "--json")
    assert result.returncode == expected_exit, result.stdout[-2000:] + result.stderr
    return json.loads(result.stdout)


def rows(text: str) -> dict[str, str]:
    """The table's rows by service (a folded cell's continuation lines have no service)."""
    cells = [line.split("│") for line in text.splitlines() if line.startswith("│ ")]
    return {cell[1].strip(): "│".join(cell) for cell in cells if cell[1].strip()}


def put_back(testbed, service) -> None:
    """dc2 of `service` a standby cluster of dc1 again. Patroni rewinds what dc2 wrote on its own
    timeline (about 12 s here; a rebuild takes a minute on a loaded machine); `up_services`
    rebuilds the service only if that did not make it healthy."""
    services = ExtraServices(testbed)
    try:
        testbed.patch_config(service.dc2, {"standby_cluster": services._want_config(service, service.dc2)[
            "standby_cluster"]})  # fmt: skip
        wait_until(lambda: not services.problems(service), 60, f"{service.name} healthy", interval=0.5)
    finally:
        testbed.up_services(EXTRA_SERVICES)


def test_healthy_then_a_service_whose_members_are_stopped_cannot_be_observed_and_the_others_are_listed(
    baseline, extra_services, tmp_path
):
    fleet = fleet_file(baseline, extra_services, tmp_path)
    healthy = fleet_status(fleet)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    table = rows(healthy.stdout)
    for service in extra_services:
        assert "primary" in table[service.name] and "standby cluster" in table[service.name]
        assert f"{service.name}-dc1-a" in table[service.name] and "healthy" in table[service.name]
    assert "services: 3; 3 healthy" in healthy.stdout
    for row in document(fleet, 0)["services"]:
        assert row["site_roles"] == {"dc1": "primary", "dc2": "standby cluster"}, row
        assert row["leader"] == f"{row['service']}-dc1-a" and row["lag_bytes"] is not None

    stopped = extra_services[1]
    try:
        for member in stopped.members:
            baseline.stop_patroni(member)
        result = fleet_status(fleet)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stderr
        table = rows(result.stdout)
        assert set(table) == {s.name for s in extra_services}
        assert "UNOBSERVED" in table[stopped.name] and "down" in table[stopped.name]
        by_service = {row["service"]: row for row in document(fleet, 1)["services"]}
        line = by_service[stopped.name]["problems"][0]
        dc1_member = stopped.dc1.members[0]
        assert line.startswith(f"cannot be observed: no member answered: {dc1_member.name} ({dc1_member.host})")
        assert by_service[stopped.name]["verdict"] == "unobserved"
        assert {by_service[s.name]["verdict"] for s in extra_services if s is not stopped} == {"healthy"}
    finally:
        baseline.up_services(EXTRA_SERVICES)
    assert document(fleet, 0)["totals"]["healthy"] == 3


def test_a_service_promoted_by_hand_in_dc2_is_a_red_split_brain_row_and_exit_4(baseline, extra_services, tmp_path):
    fleet = fleet_file(baseline, extra_services, tmp_path)
    split = extra_services[2]
    promoted = split.dc2.members[0]
    try:
        baseline.patch_config(split.dc2, {"standby_cluster": None})
        wait_until(lambda: promoted.name in writable(baseline, split.members), 60, f"{promoted.name} writable")
        assert len(writable(baseline, split.members)) == 2  # the state the view exists to show

        result = fleet_status(fleet)
        assert result.returncode == 4, result.stdout + result.stderr
        table = rows(result.stdout)
        assert "SPLIT BRAIN" in table[split.name] and set(table) == {s.name for s in extra_services}
        first = split.dc1.members[0].name
        assert f"{split.name}: SPLIT BRAIN: 2 writable members: {first} (dc1), {promoted.name} (dc2)" in result.stdout
        by_service = {row["service"]: row for row in document(fleet, 4)["services"]}
        assert by_service[split.name]["verdict"] == "split-brain"
        assert by_service[split.name]["status"]["split_brain"] is True
        assert by_service[split.name]["site_roles"] == {"dc1": "primary", "dc2": "primary"}
        assert {by_service[s.name]["verdict"] for s in extra_services if s is not split} == {"healthy"}
    finally:
        put_back(baseline, split)
    assert document(fleet, 0)["totals"]["healthy"] == 3
