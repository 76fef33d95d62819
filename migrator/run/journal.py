"""The migration journal: append-only JSON lines, fsync'd after every record.

It is both the checkpoint that `--resume` starts from and the audit trail of what the tool did,
so a record is on disk before the tool acts on the next step. Secrets are masked on the way in:
a journal may be mailed to a change board.

Power cuts: a record is one `write` of its line and newline, retried until every byte is out,
then fsync'd; a new file's directory entry is fsync'd too. A crash can still tear the *last*
line: reading ignores it and the next append cuts it off first, so it never ends up between two
records. A bad line anywhere else is not a crash artefact but damage: reading stops with one line
naming the file and the line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from migrator.durable import fsync_directory, write_all
from migrator.errors import MigratorError
from migrator.model.secrets import mask_values

# How far back from the end an append looks for the start of a torn last line: far more than
# one record (a gate sample or a step's facts are a few KiB).
TAIL_BYTES = 1 << 20

log = logging.getLogger("migrator.journal")


class JournalCorrupt(MigratorError):
    """A journal line other than the last one is not a record: the state cannot be trusted."""

    exit_code = 2


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def state_dir_for(base: Path, service: str) -> Path:
    """The service's own directory under --state-dir, created 0700 (and fsync'd into its parent,
    so the journal's directory survives a power cut with the journal)."""
    path = base / service
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    for created in reversed(missing):  # each new directory's entry lives in its parent
        fsync_directory(created.parent)
    path.chmod(0o700)
    return path


# Record fields written from the tool's own identifiers (ids, names, the state-dir path).
IDENTIFIERS = frozenset(
    {
        "ts",
        "event",
        "migration",
        "step",
        "kind",
        "phase",
        "plan_file",
        "source",
        "target",
        "reverse_of",
        "reverse_to",
        "until",
        "outcome",
        "resume",
        "fingerprint",
        "plan_sha256",
    }
)


def _is_record(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


class Journal:
    FILE = "journal.jsonl"

    def __init__(self, directory: Path, secrets: Iterable[str] = ()):
        self.path = directory / self.FILE
        self._secrets = [s for s in secrets if s]
        # Steps that run at the same time (the engine's overlapping groups) append from several
        # threads: one record at a time, so a tail repair never cuts another thread's line.
        self._append_lock = threading.Lock()

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"ts": utc_now(), "event": event, **fields}
        # The fields resume reads back are the tool's own identifiers and never hold a secret;
        # masking them would let a password that equals, say, a step id or a path change what a
        # resume does. Everything else is masked value by value, after which it is still JSON.
        masked = {
            key: value if key in IDENTIFIERS else mask_values(value, self._secrets)
            for key, value in json.loads(json.dumps(record, default=str)).items()
        }
        line = json.dumps(masked, sort_keys=True)
        log.info("%s", line)  # -v and --log-file show the audit trail as it is written
        with self._append_lock:
            created = not self.path.exists()
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                prefix = b"" if created else self._repair_tail(fd)
                write_all(fd, prefix + (line + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_directory(self.path.parent)
        return json.loads(line)

    @staticmethod
    def _repair_tail(fd: int) -> bytes:
        """Before appending: cut off a torn last line (a crash mid-write), so that it does not end
        up between two records; returns a newline to write first when the last record lost only
        its newline."""
        size = os.fstat(fd).st_size
        if size == 0:
            return b""
        start = max(0, size - TAIL_BYTES)
        tail = os.pread(fd, size - start, start)
        body = tail[:-1] if tail.endswith(b"\n") else tail
        cut = body.rfind(b"\n") + 1  # 0: the tail holds a single line
        last = body[cut:]
        if _is_record(last):
            return b"" if tail.endswith(b"\n") else b"\n"
        if cut == 0 and start > 0:
            return b"\n"  # a line longer than TAIL_BYTES is no torn record: leave it for read to name
        os.ftruncate(fd, start + cut)
        return b""

    def records(self) -> list[dict[str, Any]]:
        """Every complete record; a torn last line (crash mid-write) is ignored, any other line
        that is not a JSON record stops with a JournalCorrupt naming the file and the line."""
        if not self.path.exists():
            return []
        try:
            lines = self.path.read_bytes().split(b"\n")
        except OSError as exc:
            raise JournalCorrupt(
                f"journal {self.path} cannot be read ({exc.strerror or exc}); "
                "fix its permissions or restore it, then run the command again"
            ) from None
        if lines and not lines[-1]:
            lines.pop()  # the newline after the last record
        out = []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"a JSON {type(record).__name__}, not a record")
            except ValueError as exc:
                if number == len(lines):
                    continue  # torn by a crash mid-write: the record was never complete
                raise JournalCorrupt(
                    f"journal {self.path} line {number} is not valid JSON: {str(exc)[:120]}; the file was "
                    "damaged after it was written: keep a copy, then restore it from a backup or remove "
                    "that line by hand (`migrate status` shows what the sites look like now)"
                ) from None
            out.append(record)
        return out

    def current_run(self) -> list[dict[str, Any]]:
        """The records of the latest run, from its `run-started` on."""
        records = self.records()
        starts = [i for i, r in enumerate(records) if r["event"] == "run-started"]
        return records[starts[-1] :] if starts else []
