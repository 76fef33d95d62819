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
    "first. A wave starts once the one before it has finished (`fleet execute`, to come). Every service is "
    "in at most one wave; the services named in no wave form a last, implicit wave, in the order of `services`.",
    "FleetSpec.parallel": "How many services are observed (and, later, moved) at the same time, 1 to 64.",
    "FleetSpec.max_failures": "After this many failed services no new service starts; running ones finish "
    "(`fleet execute`, to come).",
    "FleetSpec.pause_between_waves": "Ask a human before each wave after the first (`--yes` skips the question; "
    "`fleet execute`, to come).",
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
    return INTRO + "\n".join(lines) + "\n" + STATUS_SECTION


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
