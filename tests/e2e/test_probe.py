"""`migrate check --format prometheus|nagios` on the real testbed: ready while the standby site is
healthy; with the standby site's etcd stopped, not ready (CRITICAL, exit 2) and the last success
carried forward in the textfile collector's file."""

from __future__ import annotations

import re

import pytest

from tests.e2e.test_execute import explain, migrate
from tests.helpers.faults import start_etcd_again, stop_etcd
from tests.testbed import SITE_BY_NAME

pytestmark = pytest.mark.testbed

DC2 = SITE_BY_NAME["dc2"]


def _value(text: str, sample: str) -> float:
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    assert found, f"{sample} not in:\n{text}"
    return float(found.group(1))


def test_probe_says_ready_then_critical_with_the_standby_sites_etcd_stopped(baseline, tmp_path):
    inventory, prom = str(baseline.inventory_path), tmp_path / "migrator.prom"
    ready = migrate("check", "-i", inventory, "--format", "prometheus", "--out", str(prom))
    assert ready.returncode == 0 and ready.stdout == "", explain(ready)
    first = prom.read_text()
    assert _value(first, 'migrator_dr_ready{service="demo",source="dc1",target="dc2"}') == 1
    success = _value(first, 'migrator_check_last_success_timestamp_seconds{service="demo"}')
    assert oct(prom.stat().st_mode & 0o777) == "0o644"
    for member in DC2.members:  # both dc2 members stream: a lag sample each
        assert _value(first, f'migrator_replay_lag_bytes{{service="demo",site="dc2",member="{member.name}"}}') >= 0
    assert re.search(r'^migrator_wal_retained_bytes\{service="demo",site="dc1",member="dc1-.",slot="dc2",'
                     r'for_site="dc2"\} \d+$', first, re.MULTILINE), first
    nagios = migrate("check", "-i", inventory, "--format", "nagios")
    assert nagios.returncode in (0, 1) and nagios.stdout.count("\n") == 1, explain(nagios)  # 1: testbed warnings
    assert re.match(r"MIGRATOR (OK|WARNING) - demo: dc1 -> dc2 ready", nagios.stdout), nagios.stdout

    stop_etcd(baseline, DC2)
    try:
        blocked = migrate("check", "-i", inventory, "--format", "prometheus", "--out", str(prom))
        critical = migrate("check", "-i", inventory, "--format", "nagios")
    finally:
        start_etcd_again(baseline, DC2)
    assert blocked.returncode == 1, explain(blocked)
    second = prom.read_text()
    assert _value(second, 'migrator_dr_ready{service="demo",source="dc1",target="dc2"}') == 0
    assert _value(second, 'migrator_check_verdict{service="demo",site="dc2",check="dcs-quorum"}') == 2
    assert _value(second, 'migrator_check_last_success_timestamp_seconds{service="demo"}') == success
    assert _value(second, 'migrator_check_timestamp_seconds{service="demo"}') > success
    assert critical.returncode == 2 and critical.stdout.count("\n") == 1, explain(critical)
    assert critical.stdout.startswith("MIGRATOR CRITICAL - demo: dc1 -> dc2 not ready: dcs-quorum (dc2)")
    assert "refused the connection" in critical.stdout and "HTTPConnectionPool" not in critical.stdout
