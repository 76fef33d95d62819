"""The testbed's own life cycle: back to baseline without a rebuild, and dc2 hosts without a cluster."""

from __future__ import annotations

import uuid

import pytest
import requests

from migrator.adapters.ssh import SshSession
from migrator.model.inventory import load_inventory
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]


def test_restore_baseline_repairs_a_killed_agent_and_a_paused_site_without_rebuilding(testbed):
    testbed.restore_baseline()
    system_id = testbed.sql(DC1.members[0], "SELECT system_identifier FROM pg_control_system()")
    replica = next(m for m in DC2.members if testbed.patroni_state(m).get("role") == "replica")
    testbed.kill_patroni(replica)  # the agent dies, its PostgreSQL keeps running
    testbed.patch_config(DC1, {"pause": True})
    wait_until(lambda: testbed.patroni_state(DC1.members[0]).get("pause") is True, 10, "dc1 paused")
    problems = testbed.baseline_problems()
    assert any("paused" in p for p in problems) and any(replica.name in p for p in problems)

    assert testbed.restore_baseline() == "repaired"
    assert testbed.baseline_problems() == []
    # Same data, not a new cluster: the system identifier survived, and replication works.
    assert testbed.sql(DC1.members[0], "SELECT system_identifier FROM pg_control_system()") == system_id
    primary = next(m for m in DC1.members if testbed.patroni_state(m).get("role") == "primary")
    marker = str(uuid.uuid4())
    testbed.sql(primary, "CREATE TABLE IF NOT EXISTS testbed_marker (id text PRIMARY KEY)")
    testbed.sql(primary, "INSERT INTO testbed_marker VALUES (%s)", (marker,))
    wait_until(lambda: testbed.sql(replica, "SELECT 1 FROM testbed_marker WHERE id = %s", (marker,)),
               15, f"marker row on {replica.name}")


@pytest.mark.slow
def test_dc2_hosts_come_up_without_a_cluster(testbed):
    try:
        testbed.up(dc2_cluster=False)
        assert testbed.etcd_healthy(DC2)
        keys = requests.post(f"{DC2.etcd_url}/v3/kv/range", timeout=5,
                             json={"key": "L3NlcnZpY2UvZGMyLw==", "range_end": "L3NlcnZpY2UvZGMyMA=="}).json()
        assert keys.get("count", "0") in ("0", 0), "dc2's DCS must hold no cluster yet"
        inventory = load_inventory(testbed.inventory_path)
        site = inventory.sites["dc2"]
        for member in site.members:
            with pytest.raises(requests.ConnectionError):
                requests.get(f"{member.api_url}/patroni", timeout=2)
            with SshSession(member.name, site.ssh_for(member), timeout=5) as ssh:
                listing = ssh.run(f"ls -A {site.data_dir_for(member)}")
            assert not listing.ok and "No such file" in listing.stderr, "no data directory yet"
        assert testbed.baseline_problems() == []  # dc1 alone is the whole baseline in this mode
    finally:
        testbed.up()
    assert testbed.baseline_problems() == []
