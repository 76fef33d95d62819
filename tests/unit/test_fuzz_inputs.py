"""Fuzzing the inventory and the command line (issue, case 10): every bad input exits 2 with one
line on stderr and no traceback. 200 examples per property here; bench/fuzz_inputs.py runs the
same properties with 1,000. Strategies, safety guards and property bodies: tests/helpers/fuzz_strategies.py.

No case may reach the network: inventories given to the CLI are invalid by construction and are
proven invalid before the CLI sees them, and `no_network()` turns any socket connect, name lookup
or command body into a recorded failure.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from migrator import __version__, cli
from tests.helpers import fuzz_strategies as fz

FUZZ = settings(
    max_examples=200,
    deadline=None,
    # The same 200 examples on every run: CI must not turn red on a draw; the bench draws anew
    # (1,000 per property) to find what these do not.
    derandomize=True,
    # Stop at the first bug and shrink only that one, without the slow "explain" phase: this is
    # the gate; bench/fuzz_inputs.py lists every kind of failure.
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # capsys is read and reset per example
        # Deliberately big inputs (100,000-character strings, 6,000-digit numbers, deep nesting).
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with fz.fuzz_environment():
        yield fz.prepare_workdir(tmp_path_factory.mktemp("fuzz"))


@pytest.fixture
def guard(workdir: Path) -> Iterator[fz.NetworkGuard]:
    with fz.no_network() as network_guard:
        yield network_guard
    assert not network_guard.attempts


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> fz.Runner:
    capsys.readouterr()

    def run(argv: list[str]) -> tuple[int, str, str]:
        # A real process's stderr writes a lone surrogate (from argv bytes that are not UTF-8, or
        # a YAML "\ud800" escape) as \udc80 and the like; capsys's stream would raise instead.
        sys.stderr.reconfigure(errors="backslashreplace")
        code = cli.run(argv)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


# --- the properties ---------------------------------------------------------------------------


@FUZZ
@given(case=fz.all_inventories())
def test_any_inventory_text_loads_or_fails_with_one_line_naming_the_file(case, workdir, guard):
    fz.check_inventory(case, workdir, guard)


@FUZZ
@given(drawn=fz.cli_inventory_cases())
def test_an_invalid_inventory_exits_2_with_one_line_per_problem_through_every_command(drawn, workdir, guard, run_cli):
    fz.check_cli_inventory(drawn, workdir, guard, run_cli)


@FUZZ
@given(data=st.data())
def test_fuzzed_command_lines_exit_2_with_one_line(data, workdir, guard, run_cli):
    fz.check_argv(data.draw(fz.argv_cases(workdir), label="case"), guard, run_cli)


# --- the same through the console entry, a handful of times -------------------------------------

# A process per example: no shrinking (each step would be another process); a failure here is
# reported as generated, and the in-process properties above shrink the same bug.
REAL_PROCESS = settings(FUZZ, max_examples=4, phases=[Phase.explicit, Phase.reuse, Phase.generate])


@REAL_PROCESS
@given(drawn=fz.cli_inventory_cases())
def test_an_invalid_inventory_exits_2_with_one_line_per_problem_in_a_real_process(drawn, workdir, guard):
    fz.check_cli_inventory(drawn, workdir, guard, lambda argv: fz.run_subprocess(argv, workdir))


@REAL_PROCESS
@given(data=st.data())
def test_fuzzed_command_lines_exit_2_with_one_line_in_a_real_process(data, workdir, guard):
    # A real process must never see the valid inventory: the command bodies are not guarded there.
    case = data.draw(fz.argv_cases(workdir).filter(lambda c: c.inventory != "valid"), label="case")
    fz.check_argv(case, guard, lambda argv: fz.run_subprocess(argv, workdir))


def test_non_utf8_command_line_bytes_exit_2_with_one_line(workdir, guard):
    # Argv bytes that are not UTF-8, for real (in process the fuzzers stand them in with the
    # U+DC80..U+DCFF surrogates Python decodes them to); still one line on stderr.
    bad = workdir / fz.INVENTORY_NAME
    bad.write_bytes(b"")
    for argv in (
        [b"pl\xffan", b"-i", bytes(bad)],
        [b"plan", b"-i", bytes(bad), b"--dc", b"dc-\xff", b"--format", b"\xfe\xff"],
        [b"status", b"-i", bytes(workdir) + b"/no-such-\xff.yml"],
        [b"check", b"-i", bytes(bad), b"--\xff"],
    ):
        fz.assert_one_error_line(*fz.run_subprocess(argv, workdir))


# --- the cases the fuzzers leave out: help and version print to stdout and exit 0 -----------------


@pytest.mark.parametrize("command", [*fz.COMMANDS, None])
def test_help_prints_usage_to_stdout_and_exits_0(command, workdir, guard, run_cli):
    argv = ([command] if command else []) + ["--help"]
    code, out, err = run_cli(argv)
    assert (code, err) == (0, "")
    assert "Usage: migrate" in out and "Traceback" not in out


def test_version_prints_the_version_and_exits_0(workdir, guard, run_cli):
    assert run_cli(["--version"]) == (0, f"migrate {__version__}\n", "")


def test_no_arguments_prints_the_usage_to_stdout_and_exits_2(workdir, guard, run_cli):
    code, out, err = run_cli([])
    assert (code, err) == (2, "")
    assert "Usage: migrate" in out and "Traceback" not in out
