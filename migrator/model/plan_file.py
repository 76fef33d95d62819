"""The plan file a run keeps in its state directory, with the inventory's secrets masked.

`--resume` and `rollback` run the steps of that file again, so only its descriptive parts (the
dynamic configs copied from the sites, the diffs, the findings, the topology) are masked, value
by value: a password that happens to equal a word of a step's arguments (a user name, a path)
must not turn the step into something else on resume.

The journal's `migration-started` record names the file, the plan's fingerprint and the hash of
the file's bytes; `load_stored_plan` refuses a file that no longer matches them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from migrator.durable import write_private
from migrator.errors import UsageError
from migrator.model.plan import Plan
from migrator.model.secrets import mask_values

DESCRIPTIVE = (
    "config_before",
    "config_after",
    "config_diff",
    "findings",
    "topology_before",
    "topology_after",
    "warnings",
)


def private_plan_json(plan: Plan, secrets: Iterable[str]) -> str:
    values = [s for s in secrets if s]
    data = plan.model_dump(mode="json")
    for key in DESCRIPTIVE:
        if key in data:
            data[key] = mask_values(data[key], values)
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def store_plan(path: Path, plan: Plan, secrets: Iterable[str]) -> str:
    """Write the run's plan file (masked, 0600, durable before the journal points at it) and
    return the hash of its bytes for the journal."""
    text = private_plan_json(plan, secrets)
    write_private(path, text)
    return plan_file_digest(text)


def plan_file_digest(text: str | bytes) -> str:
    """The hash of a stored plan file's exact bytes, kept in the journal next to the fingerprint.
    The fingerprint alone cannot check a stored file: it is computed over the unmasked plan, and
    the file has its secrets masked."""
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


def load_stored_plan(path: Path, fingerprint: str | None, digest: str | None) -> Plan:
    """The plan a migration started with, as `--resume` and `rollback` run it again: refused
    when the file is gone, unreadable, or not the one the journal's `migration-started` names
    (another plan's fingerprint, or its content changed since)."""
    redo = (
        "`migrate status` shows the sites; restore the file from a backup, or finish by hand (runbooks/switchover.md)"
    )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"the stored plan {path} cannot be read ({exc.strerror or exc}); {redo}") from None
    if digest is not None and plan_file_digest(data) != digest:
        raise UsageError(
            f"the stored plan {path} was changed after the migration started (its content no longer "
            f"matches the journal's record of it); {redo}"
        )
    try:
        plan = Plan.from_json(data)
    except ValueError as exc:
        raise UsageError(f"the stored plan {path} is not a plan file ({str(exc).splitlines()[0]}); {redo}") from None
    if fingerprint is not None and plan.fingerprint != fingerprint:
        raise UsageError(
            f"the stored plan {path} has fingerprint {plan.fingerprint[:12]}, but the migration started "
            f"with {fingerprint[:12]}; {redo}"
        )
    return plan
