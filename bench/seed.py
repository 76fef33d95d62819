"""Seeding's cost: `migrate execute --dc dc2 --until cascade` on an empty dc2 against a bare
pg_basebackup of the same data to a local directory, in the same run on the testbed.

The source database is filled with `pgbench -i -s SCALE` (scale 70 is about 1 GB). Then:
- bare: `pg_basebackup -X stream -c fast` from dc1's primary into a scratch directory, timed
  twice (before and after the seed, so a cold page cache does not favour either side);
- migrate: dc2's cluster is taken away (Patroni stopped, data and DCS keys removed, dc1's slot for
  dc2 dropped), then `migrate execute --until cascade` is timed from start to exit: preflight,
  slot, access test, configs, the standby leader's base backup from dc1, the replica's base
  backup from the standby leader (one by one, as the tool does), and the lag gate's window.
The standby leader's own step (its base backup plus start-up until it streams) is printed beside,
from the journal: that is the like-for-like figure for one copy.

Usage: .venv/bin/python -m bench.seed [--scale 70]. Goal (issue): migrate within 1.2x of bare.
Printed, never asserted. The pgbench tables are dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from tests.testbed import SITE_BY_NAME, Testbed
from tests.testbed.topology import PG_BIN_DIR, PG_PORT, REPLICATION_USER, SUPERUSER

DC1 = SITE_BY_NAME["dc1"]


def primary(testbed: Testbed):
    return next(m for m in DC1.members if testbed.patroni_state(m).get("role") == "primary")


def pgbench_init(testbed: Testbed, scale: int) -> float:
    env = {**os.environ, "PGPASSWORD": testbed.passwords()["superuser"]}
    started = time.monotonic()
    subprocess.run([str(PG_BIN_DIR / "pgbench"), "-i", "-q", "-s", str(scale), "-h", primary(testbed).host,
                    "-p", str(PG_PORT), "-U", SUPERUSER, "postgres"], env=env, check=True,
                   capture_output=True)
    return time.monotonic() - started


def bare_basebackup(testbed: Testbed, scratch: Path) -> float:
    target = scratch / "bare"
    shutil.rmtree(target, ignore_errors=True)
    env = {**os.environ, "PGPASSWORD": testbed.passwords()["replication"]}
    started = time.monotonic()
    subprocess.run([str(PG_BIN_DIR / "pg_basebackup"), "-h", primary(testbed).host, "-p", str(PG_PORT),
                    "-U", REPLICATION_USER, "-D", str(target), "-X", "stream", "-c", "fast"],
                   env=env, check=True, capture_output=True)
    seconds = time.monotonic() - started
    shutil.rmtree(target)
    return seconds


def migrate_seed(testbed: Testbed, state_dir: Path) -> tuple[float, dict[str, float]]:
    testbed.remove_dc2_cluster()
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "migrator.cli", "execute", "-i", str(testbed.inventory_path),
                          "--dc", "dc2", "--until", "cascade", "--yes", "--state-dir", str(state_dir)],
                         capture_output=True, text=True)
    seconds = time.monotonic() - started
    if out.returncode != 0:
        raise SystemExit(f"migrate failed (exit {out.returncode}): {out.stderr.strip()}")
    records = [json.loads(line) for line in (state_dir / "demo" / "journal.jsonl").read_text().splitlines()]
    started_at, steps = {}, {}
    for r in records:
        if r["event"] == "step-started":
            started_at[r["step"]] = r["ts"]
        elif r["event"] == "step-done" and r["step"] in started_at:
            steps[r["step"]] = (datetime.fromisoformat(r["ts"])
                                - datetime.fromisoformat(started_at[r["step"]])).total_seconds()
            if r["step"] == "start-target-leader":
                steps["leader base backup rate"] = (r.get("facts", {}).get("base_backup") or {}).get(
                    "bytes_per_second")
    return seconds, steps


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70 is about 1 GB)")
    args = parser.parse_args()
    testbed = Testbed()
    if testbed.baseline_problems():
        print(f"testbed up in {testbed.up():.1f}s")
    testbed.write_inventory(testbed.inventory_path)
    init = pgbench_init(testbed, args.scale)
    size = testbed.sql(primary(testbed), "SELECT sum(pg_database_size(oid))::bigint FROM pg_database")[0][0]
    print(f"pgbench -i -s {args.scale}: {init:.1f}s; databases on dc1: {size / 1048576:.0f} MiB")
    with tempfile.TemporaryDirectory(dir=testbed.base) as scratch:
        bare = [bare_basebackup(testbed, Path(scratch))]
        total, steps = migrate_seed(testbed, Path(scratch) / "state")
        bare.append(bare_basebackup(testbed, Path(scratch)))
    best = min(bare)
    leader = steps.get("start-target-leader", float("nan"))
    replicas = steps.get("start-target-replicas", float("nan"))
    print(f"bare pg_basebackup to a local directory: {', '.join(f'{b:.1f}s' for b in bare)} (best {best:.1f}s, "
          f"{size / best / 1048576:.0f} MiB/s); the first one reads a cold page cache")
    print(f"migrate --until cascade, start to exit: {total:.1f}s = {total / best:.2f}x bare "
          "(two copies: standby leader from dc1, then the replica from the standby leader)")
    print(f"  standby leader (one copy, until streaming): {leader:.1f}s = {leader / best:.2f}x bare")
    print(f"  replica (one copy from the standby leader, until cascading): {replicas:.1f}s")
    rate = steps.pop("leader base backup rate", None)
    if rate:
        print(f"  standby leader's base backup through Patroni, as sampled from pg_stat_progress_basebackup: "
              f"{rate / 1048576:.0f} MiB/s")
    others = {k: round(v, 1) for k, v in steps.items() if k not in ("start-target-leader", "start-target-replicas")}
    print(f"  other steps: {others}")
    testbed.sql(primary(testbed), "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, "
                                  "pgbench_history, pgbench_tellers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
