"""The source's leader changes after the plan and before the demotion: an in-site switchover
while the run waits in the cascade gate (what a DCS outage can also do, when Patroni hands the
leader key to the other member on its return). The token is read from the planned leader's
pg_control; that member, now a replica, still shows the shutdown checkpoint of its own
switchover, far behind the new primary's last commit, so demoting with that token would promote
the target without the new primary's last commits. The run must stop before the demotion.
"""

from __future__ import annotations

import pytest
import requests

from tests.helpers.faults import GATES, Run, events, inventory_with_gates, member_with_role, one_line
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.e2e.test_execute import explain, writable
from tests.testbed import SITE_BY_NAME, wait_until
from tests.testbed.topology import REST_USER

pytestmark = pytest.mark.testbed

DC1 = SITE_BY_NAME["dc1"]


@pytest.mark.slow
def test_a_source_leader_changed_since_the_plan_is_never_demoted(baseline, tmp_path):
    # A lag window longer than the switchover (and no early pass on evidence), so the cascade gate
    # passes only once dc2 streams from the new primary, and the demotion step is the first to see
    # the change.
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml",
                                     **{**GATES, "lag_window_seconds": 6, "lag_evidence": "false"})
    leader = member_with_role(baseline, DC1, "primary")
    other = next(m for m in DC1.members if m != leader)
    with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_leader_changed") as ledger:
        run = Run(tmp_path / "state", "execute", "-i", inventory, "--dc", "dc2", "--yes")
        run.wait_for("step-started", "wait-cascade")
        # The access proofs run together with the cascade gate: let them pass first, so that the
        # leader change meets the cascade gate and the demotion step, as this test means.
        for proof in ("replication-access-target-from-source", "replication-access-source-from-target"):
            run.wait_for("step-done", proof)
        resp = requests.post(f"{leader.api_url}/switchover", json={"leader": leader.name, "candidate": other.name},
                             auth=(REST_USER, baseline.passwords()["restapi"]), timeout=30)
        assert resp.status_code == 200, resp.text
        out = run.finish()
        assert out.returncode == 1, explain(out)
        line = one_line(out.stderr)
        assert f"dc1's writable member is now {other.name}, not {leader.name} as planned" in line, line
        assert "dc1 was not demoted: run `migrate execute` again" in line, line
        assert f"back where it started ({other.name} takes writes)" in line, line
        assert ("step-applied", "demote-source") not in events(run)
        wait_until(lambda: writable(baseline) == [other.name], 30, f"{other.name} the only writer")
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)
