"""Median wall time of `migrate plan --format json` on the testbed (2 sites x 2 members).

Usage: .venv/bin/python -m bench.plan_latency [--runs 10]
Starts the testbed when it is not at its baseline, and leaves it as it found it running.
Goal (issue): median <= 1.5 s. The figure is printed, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from tests.testbed import Testbed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    testbed = Testbed()
    started_here = False
    if testbed.baseline_problems():
        print(f"testbed up in {testbed.up():.1f}s", flush=True)
        started_here = True
    command = [sys.executable, "-m", "migrator.cli", "plan", "--inventory", str(testbed.inventory_path),
               "--dc", "dc2", "--format", "json"]
    times = []
    try:
        for _ in range(args.runs):
            begin = time.perf_counter()
            out = subprocess.run(command, capture_output=True, text=True)
            times.append(time.perf_counter() - begin)
            if out.returncode != 0:
                print(f"migrate plan failed ({out.returncode}): {out.stderr.strip()}")
                return 1
    finally:
        if started_here:
            testbed.down()
    print(f"migrate plan --format json, {args.runs} runs: median {statistics.median(times):.3f}s, "
          f"min {min(times):.3f}s, max {max(times):.3f}s (whole process: interpreter start, observe "
          "over REST/etcd/PostgreSQL/SSH, checks, plan, render)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
