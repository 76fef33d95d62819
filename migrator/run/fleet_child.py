"""One service's run inside a fleet run: an ordinary `migrate execute|rollback --format json` child
process, in its own session (a Ctrl-C at the terminal reaches only the fleet process; the child
always reaches its own end), its JSON document written to a file and its progress lines to a log
file in the fleet run's directory. Files, not pipes: a child outlives a killed fleet process, and
the resumed fleet process adopts it (by pid) and still reads its document at the end.

Every child has a deadline derived from its plan's gates (`deadline_seconds`); a child past it is
reported (`overran`), never killed: it may be inside its write-unavailability window, and each of
its own waits has a deadline that ends it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.model.inventory import Inventory
from migrator.model.plan import Plan
from migrator.run.journal import Journal
from migrator.run.launcher_client import Launcher
from migrator.run.process import pid_alive, process_start_ticks, same_process

__all__ = [
    "Child",
    "ChildFiles",
    "child_files",
    "deadline_seconds",
    "is_migrate_child",
    "pid_alive",
    "read_document",
    "ProgressTail",
]

MIGRATE = [sys.executable, "-m", "migrator.cli"]
POLL_SECONDS = 0.5
# Beside the gates' own timeouts: each step's network calls, observation, the reports.
PER_STEP_TIMEOUTS = 3
MARGIN_SECONDS = 120


def deadline_seconds(plan: Plan | None, inventory: Inventory) -> float:
    """How long a service's run may take before it is reported as overrunning: every gate's
    timeout and every hook's, a few network timeouts per step, and a margin. Without a plan (it
    could not be read) the inventory's gates stand in."""
    connect = inventory.gates.connect_timeout_seconds
    if plan is None:
        gates = inventory.gates
        waits = (
            gates.cascade_timeout_seconds
            + gates.catchup_timeout_seconds
            + gates.promote_timeout_seconds
            + gates.repoint_timeout_seconds
        )
        return float(waits + 20 * PER_STEP_TIMEOUTS * connect + MARGIN_SECONDS)
    waits = sum(step.gate.timeout_seconds for step in plan.steps if step.gate is not None)
    hooks = sum(hook.timeout_seconds for hook in plan.hooks)
    return float(waits + hooks + len(plan.steps) * PER_STEP_TIMEOUTS * connect + MARGIN_SECONDS)


@dataclass(frozen=True)
class ChildFiles:
    out: Path  # its JSON document (stdout)
    log: Path  # its progress lines (stderr)


def child_files(run_dir: Path, service: str, command: str) -> ChildFiles:
    return ChildFiles(run_dir / f"{service}.{command}.json", run_dir / f"{service}.{command}.log")


class Child:
    """A child `migrate` process: one this process started (forked by the fleet's launcher, or
    started plainly when there is none), or one a killed fleet process started and this one
    adopted by pid (then its exit code comes from its JSON document)."""

    def __init__(
        self,
        pid: int,
        popen: subprocess.Popen[bytes] | None = None,
        launcher: Launcher | None = None,
        start_ticks: int | None = None,
    ):
        self.pid = pid
        self.start_ticks = start_ticks if start_ticks is not None else process_start_ticks(pid)
        self._popen = popen
        self._launcher = launcher
        self._returncode: int | None = None

    @classmethod
    def start(cls, args: list[str], files: ChildFiles, launcher: Launcher | None = None) -> Child:
        """Forked by `launcher` when one is given (LauncherError when it cannot: the caller may
        start it plainly), else a plain process."""
        if launcher is not None:
            pid, ticks = launcher.spawn(args, files.out, files.log)
            return cls(pid, launcher=launcher, start_ticks=ticks)
        with open(files.out, "wb") as out, open(files.log, "ab") as log:
            os.fchmod(out.fileno(), 0o600)
            os.fchmod(log.fileno(), 0o600)
            popen = subprocess.Popen(
                [*MIGRATE, *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=log,
                start_new_session=True,  # no terminal signal reaches it: it ends on its own terms
                close_fds=True,  # it must not hold the fleet lock's descriptor
            )
        return cls(popen.pid, popen)

    def alive(self) -> bool:
        if self._popen is not None:
            return self._popen.poll() is None
        if self._launcher is not None and self._launcher.exited(self.pid):
            return False
        if self.start_ticks is not None:
            return same_process(self.pid, self.start_ticks)
        return pid_alive(self.pid)

    @property
    def returncode(self) -> int | None:
        if self._popen is not None:
            return self._popen.returncode
        return self._returncode

    def wait(self, deadline: float, on_poll: Callable[[bool], None]) -> None:
        """Until it ends; `on_poll(overran)` every poll (overran: past the monotonic `deadline`).
        Each wait returns the moment the child ends (a sleep would add up to a poll to every run)."""
        while self.alive():
            on_poll(time.monotonic() > deadline)
            if self._popen is not None:
                try:
                    self._popen.wait(timeout=POLL_SECONDS)
                except subprocess.TimeoutExpired:
                    pass
            elif self._launcher is not None and self._launcher.serving:
                self._launcher.wait_exit(self.pid, POLL_SECONDS)
            else:
                time.sleep(POLL_SECONDS)
        if self._launcher is not None:
            # Ended, maybe not yet reaped: the launcher reaps and reports within REAP_SECONDS.
            self._returncode = self._launcher.wait_exit(self.pid, 2.0)


def is_migrate_child(pid: int, inventory_file: str, start_ticks: int | None = None) -> bool:
    """Whether `pid` is still the child the fleet journal recorded (a pid may have been reused
    by anything since): the same start time when the journal has it (a forked child's command
    line is the launcher's), else a `migrate` command line for this inventory."""
    if start_ticks is not None:
        return same_process(pid, start_ticks)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    words = [a.decode(errors="replace") for a in argv if a]
    return pid_alive(pid) and "migrator.cli" in words and inventory_file in words


def read_document(path: Path) -> dict[str, Any] | None:
    """The child's JSON document, or None when it wrote none (killed before its end)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and "exit_code" in document else None


class ProgressTail:
    """A running service's (phase, replay lag in bytes, migration id) for the live view: its
    latest migration that started at or after `migration_since`, from its own journal, read as
    the journal grows. Each read parses only the lines appended since the last one: a service's
    journal keeps every migration it ever ran (tens of kilobytes each, megabytes after a year),
    and the fleet reads every running service's twice a second. Read only; a line not yet
    complete waits for the next read; a replaced or truncated file is read again from its start."""

    def __init__(self, state_dir: Path, migration_since: str | None):
        self.path = Journal(state_dir).path
        self.since = migration_since
        self._file: tuple[int, int] | None = None  # (device, inode) of the file read so far
        self._offset = 0
        self._progress: tuple[str | None, int | None, str | None] = (None, None, None)

    def read(self) -> tuple[str | None, int | None, str | None]:
        try:
            with open(self.path, "rb") as journal:
                stat = os.fstat(journal.fileno())
                if (stat.st_dev, stat.st_ino) != self._file or stat.st_size < self._offset:
                    self._file, self._offset, self._progress = (stat.st_dev, stat.st_ino), 0, (None, None, None)
                journal.seek(self._offset)
                data = journal.read()
        except OSError:
            return self._progress  # not written yet, or unreadable for now: what was known
        complete = data.rfind(b"\n") + 1
        self._offset += complete
        phase, lag, migration = self._progress
        for line in data[:complete].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a damaged line: the service's own run reports it, the view skips it
            if not isinstance(record, dict):
                continue
            if record.get("event") == "migration-started" and (
                self.since is None or str(record.get("ts", "")) >= self.since
            ):
                migration, phase, lag = record.get("migration"), None, None
            elif migration is not None and record.get("migration") == migration:
                if record.get("event") == "step-started":
                    phase = record.get("phase")
                elif record.get("event") == "gate-sample" and isinstance(record.get("lag_bytes"), int):
                    lag = record["lag_bytes"]
        self._progress = (phase, lag, migration)
        return self._progress
