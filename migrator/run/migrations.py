"""What a service's journal says about its migrations (`latest_migration`), read without the
engine: the fleet process reads it for every service it drives, and must not pay for importing the
engine, its steps and adapters (about half a second of CPU before the first child starts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.model.plan import Plan
from migrator.model.plan_file import load_stored_plan
from migrator.run.journal import Journal


@dataclass
class Migration:
    """What the journal says about one migration (one plan, possibly several runs)."""

    id: str
    plan_file: Path
    target: str
    source: str
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # step id -> facts
    applied: dict[str, dict[str, Any]] = field(default_factory=dict)  # change sent, gate not passed
    started: set[str] = field(default_factory=set)
    # Promotion PATCHes attempted (maybe landed); one every member refused is taken off again.
    attempted: set[str] = field(default_factory=set)
    finished: str | None = None  # outcome, once the migration ended
    reverse_of: str | None = None  # set on the switchover back that `migrate rollback` runs
    until: str | None = None  # the last phase this migration runs (`execute --until`)
    fingerprint: str | None = None  # of the plan it started with (None in older journals)
    plan_sha256: str | None = None  # of the stored plan file's bytes (None in older journals)

    def stored_plan(self) -> Plan:
        """The plan file this migration started with, refused when it no longer matches."""
        return load_stored_plan(self.plan_file, self.fingerprint, self.plan_sha256)


def latest_migration(journal: Journal) -> Migration | None:
    migration: Migration | None = None
    for record in journal.records():
        event = record["event"]
        if event == "migration-started":
            migration = Migration(
                record["migration"],
                # A relative path (a journal from before state_dir.py) means the same file beside
                # the journal, whatever directory this command runs in.
                journal.path.parent / Path(record["plan_file"]).name
                if not Path(record["plan_file"]).is_absolute()
                else Path(record["plan_file"]),
                record["target"],
                record["source"],
                reverse_of=record.get("reverse_of"),
                until=record.get("until"),
                fingerprint=record.get("fingerprint"),
                plan_sha256=record.get("plan_sha256"),
            )
        elif migration is None or record.get("migration") != migration.id:
            continue
        elif event == "step-started":
            migration.started.add(record["step"])
        elif event == "step-applied":
            migration.applied[record["step"]] = record.get("facts", {})
        elif event == "step-done":
            migration.done[record["step"]] = record.get("facts", {})
        elif event == "promotion-attempted":
            migration.attempted.add(record["step"])
        elif event == "promotion-refused":
            migration.attempted.discard(record["step"])
        elif event == "migration-finished":
            migration.finished = record["outcome"]
    return migration
