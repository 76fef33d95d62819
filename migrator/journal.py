"""The migration journal: append-only JSON lines, fsync'd after every record.

It is both the checkpoint that `--resume` starts from and the audit trail of what the tool did,
so a record is on disk before the tool acts on the next step. Secrets are masked on the way in:
a journal may be mailed to a change board.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Iterable

from migrator.secrets import mask_values


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def write_private(path: Path, text: str) -> None:
    """Plans, reports and journals are readable by their owner only (0600), also when the file
    was already there with a looser mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def state_dir_for(base: Path, service: str) -> Path:
    """The service's own directory under --state-dir, created 0700."""
    path = base / service
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


# Record fields written from the tool's own identifiers (ids, names, the state-dir path).
IDENTIFIERS = frozenset({"ts", "event", "migration", "step", "kind", "phase", "plan_file",
                         "source", "target", "reverse_of", "reverse_to", "until", "outcome",
                         "resume"})


class Journal:
    FILE = "journal.jsonl"

    def __init__(self, directory: Path, secrets: Iterable[str] = ()):
        self.path = directory / self.FILE
        self._secrets = [s for s in secrets if s]

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"ts": utc_now(), "event": event, **fields}
        # The fields resume reads back are the tool's own identifiers and never hold a secret;
        # masking them would let a password that equals, say, a step id or a path change what a
        # resume does. Everything else is masked value by value, after which it is still JSON.
        masked = {key: value if key in IDENTIFIERS else mask_values(value, self._secrets)
                  for key, value in json.loads(json.dumps(record, default=str)).items()}
        line = json.dumps(masked, sort_keys=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return json.loads(line)

    def records(self) -> list[dict[str, Any]]:
        """Every complete record; a torn last line (crash mid-write) is ignored."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    def current_run(self) -> list[dict[str, Any]]:
        """The records of the latest run, from its `run-started` on."""
        records = self.records()
        starts = [i for i, r in enumerate(records) if r["event"] == "run-started"]
        return records[starts[-1]:] if starts else []
