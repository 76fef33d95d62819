"""What moving several services at once costs, on the testbed's extra services (one member per
site, all sharing each site's etcd: tests/testbed/services.py).

In one run, each service under its own write ledger (100 commits/s):
- alone: `migrate execute --dc dc2` of svc1 only, then its `migrate rollback`;
- at once: K `migrate execute --dc dc2` started together (svc1..svcK, one process each, each with
  its own inventory and state directory), then K rollbacks together;
- one after another (parallelism 1, skip with --no-sequential): the same K moves in turn;
- the fleet command: one `migrate fleet execute --parallel K` over the same K services (each
  moved by its own `migrate execute` child, forked by the fleet's launcher from one warm
  interpreter), then `migrate fleet rollback`; also printed: the fleet process's own peak RSS and
  its most open sockets at once (it keeps no connection to any site: the children do the work),
  the RSS and PSS of its whole process tree at its peak, and the CPU of the tree (of the K
  processes for "at once").
Printed: wall time of each, the ratio at-once / alone (goal for `migrate fleet`: <= 1.5x), the
peak RSS of each migrate process (ru_maxrss), the longest write gap per phase, the RSS and PSS
of one idle extra service (its Patroni and PostgreSQL processes), and commits lost (acknowledged,
then missing). Printed, never asserted.

Usage: .venv/bin/python -m bench.fleet [--services 4] [--no-sequential], with
MIGRATOR_TESTBED_NET / MIGRATOR_TESTBED_DIR naming the testbed (built or repaired as needed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tests.helpers.ledger import WriteLedger, assert_no_acknowledged_commit_lost
from tests.testbed import Testbed
from tests.testbed.services import ExtraService, ExtraServices, extra_services, inventory_file

MIGRATE = [sys.executable, "-m", "migrator.cli"]
RUN_TIMEOUT = 600.0


@dataclass
class Run:
    service: str
    returncode: int
    seconds: float
    peak_rss_mib: float
    cpu_seconds: float = 0.0  # user + system of the process and every descendant it reaped


def start(testbed: Testbed, service: ExtraService, state: Path, command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *MIGRATE,
            command[0],
            "-i",
            str(inventory_file(testbed.base, service)),
            *command[1:],
            "--yes",
            "--state-dir",
            str(state),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen, service: str, started: float) -> Run:
    """Reap the process with wait4 to read its own peak RSS (ru_maxrss, KiB on Linux)."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{service}: migrate ran longer than {RUN_TIMEOUT:.0f}s")
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        print(f"  {service}: exit {proc.returncode}: {stderr.strip()}", flush=True)
    cpu = usage.ru_utime + usage.ru_stime
    return Run(service, proc.returncode, time.monotonic() - started, usage.ru_maxrss / 1024, cpu)


def together(
    testbed: Testbed, services: list[ExtraService], state: Path, command: list[str]
) -> tuple[float, list[Run]]:
    started = time.monotonic()
    procs = [(s.name, start(testbed, s, state, command)) for s in services]
    runs = [finish(proc, name, started) for name, proc in procs]
    print(f"  at once {command[0]}: CPU of the {len(runs)} processes {sum(r.cpu_seconds for r in runs):.2f} s",
          flush=True)  # fmt: skip
    return time.monotonic() - started, runs


def in_turn(testbed: Testbed, services: list[ExtraService], state: Path, command: list[str]) -> tuple[float, list[Run]]:
    started = time.monotonic()
    runs = []
    for service in services:
        begun = time.monotonic()
        runs.append(finish(start(testbed, service, state, command), service.name, begun))
    return time.monotonic() - started, runs


def _sockets(pid: int) -> int:
    try:
        return sum(1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:"))
    except OSError:
        return 0


def _own_peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def fleet_run(
    testbed: Testbed, services: list[ExtraService], state: Path, command: list[str]
) -> tuple[float, list[Run]]:
    """One `migrate fleet <command>` over `services` at parallelism K; every service's Run is the
    fleet process's wall time (its peak RSS as wait4 reports it: the largest of it and its children)."""
    fleet_file = state / "bench-fleet.yml"
    fleet_file.write_text(
        "services:\n"
        + "".join(f"  - {inventory_file(testbed.base, s)}\n" for s in services)
        + f"parallel: {len(services)}\nmax_failures: {len(services)}\n"
    )
    extra = ["--dc", "dc2"] if command[0] == "execute" else []
    started = time.monotonic()
    proc = subprocess.Popen(
        [*MIGRATE, "fleet", command[0], "--fleet", str(fleet_file), *extra, "--yes", "--state-dir", str(state)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    peak_sockets, peak_rss, peak_tree = 0, 0.0, (0.0, 0.0)
    # Sampled until it exits, without reaping it (WNOWAIT): finish() reaps it with wait4.
    while time.monotonic() - started < RUN_TIMEOUT:
        peak_sockets = max(peak_sockets, _sockets(proc.pid))
        peak_rss = max(peak_rss, _own_peak_rss_mib(proc.pid))
        # The fleet process, its launcher and the children it forked: they share the imported
        # tool's pages, so the PSS sum is what the machine pays.
        peak_tree = max(peak_tree, tree_memory([proc.pid]), key=lambda m: m[1])
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        time.sleep(0.2)
    run = finish(proc, f"fleet {command[0]}", started)
    print(f"  fleet {command[0]}: the fleet process's own peak RSS {peak_rss:.0f} MiB (VmHWM), most sockets "
          f"open at once {peak_sockets}; its whole tree (launcher, children) at its PSS peak: RSS "
          f"{peak_tree[0]:.0f} MiB, PSS {peak_tree[1]:.0f} MiB; CPU of the tree {run.cpu_seconds:.2f} s; "
          f"exit {run.returncode}", flush=True)  # fmt: skip
    return time.monotonic() - started, [Run(s.name, run.returncode, run.seconds, run.peak_rss_mib) for s in services]


def _processes() -> dict[int, tuple[int, Path]]:
    """pid -> (parent pid, /proc entry) of every process now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = (int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]), entry)
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    return found


def tree_memory(roots: list[int]) -> tuple[float, float]:
    """(RSS, PSS) in MiB of the processes `roots` and all their descendants."""
    processes = _processes()
    wanted, frontier = set(), [r for r in roots if r in processes]
    while frontier:
        pid = frontier.pop()
        wanted.add(pid)
        frontier += [child for child, (parent, _) in processes.items() if parent == pid and child not in wanted]
    rss = pss = 0
    for pid in wanted:
        try:
            for line in (processes[pid][1] / "smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            continue  # gone meanwhile
    return rss / 1024, pss / 1024


def service_memory(testbed: Testbed, service: ExtraService) -> tuple[float, float]:
    """Its Patroni agents and PostgreSQL instances. Patroni starts the postmaster in a session of
    its own (reparented to init), so both are roots."""
    pids = testbed.registry.load()
    roots = [pids[f"patroni-{m.name}"] for m in service.members]
    roots += [pid for pid in (testbed.postmaster_pid(m) for m in service.members) if pid]
    return tree_memory(roots)


def max_gap(ledger: WriteLedger, since: datetime, until: datetime) -> float:
    return max((g.seconds for g in ledger.gaps() if since <= g.since <= until), default=0.0)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=4, help="K, the services moved at once (>= 2)")
    parser.add_argument("--no-sequential", action="store_true", help="skip the one-after-another phase")
    args = parser.parse_args()
    testbed = Testbed()
    print(f"testbed baseline: {testbed.restore_baseline()}", flush=True)
    began = time.monotonic()
    how = testbed.up_services(args.services)
    print(f"extra services in {time.monotonic() - began:.1f}s: {how}", flush=True)
    services = extra_services(args.services)
    memory = [service_memory(testbed, s) for s in services]
    print(
        f"one idle extra service (2 Patroni + 2 PostgreSQL): RSS {statistics.median(m[0] for m in memory):.0f} MiB,"
        f" PSS {statistics.median(m[1] for m in memory):.0f} MiB (median of {len(memory)})",
        flush=True,
    )

    state = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    table = f"bench_fleet_{int(time.time())}"
    ledgers = {s.name: WriteLedger(testbed, rate=100, table=table, members=s.members) for s in services}
    phases: list[tuple[str, float, list[Run], datetime, datetime]] = []

    def phase(
        name: str, run: Callable[..., tuple[float, list[Run]]], chosen: list[ExtraService], command: list[str]
    ) -> None:
        since = datetime.now(UTC)
        wall, runs = run(testbed, chosen, state, command)
        time.sleep(1.5)  # let the ledgers acknowledge on the new primaries before the gap is read
        phases.append((name, wall, runs, since, datetime.now(UTC)))
        each = ", ".join(f"{r.service} {r.seconds:.1f}s exit {r.returncode}" for r in runs)
        print(f"{name:34s} wall {wall:6.1f}s  runs {each}", flush=True)

    for ledger in ledgers.values():
        ledger.start()
    try:
        time.sleep(1)
        phase("alone: execute svc1", in_turn, services[:1], ["execute", "--dc", "dc2"])
        phase("alone: rollback svc1", in_turn, services[:1], ["rollback"])
        phase(f"at once: execute x{len(services)}", together, services, ["execute", "--dc", "dc2"])
        phase(f"at once: rollback x{len(services)}", together, services, ["rollback"])
        phase(f"fleet: execute x{len(services)}", fleet_run, services, ["execute"])
        phase(f"fleet: rollback x{len(services)}", fleet_run, services, ["rollback"])
        if not args.no_sequential:
            phase(f"in turn: execute x{len(services)}", in_turn, services, ["execute", "--dc", "dc2"])
            phase(f"in turn: rollback x{len(services)}", in_turn, services, ["rollback"])
        time.sleep(1)
    finally:
        for ledger in ledgers.values():
            ledger.stop()

    print()
    walls = {name: wall for name, wall, *_ in phases}
    for name, wall, runs, since, until in phases:
        gaps = [max_gap(ledgers[r.service], since, until) for r in runs]
        print(
            f"{name:34s} wall {wall:6.1f}s, peak RSS per migrate {max(r.peak_rss_mib for r in runs):.0f} MiB,"
            f" longest write gap {max(gaps):.2f}s, exits {sorted({r.returncode for r in runs})}"
        )
    k = len(services)
    for verb in ("execute", "rollback"):
        alone = walls[f"alone: {verb} svc1"]
        print(
            f"{verb}: {k} at once / one alone = {walls[f'at once: {verb} x{k}'] / alone:.2f}x (goal <= 1.5x); "
            f"`migrate fleet {verb}` of {k} / one alone = {walls[f'fleet: {verb} x{k}'] / alone:.2f}x"
            + (
                f"; {k} in turn / {k} at once = {walls[f'in turn: {verb} x{k}'] / walls[f'at once: {verb} x{k}']:.2f}x"
                if not args.no_sequential
                else ""
            )
        )
    lost = 0
    for service in services:
        try:
            assert_no_acknowledged_commit_lost(testbed, ledgers[service.name], members=service.members)
        except AssertionError as exc:
            lost += 1
            print(f"{service.name}: {exc}")
    acks = sum(len(ledger.acks) for ledger in ledgers.values())
    print(f"ledgers: {acks} commits acknowledged over {k} services, services with a lost commit: {lost}")
    problems = {s.name: ExtraServices(testbed).problems(s) for s in services}
    broken = {name: found for name, found in problems.items() if found}
    print(f"services back at their baseline: {not broken} {broken or ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
