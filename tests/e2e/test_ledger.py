"""The witnesses the switchover scenarios rely on, checked against the baseline testbed first: a
witness that cannot see a lost commit or a second writer would make every scenario pass."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import psycopg
import pytest

from tests.helpers.ledger import (
    ALL_MEMBERS,
    Ack,
    WriteLedger,
    WriterSampler,
    assert_no_acknowledged_commit_lost,
)
from tests.testbed import Testbed, wait_until
from tests.testbed.topology import Member

pytestmark = pytest.mark.testbed


def fresh_table() -> str:
    # A table of its own per run, so ids start at 1 whatever earlier runs left behind.
    return f"migrator_ledger_{uuid.uuid4().hex[:12]}"


def the_primary(testbed: Testbed) -> Member:
    writable = [m for m in ALL_MEMBERS if not testbed.sql(m, "SELECT pg_is_in_recovery()")[0][0]]
    assert len(writable) == 1, f"expected one writable member, found {[m.name for m in writable]}"
    return writable[0]


def test_ledger_acknowledges_contiguous_ids_that_reach_every_member(baseline: Testbed):
    with WriterSampler(baseline) as sampler, \
            WriteLedger(baseline, rate=100, table=fresh_table()) as ledger:
        time.sleep(3)
    summary = ledger.summary()
    acked = ledger.acknowledged
    assert ledger.first_id == 1
    assert acked == list(range(1, len(acked) + 1)), f"ids skipped or repeated: {summary}"
    assert len(acked) >= 250, f"rate far below 100/s: {summary}"
    assert ledger.max_gap_seconds < 1.0, summary
    assert ledger.errors == 0, summary
    assert_no_acknowledged_commit_lost(baseline, ledger, timeout=30)
    assert sampler.samples >= 20, f"sampler took only {sampler.samples} samples"
    assert sampler.violations == [], sampler.changes


def test_sampler_reports_two_writable_members(baseline: Testbed):
    """Two writers cannot be provoked on the shared testbed without breaking it for everyone, so
    the fault is simulated: the sampler is given a member list in which the primary appears twice,
    under its own name and under an alias. Both answer `pg_is_in_recovery() = false`, exactly as
    two primaries would, so the sampler must record a violation naming both."""
    primary = the_primary(baseline)
    alias = Member(name=f"{primary.name}-alias", site=primary.site, host=primary.host)
    replicas = [m for m in ALL_MEMBERS if m != primary]
    with WriterSampler(baseline, members=[primary, alias, *replicas]) as sampler:
        wait_until(lambda: sampler.violations, timeout=10, what="a two-writer violation")
    violation = sampler.violations[0]
    assert set(violation.writable) == {primary.name, alias.name}, violation


class LedgerWithDoubtfulCommits(WriteLedger):
    """Every 25th INSERT commits on the server, then the client is told the connection broke: a
    commit in doubt, as when the primary goes down during a commit."""

    def _connect(self):
        conn = super()._connect()
        execute, calls = conn.execute, [0]

        def doubtful_execute(query, params=None):
            cur = execute(query, params)
            calls[0] += 1
            if calls[0] % 25 == 0:
                raise psycopg.OperationalError("server closed the connection unexpectedly"
                                               " (simulated)")
            return cur

        conn.execute = doubtful_execute
        return conn


def test_ledger_retries_a_commit_in_doubt_with_the_same_id(baseline: Testbed):
    with LedgerWithDoubtfulCommits(baseline, rate=100, table=fresh_table()) as ledger:
        time.sleep(1.5)
    acked = ledger.acknowledged
    assert ledger.errors >= 3 and ledger.already_present == ledger.errors, ledger.summary()
    assert acked == list(range(1, len(acked) + 1)), ledger.summary()
    assert_no_acknowledged_commit_lost(baseline, ledger, timeout=30)


def test_lost_commits_are_reported_by_id_and_member(baseline: Testbed):
    """The check must be able to fail: claim ids were acknowledged that were never written."""
    with WriteLedger(baseline, rate=100, table=fresh_table()) as ledger:
        time.sleep(0.3)
    ledger._acks.extend(Ack(i, time.monotonic(), datetime.now(timezone.utc))
                        for i in range(1_000_000, 1_000_025))
    with pytest.raises(AssertionError) as failure:
        assert_no_acknowledged_commit_lost(baseline, ledger, members=ALL_MEMBERS[:2], timeout=1)
    message = str(failure.value)
    for member in ALL_MEMBERS[:2]:
        assert f"{member.name}: 25 of " in message
    assert "1000019]" in message and "1000020" not in message  # the first 20 only
