"""The `migrate` entry point: one line on stderr and the documented exit code, whatever goes wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrator import __version__, cli
from migrator.errors import GateTimeout, UnsafeStateError
from tests.unit.test_inventory import FIXTURE, TEST_ENV, write_two_sites

COMMANDS = ["plan", "check", "status", "execute", "rollback"]
TARGETED = {"plan", "execute"}  # the commands that take --dc


def migrate(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real console entry in a fresh interpreter, as a user would."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    full_env.update(TEST_ENV)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "migrator.cli", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int, start: str) -> str:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(start), lines[0]
    return lines[0]


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    return write_two_sites(tmp_path)


# --- subprocess: the real entry point ---------------------------------------------------------


def test_version_prints_the_version_and_exits_0(tmp_path):
    result = migrate("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"migrate {__version__}\n"


def test_help_lists_the_five_commands(tmp_path):
    result = migrate("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_bad_inventory_exits_2_with_one_line(tmp_path):
    path = write_two_sites(tmp_path, FIXTURE.read_text().replace("service: shop", "service: shop\nfoo: 1"))
    result = migrate("check", "-i", str(path), cwd=tmp_path)
    line = assert_one_error_line(result, 2, "migrate: error: inventory")
    assert "foo (line 4): unknown key 'foo'" in line


def test_missing_inventory_file_exits_2_with_one_line(tmp_path):
    result = migrate("status", "-i", "nope.yml", cwd=tmp_path)
    assert_one_error_line(result, 2, "migrate: error: inventory nope.yml: file not found")


def test_unknown_option_exits_2_with_one_line(tmp_path, inventory):
    result = migrate("plan", "-i", str(inventory), "--dc", "dc-west", "--bogus", cwd=tmp_path)
    line = assert_one_error_line(result, 2, "migrate: error: ")
    assert "--bogus" in line and "(see 'migrate plan --help')" in line


def test_unknown_site_exits_2_with_one_line_naming_the_sites(tmp_path, inventory):
    result = migrate("plan", "-i", str(inventory), "--dc", "dc9", cwd=tmp_path)
    line = assert_one_error_line(result, 2, "migrate: error: ")
    assert line == "migrate: error: no site 'dc9' in the inventory; sites: dc-east, dc-west"


def test_execute_against_sites_that_do_not_answer_refuses_in_one_line(tmp_path, inventory):
    # The fixture's hosts are unused loopback addresses: every probe is refused at once.
    result = migrate("execute", "-i", str(inventory), "--dc", "dc-west", "--yes", cwd=tmp_path)
    line = assert_one_error_line(result, 1, "migrate: error: ")
    assert "cannot take the migration lock: dc-east's etcd at http://" in line
    assert "refused the connection" in line and "HTTPConnectionPool" not in line and "nothing was changed" in line
    assert not (tmp_path / ".migrator" / "shop" / "journal.jsonl").exists()


def test_inventory_can_come_from_the_environment(tmp_path, inventory):
    result = migrate("rollback", cwd=tmp_path, env={"MIGRATOR_INVENTORY": str(inventory)})
    assert_one_error_line(result, 2, "migrate: error: no migration is recorded in")


def test_installed_migrate_script_runs_main(tmp_path):
    script = Path(sys.executable).parent / "migrate"
    if not script.exists():
        pytest.skip("package not installed in this interpreter's environment")
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout) == (0, f"migrate {__version__}\n")


# --- in process: every command and every error mapping ------------------------------------------


def _args(command: str, inventory: Path) -> list[str]:
    args = [command, "--inventory", str(inventory)]
    return args + ["--dc", "dc-west"] if command in TARGETED else args


@pytest.fixture
def env_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MIGRATOR_INVENTORY", raising=False)
    monkeypatch.delenv("MIGRATOR_DEBUG", raising=False)
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_requires_an_inventory(command, env_secrets, capsys):
    assert cli.run([command]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("migrate: error: Missing option '--inventory'")
    assert f"(see 'migrate {command} --help')" in err


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        (["frobnicate"], "No such command 'frobnicate'"),
        (["plan", "--dc", "dc-west", "--format", "xml"], "'xml' is not one of 'text', 'md', 'json'"),
        (["execute", "--dc", "dc-west", "--resume=maybe"], "--resume"),
    ],
    ids=["unknown command", "bad choice", "flag with a value"],
)
def test_usage_errors_are_one_line_and_exit_2(args, mentions, inventory, env_secrets, capsys):
    assert cli.run(args + ["-i", str(inventory)]) == 2
    err = capsys.readouterr().err
    assert mentions in err
    assert err.startswith("migrate: error: ") and err.count("\n") == 1
    assert "Value error" not in err


def test_resume_and_rollback_without_a_journal_say_so(inventory, env_secrets, capsys, tmp_path):
    state = str(tmp_path / "state")
    execute = _args("execute", inventory) + ["--plan", "p.json", "--resume", "--yes", "--state-dir", state]
    assert cli.run(execute) == 2
    assert "nothing to resume: no unfinished migration in" in capsys.readouterr().err
    assert cli.run(_args("rollback", inventory) + ["--yes", "--state-dir", state]) == 2
    assert "no migration is recorded in" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raised", "code", "line"),
    [
        (GateTimeout("catch-up gate\ntimed out"), 3, "migrate: error: catch-up gate timed out"),
        (UnsafeStateError("two primaries; stop dc1"), 4, "migrate: error: two primaries; stop dc1"),
        (RuntimeError("boom\nsecond line"), 1, "migrate: internal error: RuntimeError: boom second line"),
        (KeyboardInterrupt(), 130, "migrate: interrupted"),
    ],
    ids=["gate timeout", "unsafe state", "unexpected exception", "ctrl-c"],
)
def test_errors_from_a_command_map_to_one_line_and_their_exit_code(
    raised, code, line, inventory, env_secrets, capsys, monkeypatch
):
    def fail(*args: object) -> None:
        raise raised

    monkeypatch.setattr(cli, "run_plan", fail)
    assert cli.run(_args("plan", inventory)) == code
    assert capsys.readouterr().err == line + "\n"


def test_debug_env_shows_the_traceback_of_an_internal_error(inventory, env_secrets, capsys, monkeypatch):
    def fail(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "run_plan", fail)
    monkeypatch.setenv("MIGRATOR_DEBUG", "1")
    assert cli.run(_args("plan", inventory)) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("migrate: internal error: RuntimeError: boom\n")
