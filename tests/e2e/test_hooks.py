"""Hooks on the real testbed: a before_demote hook that hangs is killed at its timeout with every
process it started and nothing is demoted; a hook's environment holds no inherited secret; a
demotion the tool undid is followed by on_undo, whose failure is only a warning."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path

from tests.helpers.faults import Run, inventory_with_gates, member_with_role, one_line, replay_frozen
from tests.e2e.test_execute import MIGRATE, assert_primary_site, explain, journal_records
from tests.testbed import SITE_BY_NAME

import pytest

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
SECRET = "SECRET_SHOULD_NOT_LEAK"


def with_hooks(testbed, path: Path, gates: dict[str, float], **hooks: str | float) -> str:
    """The testbed's inventory with a short lag window, `gates` and a `hooks` section (commands
    single-quoted: YAML leaves everything in them as written but a doubled quote)."""
    inventory = Path(inventory_with_gates(testbed, path, lag_window_seconds=1, **gates))
    lines = "".join(f"  {name}: '{str(value).replace(chr(39), chr(39) * 2)}'\n" if isinstance(value, str)
                    else f"  {name}: {value}\n" for name, value in hooks.items())
    inventory.write_text(inventory.read_text().replace("sites:\n", f"hooks:\n{lines}sites:\n", 1))
    return str(inventory)


def run_migrate(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, SECRET: "hunter2-leaks-if-you-see-this"}
    return subprocess.run([*MIGRATE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a zombie has finished; only its entry is left)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def processes_with(marker: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, timeout=10)
    return [pid for pid in map(int, out.stdout.split()) if alive(pid)]


def standby_sections(testbed) -> dict[str, object]:
    return {site.name: testbed.get_config(site).get("standby_cluster") for site in (DC1, DC2)}


def test_a_hanging_before_demote_hook_is_killed_with_its_children_and_nothing_is_demoted(baseline, tmp_path):
    marker = f"migrator-hook-{uuid.uuid4().hex[:10]}"
    touched, child_pid, env_dump = tmp_path / "touched", tmp_path / "child.pid", tmp_path / "env"
    # The child and the hanging command carry the marker in their command lines, for pgrep -f.
    hook = (f"env > {env_dump}; echo $MIGRATOR_SOURCE $MIGRATOR_TARGET > {touched}; "
            f"sh -c 'sleep 300; : {marker}' & echo $! > {child_pid}; sh -c 'sleep 600; : {marker}'")
    inventory = with_hooks(baseline, tmp_path / "inventory.yml", {}, before_demote=hook, timeout_seconds=3)
    before = standby_sections(baseline)
    started = time.monotonic()
    out = run_migrate("execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", str(tmp_path / "state"))
    elapsed = time.monotonic() - started
    assert out.returncode == 1, explain(out)
    line = one_line(out.stderr)
    assert "hook before_demote did not finish within 3s and was killed" in line, line
    print(f"\nexit {out.returncode} after {elapsed:.1f}s: {line.strip()}")
    # Nothing was demoted: dc1 is still the primary, both sites' standby_cluster as before.
    assert_primary_site(baseline, DC1)
    assert standby_sections(baseline) == before
    assert touched.read_text().split() == ["dc1", "dc2"]
    # No process of the hook survives: not the background child, nothing carrying the marker.
    pid = int(child_pid.read_text())
    assert not alive(pid), f"the hook's child {pid} survived the timeout"
    assert processes_with(marker) == []
    # The hook's environment: the tool's MIGRATOR_* variables and PATH, no inherited secret.
    env = dict(line.split("=", 1) for line in env_dump.read_text().splitlines() if "=" in line)
    assert SECRET not in env and "hunter2" not in env_dump.read_text()
    assert {k: env.get(k) for k in ("MIGRATOR_SOURCE", "MIGRATOR_TARGET", "MIGRATOR_HOOK")} == {
        "MIGRATOR_SOURCE": "dc1", "MIGRATOR_TARGET": "dc2", "MIGRATOR_HOOK": "before_demote"}
    assert env.get("MIGRATOR_SERVICE") and env.get("PATH") == os.environ.get("PATH")
    assert not any(name.startswith(("PG", "MIGRATOR_TEST")) for name in env), sorted(env)
    # The journal: the demotion step failed before step-applied; the migration was rolled back.
    records = journal_records(tmp_path / "state")
    assert not any(r["event"] == "step-applied" and r.get("step") == "demote-source" for r in records)
    assert [r["outcome"] for r in records if r["event"] == "migration-finished"] == ["rolled-back"]


def test_after_an_undone_demotion_on_undo_runs_and_its_failure_is_only_a_warning(baseline, tmp_path):
    """The catch-up gate times out for real (dc2's standby leader's startup process gets SIGSTOP
    once the demotion started, as in test_execute's catch-up test), the tool makes dc1 primary
    again, then runs on_undo, which fails: the undo stands and the outcome carries a warning."""
    undo_log = tmp_path / "on_undo"
    inventory = with_hooks(
        baseline, tmp_path / "inventory.yml", {"catchup_timeout_seconds": 5},
        on_undo=f"echo $MIGRATOR_HOOK $MIGRATOR_SOURCE > {undo_log}; echo resume refused >&2; exit 3",
        timeout_seconds=10)
    target_leader = member_with_role(baseline, DC2, "standby_leader")
    run = Run(tmp_path / "state", "execute", "-i", inventory, "--dc", "dc2", "--yes")
    try:
        run.wait_for("step-started", "demote-source")
        with replay_frozen(baseline, target_leader):
            out = run.finish(timeout=180)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
    assert out.returncode == 3, explain(out)
    line = one_line(out.stderr)
    print(f"\nexit {out.returncode}: {line.strip()}")
    assert "undone:" in line and "demote-source" in line
    assert "WARNING: hook on_undo exited 3: resume refused; dc1 takes writes again" in line
    # The undo stands: dc1 is primary again, dc2 still its standby cluster.
    assert_primary_site(baseline, DC1)
    assert undo_log.read_text().split() == ["on_undo", "dc1"]
    records = run.records()
    assert [r["hook"] for r in records if r["event"] == "hook-failed"] == ["on_undo"]
    assert [r["outcome"] for r in records if r["event"] == "migration-finished"] == ["rolled-back"]
