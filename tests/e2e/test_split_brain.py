"""Two primaries in one site: what a killed Patroni agent leaves behind when there is no
watchdog. The agent of dc1's primary gets SIGKILL (its PostgreSQL keeps running), the replica is
promoted after the leader key expires, and for a while both accept writes."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_execute import explain, migrate, writable
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

DC1 = SITE_BY_NAME["dc1"]


def test_two_writable_members_block_check_and_execute_and_clear_after_patroni_rewinds(baseline, tmp_path):
    inventory = str(baseline.inventory_path)
    orphan = next(m for m in DC1.members if baseline.patroni_state(m)["role"] == "primary")
    replica = next(m for m in DC1.members if m != orphan)
    baseline.kill_patroni(orphan)
    try:
        wait_until(lambda: set(writable(baseline)) == {orphan.name, replica.name}, 90,
                   f"{replica.name} promoted while {orphan.name} still accepts writes")

        out = migrate("check", "-i", inventory, "--json")
        assert out.returncode == 1, explain(out)
        finding = {f["check"]: f for f in json.loads(out.stdout)["findings"]}["single-writer"]
        assert finding["verdict"] == "block"
        assert orphan.name in finding["finding"] and replica.name in finding["finding"]

        out = migrate("execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", str(tmp_path / "s"))
        assert out.returncode == 1 and "single-writer" in out.stderr, explain(out)
        assert out.stderr.count("\n") == 1

        out = migrate("status", "-i", inventory)
        assert "TWO OR MORE WRITABLE MEMBERS" in out.stdout
    finally:
        baseline.start_patroni(orphan)
    # Patroni demotes and rewinds the orphan; the service is whole again and the plan is clean.
    wait_until(lambda: writable(baseline) == [replica.name], 120, f"{orphan.name} rewound to a replica")
    wait_until(lambda: migrate("check", "-i", inventory).returncode == 0, 120, "a clean check again",
               interval=2)
