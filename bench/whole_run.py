"""The whole run, phase by phase, beside the bare sequence's demotion-to-both-sites-healthy (issue 15).

In one run on the testbed, under a write ledger (100 commits/s), alternating directions:
- raw: the bare REST sequence of bench/switchover.py (demote PATCH, token from pg_controldata,
  target replayed past it, promote PATCH), then waiting until both sites are healthy (one primary,
  a streaming standby leader, every replica streaming: each member's own GET /patroni). Its figure
  is demotion PATCH -> both sites healthy.
- `migrate execute` and `migrate rollback`: command start to exit (the final report written), cut
  into: start-up (process start, inventory, observation, plan, lock: up to the journal's
  `migration-started`), each playbook phase (its first step started -> its last step done, from
  the journal's `phase` fields), and the end (last step done -> process exit: the report and its
  picture). Also the same demotion -> both sites healthy, watched from outside.
- Patroni's floor of the repoint, in every run (raw too), from the old primary's PostgreSQL log:
  demotion PATCH -> shut down -> started again as a standby -> streaming the new timeline; and
  for migrate runs how long after that the repoint gate passed (its evidence: a Patroni loop).

Usage: .venv/bin/python -m bench.whole_run [--runs 3]. Goal (issue): execute and rollback, command
start to final report, <= 1.5x raw's demotion-to-healthy. Printed, never asserted.
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

from migrator.adapters.pg import TIMELINE_QUERY
from tests.helpers.ledger import WriteLedger
from tests.testbed import Testbed
from tests.testbed.patroni_config import member_dir
from tests.testbed.topology import Site

from bench.switchover import DC1, HealthWatch, leader, lost, other, raw_switchover
from bench.window_evidence import SHUT_DOWN, first_after, read_log

PHASES = ["preflight", "pre-seed", "cascade", "demote", "token", "catch-up", "promote", "repoint", "verify"]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def migrate(
    command: list[str], inventory: Path, state_dir: Path, tree: Path | None = None
) -> tuple[float, float, list[dict]]:
    """Runs `migrate <command>` (from `tree`, a checkout of other code, when given); returns
    (wall time at start, wall time at exit, its migration's journal records)."""
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "migrator.cli", *command, "-i", str(inventory), "--yes", "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        cwd=tree,
    )
    ended = time.time()
    if out.returncode != 0:
        raise RuntimeError(f"migrate {' '.join(command)} failed ({out.returncode}): {out.stderr.strip()}")
    records = [json.loads(line) for line in (state_dir / "demo" / "journal.jsonl").read_text().splitlines()]
    migration = [r for r in records if r["event"] == "migration-started"][-1]["migration"]
    return started, ended, [r for r in records if r.get("migration") == migration]


def phases(started: float, ended: float, records: list[dict]) -> dict[str, float]:
    """Seconds per part of one migrate run (see the module's docstring)."""
    out: dict[str, float] = {}
    first = next(r for r in records if r["event"] == "migration-started")
    out["start-up"] = _ts(first["ts"]) - started
    phase_of: dict[str, str] = {}
    spans: dict[str, list[float]] = {}
    last_done = _ts(first["ts"])
    for record in records:
        if record["event"] == "step-started":
            phase_of[record["step"]] = record["phase"]
            spans.setdefault(record["phase"], [_ts(record["ts"]), _ts(record["ts"])])
        elif record["event"] == "step-done" and record["step"] in phase_of:
            span = spans[phase_of[record["step"]]]
            span[1] = max(span[1], _ts(record["ts"]))
            last_done = max(last_done, _ts(record["ts"]))
    for phase in PHASES:
        if phase in spans:
            out[phase] = spans[phase][1] - spans[phase][0]
    # Phases may overlap (read-only steps of pre-seed and cascade run together): the steps' span
    # is the engine's own time, not their sum.
    out["steps (first to last)"] = last_done - _ts(first["ts"])
    out["end (report)"] = ended - last_done
    out["whole"] = ended - started
    return out


# What the old primary's PostgreSQL log says as Patroni turns it into a standby of the new primary.
STARTING = "starting PostgreSQL"
STREAMING = ("started streaming WAL from primary at", "restarted WAL streaming at")


def old_primary_floor(testbed: Testbed, old_primary, demoted_at: float, timeline: int) -> dict[str, float]:
    """Patroni's part of the repoint, from the old primary's own log: seconds from the demotion
    PATCH to its PostgreSQL shut down, started again (as a standby: Patroni 4.1's demote-cluster
    sleeps 1 s after the shutdown, releases the leader key, sleeps 2 s more, then starts it) and
    streaming the promotion's new `timeline`. What the log does not show is left out."""
    lines = read_log(member_dir(testbed.base, old_primary) / "pglog" / "postgresql.log")
    since = datetime.fromtimestamp(demoted_at, UTC)
    down = first_after(lines, SHUT_DOWN, since)
    started = first_after(lines, STARTING, down)
    if down is None or started is None:
        return {}
    out = {"old primary shut down": down.timestamp() - demoted_at}
    out["old primary started"] = started.timestamp() - demoted_at
    streaming = next(
        (at for at, text in lines if at >= started and text.startswith(STREAMING) and text.endswith(f" {timeline}")),
        None,
    )
    if streaming is not None:
        out["old primary streams"] = streaming.timestamp() - demoted_at
    return out


def new_timeline(testbed: Testbed, site: Site) -> int:
    """The timeline the site's primary writes on (after a promotion: the new one)."""
    return int(testbed.sql(leader(testbed, site, "primary"), TIMELINE_QUERY)[0][0])


def repoint_passed(records: list[dict]) -> float | None:
    done = [r for r in records if r["event"] == "step-done" and r.get("step") == "wait-repoint"]
    return _ts(done[-1]["ts"]) if done else None


def demotion_sent(records: list[dict]) -> float:
    applied = [r for r in records if r["event"] == "step-applied" and r["step"] == "demote-source"][-1]
    return _ts(applied["facts"]["demote_patch_sent_at"])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="a checkout of older code (e.g. `git archive` of main) to time in the same run",
    )
    args = parser.parse_args()
    trees: dict[str, Path | None] = {"": None}
    if args.before is not None:
        trees["before "] = args.before.resolve()
    testbed = Testbed()
    if testbed.restore_baseline() == "rebuilt":
        print("testbed rebuilt", flush=True)
    state_dir = Path(tempfile.mkdtemp(prefix="bench-whole-run-"))
    table = f"bench_whole_{int(time.time())}"
    raw_healthy: list[float] = []
    raw_floor: list[dict[str, float]] = []
    runs: dict[str, list[dict[str, float]]] = {f"{tag}{how}": [] for tag in trees for how in ("execute", "rollback")}
    source: Site = DC1
    with WriteLedger(testbed, rate=100, table=table) as ledger:
        time.sleep(1)
        for _ in range(args.runs):
            # raw there and back, then execute there and rollback back: each direction equally often.
            for _direction in range(2):
                target = other(source)
                watch = HealthWatch(testbed, target)
                old_primary = leader(testbed, source, "primary")
                try:
                    demoted_at, _ = raw_switchover(testbed, source, old_primary)
                    raw_healthy.append(watch.healthy_since(demoted_at) - demoted_at)
                finally:
                    watch.stop()
                floor = old_primary_floor(testbed, old_primary, demoted_at, new_timeline(testbed, target))
                raw_floor.append(floor)
                print(
                    f"{'raw':15s} {source.name}->{target.name}: demotion -> both sites healthy "
                    f"{raw_healthy[-1]:.2f}s; " + ", ".join(f"{k} {v:.2f}" for k, v in floor.items()),
                    flush=True,
                )
                source = target
                time.sleep(3)
            for tag, how in [(tag, how) for tag in trees for how in ("execute", "rollback")]:
                target = other(source)
                command = ["execute", "--dc", target.name] if how == "execute" else ["rollback"]
                watch = HealthWatch(testbed, target)
                how = f"{tag}{how}"
                old_primary = leader(testbed, source, "primary")
                try:
                    started, ended, records = migrate(command, testbed.inventory_path, state_dir, trees[tag])
                    demoted_at = demotion_sent(records)
                    healthy = watch.healthy_since(demoted_at) - demoted_at
                finally:
                    watch.stop()
                figures = phases(started, ended, records)
                figures["demotion -> both healthy"] = healthy
                figures.update(old_primary_floor(testbed, old_primary, demoted_at, new_timeline(testbed, target)))
                if (passed := repoint_passed(records)) is not None and "old primary streams" in figures:
                    # What the repoint gate adds to Patroni's floor: its evidence (a Patroni loop).
                    figures["repoint gate after it"] = passed - demoted_at - figures["old primary streams"]
                runs[how].append(figures)
                print(
                    f"{how:15s} {source.name}->{target.name}: command {figures['whole']:.2f}s, demotion -> both "
                    f"sites healthy {healthy:.2f}s; "
                    + ", ".join(
                        f"{k} {v:.2f}" for k, v in figures.items() if k not in ("whole", "demotion -> both healthy")
                    ),
                    flush=True,
                )
                source = target
                time.sleep(3)
        time.sleep(2)
    print(
        f"\nledger: {len(ledger.acknowledged)} commits acknowledged at {ledger.achieved_rate:.0f}/s, "
        f"{lost(testbed, ledger, source)} lost after {len(raw_healthy) + sum(map(len, runs.values()))} switchovers"
    )
    raw = statistics.median(raw_healthy)
    names = list(dict.fromkeys(k for how in runs for r in runs[how] for k in r))
    print(f"\nmedian seconds of {args.runs} runs each (raw: {len(raw_healthy)} runs)")
    print(f"  {'part':<26} " + " ".join(f"{how:>16}" for how in runs))
    for name in names:
        cells = []
        for how in runs:
            values = [r[name] for r in runs[how] if name in r]
            cells.append(f"{statistics.median(values):16.2f}" if values else f"{'-':>16}")
        print(f"  {name:<26} " + " ".join(cells))
    print(f"  {'raw: demotion -> healthy':<26} {raw:16.2f}")
    for name in ("old primary shut down", "old primary started", "old primary streams"):
        values = [f[name] for f in raw_floor if name in f]
        if values:
            print(f"  {'raw: ' + name:<26} {statistics.median(values):16.2f}")
    for how in runs:
        whole = statistics.median(r["whole"] for r in runs[how])
        print(
            f"{how}: command start to final report {whole:.2f}s = {whole / raw:.2f}x the bare sequence's "
            f"demotion-to-both-sites-healthy ({raw:.2f}s; goal <= 1.5x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
