"""-v / --log-file / --no-color: standard logging masked like the journal, options accepted
after the subcommand, NO_COLOR honoured by the text renderers."""

from __future__ import annotations

import logging
import os

import pytest

from migrator import output_options
from migrator.model.findings import Finding, Verdict
from migrator.output_options import color_wanted, hoist, remember_secrets, setup_logging
from migrator.render.plan_report import render_findings
from tests.unit.test_cli import migrate
from tests.unit.test_inventory import SUPERUSER_PASSWORD, write_two_sites

COMMANDS = ["plan", "check", "status", "execute", "rollback", "show"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["execute", "-i", "f", "-v"], ["-v", "execute", "-i", "f"]),
        (["status", "--log-file", "x.log", "-vv"], ["--log-file", "x.log", "-vv", "status"]),
        (["check", "--log-file=x.log", "--no-color"], ["--log-file=x.log", "--no-color", "check"]),
        (["-v", "plan", "--dc", "dc2"], ["-v", "plan", "--dc", "dc2"]),
        (["show", "p.json", "--", "-v"], ["show", "p.json", "--", "-v"]),
        (["--version"], ["--version"]),
    ],
)
def test_global_options_after_the_subcommand_move_in_front(argv, expected):
    assert hoist(argv, COMMANDS) == expected


@pytest.fixture
def clean_logging():
    yield
    setup_logging(0, None)
    output_options._secrets.clear()


def test_the_log_file_masks_secrets_and_is_private(tmp_path, clean_logging):
    log_file = tmp_path / "run.log"
    setup_logging(0, log_file)
    remember_secrets(["hunter2-pw"])
    logging.getLogger("migrator.patroni").debug("PATCH with %s", {"password": "hunter2-pw"})
    logging.getLogger("urllib3").debug("library chatter")  # libraries only with -vvv
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = log_file.read_text()
    assert "PATCH with" in text and "hunter2-pw" not in text and "********" in text
    assert "library chatter" not in text
    assert oct(log_file.stat().st_mode & 0o777) == "0o600"


def test_verbosity_sets_the_stderr_level(tmp_path, clean_logging, capsys):
    setup_logging(1, None)
    logging.getLogger("migrator.journal").info("an event")
    logging.getLogger("migrator.ssh").debug("a command")
    err = capsys.readouterr().err
    assert "an event" in err and "a command" not in err


def test_a_command_logs_through_the_cli_masked(tmp_path):
    inventory = write_two_sites(tmp_path)
    log_file = tmp_path / "check.log"
    result = migrate("status", "-i", str(inventory), "--log-file", str(log_file), "-vv", cwd=tmp_path)
    # The fixture's sites do not answer: still a status, and the log tells every refused call.
    text = log_file.read_text()
    assert "migrator.patroni" in text and "refused the connection" in text, text
    assert SUPERUSER_PASSWORD not in text and SUPERUSER_PASSWORD not in result.stderr
    assert "DEBUG migrator." in result.stderr


def test_no_color_and_not_a_terminal_mean_no_colour(monkeypatch):
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert color_wanted(Tty())  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "1")
    assert not color_wanted(Tty())  # type: ignore[arg-type]
    monkeypatch.setenv("NO_COLOR", "")
    assert color_wanted(Tty())  # type: ignore[arg-type]


def _on_a_terminal(tmp_path, *args: str, env: dict[str, str] | None = None) -> str:
    """What `migrate` prints when its stdout is a terminal (a pseudo-terminal)."""
    import pty
    import subprocess
    import sys

    from tests.unit.test_inventory import TEST_ENV

    primary, secondary = pty.openpty()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_") and k != "NO_COLOR"}
    full_env.update(TEST_ENV, **(env or {}))
    proc = subprocess.Popen([sys.executable, "-m", "migrator.cli", *args], cwd=tmp_path, env=full_env,
                            stdout=secondary, stderr=subprocess.DEVNULL)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(primary)
    return b"".join(chunks).decode(errors="replace")


def test_check_on_a_terminal_is_coloured_unless_no_color_or_the_flag(tmp_path):
    inventory = str(write_two_sites(tmp_path))
    assert "\x1b[" in _on_a_terminal(tmp_path, "check", "-i", inventory)  # not vacuous: colour by default
    assert "\x1b[" not in _on_a_terminal(tmp_path, "check", "-i", inventory, "--no-color")
    assert "\x1b[" not in _on_a_terminal(tmp_path, "check", "-i", inventory, env={"NO_COLOR": "1"})
    assert "\x1b[" not in _on_a_terminal(tmp_path, "status", "-i", inventory, "--no-color")


def test_the_findings_renderer_follows_color_wanted(monkeypatch):
    finding = Finding(check="paused", verdict=Verdict.BLOCK, finding="dc2 paused", fix="resume", site="dc2")
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in render_findings([finding], "dc1", "dc2", color=color_wanted())
    assert "\x1b[" in render_findings([finding], "dc1", "dc2", color=True)
