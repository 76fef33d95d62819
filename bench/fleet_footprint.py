"""What one service run costs the control machine, measured, and what a fleet of N services at
parallelism P would need from it, on paper (the README's fleet section quotes this output).

On the testbed's extra service svc1 (one member per site; tests/testbed/services.py; or with
`--demo` the testbed's demo service, two members per site), `--runs`
times: `migrate execute --dc dc2`, then `migrate rollback` (the same protocol back). While each
`migrate` process runs, its /proc is sampled every 20 ms: open file descriptors, threads, and its
TCP connections by what they reach (the remote port: Patroni REST 8008, etcd 2379, PostgreSQL
5432, SSH 2222). Its peak RSS is read when it is reaped (wait4's ru_maxrss).

Printed per run: wall time, peak RSS, peak fds, peak threads, the peak number of connections open
at once by kind, and how many connections it opened over the run by kind (counted inside the
process: every Python socket connect through the audit hook, every psycopg.connect). Then the
paper estimate for `--fleet N` services at `--parallel P`: memory (P children at the peak RSS),
file descriptors and connections (P x the per-run peaks), wall time (ceil(N/P) rounds of the
median run, plus one extra round per wave as a wave waits for its slowest service; human pauses
between waves not counted), with the planning time of bench/fleet_plan.py passed in with
`--plan-seconds` (it is not re-run here). Printed, never asserted.

Usage: .venv/bin/python -m bench.fleet_footprint [--runs 2] [--fleet 500] [--parallel 20]
           [--waves 3] [--plan-seconds S]
with MIGRATOR_TESTBED_NET / MIGRATOR_TESTBED_DIR naming the testbed (built or repaired as needed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.testbed import Testbed
from tests.testbed.services import extra_services, inventory_file

KINDS = {8008: "patroni-rest", 2379: "etcd", 5432: "postgresql", 2222: "ssh"}
# `migrate` run under a counter of every connection it opens: Python sockets (Patroni REST, etcd,
# SSH) through the interpreter's audit hook `socket.connect`, PostgreSQL (libpq, in C: no Python
# socket) by wrapping psycopg.connect. Exact, unlike the /proc samples, which miss connections
# that live less than a sample interval. Written as JSON (kind -> count) at exit.
COUNTING_MAIN = f"""
import atexit, collections, json, os, runpy, sys
kinds = {KINDS!r}
counts = collections.Counter()
def hook(event, args):
    if event == "socket.connect" and isinstance(args[1], tuple) and len(args[1]) >= 2:
        counts[kinds.get(args[1][1], "other:%s" % args[1][1])] += 1
sys.addaudithook(hook)
import psycopg
real_connect = psycopg.connect
def connect(*a, **k):
    counts["postgresql"] += 1
    return real_connect(*a, **k)
psycopg.connect = connect
atexit.register(lambda: json.dump(counts, open(os.environ["FOOTPRINT_COUNTS"], "w")))
sys.argv = ["migrate", *sys.argv[1:]]
runpy.run_module("migrator.cli", run_name="__main__")
"""
MIGRATE = [sys.executable, "-c", COUNTING_MAIN]
SAMPLE_SECONDS = 0.02
RUN_TIMEOUT = 600.0


@dataclass
class Footprint:
    command: str
    returncode: int = 0
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    cpu_seconds: float = 0.0  # user + system, from wait4
    peak_fds: int = 0
    peak_threads: int = 0
    peak_open: Counter = field(default_factory=Counter)  # kind -> most connections open at one sample
    opened: dict[str, int] = field(default_factory=dict)  # kind -> connections opened (counted in-process)


def _tcp_table() -> dict[str, tuple[str, int, int]]:
    """socket inode -> (remote address hex, remote port, local port), every TCP socket of the host."""
    table = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], parts[9]
            table[inode] = (remote.split(":")[0], int(remote.split(":")[1], 16), int(local.split(":")[1], 16))
    return table


def _sample(pid: int, footprint: Footprint) -> None:
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        threads = next(
            int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Threads:")
        )  # fmt: skip
    except (OSError, StopIteration):
        return  # the process ended between two reads
    footprint.peak_fds = max(footprint.peak_fds, len(links))
    footprint.peak_threads = max(footprint.peak_threads, threads)
    inodes = [link[len("socket:[") : -1] for link in links if link.startswith("socket:[")]
    tcp = _tcp_table()
    open_now: Counter = Counter()
    for inode in inodes:
        if inode not in tcp:
            continue
        _, port, _ = tcp[inode]
        if port == 0:
            continue  # a listening or unconnected socket
        kind = KINDS.get(port, f"other:{port}")
        open_now[kind] += 1
    for kind, count in open_now.items():
        footprint.peak_open[kind] = max(footprint.peak_open[kind], count)


def measure(command: list[str], label: str) -> Footprint:
    footprint = Footprint(label)
    counts = Path(tempfile.mkstemp(prefix="footprint-counts-")[1])
    started = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "FOOTPRINT_COUNTS": str(counts)})  # fmt: skip
    deadline = started + RUN_TIMEOUT
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{label}: ran longer than {RUN_TIMEOUT:.0f}s")
        _sample(proc.pid, footprint)
        time.sleep(SAMPLE_SECONDS)
    footprint.seconds = time.monotonic() - started
    footprint.returncode = os.waitstatus_to_exitcode(status)
    footprint.peak_rss_mib = usage.ru_maxrss / 1024
    footprint.cpu_seconds = usage.ru_utime + usage.ru_stime
    footprint.opened = json.loads(counts.read_text() or "{}")
    counts.unlink()
    if footprint.returncode != 0:
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        print(f"  {label}: exit {footprint.returncode}: {stderr.strip()[-500:]}", flush=True)
    return footprint


def show(footprint: Footprint) -> None:
    peaks = ", ".join(f"{k} {v}" for k, v in sorted(footprint.peak_open.items()))
    opened = ", ".join(f"{k} {v}" for k, v in sorted(footprint.opened.items()))
    print(
        f"{footprint.command}: exit {footprint.returncode}, {footprint.seconds:.1f}s "
        f"(CPU {footprint.cpu_seconds:.1f}s), peak RSS {footprint.peak_rss_mib:.0f} MiB, peak fds "
        f"{footprint.peak_fds}, peak threads {footprint.peak_threads}; "
        f"connections open at once (peak of 20 ms samples): {peaks or 'none seen'}; opened over the run: "
        f"{opened or 'none'}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="execute + rollback pairs to measure")
    parser.add_argument("--fleet", type=int, default=500, help="services in the paper estimate")
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--waves", type=int, default=3, help="waves in the paper estimate")
    parser.add_argument("--demo", action="store_true", help="measure demo (2 members per site) instead of svc1")
    parser.add_argument("--plan-seconds", type=float, default=None, help="bench.fleet_plan's planning time")
    args = parser.parse_args()

    testbed = Testbed()
    if testbed.baseline_problems():
        print(f"testbed up in {testbed.up():.1f}s", flush=True)
    if args.demo:
        inventory = str(testbed.inventory_path)
    else:
        testbed.up_services(1)
        (service,) = extra_services(1)
        inventory = str(inventory_file(testbed.base, service))
    runs: list[Footprint] = []
    with tempfile.TemporaryDirectory(prefix="fleet-footprint-") as state:
        for _ in range(args.runs):
            for label, verb in (("execute --dc dc2", ["execute", "--dc", "dc2"]), ("rollback", ["rollback"])):
                command = [*MIGRATE, verb[0], "-i", inventory, *verb[1:], "--yes", "--state-dir", state]
                runs.append(measure(command, label))
                show(runs[-1])
    if any(r.returncode != 0 for r in runs):
        print("a run failed: no estimate from failed runs")
        return 1

    n, p = args.fleet, args.parallel
    rss = max(r.peak_rss_mib for r in runs)
    fds = max(r.peak_fds for r in runs)
    threads = max(r.peak_threads for r in runs)
    kinds = sorted({k for r in runs for k in r.peak_open})
    peak_open = {k: max(r.peak_open[k] for r in runs) for k in kinds}
    opened_kinds = sorted({k for r in runs for k in r.opened})
    opened = {k: max(r.opened.get(k, 0) for r in runs) for k in opened_kinds}
    run_seconds = statistics.median(r.seconds for r in runs)
    rounds = math.ceil(n / p)
    wall = (rounds + args.waves) * run_seconds
    print()
    print(f"Paper estimate: {n} services at parallelism {p} from one control machine")
    print(f"- memory: {p} migrate children x {rss:.0f} MiB peak RSS = {p * rss / 1024:.1f} GiB (+ the fleet process)")
    print(f"- file descriptors: {p} x {fds} peak = {p * fds} (ulimit -n of the fleet process tree)")
    print(f"- threads: {p} x {threads} peak = {p * threads}")
    cpu = statistics.median(r.cpu_seconds for r in runs)
    print(f"- CPU: median {cpu:.1f}s per run over {run_seconds:.1f}s: {p} at once keep {p * cpu / run_seconds:.1f} "
          "core(s) busy")  # fmt: skip
    print("- connections open at once: " + ", ".join(f"{k} {p} x {peak_open[k]} = {p * peak_open[k]}" for k in kinds)
          + f"; total {p * sum(peak_open.values())}")  # fmt: skip
    print("- connections opened per service run (one direction, the most of any run): "
          + ", ".join(f"{k} {opened[k]}" for k in opened_kinds)
          + f"; total {sum(opened.values())}, x {n} services = {n * sum(opened.values())}")  # fmt: skip
    shape = "demo, 2 members" if args.demo else "svc1, 1 member"
    print(f"- wall time: median service run {run_seconds:.1f}s (execute or rollback, {shape} per site) x "
          f"({rounds} rounds + {args.waves} wave tails) = {wall / 60:.1f} min, without human pauses "
          "between waves")  # fmt: skip
    if args.plan_seconds is not None:
        print(f"- planning {n} services (bench.fleet_plan, pure planner): {args.plan_seconds:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
