"""The fleet file's key reference (docs/fleet.md) and JSON Schema, generated from FleetSpec.

`python -m migrator.model.fleet_reference` rewrites docs/fleet.md; a unit test regenerates it and
fails when the committed file differs or a key has no meaning here. `migrate fleet schema` prints
`json_schema_text()`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from migrator.model.fleet import FleetSpec
from migrator.model.reference import _default, _standard_bounds, _type_name

MEANINGS: dict[str, str] = {
    "FleetSpec.services": "Inventory files of the services, as paths or globs (`inventories/*.yml`) relative to "
    "this file's directory. A glob that matches nothing, the same inventory twice, or two inventories with "
    "the same `service:` name are refused.",
    "FleetSpec.waves": "Ordered groups of service names (each inventory's `service:`), e.g. the small services "
    "first. A wave starts once every service of the one before it has ended (`fleet execute`). Every service is "
    "in at most one wave; the services named in no wave form a last, implicit wave, in the order of `services`.",
    "FleetSpec.parallel": "How many services are observed (`fleet plan`) or moved (`fleet execute`, `fleet "
    "rollback`) at the same time, 1 to 64; `--parallel N` overrides it for one run.",
    "FleetSpec.max_failures": "After this many failed services (blocked at start, failed, rolled back or stopped "
    "unsafe) no new service starts, in this wave or a later one; running ones finish. 0 counts as 1: the first "
    "failure stops new starts.",
    "FleetSpec.pause_between_waves": "`fleet execute` asks on the terminal before each wave after the first "
    "(no: no new service starts); `--yes` skips the question; without a terminal and without `--yes` the run "
    "is refused up front.",
}

INTRO = """\
# Fleet file reference

<!-- Generated from migrator/model/fleet.py by `python -m migrator.model.fleet_reference`;
     tests/unit/test_fleet.py fails when this file is out of date. -->

A fleet file names the services `migrate fleet` works on: each service is an ordinary inventory
(docs/inventory.md), moved by an ordinary single-service run with its own lock, journal, gates
and undo. Unknown keys are refused; every problem is reported on its own line with the file, the
YAML path and the line, and an inventory's problems name the inventory file.

```yaml
services:
  - inventories/orders.yml
  - inventories/small-*.yml
waves:
  - [small-a, small-b]   # first: the small services
  - [orders]
parallel: 2
max_failures: 1
pause_between_waves: true
```

Services named in no wave form a last, implicit wave (in the order of `services`); without
`waves` every service is in one wave. `migrate fleet plan --fleet F --dc NAME` observes every
service and prints the fleet plan (runbooks/fleet.md); every inventory must have the site NAME.
`migrate fleet schema` prints the JSON Schema, for editors.

"""

RUNNING = """
## Moving a fleet: `fleet execute`, `--resume`, `fleet rollback`

```
migrate fleet execute --fleet F --dc dc2 [--plan FLEET_PLAN] [--parallel N] [--yes] [--skip-blocked]
                      [--resume] [--state-dir DIR] [--format text|json]
migrate fleet rollback --fleet F [--yes] [--parallel N] [--service NAME ...] [--state-dir DIR] [--format text|json]
```

Each service is moved by an ordinary child `migrate execute -i INV --dc DC --yes --format json`
(`migrate rollback` for `fleet rollback`) in its own session, with its own lock, journal, gates
and undo (runbooks/fleet.md). The fleet keeps its own state in `<state dir>/fleet-<fleet file
name>/`: `journal.jsonl` (the fleet journal: run started, each service started with its pid and
wave, finished with its result, run finished), `lock` (two runs of one fleet: exit 5, naming the
holder's pid), a directory per run with each child's JSON document and progress log and the
per-service plan files of `--plan`, and the reports `report-<run>.md` (with the Gantt
`report-<run>.svg` embedded) and `report-<run>.json`.

**Exit code**: the worst of the services', in this order: **4** (a service stopped unsafe) >
**3** (a service's gate timed out and its move was undone: back where it started) > **6** (a
service's reviewed plan was stale) > **5** (a service's own lock was busy) > **2** (a service
refused its input) > **1** (a service failed with nothing unsafe left, was blocked at start, or
was never started: the failure budget, a Ctrl-C or a declined wave stopped new starts) > **0**.
Before any service starts, the fleet command itself exits 2 on bad input (the fleet file, an
inventory, `--dc`, an unreadable or mismatched `--plan`, no terminal to confirm on without
`--yes`, an unfinished fleet run without `--resume`) and 5 when another run of the fleet holds its
lock.

**`--format json`** prints one document on stdout (progress lines stay on stderr), the same as
`report-<run>.json`: `schema` (1), `kind` (`fleet-run`), `command` (`execute` or `rollback`), `run`,
`fleet`, `target` (null for a rollback), `started`, `finished`, `parallel`, `max_failures`,
`fingerprint` (the reviewed fleet plan's, or null), `exit_code`, `stopped_early` (why no new
service started, or null), `totals` (`services`, `moved`, `no_op`, `skipped`, `not_started`,
`failed`, `unsafe`, `back_where_started`, `running`, `overran`, `wall_seconds`,
`longest_gap_seconds`, `median_gap_seconds`), `services` (one object per service in wave order:
`service`, `wave`, `status` (`moved`, `no-op`, `skipped`, `not-started`, `blocked`, `failed`,
`rolled-back`, `unsafe`; in a rollback `moved` means moved back), `exit_code`, `message`,
`started`, `finished`, `duration_seconds`, `write_unavailable_seconds`, `migration` (its own
journal's id), `token` and `timelines` (as in its own run document, docs/output.md),
`new_primary`, `report_file` (its own run report), `log_file` (its child's progress lines),
`overran` (ran past the deadline its plan's gates give it; reported, never killed), `resumed`),
`report_file`, `gantt_file`, `journal_file`.
"""


# After the key table: the fleet commands that are not about the file's keys.
STATUS_SECTION = """
## `migrate fleet status`

```
migrate fleet status --fleet F [--json | --format json] [--watch]
```

Observes both sites of every service (Patroni REST, etcd and PostgreSQL of every member, as
`migrate status` does; no SSH), at most `parallel` services at a time, each within its own
deadline (12 network timeouts of its inventory), and prints one row per service in wave order:
each site's role (`primary`, `standby cluster`, `down`, or what is odd: `standby cluster,
WRITABLE`, `primary cluster, not writable`), the writable leader, its timeline, how far the
furthest standby is behind it, the verdict and its first reason. Changes nothing.

Verdicts, and the exit code (the worst service decides):

- `healthy`: one writable member, the other site a standby cluster, every member answering and
  streaming. Exit 0 when every service is healthy.
- `DEGRADED` (exit 1): observed, but no writable member, two primary clusters, a site's etcd
  down, a site paused, its dynamic config unreadable, a member silent, or a standby not streaming.
- `UNOBSERVED` (exit 1): no member of the service answered (the row names one and its host), its
  observation failed (the row says what did not answer), or it ran past its deadline.
- `SPLIT BRAIN` (exit 4, in red, whatever the other services are): more than one writable member
  in the service, so two sites take writes; a line under the table names them.

A service that cannot be observed is a row, never the end of the table. `--json` prints one
document (docs/output.md, `kind: "fleet-status"`): a `kind: "status"` document per service, its
verdict and reasons, and the totals. `--watch` refreshes every 2 s until Ctrl-C (exit 130); with
`--json`, one compact document per line. What to do with each verdict: runbooks/fleet.md,
"Reading fleet status".
"""


def markdown_reference() -> str:
    lines = ["## (top level)", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for name, field in FleetSpec.model_fields.items():
        meaning = MEANINGS.get(f"FleetSpec.{name}", "")
        lines.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {meaning} |")
    return INTRO + "\n".join(lines) + "\n" + RUNNING + STATUS_SECTION


def missing_meanings() -> list[str]:
    return [f"FleetSpec.{name}" for name in FleetSpec.model_fields if f"FleetSpec.{name}" not in MEANINGS]


def json_schema() -> dict[str, Any]:
    schema = FleetSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "migrator fleet"
    schema.pop("description", None)
    for key, prop in schema.get("properties", {}).items():
        if meaning := MEANINGS.get(f"FleetSpec.{key}"):
            prop["description"] = meaning
        prop.pop("title", None)
        _standard_bounds(prop)
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "fleet.md"


def main() -> int:
    DOC_PATH.write_text(markdown_reference(), encoding="utf-8")
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
