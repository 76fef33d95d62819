"""Provoking real faults on the testbed at an exact step of `migrate execute`: a run in the
background, waiting for its journal record, one site's etcd stopped and started, a standby's
replay frozen, failsafe_mode switched, short gate deadlines in the inventory the test writes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.test_execute import MIGRATE, journal_records
from tests.testbed import SITE_BY_NAME, wait_until
from tests.testbed.etcd import etcd_process_name, start_etcd
from tests.testbed.topology import Member, Site

# Gate deadlines of the fault tests: short, so that holds that expire do so quickly; the
# one-second lag window keeps the cascade phase short.
GATES = {"lag_window_seconds": 1, "cascade_timeout_seconds": 90, "catchup_timeout_seconds": 30,
         "promote_timeout_seconds": 30, "repoint_timeout_seconds": 25}


def inventory_with_gates(testbed, path: Path, **gates: float) -> str:
    """The testbed's inventory with some gate deadlines replaced (short ones keep faults fast)."""
    text = testbed.inventory_path.read_text()
    for name, value in gates.items():
        text, found = re.subn(rf"(?m)^  {name}: .*$", f"  {name}: {value}", text)
        if not found:
            text = text.replace("gates:\n", f"gates:\n  {name}: {value}\n", 1)
    path.write_text(text)
    return str(path)


class Run:
    """One `migrate` command in the background, with its journal to watch."""

    def __init__(self, state: Path, *args: str):
        self.state = state
        self.seen = len(journal_records(state))  # records of earlier runs are not this run's
        self.proc = subprocess.Popen([*MIGRATE, *args, "--state-dir", str(state)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def records(self) -> list[dict]:
        return journal_records(self.state)[self.seen:]

    def wait_for(self, event: str, step: str | None = None, timeout: float = 180) -> dict:
        def found() -> dict | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"migrate ended (exit {self.proc.returncode}) before {event} {step}: "
                                     f"{self.proc.stderr.read() if self.proc.stderr else ''}")
            return next((r for r in self.records() if r["event"] == event
                         and (step is None or r.get("step") == step)), None)
        return wait_until(found, timeout, f"journal record {event} {step or ''}", interval=0.005)

    def finish(self, timeout: float = 300) -> subprocess.CompletedProcess:
        try:
            stdout, stderr = self.proc.communicate(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, stdout, stderr)


def stop_etcd(testbed, site: Site) -> None:
    testbed.registry.stop([etcd_process_name(site)], timeout=10)
    assert not testbed.registry.alive(etcd_process_name(site))


def start_etcd_again(testbed, site: Site) -> None:
    start_etcd(testbed.base, site, testbed.registry)
    wait_until(lambda: testbed.etcd_healthy(site), 30, f"etcd of {site.name} healthy again")


def member_with_role(testbed, site: Site, role: str) -> Member:
    return wait_until(lambda: next((m for m in site.members if _role(testbed, m) == role), None), 60,
                      f"{site.name}'s {role}")


def _role(testbed, member: Member) -> str | None:
    try:
        return testbed.patroni_state(member).get("role")
    except Exception:  # noqa: BLE001 - a member that does not answer has no role yet
        return None


@contextmanager
def replay_frozen(testbed, member: Member) -> Iterator[int]:
    """SIGSTOP the member's startup (recovery) process: it receives WAL but replays none until
    the block ends; a stalled standby produced for real."""
    pid = testbed.sql(member, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'")[0][0]
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def set_failsafe_mode(testbed, on: bool) -> None:
    """Both sites; retried, because a Patroni whose etcd just came back may not answer /config
    for a few seconds (its REST calls time out meanwhile)."""
    def applied(site: Site) -> bool:
        if bool(testbed.get_config(site).get("failsafe_mode")) != on:
            testbed.patch_config(site, {"failsafe_mode": True if on else None})
        return bool(testbed.get_config(site).get("failsafe_mode")) == on

    for site in SITE_BY_NAME.values():
        wait_until(lambda s=site: applied(s), 60, f"failsafe_mode {'on' if on else 'off'} in {site.name}")


def ensure_etcd_running(testbed) -> None:
    for site in SITE_BY_NAME.values():
        if not testbed.registry.alive(etcd_process_name(site)):
            start_etcd_again(testbed, site)


def events(run: Run) -> list[tuple[str, str | None]]:
    return [(r["event"], r.get("step")) for r in run.records()]


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1, f"stderr is not one line: {stderr!r}"
    return stderr
