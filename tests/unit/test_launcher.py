"""The fleet's child launcher (migrator/launcher.py) for real: a launcher process, children
forked from it running the real CLI. Each child must be what a plainly started `migrate` would
be: its own session, stdin /dev/null, its output on its files (0600), no other descriptor, and
its exit code reported."""

from __future__ import annotations

import os
import stat
import sys
import time
from pathlib import Path

import pytest
from migrator.run import launcher_client
from migrator.run.fleet_child import Child, ChildFiles, is_migrate_child
from migrator.run.launcher_client import Launcher, LauncherError
from migrator.run.process import pid_alive

# A child blocked on purpose: `execute -i FIFO` opens its inventory, which blocks until the test
# opens the FIFO for writing, so the child can be inspected while it runs.
BLOCKED_FOR = 20


@pytest.fixture
def launcher(tmp_path):
    started = Launcher.start(tmp_path / "launcher.log")
    yield started
    started.close()


def _files(tmp_path: Path, name: str) -> ChildFiles:
    return ChildFiles(tmp_path / f"{name}.json", tmp_path / f"{name}.log")


def _wait_exit(launcher: Launcher, pid: int) -> int:
    code = launcher.wait_exit(pid, 60)
    assert code is not None, f"child {pid} did not end"
    return code


def test_a_forked_child_runs_the_cli_and_its_exit_code_and_error_line_come_back(launcher, tmp_path):
    files = _files(tmp_path, "missing")
    pid, ticks = launcher.spawn(["execute", "-i", str(tmp_path / "nope.yml"), "--dc", "dc2", "--yes"],
                                files.out, files.log)  # fmt: skip
    assert ticks is not None
    assert _wait_exit(launcher, pid) == 2
    log = files.log.read_text()
    assert log.count("\n") == 1 and "nope.yml: file not found" in log, log
    assert stat.S_IMODE(files.out.stat().st_mode) == 0o600 and stat.S_IMODE(files.log.stat().st_mode) == 0o600
    assert not pid_alive(pid)  # reaped by the launcher: no zombie left


def test_a_child_has_its_own_session_only_its_three_descriptors_and_outlives_the_launcher(launcher, tmp_path):
    fifo = tmp_path / "inventory.yml"
    os.mkfifo(fifo)
    files = _files(tmp_path, "blocked")
    kept_open = open(tmp_path / "held-by-the-fleet", "w")  # like the fleet lock: must not leak
    try:
        child = Child.start(["execute", "-i", str(fifo), "--dc", "dc2", "--yes"], files, launcher)
        assert is_migrate_child(child.pid, str(fifo), child.start_ticks) and child.alive()
        _wait_blocked_on_the_fifo(child.pid)
        assert os.getsid(child.pid) == child.pid  # a session of its own: no terminal signal
        fds = {int(fd): os.readlink(f"/proc/{child.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{child.pid}/fd")}
        # 0-2 as set up, 3 the FIFO it is opening; nothing of the fleet process or the launcher.
        assert fds[0] == os.devnull and fds[1] == str(files.out) and fds[2] == str(files.log), fds
        assert set(fds) <= {0, 1, 2, 3} and str(tmp_path / "held-by-the-fleet") not in fds.values(), fds
        launcher.close()  # the fleet process ends: the launcher goes, its child does not
        assert child.alive()
        with open(fifo, "w") as writer:
            writer.write("not: [yaml\n")
        deadline = time.monotonic() + BLOCKED_FOR
        while child.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not child.alive()
        assert not is_migrate_child(child.pid, str(fifo), child.start_ticks)
        assert "YAML syntax error" in files.log.read_text()
    finally:
        kept_open.close()


def _wait_blocked_on_the_fifo(pid: int) -> None:
    """Until the child sleeps in the kernel's FIFO open (its set-up done): `wait_for_partner`."""
    deadline = time.monotonic() + BLOCKED_FOR
    while Path(f"/proc/{pid}/wchan").read_text() != "wait_for_partner":
        assert time.monotonic() < deadline, f"child {pid} never reached its inventory's open"
        time.sleep(0.02)


def test_several_children_at_once_each_get_their_own_pid_and_exit_code(launcher, tmp_path):
    started = []
    for n in range(3):
        files = _files(tmp_path, f"c{n}")
        started.append((launcher.spawn(["execute", "-i", str(tmp_path / f"none{n}.yml"), "--dc", "dc2"],
                                       files.out, files.log)[0], files))  # fmt: skip
    assert len({pid for pid, _ in started}) == 3
    for pid, files in started:
        assert _wait_exit(launcher, pid) == 2
        assert f"none{started.index((pid, files))}.yml" in files.log.read_text()


def test_child_wait_returns_as_soon_as_the_forked_child_ends_with_its_code(launcher, tmp_path):
    files = _files(tmp_path, "quick")
    child = Child.start(["execute", "-i", str(tmp_path / "nope.yml"), "--dc", "dc2", "--yes"], files, launcher)
    polls: list[bool] = []
    began = time.monotonic()
    child.wait(time.monotonic() + 60, polls.append)
    assert child.returncode == 2 and not child.alive()
    assert time.monotonic() - began < 30


def test_a_launcher_that_cannot_get_ready_is_refused_with_its_reason(tmp_path, monkeypatch):
    # A fake launcher: the real one only fails this way if the tool cannot import.
    fake = "import sys; print('{\"error\": \"preload failed: ImportError: boom\"}'); sys.exit(1)"
    monkeypatch.setattr(launcher_client, "LAUNCHER", [sys.executable, "-c", fake])
    broken = Launcher.start(tmp_path / "launcher.log")
    try:
        with pytest.raises(LauncherError, match="preload failed: ImportError: boom"):
            broken.spawn(["--help"], tmp_path / "o", tmp_path / "l")
        assert not broken.serving
    finally:
        broken.close()
    assert not (tmp_path / "o").exists()  # nothing was started
