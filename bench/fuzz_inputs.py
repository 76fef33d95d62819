"""Fuzz the inventory and the command line: 1,000 Hypothesis examples per property (issue, case 10).

Usage: .venv/bin/python -m bench.fuzz_inputs [--examples 1000] [--seed N] [--only NAME] [--no-shrink]

The properties are the ones tests/unit/test_fuzz_inputs.py runs 200 times each (bodies and
strategies in tests/helpers/fuzz_strategies.py): every bad inventory or command line exits 2 with one
line on stderr and no traceback. For each property it prints the examples run, the failures
grouped by what went wrong (with the first failing example of each group) and the time taken;
then, if anything failed, lets Hypothesis shrink to a minimal falsifying example. Exits 1 if any
property failed. No case reaches the network (see tests/helpers/fuzz_strategies.py); nothing needs the testbed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tests.helpers import fuzz_strategies as fz


@dataclass
class Property:
    name: str
    what: str
    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], None]
    examples: int | None = None  # None: --examples


@dataclass
class Outcome:
    examples: int = 0
    failures: int = 0
    # normalised failure description -> [count, first description, first failing example]
    groups: dict[str, list[Any]] = field(default_factory=dict)
    seconds: float = 0.0


def _settings(examples: int, phases: list[Phase]) -> settings:
    return settings(
        max_examples=examples, deadline=None, database=None, phases=phases,
        suppress_health_check=list(HealthCheck), report_multiple_bugs=True,
    )


def _seeded(test: Callable[..., None], seed: int | None) -> Callable[..., None]:
    return hypothesis_seed(seed)(test) if seed is not None else test


def run_all_examples(prop: Property, examples: int, seed: int | None) -> Outcome:
    """Every example, failing or not: counts and groups the failures."""
    outcome = Outcome()

    @_settings(examples, [Phase.generate])
    @given(prop.strategy)
    def collect(case: Any) -> None:
        outcome.examples += 1
        try:
            prop.check(case)
        except Exception as exc:  # noqa: BLE001 - counted, not raised: all examples must run
            outcome.failures += 1
            description = fz.describe_failure(exc)
            group = outcome.groups.setdefault(fz.failure_group(description), [0, description, case])
            group[0] += 1

    begin = time.perf_counter()
    _seeded(collect, seed)()
    outcome.seconds = time.perf_counter() - begin
    return outcome


def shrink(prop: Property, examples: int, seed: int | None) -> tuple[list[str], float]:
    """A normal Hypothesis run, to get minimal falsifying examples; one report for each."""
    last_failing: dict[str, Any] = {}  # Hypothesis replays each minimal example last

    @_settings(examples, [Phase.generate, Phase.shrink])
    @given(prop.strategy)
    def find(case: Any) -> None:
        try:
            prop.check(case)
        except Exception as exc:
            last_failing[fz.failure_group(fz.describe_failure(exc))] = case
            raise

    begin = time.perf_counter()
    try:
        _seeded(find, seed)()
    except Exception as exc:  # noqa: BLE001 - a failure (or several) is what we are after
        found = list(exc.exceptions) if isinstance(exc, ExceptionGroup) else [exc]
        reports = []
        for failure in found:
            description = fz.describe_failure(failure)
            case = last_failing.get(fz.failure_group(description))
            shown = fz.summarize(case) if case is not None else "(see Hypothesis' report)"
            reports.append(f"{description}\n  {shown}")
        return reports, time.perf_counter() - begin
    return ["not reproduced by a fresh search: see the first failing examples above"], (
        time.perf_counter() - begin
    )


PROPERTY_NAMES = ("inventory", "cli-inventory", "cli-argv", "console-entry")


def properties(workdir: Path, guard: fz.NetworkGuard, subprocess_examples: int) -> list[Property]:
    def in_a_process(argv: list[str]) -> tuple[int, str, str]:
        return fz.run_subprocess(argv, workdir)

    real_process_cases = st.one_of(
        fz.cli_inventory_cases().map(lambda drawn: ("inventory", drawn)),
        fz.argv_cases(workdir).filter(lambda c: c.inventory != "valid").map(lambda c: ("argv", c)),
    )

    def check_real_process(tagged: tuple[str, Any]) -> None:
        kind, case = tagged
        if kind == "inventory":
            fz.check_cli_inventory(case, workdir, guard, in_a_process)
        else:
            fz.check_argv(case, guard, in_a_process)

    found = [
        Property("inventory", "any inventory text -> Inventory or one-line InventoryError naming the file",
                 fz.all_inventories(), lambda case: fz.check_inventory(case, workdir, guard)),
        Property("cli-inventory", "invalid inventory through every command -> exit 2, one line",
                 fz.cli_inventory_cases(),
                 lambda drawn: fz.check_cli_inventory(drawn, workdir, guard, fz.run_in_process)),
        Property("cli-argv", "fuzzed command line -> exit 2, one line, no traceback",
                 fz.argv_cases(workdir), lambda case: fz.check_argv(case, guard, fz.run_in_process)),
        Property("console-entry", "the two CLI properties through `python -m migrator.cli`",
                 real_process_cases, check_real_process, examples=subprocess_examples),
    ]
    assert tuple(p.name for p in found) == PROPERTY_NAMES
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="examples per property")
    parser.add_argument("--subprocess-examples", type=int, default=20,
                        help="examples for the console-entry property (a process each)")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default: random)")
    parser.add_argument("--only", action="append", choices=PROPERTY_NAMES,
                        help="run only this property (repeatable)")
    parser.add_argument("--no-shrink", action="store_true", help="skip the shrinking run")
    args = parser.parse_args()

    failed = []
    with tempfile.TemporaryDirectory(prefix="migrator-fuzz-") as tmp, fz.fuzz_environment(), \
            fz.no_network() as guard:
        workdir = fz.prepare_workdir(Path(tmp))
        for prop in properties(workdir, guard, args.subprocess_examples):
            if args.only and prop.name not in args.only:
                continue
            examples = prop.examples or args.examples
            print(f"{prop.name}: {prop.what}", flush=True)
            outcome = run_all_examples(prop, examples, args.seed)
            status = "ok" if not outcome.failures else "FAILED"
            print(f"  {status}: {outcome.examples} examples, {outcome.failures} failures, "
                  f"{outcome.seconds:.1f}s", flush=True)
            for count, description, first in outcome.groups.values():
                example = fz.summarize(first).replace("\n", "\n        ")
                print(f"  - {count}x {description}\n      first failing example: {example}")
            if outcome.failures:
                failed.append(prop.name)
                if not args.no_shrink:
                    reports, seconds = shrink(prop, examples, args.seed)
                    print(f"  minimal falsifying example(s), shrunk in {seconds:.1f}s:")
                    for report in reports:
                        print("    " + report.replace("\n", "\n    "))
            print(flush=True)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        return 1
    print("all properties hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
