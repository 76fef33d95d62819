"""The pure fleet planner at scale: `plan_fleet` over N cloned services (default 500).

Snapshots are recorded from the testbed's services (`--record K`: svc1..svcK observed exactly as
`migrate fleet plan` observes them, REST + etcd + PostgreSQL + SSH, then written to
`--snapshots DIR` as <service>.json beside <service>.yml), or read back from such a directory
(`--snapshots DIR`), or, with neither, the committed baseline snapshot of demo
(tests/unit/fixtures/state/baseline.json with examples/testbed.yml). They are cloned into N
services with distinct names, scopes and hosts (tests/helpers/fleet_clones.py), written as N
inventory files and a fleet file, and planned with a stand-in observation that returns the
recorded snapshots: what remains is the fleet file and inventory loading, the checks, the planner,
and the JSON fleet plan. Goal (issue 13): planning 500 services under 10 s.

Printed, never asserted: wall time (and CPU time: on a shared machine the wall time also
measures the neighbours) of loading the fleet (N inventories), of planning, of rendering
the JSON fleet plan; the planning cost per service; peak RSS of this process. `--profile` prints
the 25 most expensive functions of the planning (cProfile, cumulative).

Where the time went (cProfile of check_outcome per service): the round-trip YAML parse of the
playbook, once per service, was about 3/4 of it (88 ms of CPU per service); the playbook is now
parsed once per text and process (model/playbook.parse_playbook), 17-19 ms per service, same
plans and fleet fingerprint. Then about half of that was the YAML dumps of the four config diffs
of a plan (pure-Python ruamel, 4 ms a dump), now written directly for plain configs
(planning/yaml_block.py, ruamel for the rest, the same text), and loading an inventory cost
another 10 ms (round-trip YAML), now about 1 ms through model/simple_yaml.py (the round trip only
for a file with a problem, for its line numbers): same plans, same fleet fingerprint, CPU for
load + plan + render from about 14-15 s to 6-7 s for 500. What remains is mostly the steps'
Jinja expressions and templates (compiled once, rendered per service) and pydantic.

Usage: .venv/bin/python -m bench.fleet_plan [--services 500] [--parallel 20]
           [--record 3 --snapshots DIR | --snapshots DIR] [--profile]
(`--record` needs MIGRATOR_TESTBED_NET / MIGRATOR_TESTBED_DIR naming a testbed; it is built or
repaired as needed and left running.)
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

from migrator.model.fleet import load_fleet
from migrator.render.fleet_report import render
from migrator.run.fleet_plan import plan_fleet
from tests.helpers.fleet_clones import Recorded, load_recorded, no_seed_facts, recorded_observer, write_clones
from tests.helpers.snapshots import EXAMPLE_INVENTORY, load_baseline


def record(count: int, directory: Path) -> list[Recorded]:
    """Observe svc1..svc<count> of the testbed as `fleet plan` does and keep each snapshot."""
    from migrator.model.inventory import load_inventory
    from migrator.observe.observer import observe
    from tests.testbed import Testbed
    from tests.testbed.services import extra_services, inventory_file

    testbed = Testbed()
    if testbed.baseline_problems():
        print(f"testbed up in {testbed.up():.1f}s", flush=True)
    testbed.up_services(count)
    directory.mkdir(parents=True, exist_ok=True)
    found = []
    for service in extra_services(count):
        source = inventory_file(testbed.base, service)
        state = observe(load_inventory(source))
        (directory / f"{service.name}.yml").write_text(source.read_text())
        (directory / f"{service.name}.json").write_text(state.model_dump_json(indent=1))
        found.append(Recorded(source.read_text(), state))
    print(f"recorded {count} snapshot(s) from the testbed into {directory}", flush=True)
    return found


def recorded_from(directory: Path) -> list[Recorded]:
    return [load_recorded(path.with_suffix(".yml"), path) for path in sorted(directory.glob("*.json"))]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--record", type=int, default=0, metavar="K", help="record svc1..svcK from the testbed")
    parser.add_argument("--snapshots", type=Path, metavar="DIR", help="where recorded snapshots are (or go)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    if args.record:
        if args.snapshots is None:
            parser.error("--record needs --snapshots DIR")
        recorded = record(args.record, args.snapshots)
    elif args.snapshots is not None:
        recorded = recorded_from(args.snapshots)
    else:
        recorded = [Recorded(EXAMPLE_INVENTORY.read_text(), load_baseline())]
    shapes = ", ".join(
        f"{r.state.service} ({'+'.join(str(len(s.members)) for s in r.state.sites.values())} members)" for r in recorded
    )
    print(f"recorded services: {shapes}; cloned into {args.services} at parallel {args.parallel}", flush=True)

    rss_before = peak_rss_mib()
    with tempfile.TemporaryDirectory(prefix="fleet-plan-bench-") as work:
        fleet_file, states = write_clones(recorded, args.services, Path(work), args.parallel)
        begin, cpu = time.perf_counter(), time.process_time()
        fleet = load_fleet(fleet_file)
        loaded, loaded_cpu = time.perf_counter() - begin, time.process_time() - cpu

        profiler = cProfile.Profile() if args.profile else None
        begin, cpu = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        result = plan_fleet(fleet, "dc2", observe_state=recorded_observer(states), observe_seed_facts=no_seed_facts)
        if profiler:
            profiler.disable()
        planned, planned_cpu = time.perf_counter() - begin, time.process_time() - cpu

        begin, cpu = time.perf_counter(), time.process_time()
        document = render(result, "json")
        rendered, rendered_cpu = time.perf_counter() - begin, time.process_time() - cpu

    verdicts = result.totals
    print(f"load fleet file + {args.services} inventories: {loaded:.2f}s ({loaded / args.services * 1000:.1f} ms each); "
          f"CPU {loaded_cpu:.2f}s")  # fmt: skip
    print(f"plan_fleet, {args.services} services: {planned:.2f}s ({planned / args.services * 1000:.1f} ms per "
          f"service; goal: under 10 s for 500){' [under cProfile: slower]' if profiler else ''}; CPU "
          f"{planned_cpu:.2f}s ({planned_cpu / args.services * 1000:.1f} ms per service)")  # fmt: skip
    print(f"render the JSON fleet plan: {rendered:.2f}s, {len(document) / 1024 / 1024:.1f} MiB; CPU {rendered_cpu:.2f}s")
    print(f"total (load + plan + render): {loaded + planned + rendered:.2f}s; CPU "
          f"{loaded_cpu + planned_cpu + rendered_cpu:.2f}s")  # fmt: skip
    print(f"verdicts: {verdicts['executable']} executable, {verdicts['blocked']} blocked; fleet fingerprint "
          f"{result.fingerprint[:12]}")  # fmt: skip
    print(f"peak RSS of this process: {peak_rss_mib():.0f} MiB (before cloning: {rss_before:.0f} MiB)")
    if profiler:
        pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)
    return 0 if verdicts["blocked"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
