"""Which evidence the cascade gate passes on, on the real testbed (migrator/rules/streaming_evidence.py):
streams that have run longer than the lag window prove it by PostgreSQL's own clock; a stream
that has just started cannot, and the gate then needs Patroni's view (or the window)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.e2e.test_execute import explain, journal_records, migrate
from tests.helpers.faults import inventory_with_gates
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = pytest.mark.testbed

DC2 = SITE_BY_NAME["dc2"]
WAL_RECEIVER_AGE = (
    "SELECT r.pid, extract(epoch FROM clock_timestamp() - a.backend_start)::float8 "
    "FROM pg_stat_wal_receiver r JOIN pg_stat_activity a ON a.pid = r.pid WHERE r.status = 'streaming'"
)


def stream_ages(testbed) -> dict[str, tuple[int, float]]:
    """Each dc2 member's streaming WAL receiver: (pid, seconds it has run); absent when none."""
    ages = {}
    for member in DC2.members:
        rows = testbed.sql(member, WAL_RECEIVER_AGE)
        if rows:
            ages[member.name] = (int(rows[0][0]), float(rows[0][1]))
    return ages


def cascade_held_by(state: Path) -> str:
    """How the last run's cascade gate passed (its journal's step-done facts)."""
    done = [r for r in journal_records(state) if r["event"] == "step-done" and r["step"] == "wait-cascade"]
    assert done, "no wait-cascade step-done in the journal"
    return done[-1]["facts"]["held_by"]


def test_streams_older_than_the_window_pass_the_cascade_gate_by_their_age(baseline, tmp_path):
    window = 3
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", lag_window_seconds=window)
    ages = wait_until(
        lambda: (a := stream_ages(baseline)) and len(a) == len(DC2.members) and min(v[1] for v in a.values()) > window
        and a,
        60,
        f"every dc2 member streaming for over {window}s",
    )
    state = tmp_path / "state"
    out = migrate("execute", "-i", inventory, "--dc", "dc2", "--until", "cascade", "--yes", "--state-dir", str(state))
    assert out.returncode == 0, explain(out)
    held_by = cascade_held_by(state)
    assert "every member's stream one connection for" in held_by and f"over the {window}s window" in held_by, held_by
    # The same connections all along: the age the gate read is the one these processes have.
    assert {name: pid for name, (pid, _) in stream_ages(baseline).items()} == {n: p for n, (p, _) in ages.items()}


def test_a_stream_that_just_restarted_is_no_proof_of_the_window(baseline, tmp_path):
    # A window no run reaches by waiting: only evidence can pass the gate in time.
    window = 600
    inventory = inventory_with_gates(baseline, tmp_path / "inventory.yml", lag_window_seconds=window)
    replica = DC2.members[-1]
    pid, _ = wait_until(lambda: stream_ages(baseline).get(replica.name), 30, f"{replica.name} streaming")
    # Ending the WAL receiver process ends its connection; PostgreSQL's startup process starts a
    # new one (after wal_retrieve_retry_interval), which is what a flapping stream looks like.
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: stream_ages(baseline).get(replica.name, (pid, 0))[0] != pid or None, 30,
               f"{replica.name} streaming on a new connection")
    state = tmp_path / "state"
    out = migrate("execute", "-i", inventory, "--dc", "dc2", "--until", "cascade", "--yes", "--state-dir", str(state))
    assert out.returncode == 0, explain(out)
    held_by = cascade_held_by(state)
    assert "Patroni's DCS view shows every member streaming" in held_by, held_by
    assert "one connection" not in held_by, held_by
