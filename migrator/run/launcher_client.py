"""The fleet process's side of the child launcher (migrator/launcher.py): start it, ask it
for children, learn their pids and exit codes.

The launcher is an optimisation, never a dependency: when it cannot start, does not get ready in
time, or dies, `spawn` raises LauncherError and the fleet starts its children as plain processes.
If it dies after a request was sent and before it answered, a child may have been forked without
the fleet knowing its pid; the plain child started then for the same service meets that one's
lock and exits 5 having changed nothing, and the fleet reports it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from migrator.errors import MigratorError

LAUNCHER = [sys.executable, "-m", "migrator.launcher"]
# The launcher imports the whole tool before it is ready: about 0.6 s of CPU, longer on a busy
# machine. Past this, the fleet stops waiting for it.
READY_SECONDS = 30.0
# A fork answers at once; a launcher silent this long is treated as gone.
ANSWER_SECONDS = 10.0


class LauncherError(MigratorError):
    """The launcher cannot start this child; the caller starts it as a plain process."""


class Launcher:
    """One launcher process for one fleet run. Thread-safe: the fleet's scheduler threads spawn
    and wait concurrently; one reader thread takes every answer."""

    def __init__(self, proc: subprocess.Popen[bytes]):
        self._proc = proc
        self._cond = threading.Condition()
        self._ready = False
        self._gone: str | None = None  # why it can no longer serve
        self._answers: dict[int, dict[str, Any]] = {}
        self._exits: dict[int, int] = {}
        self._next_id = 0
        self._reader = threading.Thread(target=self._read, name="launcher-reader", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, log: Path) -> Launcher:
        """Start it (its own stderr, a Python trace if it ever crashes, goes to `log`)."""
        with open(log, "ab") as err:
            log.chmod(0o600)
            proc = subprocess.Popen(
                LAUNCHER,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,  # a Ctrl-C at the terminal is the fleet process's alone
                close_fds=True,  # neither it nor its children may hold the fleet lock's descriptor
            )
        return cls(proc)

    def _read(self) -> None:
        stdout: IO[bytes] | None = self._proc.stdout
        assert stdout is not None
        for line in stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                if message.get("ready") is True:
                    self._ready = True
                elif "error" in message and "refused" not in message:
                    self._gone = f"launcher: {message['error']}"
                elif isinstance(message.get("started"), int) or isinstance(message.get("refused"), int):
                    self._answers[message.get("started", message.get("refused"))] = message
                elif isinstance(message.get("exited"), int) and isinstance(message.get("code"), int):
                    self._exits[message["exited"]] = message["code"]
                self._cond.notify_all()
        with self._cond:
            self._gone = self._gone or f"launcher ended (exit {self._proc.wait()})"
            self._cond.notify_all()

    def spawn(self, args: list[str], out: Path, log: Path) -> tuple[int, int | None]:
        """Fork a child running `migrate <args>`; returns its pid and start time (clock ticks)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self._gone is not None, READY_SECONDS):
                raise LauncherError(f"launcher not ready after {READY_SECONDS:.0f}s")
            if self._gone is not None:
                raise LauncherError(self._gone)
            self._next_id += 1
            number = self._next_id
            request = {"id": number, "args": args, "out": str(out), "log": str(log)}
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write((json.dumps(request) + "\n").encode())
                self._proc.stdin.flush()
            except OSError as exc:
                self._gone = f"launcher unreachable: {exc}"
                raise LauncherError(self._gone) from None
            if not self._cond.wait_for(lambda: number in self._answers or self._gone is not None, ANSWER_SECONDS):
                self._gone = f"launcher did not answer within {ANSWER_SECONDS:.0f}s"
            answer = self._answers.pop(number, None)
            if answer is None:
                raise LauncherError(str(self._gone))
        if "refused" in answer:
            raise LauncherError(f"launcher: {answer.get('error')}")
        ticks = answer.get("start_ticks")
        return int(answer["pid"]), ticks if isinstance(ticks, int) else None

    def wait_exit(self, pid: int, timeout: float) -> int | None:
        """The child's exit code once the launcher has reaped it; None if not within `timeout`
        (or the launcher is gone: the caller then watches the pid itself)."""
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits or self._gone is not None, timeout)
            return self._exits.get(pid)

    def exited(self, pid: int) -> bool:
        with self._cond:
            return pid in self._exits

    @property
    def serving(self) -> bool:
        with self._cond:
            return self._gone is None

    def close(self) -> None:
        """End the launcher (its children, if any still run, live on: they are not its to end)."""
        try:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=5)
