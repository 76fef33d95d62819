"""The replication access proof (pre-seed): every follower host opens a real replication
connection to every member of the other site, one SSH command per host for all its pairs. A
refused pair is the run's one error line, naming both members and the fix; nothing changed.

The fault is real: the inventory names a replication password PostgreSQL does not accept. Nothing
before the proof uses that password (the checks read as the superuser), so the proof is what
catches it, from the first follower host in the plan's order.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_execute import explain, migrate
from tests.e2e.test_unreachable import _snapshot

pytestmark = pytest.mark.testbed


def test_a_replication_password_postgresql_refuses_stops_the_run_before_any_change(baseline, tmp_path):
    secret = tmp_path / "replication-password"
    secret.write_text("not-the-password\n")
    secret.chmod(0o600)
    text = baseline.inventory_path.read_text()
    old = f"password: file:{baseline.secrets_dir / 'replication'}\n"
    assert text.count(old) == 1, old
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(text.replace(old, f"password: file:{secret}\n"))
    before = _snapshot(baseline)
    out = migrate("execute", "-i", str(inventory), "--dc", "dc2", "--yes", "--state-dir", str(tmp_path / "state"))
    assert out.returncode == 1, explain(out)
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr + out.stdout, out.stderr
    # The first pair of the plan's first proof: dc2's first member to dc1's first member.
    assert "dc2-a cannot open a replication connection to dc1-a" in out.stderr, out.stderr
    assert 'password authentication failed for user "replicator"' in out.stderr, out.stderr
    assert "check pg_hba.conf on" in out.stderr and "the password" in out.stderr, out.stderr
    assert "not-the-password" not in out.stderr + out.stdout
    assert _snapshot(baseline) == before
