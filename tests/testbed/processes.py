"""Start and stop the testbed's long-running processes, and remember them across invocations.

`python -m tests.testbed up` and `down` run in different processes, so every pid goes into
state.json under the base directory; `down` reads it back. PostgreSQL refuses to run as root, so
etcd, Patroni (and through it PostgreSQL) run as the `postgres` OS user.
"""

from __future__ import annotations

import json
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

from .topology import OS_USER


def os_user_ids(user: str = OS_USER) -> tuple[int, int]:
    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def chown_to_os_user(path: Path) -> None:
    uid, gid = os_user_ids()
    os.chown(path, uid, gid)


def make_dir(path: Path, mode: int = 0o755, owned_by_os_user: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(mode)
    if owned_by_os_user:
        chown_to_os_user(path)
    return path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return _not_zombie(pid)


def _not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class ProcessRegistry:
    """name -> pid, persisted in a JSON file so another invocation can stop what this one started."""

    def __init__(self, state_file: Path):
        self.state_file = state_file

    def load(self) -> dict[str, int]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _save(self, pids: dict[str, int]) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(pids, indent=1, sort_keys=True))
        tmp.replace(self.state_file)

    def start(self, name: str, argv: list[str], log_file: Path, as_os_user: bool,
              env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        existing = self.load().get(name)
        if existing and pid_alive(existing):
            return existing
        log = open(log_file, "ab")
        kwargs: dict = {}
        if as_os_user:
            uid, gid = os_user_ids()
            kwargs.update(user=uid, group=gid, extra_groups=[])
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, cwd=cwd, start_new_session=True, close_fds=True, **kwargs,
        )
        log.close()
        pids = self.load()
        pids[name] = proc.pid
        self._save(pids)
        return proc.pid

    def alive(self, name: str) -> bool:
        pid = self.load().get(name)
        return bool(pid) and pid_alive(pid)

    def stop(self, names: list[str], timeout: float = 30.0, sig: int = signal.SIGTERM) -> None:
        """Signal the named processes together, wait for all, then SIGKILL their process groups."""
        pids = self.load()
        targets = {n: pids[n] for n in names if n in pids}
        if not targets:
            return
        for pid in targets.values():
            send_signal(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(pid_alive(p) for p in targets.values()):
            time.sleep(0.1)
        for pid in targets.values():
            if pid_alive(pid):
                _signal_group(pid, signal.SIGKILL)
        for pid in targets.values():
            _wait_gone(pid, 5.0)
        remaining = {n: p for n, p in self.load().items() if n not in targets}
        self._save(remaining)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send one signal and forget nothing: used by tests that provoke faults."""
        pid = self.load().get(name)
        if pid:
            send_signal(pid, sig)


def send_signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        send_signal(pid, sig)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
