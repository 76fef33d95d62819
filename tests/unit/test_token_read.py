"""The token read: one pg_controldata command (privilege path, quoting, locale) shared by the
token step and preflight, and the `token-readable` check's verdicts on snapshots."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from migrator.checks import run_checks
from migrator.model.findings import Finding, Verdict
from migrator.adapters.remote import controldata_command
from migrator.observe.controldata import controldata_failure, parse_controldata
from migrator.model.state import ServiceState
from tests.helpers.snapshots import example_inventory, load_baseline, unreachable, with_member

BIN = "/usr/lib/postgresql/15/bin"
AWKWARD_DIR = "/srv/pg data/it's \"main\"; rm -rf $HOME `id`"


def _inner(command: str, ssh_user: str) -> list[str]:
    """The words the postgres OS user's shell runs, after the privilege prefix is peeled off."""
    words = shlex.split(command)
    if ssh_user == "postgres":
        return words
    assert words[-3:-1] == ["sh", "-c"], words
    return shlex.split(words[-1])


@pytest.mark.parametrize("ssh_user, prefix", [
    ("root", ["runuser", "-u", "postgres", "--", "sh", "-c"]),
    ("admin", ["sudo", "-n", "-u", "postgres", "sh", "-c"]),
    ("postgres", ["timeout"]),
])
def test_the_command_runs_as_postgres_with_every_path_a_separate_argument(ssh_user, prefix):
    command = controldata_command(ssh_user, BIN, AWKWARD_DIR, 5, wait=True)
    assert shlex.split(command)[:len(prefix)] == prefix
    words = _inner(command, ssh_user)
    # timeout 5 sh -c <fixed script> sh <bin_dir> <data_dir> wait
    assert words[:4] == ["timeout", "5", "sh", "-c"]
    script = words[4]
    assert words[5:] == ["sh", BIN, AWKWARD_DIR, "wait"]
    assert "LC_ALL=C" in script and '"$1/pg_controldata" "$2"' in script
    assert BIN not in script and "pg data" not in script  # no inventory value inside the script


def test_preflight_and_token_step_differ_only_in_the_wait_flag():
    once = controldata_command("root", BIN, AWKWARD_DIR, 5, wait=False)
    wait = controldata_command("root", BIN, AWKWARD_DIR, 5, wait=True)
    assert _inner(once, "root")[:-1] == _inner(wait, "root")[:-1]
    assert (_inner(once, "root")[-1], _inner(wait, "root")[-1]) == ("once", "wait")


def _fake_bin(tmp_path: Path, body: str) -> Path:
    """A stand-in pg_controldata (this test runs no PostgreSQL): it echoes what it was given."""
    bin_dir = tmp_path / "bin dir 'x'"
    bin_dir.mkdir()
    tool = bin_dir / "pg_controldata"
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(0o755)
    return bin_dir


def _run_locally(command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LC_ALL": "de_DE.UTF-8"}
    return subprocess.run(["sh", "-c", command], capture_output=True, text=True, timeout=20, env=env)


def test_the_script_hands_the_data_dir_through_unchanged_in_the_c_locale(tmp_path):
    bin_dir = _fake_bin(tmp_path, 'echo "Database cluster state:   shut down"\n'
                                  'echo "Data directory:   $1"\necho "Locale:   $LC_ALL"\n')
    result = _run_locally(controldata_command("postgres", str(bin_dir), AWKWARD_DIR, 5, wait=True))
    facts = parse_controldata(result.stdout)
    assert result.returncode == 0, result.stderr
    assert facts["Data directory"] == AWKWARD_DIR
    assert facts["Locale"] == "C"
    assert facts["Database cluster state"] == "shut down"


def test_a_failing_pg_controldata_ends_the_wait_at_once_with_its_exit_code(tmp_path):
    bin_dir = _fake_bin(tmp_path, 'echo "could not open file: Permission denied" >&2\nexit 2\n')
    result = _run_locally(controldata_command("postgres", str(bin_dir), "/d", 30, wait=True))
    assert result.returncode == 2
    assert "Permission denied" in result.stderr


def test_read_once_returns_a_running_cluster_and_wait_keeps_waiting(tmp_path):
    bin_dir = _fake_bin(tmp_path, 'echo "Database cluster state:   in production"\n')
    once = _run_locally(controldata_command("postgres", str(bin_dir), "/d", 30, wait=False))
    assert once.returncode == 0 and "in production" in once.stdout
    waited = _run_locally(controldata_command("postgres", str(bin_dir), "/d", 1, wait=True))
    assert waited.returncode == 124  # timeout(1): still in production when the time was up


@pytest.mark.parametrize("code, stderr, expected", [
    ("0", "", None),
    ("127", "sh: 1: /opt/pg/bin/pg_controldata: not found\n", "exit 127: sh: 1: /opt/pg/bin/pg_controldata: not found"),
    ("1", "sudo: a password is required\n", "exit 1: sudo: a password is required"),
    ("124", "", "exit 124: did not finish in time"),
    ("", "", "no exit code"),
])
def test_controldata_failure_names_the_exit_code_and_the_reason(code, stderr, expected):
    assert controldata_failure(code, stderr) == expected


# --- the preflight check ---------------------------------------------------------------------


def _token_readable(state: ServiceState) -> Finding:
    return next(f for f in run_checks(example_inventory(), state, "dc1", "dc2") if f.check == "token-readable")


def test_token_readable_ok_on_the_healthy_testbed():
    found = _token_readable(load_baseline())
    assert found.verdict is Verdict.OK, found
    assert "dc1-a" in found.finding


def test_token_readable_blocks_when_the_command_failed_on_the_source_leader():
    state = with_member(load_baseline(), "dc1-a", host_facts={
        "controldata": {}, "controldata_error": "exit 127: sh: 1: /nowhere/pg_controldata: not found"})
    found = _token_readable(state)
    assert found.verdict is Verdict.BLOCK
    assert "dc1-a" in found.finding and "/nowhere/pg_controldata: not found" in found.finding
    assert "postgres.bin_dir" in found.fix


def test_token_readable_blocks_when_ssh_to_the_source_leader_failed():
    found = _token_readable(unreachable(load_baseline(), "dc1-a", probes=("host",), error="SSH refused"))
    assert found.verdict is Verdict.BLOCK
    assert "SSH refused (dc1-a)" in found.finding


def test_token_readable_blocks_when_pg_control_shows_no_checkpoint():
    state = with_member(load_baseline(), "dc1-a", host_facts={"controldata": {"Latest checkpoint location": ""}})
    assert _token_readable(state).verdict is Verdict.BLOCK


def test_token_readable_ignores_a_failure_on_a_member_that_is_not_the_source_leader():
    state = with_member(load_baseline(), "dc1-b", host_facts={"controldata_error": "exit 1: boom"})
    assert _token_readable(state).verdict is Verdict.OK
