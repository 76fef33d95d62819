"""Several services sharing each site's etcd, as in a real data center, move independently: each
`migrate` run of one service takes its own lock (`/migrator/<service>/lock` in dc1's etcd), and
three services moved at the same time, there and back, lose no acknowledged commit and never have
two writable members, while demo (same etcds) is left untouched.

The extra services are one member per site (tests/testbed/services.py). Every run uses the
default state directory (the session's XDG state home), as an operator's would."""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.test_execute import writable
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.testbed import SITE_BY_NAME, Testbed, wait_until
from tests.testbed.services import ExtraService, ExtraServices, inventory_file

pytestmark = pytest.mark.testbed

EXTRA_SERVICES = 3  # read by the extra_services fixture
DEMO_SITES = (SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"])
DC1 = SITE_BY_NAME["dc1"]
MIGRATE = [sys.executable, "-m", "migrator.cli"]
RUN_TIMEOUT = 300


def explain(name: str, returncode: int | None, output: str) -> str:
    return f"{name}: exit {returncode}\noutput tail: {output[-3000:]}"


def lock_record(service: str) -> dict[str, Any] | None:
    """The lock key of `service` in dc1's etcd (the inventory's first site): its holder record and
    lease, or None when no run holds it."""
    key = base64.b64encode(f"/migrator/{service}/lock".encode()).decode()
    resp = requests.post(f"{DC1.etcd_url}/v3/kv/range", json={"key": key}, timeout=5)
    resp.raise_for_status()
    kvs = resp.json().get("kvs") or []
    if not kvs:
        return None
    return {"holder": json.loads(base64.b64decode(kvs[0]["value"])), "lease": kvs[0].get("lease")}


def migrate(testbed: Testbed, service: ExtraService, command: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MIGRATE, command, "-i", str(inventory_file(testbed.base, service)), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )


class HeldAtPrompt:
    """`migrate execute --dc dc2` without --yes on a terminal (a pty): it takes the service's lock,
    plans, and waits at "Proceed?" holding the lock, having changed nothing. `answer("n")` lets it
    go ("not confirmed; nothing changed")."""

    def __init__(self, inventory: Path, log: Path):
        self._log = log
        self._master, slave = pty.openpty()
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [*MIGRATE, "execute", "-i", str(inventory), "--dc", "dc2"],
                stdin=slave,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        os.close(slave)

    def answer(self, text: str, timeout: float = 60) -> int:
        os.write(self._master, f"{text}\n".encode())
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self._log.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._master)


def test_each_service_has_its_own_lock_and_a_second_run_of_one_service_exits_5(baseline, extra_services, tmp_path):
    svc1, svc2 = extra_services[:2]
    first = HeldAtPrompt(inventory_file(baseline.base, svc1), tmp_path / "svc1.log")
    second = None
    try:
        held1 = wait_until(lambda: lock_record(svc1.name), 60, "svc1's run to take its lock")
        # Another service on the same etcd is not held up by svc1's lock.
        second = HeldAtPrompt(inventory_file(baseline.base, svc2), tmp_path / "svc2.log")
        held2 = wait_until(lambda: lock_record(svc2.name), 60, "svc2's run to take its lock")
        assert held1["holder"]["pid"] == first.proc.pid and held2["holder"]["pid"] == second.proc.pid
        assert held1["lease"] != held2["lease"], "two services must not share a lease"

        # The same service again, same machine and state directory: the local lock is busy.
        again = migrate(baseline, svc1, "execute", "--dc", "dc2", "--yes")
        assert again.returncode == 5, explain("svc1 again", again.returncode, again.stderr + again.stdout)
        assert "holds" in again.stderr
        # Another operator's state directory: the lease in dc1's etcd refuses it.
        elsewhere = migrate(baseline, svc1, "execute", "--dc", "dc2", "--yes", "--state-dir", str(tmp_path / "other"))
        assert elsewhere.returncode == 5, explain(
            "svc1 elsewhere", elsewhere.returncode, elsewhere.stderr + elsewhere.stdout
        )
        assert "already running" in elsewhere.stderr and f"pid {first.proc.pid}" in elsewhere.stderr
        assert lock_record(svc1.name) == held1, "a refused run must leave the holder's lock alone"
        assert first.proc.poll() is None and second.proc.poll() is None, "the held runs must still wait"

        for name, run in (("svc1", first), ("svc2", second)):
            code = run.answer("n")
            assert code == 2 and "nothing changed" in run.output(), explain(name, code, run.output())
    finally:
        for run in (first, second):
            if run is not None:
                run.close()
    assert lock_record(svc1.name) is None and lock_record(svc2.name) is None, "locks not released"
    services = ExtraServices(baseline)
    for service in (svc1, svc2):
        assert services.problems(service) == [], f"{service.name} changed by runs that did nothing"


def run_all_at_once(
    testbed: Testbed, services: list[ExtraService], command: str, *args: str
) -> dict[str, subprocess.CompletedProcess]:
    """One `migrate` process per service, all started before any is waited for."""
    procs = {
        s.name: subprocess.Popen(
            [*MIGRATE, command, "-i", str(inventory_file(testbed.base, s)), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for s in services
    }
    results = {}
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
            results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    return results


def last_migration_span(service: ExtraService) -> tuple[datetime, datetime, str]:
    """(started, finished, outcome) of the service's latest migration, from its journal in the
    default state directory."""
    journal = Path(os.environ["XDG_STATE_HOME"]) / "migrator" / service.name / "journal.jsonl"
    records = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    started = [r for r in records if r["event"] == "migration-started"][-1]
    finished = [r for r in records if r["event"] == "migration-finished" and r["migration"] == started["migration"]]
    assert finished, f"{service.name}: migration {started['migration']} has no migration-finished record"
    return (datetime.fromisoformat(started["ts"]), datetime.fromisoformat(finished[-1]["ts"]), finished[-1]["outcome"])


def assert_runs_overlapped(services: list[ExtraService], outcome: str) -> None:
    spans = {s.name: last_migration_span(s) for s in services}
    assert {name: span[2] for name, span in spans.items()} == {s.name: outcome for s in services}
    latest_start = max(span[0] for span in spans.values())
    earliest_end = min(span[1] for span in spans.values())
    assert latest_start < earliest_end, f"the runs did not overlap in time: {spans}"


@pytest.mark.slow
def test_three_services_move_to_dc2_at_once_and_back_losing_nothing(baseline, extra_services):
    services = extra_services[:3]
    demo_before = {site.name: baseline.get_config(site) for site in DEMO_SITES}
    ledgers = {s.name: WriteLedger(baseline, members=s.members, table=f"ledger_{s.name}") for s in services}
    # One sampler per service: each service has its own writer, so "two writable" is per service.
    samplers = {s.name: WriterSampler(baseline, members=s.members) for s in services}
    for witness in [*samplers.values(), *ledgers.values()]:
        witness.start()
    try:
        moved = run_all_at_once(baseline, services, "execute", "--dc", "dc2", "--yes")
        for name, out in moved.items():
            assert out.returncode == 0, explain(f"{name} execute", out.returncode, out.stderr + out.stdout)
        for service in services:
            assert writable(baseline, service.members) == [service.dc2.members[0].name]
            assert baseline.get_config(service.dc1).get("standby_cluster"), f"{service.dc1.scope} not a standby"
        assert_runs_overlapped(services, "done")

        back = run_all_at_once(baseline, services, "rollback", "--yes")
        for name, out in back.items():
            assert out.returncode == 0, explain(f"{name} rollback", out.returncode, out.stderr + out.stdout)
        assert_runs_overlapped(services, "done")
        time.sleep(1)  # a second of writes on the way-back primaries
    finally:
        for witness in [*ledgers.values(), *samplers.values()]:
            witness.stop()
    extra = ExtraServices(baseline)
    for service in services:
        wait_until(lambda s=service: not extra.problems(s), 60, f"{service.name} back at its baseline")
        assert samplers[service.name].violations == [], f"{service.name}: two writable members"
        assert samplers[service.name].samples > 100
        assert_no_acknowledged_commit_lost(baseline, ledgers[service.name], members=service.members)
        assert len(ledgers[service.name].acks) > 1000, ledgers[service.name].summary()
        assert ledgers[service.name].max_gap_seconds < 5, ledgers[service.name].summary()
        print(f"{service.name}: {ledgers[service.name].summary()}")
    # demo shares both etcds and was never touched.
    assert {site.name: baseline.get_config(site) for site in DEMO_SITES} == demo_before
    assert baseline.baseline_problems() == []


def test_restore_repairs_a_service_whose_agent_died_and_leaves_demo_alone(baseline, extra_services):
    svc = extra_services[-1]
    primary, standby = svc.dc1.members[0], svc.dc2.members[0]
    system_id = baseline.sql(primary, "SELECT system_identifier FROM pg_control_system()")
    demo_before = {site.name: baseline.get_config(site) for site in DEMO_SITES}
    baseline.kill_patroni(standby)  # the agent dies, its PostgreSQL keeps running
    baseline.patch_config(svc.dc1, {"pause": True})
    wait_until(lambda: baseline.patroni_state(primary).get("pause") is True, 10, f"{svc.dc1.scope} paused")
    problems = ExtraServices(baseline).problems(svc)
    assert any("paused" in p for p in problems) and any(standby.name in p for p in problems), problems

    assert baseline.up_services(len(extra_services))[svc.name] == "repaired"
    assert ExtraServices(baseline).problems(svc) == []
    # The same data, not a new cluster, and the other services and demo were not touched.
    assert baseline.sql(primary, "SELECT system_identifier FROM pg_control_system()") == system_id
    assert {site.name: baseline.get_config(site) for site in DEMO_SITES} == demo_before
    assert baseline.baseline_problems() == []
