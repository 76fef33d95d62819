"""The Patroni < 4.1 path on a testbed that runs Patroni 3.3 on every member: pause, clean stop
over SSH, token, catch-up, promote the target first, resume the old site only once its Patroni
reports PostgreSQL stopped. Under a write ledger: nothing lost, never two writers."""

from __future__ import annotations

import time

import pytest

from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.e2e.test_execute import assert_primary_site, explain, journal_records, migrate
from tests.testbed import SITE_BY_NAME
from tests.testbed.topology import DEFAULT_PATRONI_VERSION

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

OLDER_PATRONI = "3.3.11"


def test_switchover_and_rollback_on_patroni_3_3_take_the_pause_and_clean_stop_path(testbed, tmp_path):
    inventory, state = str(testbed.inventory_path), tmp_path / "state"
    try:
        testbed.patroni_version = OLDER_PATRONI
        testbed.up()
        assert testbed.sql(SITE_BY_NAME["dc1"].members[0], "SELECT 1") == [(1,)]
        with WriterSampler(testbed) as sampler, WriteLedger(testbed, table="ledger_patroni_3") as ledger:
            out = migrate("execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", str(state))
            assert out.returncode == 0, explain(out)
            assert_primary_site(testbed, SITE_BY_NAME["dc2"])
            out = migrate("rollback", "-i", inventory, "--yes", "--state-dir", str(state))
            assert out.returncode == 0, explain(out)
            assert_primary_site(testbed, SITE_BY_NAME["dc1"])
            time.sleep(1)
        assert sampler.violations == []
        assert_no_acknowledged_commit_lost(testbed, ledger)
        done = [r["step"] for r in journal_records(state) if r["event"] == "step-done"]
        for step in ("pause-source", "stop-source-primary", "wait-source-stopped", "resume-source-as-standby"):
            assert done.count(step) == 2, f"{step} ran {done.count(step)} times, expected once per direction"
        assert "demote-source" not in done
    finally:
        testbed.patroni_version = DEFAULT_PATRONI_VERSION
        testbed.up()
