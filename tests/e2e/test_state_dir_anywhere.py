"""A run started in one directory is resumed, and rolled back, from another: with no --state-dir
the state lives in the XDG state home, not in the working directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_execute import assert_primary_site, explain, journal_records
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = pytest.mark.testbed

REPO_ROOT = Path(__file__).resolve().parents[2]
MIGRATE = [sys.executable, "-m", "migrator.cli"]
KILL_AFTER = ("step-done", "slot-for-target-on-source")  # pre-seed: before anything is demoted


def _env(xdg: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    env["XDG_STATE_HOME"] = str(xdg)
    # The code under test from any working directory (not whichever checkout a venv points at).
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def _in(directory: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    directory.mkdir(exist_ok=True)
    return subprocess.run([*MIGRATE, *args], cwd=directory, env=env, capture_output=True, text=True, timeout=300)


def _killed_in(directory: Path, env: dict[str, str], state: Path, *args: str) -> str:
    """`migrate execute ARGS` started in `directory` and killed after KILL_AFTER; its migration id."""
    directory.mkdir(exist_ok=True)
    seen = len(journal_records(state))
    proc = subprocess.Popen([*MIGRATE, "execute", *args, "--yes"], cwd=directory, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        record = wait_until(lambda: next((r for r in journal_records(state)[seen:] if
                                          (r["event"], r.get("step")) == KILL_AFTER), None),
                            120, f"journal record {KILL_AFTER}", interval=0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    return record["migration"]


def _finished(state: Path, migration: str) -> list[str]:
    return [r["outcome"] for r in journal_records(state)
            if r["event"] == "migration-finished" and r["migration"] == migration]


def test_resume_and_rollback_from_another_directory_find_the_run(baseline, tmp_path):
    env, inventory = _env(tmp_path / "xdg"), str(baseline.inventory_path)
    state = tmp_path / "xdg" / "migrator"  # journal_records adds the service, demo

    # Seed-and-stream only (--until cascade), killed in pre-seed in a, resumed in b.
    first = _killed_in(tmp_path / "a", env, state, "-i", inventory, "--dc", "dc2", "--until", "cascade")
    status = _in(tmp_path / "b", env, "status", "-i", inventory)
    assert status.returncode == 0, explain(status)
    assert status.stdout.splitlines()[0] == (
        f"state: {state / 'demo'} (journal, plans, reports; from XDG_STATE_HOME)"), status.stdout[:500]
    out = _in(tmp_path / "b", env, "execute", "-i", inventory, "--dc", "dc2", "--resume", "--yes")
    assert out.returncode == 0, explain(out)
    assert _finished(state, first) == ["done"]
    assert_primary_site(baseline, SITE_BY_NAME["dc1"])

    # A whole move, killed in pre-seed in a, rolled back in c.
    second = _killed_in(tmp_path / "a", env, state, "-i", inventory, "--dc", "dc2")
    assert second != first
    out = _in(tmp_path / "c", env, "rollback", "-i", inventory, "--yes")
    assert out.returncode == 0, explain(out)
    assert "rolled back" in out.stdout and "dc1 is primary" in out.stdout, explain(out)
    assert _finished(state, second) == ["rolled-back"]
    assert_primary_site(baseline, SITE_BY_NAME["dc1"])

    # Nothing of the runs in the directories they ran in.
    for directory in ("a", "b", "c"):
        assert list((tmp_path / directory).iterdir()) == [], directory
