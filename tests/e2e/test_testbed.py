"""The foundation on real processes: both sites healthy and replicating as described, SSH with
verified host keys, the REST API refusing unauthenticated writes, and the inventory that
describes it all."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from migrator.adapters.ssh import SshSession
from migrator.errors import UnreachableError
from migrator.model.inventory import load_inventory
from tests.testbed import SITE_BY_NAME, Testbed, wait_until

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]


def leader_of(testbed: Testbed, site, role: str):
    found = [m for m in site.members if testbed.patroni_state(m).get("role") == role]
    assert len(found) == 1, f"{site.name}: expected one {role}, found {[m.name for m in found]}"
    return found[0]


def test_both_sites_are_healthy_at_baseline(baseline):
    assert baseline.baseline_problems() == []


def test_dc1_leader_is_a_writable_primary(baseline):
    primary = leader_of(baseline, DC1, "primary")
    assert baseline.sql(primary, "SELECT pg_is_in_recovery()") == [(False,)]
    replica = next(m for m in DC1.members if m != primary)
    assert baseline.sql(replica, "SELECT pg_is_in_recovery()") == [(True,)]


def test_dc2_standby_leader_streams_from_dc1_primary_and_its_replica_cascades(baseline):
    primary = leader_of(baseline, DC1, "primary")
    standby_leader = leader_of(baseline, DC2, "standby_leader")
    replica = next(m for m in DC2.members if m != standby_leader)

    status, sender, slot = baseline.sql(
        standby_leader, "SELECT status, sender_host, slot_name FROM pg_stat_wal_receiver")[0]
    assert (status, sender, slot) == ("streaming", primary.host, DC2.slot)
    # Loopback clients all appear as 127.0.0.1: Patroni's application_name tells standbys apart.
    on_primary = dict(baseline.sql(primary, "SELECT application_name, state FROM pg_stat_replication"))
    assert on_primary.get(standby_leader.name) == "streaming"
    assert replica.name not in on_primary, "dc2's replica must cascade, not stream from dc1"

    status, sender = baseline.sql(replica, "SELECT status, sender_host FROM pg_stat_wal_receiver")[0]
    assert (status, sender) == ("streaming", standby_leader.host)
    on_leader = dict(baseline.sql(standby_leader, "SELECT application_name, state FROM pg_stat_replication"))
    assert on_leader == {replica.name: "streaming"}


def test_permanent_slot_for_dc2_is_active_on_dc1_primary(baseline):
    primary = leader_of(baseline, DC1, "primary")
    rows = baseline.sql(primary, "SELECT slot_type, active FROM pg_replication_slots WHERE slot_name = %s",
                        (DC2.slot,))
    assert rows == [("physical", True)]


def test_row_written_on_dc1_is_readable_on_all_four_members(baseline):
    primary = leader_of(baseline, DC1, "primary")
    marker = str(uuid.uuid4())
    baseline.sql(primary, "CREATE TABLE IF NOT EXISTS testbed_marker (id text PRIMARY KEY)")
    baseline.sql(primary, "INSERT INTO testbed_marker VALUES (%s)", (marker,))
    for member in DC1.members + DC2.members:
        wait_until(lambda m=member: baseline.sql(m, "SELECT 1 FROM testbed_marker WHERE id = %s", (marker,)),
                   15, f"marker row on {member.name}")


def test_unauthenticated_config_patch_is_refused_and_authenticated_one_accepted(baseline):
    member = DC1.members[0]
    resp = requests.patch(f"{member.api_url}/config", json={"loop_wait": 2}, timeout=5)
    assert resp.status_code == 401
    wrong = requests.patch(f"{member.api_url}/config", json={"loop_wait": 2}, timeout=5,
                           auth=("patroni", "not-the-password"))
    assert wrong.status_code == 401
    accepted = baseline.patch_config(DC1, {"loop_wait": 2}, member=member)
    assert accepted.status_code == 200 and accepted.json()["loop_wait"] == 2


def test_inventory_describes_the_testbed(baseline):
    inventory = load_inventory(baseline.inventory_path)
    assert sorted(inventory.sites) == ["dc1", "dc2"]
    for site in (DC1, DC2):
        described = inventory.sites[site.name]
        assert described.scope == site.scope
        assert described.dcs.endpoints == [site.etcd_url]
        assert [(m.name, m.host, m.pg_port, m.api_url) for m in described.members] == \
            [(m.name, m.host, 5432, m.api_url) for m in site.members]
        for member in described.members:
            assert Path(described.data_dir_for(member), "PG_VERSION").exists()
    # The password references resolve to the passwords the testbed's members really use.
    assert inventory.credentials.superuser.password.reveal() == baseline.passwords()["superuser"]
    assert baseline.sql(DC1.members[0], "SELECT current_user") == [("postgres",)]


def test_ssh_with_the_generated_key_runs_a_command_on_each_host(baseline):
    inventory = load_inventory(baseline.inventory_path)
    for site_name, site in inventory.sites.items():
        for member in site.members:
            with SshSession(member.name, site.ssh_for(member), timeout=5) as ssh:
                result = ssh.run(f"{site.postgres.bin_dir}/pg_controldata {site.data_dir_for(member)}")
            assert result.ok, result.stderr
            assert "Database system identifier" in result.stdout


def test_ssh_refuses_an_unknown_host_key(baseline, tmp_path):
    inventory = load_inventory(baseline.inventory_path)
    site = inventory.sites["dc1"]
    member = site.members[0]
    # A known_hosts that lists a different key for the host: what a man-in-the-middle looks like.
    other_key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    pub = " ".join(Path(f"{other_key}.pub").read_text().split()[:2])
    changed = tmp_path / "known_hosts_changed"
    changed.write_text(f"[{member.host}]:2222 {pub}\n")
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    target = site.ssh_for(member)
    for known_hosts, expected in ((changed, "does not match"), (empty, "is not in")):
        with pytest.raises(UnreachableError, match=expected):
            SshSession(member.name, _with(target, known_hosts=known_hosts), timeout=5).open()


def test_cli_loads_the_testbed_inventory(baseline):
    out = subprocess.run([sys.executable, "-m", "migrator.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0
    out = subprocess.run([sys.executable, "-m", "migrator.cli", "check", "--inventory",
                          str(baseline.inventory_path)], capture_output=True, text=True)
    assert "error: inventory" not in out.stderr
    assert "Traceback" not in out.stderr


def _with(target, **changes):
    from dataclasses import replace, is_dataclass
    if is_dataclass(target):
        return replace(target, **changes)
    return target.model_copy(update=changes)
