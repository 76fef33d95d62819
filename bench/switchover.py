"""The switchover's cost, the tool against the bare protocol, in the same run on the testbed.

Under a write ledger at 100 commits/s, alternating directions, N times each:
- raw: the bare REST sequence (docs/architecture.md, the protocol) with nothing around it: PATCH standby_cluster
  onto the source, poll pg_controldata for the shutdown checkpoint (the token), poll the target
  until it replayed past it, PATCH standby_cluster: null onto the target;
- migrate: `migrate execute --dc X --yes` as an operator runs it.
For each: write unavailability (the ledger's longest gap between two acknowledged commits around
the switchover), time from the demotion PATCH to both sites healthy (every member streaming, the
old site's standby leader on the new primary), and commits lost (acknowledged, then missing).
migrate also has a preflight, pre-seed and a lag-gated cascade before it demotes; its whole
wall time is printed beside, not hidden.

The window is then explained part by part (median of the runs), for both side by side: demote
PATCH sent -> Patroni acts -> shutdown checkpoint written -> token read -> catch-up proven ->
promote PATCH sent -> Patroni acts -> promotion done -> first commit acknowledged. The driver's own
instants come from migrate's journal (or the bare sequence's clock), the rest from the members'
PostgreSQL logs and the write ledger (bench/window_evidence.py); migrate's own journal breakdown,
as each run's report prints it (migrator/render/window_breakdown.py), follows.

Usage: .venv/bin/python -m bench.switchover [--runs 5]. Goals (issue): migrate's unavailability
<= 1.5x raw, demotion-to-healthy <= 1.3x raw, 0 lost. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from migrator.render.window_breakdown import NOT_MEASURED, Part, instant, journal_parts, parts, step_facts
from tests.helpers.ledger import WriteLedger
from tests.testbed import SITE_BY_NAME, Testbed
from tests.testbed.patroni_config import member_dir, standby_cluster_section
from tests.testbed.topology import PG_BIN_DIR, REST_USER, Site

from bench import window_evidence

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]


def other(site: Site) -> Site:
    return DC2 if site is DC1 else DC1


def roles(testbed: Testbed, site: Site) -> dict[str, dict]:
    out = {}
    for member in site.members:
        try:
            out[member.name] = testbed.patroni_state(member)
        except requests.RequestException:
            out[member.name] = {}
    return out


def healthy(testbed: Testbed, primary_site: Site) -> bool:
    """Both sites as they should be after a move to primary_site: one primary there, a standby
    leader streaming in the other site, every replica streaming."""
    states = {**roles(testbed, primary_site), **roles(testbed, other(primary_site))}
    primaries = [n for n, s in states.items() if s.get("role") == "primary"]
    leaders = [n for n, s in states.items() if s.get("role") == "standby_leader"]
    if len(primaries) != 1 or not primaries[0].startswith(primary_site.name) or len(leaders) != 1:
        return False
    return all(s.get("state") == "running" and (s.get("role") == "primary" or s.get("replication_state") == "streaming")
               for s in states.values())


def wait(predicate, timeout: float, interval: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception:  # noqa: BLE001 - not yet
            pass
        time.sleep(interval)
    raise TimeoutError("timed out")


def leader(testbed: Testbed, site: Site, role: str):
    return next(m for m in site.members if testbed.patroni_state(m).get("role") == role)


def now() -> datetime:
    return datetime.now(UTC)


def raw_switchover(testbed: Testbed, source: Site, old_primary) -> tuple[float, dict[str, datetime | None]]:
    """The bare REST sequence; returns the wall time (epoch) of the demotion PATCH and the
    instants it timed itself (the driver's milestones of window_evidence.CHAIN)."""
    target = other(source)
    standby_leader = leader(testbed, target, "standby_leader")
    auth = (REST_USER, testbed.passwords()["restapi"])
    conn = testbed.connect(standby_leader)  # opened before the clock starts, as the tool does
    section = standby_cluster_section(target, source)
    timed: dict[str, datetime | None] = {}
    demoted_at = time.time()
    timed["demote PATCH sent"] = datetime.fromtimestamp(demoted_at, UTC)
    requests.patch(f"{old_primary.api_url}/config", json={"standby_cluster": section}, auth=auth, timeout=5).raise_for_status()
    data_dir = member_dir(testbed.base, old_primary) / "data"

    def token() -> int | None:
        out = subprocess.run([str(PG_BIN_DIR / "pg_controldata"), str(data_dir)], capture_output=True, text=True).stdout
        facts = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        if facts.get("Database cluster state", "").strip() != "shut down":
            return None
        high, low = facts["Latest checkpoint location"].strip().split("/")
        return (int(high, 16) << 32) | int(low, 16)

    lsn = wait(token, 30)
    timed["token read"] = now()
    wait(lambda: conn.execute("SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint").fetchone()[0] > lsn, 60)
    timed["catch-up proven"] = now()
    conn.close()
    timed["promote PATCH sent"] = now()
    requests.patch(f"{standby_leader.api_url}/config", json={"standby_cluster": None}, auth=auth, timeout=5).raise_for_status()
    return demoted_at, timed


def migrate_switchover(inventory: Path, target: Site, state_dir: Path) -> tuple[float, float, list[dict], str]:
    """`migrate execute`; returns (wall time of its demotion PATCH, its whole run time, the
    journal's records, the migration's id)."""
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "migrator.cli", "execute", "-i", str(inventory), "--dc", target.name,
                          "--yes", "--state-dir", str(state_dir)], capture_output=True, text=True)
    took = time.monotonic() - started
    if out.returncode != 0:
        raise RuntimeError(f"migrate execute failed: {out.stderr.strip()}")
    records = [json.loads(line) for line in (state_dir / "demo" / "journal.jsonl").read_text().splitlines()]
    sent = [r for r in records if r["event"] == "step-applied" and r["step"] == "demote-source"][-1]
    # The PATCH's own instant (older journals: when it was answered).
    demoted = sent["facts"].get("demote_patch_sent_at") or sent["facts"]["demote_sent_at"]
    return datetime.fromisoformat(demoted).timestamp(), took, records, sent["migration"]


# The driver's milestones, from the facts migrate's steps journal (migrator/steps/switchover.py).
JOURNAL_FACTS = {
    "demote PATCH sent": "demote_patch_sent_at",
    "token read": "token_read_at",
    "catch-up proven": "caught_up_at",
    "promote PATCH sent": "promote_patch_sent_at",
}


def journal_driver(records: list[dict], migration: str) -> dict[str, datetime | None]:
    facts = step_facts(records, migration)
    return {name: instant(facts.get(key)) for name, key in JOURNAL_FACTS.items()}


def testbed_parts(testbed: Testbed, ledger: WriteLedger, source: Site, old_primary,
                  driver: dict[str, datetime | None]) -> list[Part]:
    """The issue's chain for one switchover, from the driver's instants, the logs and the ledger."""
    def log(member) -> Path:
        return member_dir(testbed.base, member) / "pglog" / "postgresql.log"

    milestones = window_evidence.chain(driver, log(old_primary), [log(m) for m in other(source).members],
                                       [a.wall for a in ledger.acks])
    return parts(milestones, window_evidence.WINDOW)


def median_cell(values: list[float | None]) -> str:
    """The median of the measured values; how many runs measured it when some did not."""
    measured = [v for v in values if v is not None]
    if not measured:
        return NOT_MEASURED
    cell = f"{statistics.median(measured):.3f}"
    return cell if len(measured) == len(values) else f"{cell} ({len(measured)}/{len(values)})"


def print_breakdowns(results: dict[str, list[dict]]) -> None:
    names = [p.name for p in results["migrate"][0]["parts"]] if results["migrate"] else []
    width = max([len(n) for n in names] + [40])
    print(f"\nthe window part by part, median seconds (raw: {len(results['raw'])} runs, "
          f"migrate: {len(results['migrate'])} runs; in = no client can commit)")
    print(f"  {'part':<{width}}  {'raw':>14}  {'migrate':>14}  window")
    for i, name in enumerate(names):
        cells = [median_cell([r["parts"][i].seconds for r in results[how]]) for how in ("raw", "migrate")]
        where = "in" if results["migrate"][0]["parts"][i].in_window else ""
        print(f"  {name:<{width}}  {cells[0]:>14}  {cells[1]:>14}  {where}")
    inside = [median_cell([_inside(r["parts"]) for r in results[how]]) for how in ("raw", "migrate")]
    print(f"  {'sum of the parts in the window':<{width}}  {inside[0]:>14}  {inside[1]:>14}")
    tool = [r["tool_parts"] for r in results["migrate"] if r.get("tool_parts")]
    if tool:
        width = max(len(p.name) for p in tool[0])
        print(f"\nmigrate's own journal (each run's report), median seconds of {len(tool)} runs")
        for i, part in enumerate(tool[0]):
            where = "in" if part.in_window else ""
            print(f"  {part.name:<{width}}  {median_cell([t[i].seconds for t in tool]):>14}  {where}")
        print(f"  {'sum of the parts in the window':<{width}}  {median_cell([_inside(t) for t in tool]):>14}")


def _inside(found: list[Part]) -> float | None:
    inside = [p.seconds for p in found if p.in_window]
    return None if not inside or None in inside else round(sum(s or 0.0 for s in inside), 3)


class HealthWatch:
    """Polls `healthy` in the background, so that the moment the sites became healthy is known
    even while `migrate execute` is still verifying (it returns only after its own checks)."""

    def __init__(self, testbed: Testbed, primary_site: Site):
        import threading
        self.testbed, self.site = testbed, primary_site
        self.samples: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ok = healthy(self.testbed, self.site)
            except Exception:  # noqa: BLE001 - a member in transition
                ok = False
            self.samples.append((time.time(), ok))
            time.sleep(0.05)

    def healthy_since(self, after: float, timeout: float = 120) -> float:
        """The start of the first healthy stretch after `after` that lasts to the end."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            tail = [(t, ok) for t, ok in self.samples if t >= after]
            if tail and tail[-1][1]:
                start = tail[-1][0]
                for t, ok in reversed(tail):
                    if not ok:
                        break
                    start = t
                return start
            time.sleep(0.05)
        raise TimeoutError("the sites did not become healthy")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def gap_around(ledger: WriteLedger, since: float, until: float) -> float:
    """The longest stretch without an acknowledged commit that overlaps [since, until]."""
    acks = [a.wall.timestamp() if hasattr(a.wall, "timestamp") else a.wall for a in ledger.acks]
    best = 0.0
    for before, after in zip(acks, acks[1:]):
        if after >= since and before <= until:
            best = max(best, after - before)
    return best


def lost(testbed: Testbed, ledger: WriteLedger, site: Site) -> int:
    primary = leader(testbed, site, "primary")
    wanted = set(ledger.acknowledged)
    with testbed.connect(primary) as conn:
        present = {r[0] for r in conn.execute(f"SELECT id FROM {ledger.table}")}
    return len(wanted - present)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    testbed = Testbed()
    if testbed.restore_baseline() == "rebuilt":
        print("testbed rebuilt", flush=True)
    results: dict[str, list[dict]] = {"raw": [], "migrate": []}
    state_dir = Path(tempfile.mkdtemp(prefix="bench-switchover-"))
    table = f"bench_ledger_{int(time.time())}"
    source = DC1
    with WriteLedger(testbed, rate=100, table=table) as ledger:
        time.sleep(1)
        for run in range(args.runs * 2):
            # raw, migrate, migrate, raw, ...: each method moves in both directions equally often.
            how = "raw" if run % 4 in (0, 3) else "migrate"
            target = other(source)
            wall_start = time.time()
            old_primary = leader(testbed, source, "primary")
            watch = HealthWatch(testbed, target)
            tool_parts: list[Part] = []
            try:
                if how == "raw":
                    (demoted_at, driver), whole = raw_switchover(testbed, source, old_primary), None
                else:
                    demoted_at, whole, records, migration = migrate_switchover(
                        testbed.inventory_path, target, state_dir)
                    driver, tool_parts = journal_driver(records, migration), journal_parts(records, migration)
                healthy_after = watch.healthy_since(demoted_at) - demoted_at
            finally:
                watch.stop()
            time.sleep(1.5)  # let the ledger acknowledge after the switch before measuring the gap
            results[how].append({"gap": gap_around(ledger, demoted_at, time.time()),
                                 "healthy": healthy_after, "whole": whole or (time.time() - wall_start),
                                 "parts": testbed_parts(testbed, ledger, source, old_primary, driver),
                                 "tool_parts": tool_parts})
            print(f"{how:8s} {source.name}->{target.name}: unavailable {results[how][-1]['gap']:.3f}s, "
                  f"healthy {healthy_after:.2f}s after the demotion"
                  + (f", migrate execute ran {whole:.1f}s" if whole else ""), flush=True)
            source = target
            time.sleep(2)
        time.sleep(2)
    lost_commits = lost(testbed, ledger, source)
    print(f"\nledger: {len(ledger.acknowledged)} commits acknowledged at {ledger.achieved_rate:.0f}/s, "
          f"{lost_commits} lost after {args.runs * 2} switchovers")
    for how in ("raw", "migrate"):
        rows = results[how]
        print(f"{how:8s} median write unavailability {statistics.median(r['gap'] for r in rows):.3f}s, "
              f"median demotion-to-healthy {statistics.median(r['healthy'] for r in rows):.2f}s"
              + (f", median migrate execute wall time {statistics.median(r['whole'] for r in rows):.1f}s"
                 if how == "migrate" else ""))
    raw_gap = statistics.median(r["gap"] for r in results["raw"])
    raw_healthy = statistics.median(r["healthy"] for r in results["raw"])
    print(f"ratios: unavailability {statistics.median(r['gap'] for r in results['migrate']) / raw_gap:.2f}x "
          f"(goal <= 1.5x), demotion-to-healthy "
          f"{statistics.median(r['healthy'] for r in results['migrate']) / raw_healthy:.2f}x (goal <= 1.3x)")
    print_breakdowns(results)
    if source is not DC1:
        subprocess.run([sys.executable, "-m", "migrator.cli", "execute", "-i", str(testbed.inventory_path), "--dc", "dc1",
                        "--yes", "--state-dir", str(state_dir)], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
