"""The edges of the promotion (issue: fresh proof before every promotion, one failure path).

- The catch-up proof is taken again right before the promote PATCH, about the member Patroni will
  promote: a resumed run whose standby leader changed since the catch-up (to a member behind the
  token) never promotes it; it waits up to the catch-up deadline and undoes the demotion.
- "Promotion sent" means the PATCH was attempted: a before_promote hook that fails, or hangs past
  its timeout, undoes the demotion (exit 3), and the hung hook leaves no process behind.
- Every exception inside a run takes the failed-step path: a Patroni REST reply of the wrong shape
  mid-run (from a small proxy in front of one member; Patroni itself never sends one, so the
  proxy is the only way to provoke it) undoes the demotion instead of ending in "internal error".
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.helpers.faults import GATES, Run, events, inventory_with_gates, one_line, replay_frozen
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.helpers.site_moves import member_with_role
from tests.e2e.test_execute import assert_primary_site, explain, journal_records, writable
from tests.testbed import SITE_BY_NAME, wait_until
from tests.testbed.processes import pid_alive

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
CRASH_ENV = "MIGRATOR_TEST_CRASH_AT"


def _configs(testbed) -> dict:
    return {site.name: testbed.get_config(site).get("standby_cluster") for site in (DC1, DC2)}


def _with_hooks(inventory: str, **hooks: object) -> str:
    path = Path(inventory)
    lines = "".join(f"  {name}: {json.dumps(value)}\n" for name, value in hooks.items())
    path.write_text(path.read_text().replace("sites:\n", f"hooks:\n{lines}sites:\n", 1))
    return inventory


def _step_facts(state: Path, step: str) -> dict:
    done = [r for r in journal_records(state) if r["event"] == "step-done" and r["step"] == step]
    assert done, f"no step-done for {step}"
    return done[-1]["facts"]


@pytest.mark.slow
def test_a_resume_after_the_standby_leader_changed_proves_again_and_never_promotes_one_behind_the_token(
        baseline, tmp_path):
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml",
                                     **{**GATES, "catchup_timeout_seconds": 12})
    state = tmp_path / "state"
    old_leader = member_with_role(baseline, DC2, "standby_leader")
    successor = next(m for m in DC2.members if m != old_leader)
    try:
        with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_reprove") as ledger:
            os.environ[CRASH_ENV] = "before-patch:promote-target"
            try:
                run = Run(state, "execute", "-i", inventory, "--dc", "dc2", "--yes")
            finally:
                del os.environ[CRASH_ENV]
            run.wait_for("step-started", "demote-source")
            # The successor stops replaying right as the source is demoted: it stays behind the
            # token (the shutdown checkpoint comes after this instant), while the standby leader
            # catches up and the first run dies between the catch-up and the promotion.
            with replay_frozen(baseline, successor):
                out = run.finish()
                assert out.returncode == 137, explain(out)
                token = _step_facts(state, "read-token")["token"]
                assert _step_facts(state, "catch-up")["caught_up_member"] == old_leader.name
                # The standby leader's agent dies; after ttl the frozen successor takes the key.
                baseline.kill_patroni(old_leader)
                wait_until(lambda: baseline.patroni_state(successor).get("role") == "standby_leader",
                           90, f"{successor.name} to take dc2's leader key", interval=0.5)
                behind = baseline.sql(successor, "SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint")[0][0]
                assert behind <= token

                resumed = Run(state, "execute", "-i", inventory, "--dc", "dc2", "--yes", "--resume")
                out = resumed.finish()
                assert out.returncode == 3, explain(out)
                line = one_line(out.stderr)
                assert "proven past the token" in line and f"{successor.name} replayed" in line, line
                assert "undone: demote-source" in line and "dc1 is still primary, nothing lost" in line, line
                assert ("promotion-attempted", "promote-target") not in events(resumed)
                assert not [m for m in writable(baseline) if m.startswith("dc2")]
                assert_primary_site(baseline, DC1)
            # The orphaned PostgreSQL of the killed agent still holds slot dc2 on dc1, so no other
            # dc2 member can stream until its Patroni is back and makes it a replica.
            baseline.start_patroni(old_leader)
            baseline.wait_healthy(90)
        assert sampler.violations == []
        assert_no_acknowledged_commit_lost(baseline, ledger)
        print(f"\nledger: {ledger.summary()}")
    finally:
        if not baseline.patroni_alive(old_leader):
            baseline.start_patroni(old_leader)
        baseline.wait_healthy(90)


def test_a_before_promote_hook_that_fails_or_hangs_undoes_the_demotion(baseline, tmp_path):
    state = tmp_path / "state"
    # Unique sleep durations mark the hook's processes in /proc (sleep takes no other argument).
    marker = f"{os.getpid()}{time.monotonic_ns() % 10**6}"
    child_pid = tmp_path / "child.pid"
    configs = _configs(baseline)
    cases = {
        "exits 1": ("echo no traffic switch today >&2; exit 1", "hook before_promote exited 1"),
        "hangs": (f"sleep 300.{marker} & echo $! > {child_pid}; sleep 600.{marker}",
                  "hook before_promote did not finish within 3s"),
    }
    with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_hook_fails") as ledger:
        for name, (command, words) in cases.items():
            inventory = _with_hooks(inventory_with_gates(baseline, tmp_path / f"{name}.yml", **GATES),
                                    before_promote=command, timeout_seconds=3)
            run = Run(state, "execute", "-i", inventory, "--dc", "dc2", "--yes")
            out = run.finish()
            assert out.returncode == 3, f"{name}: {explain(out)}"
            line = one_line(out.stderr)
            assert words in line and "undone: demote-source" in line, line
            assert "dc1 is still primary, nothing lost" in line, line
            assert ("promotion-attempted", "promote-target") not in events(run)
            assert_primary_site(baseline, DC1)
            assert _configs(baseline) == configs
            baseline.wait_healthy(60)
        # The hung hook's whole process group was killed: its child too.
        pid = int(child_pid.read_text())
        wait_until(lambda: not pid_alive(pid), 5, "the hook's child to be gone")
        assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_has(p, f".{marker}")]
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)


def _cmdline_has(proc: Path, marker: str) -> bool:
    try:
        return marker in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False


class _ShapeShiftingProxy:
    """Forwards to one member's REST API; once `broken` is set, GET /patroni answers a JSON list
    instead of Patroni's object (a misbehaving load balancer or a wrong port in front of it)."""

    def __init__(self, host: str, upstream: str):
        proxy = self
        self.broken = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if proxy.broken.is_set() and self.command == "GET" and self.path == "/patroni":
                    body, status = b'["not", "an", "object"]', 200
                else:
                    length = int(self.headers.get("Content-Length") or 0)
                    resp = requests.request(self.command, upstream + self.path, timeout=10,
                                            data=self.rfile.read(length) if length else None,
                                            headers={k: v for k, v in self.headers.items()
                                                     if k.lower() in ("authorization", "content-type")})
                    body, status = resp.content, resp.status_code
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PATCH = do_POST = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _ShapeShiftingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_patroni_reply_of_the_wrong_shape_mid_run_undoes_the_demotion(baseline, tmp_path):
    leader = member_with_role(baseline, DC2, "standby_leader")
    configs = _configs(baseline)
    with _ShapeShiftingProxy(leader.host, leader.api_url) as proxy:
        inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml",
                                         **{**GATES, "catchup_timeout_seconds": 6})
        Path(inventory).write_text(Path(inventory).read_text().replace(
            f"api_url: {leader.api_url}", f"api_url: {proxy.url}"))
        assert proxy.url in Path(inventory).read_text()
        with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_bad_reply") as ledger:
            run = Run(tmp_path / "state", "execute", "-i", inventory, "--dc", "dc2", "--yes")
            run.wait_for("step-started", "demote-source")
            proxy.broken.set()
            out = run.finish()
            assert out.returncode == 3, explain(out)
            line = one_line(out.stderr)
            assert "internal error" not in line and "Traceback" not in out.stderr, line
            assert "undone: demote-source" in line and "dc1 is still primary, nothing lost" in line, line
            assert f"Patroni of {leader.name} does not answer" in line, line
            assert_primary_site(baseline, DC1)
            assert _configs(baseline) == configs
        assert sampler.violations == []
        assert_no_acknowledged_commit_lost(baseline, ledger)
