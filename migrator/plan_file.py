"""The plan file a run keeps in its state directory, with the inventory's secrets masked.

`--resume` and `rollback` run the steps of that file again, so only its descriptive parts (the
dynamic configs copied from the sites, the diffs, the findings, the topology) are masked, value
by value: a password that happens to equal a word of a step's arguments (a user name, a path)
must not turn the step into something else on resume.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from migrator.plan import Plan
from migrator.secrets import mask_values

DESCRIPTIVE = ("config_before", "config_after", "config_diff", "findings", "topology_before",
               "topology_after", "warnings")


def private_plan_json(plan: Plan, secrets: Iterable[str]) -> str:
    values = [s for s in secrets if s]
    data = plan.model_dump(mode="json")
    for key in DESCRIPTIVE:
        if key in data:
            data[key] = mask_values(data[key], values)
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
