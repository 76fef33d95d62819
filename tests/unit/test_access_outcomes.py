"""The access proof's one SSH command per follower host: its output read back per target."""

from __future__ import annotations

from migrator.steps.preseed import ACCESS_MARKER, access_outcomes


def test_each_target_gets_its_own_exit_code_and_stderr_in_order():
    stdout = (
        f"\n{ACCESS_MARKER}0\n"
        'psql: error: connection to server at "10.0.2.2", port 5432 failed: FATAL:  password authentication failed\n'
        f"{ACCESS_MARKER}2\n"
        f"\n{ACCESS_MARKER}0\n"
    )
    outcomes = access_outcomes(stdout, 3)
    assert [code for code, _ in outcomes] == [0, 2, 0]
    assert outcomes[1][1].endswith("password authentication failed")
    assert outcomes[0][1].strip() == "" and outcomes[2][1].strip() == ""


def test_a_command_that_stopped_early_fails_the_targets_it_did_not_reach():
    # The shell died after the first target (or never read the password): the others are not proven.
    outcomes = access_outcomes(f"\n{ACCESS_MARKER}0\n", 3, stderr="sh: 1: read: Illegal option\n")
    assert outcomes == [(0, ""), (-1, "sh: 1: read: Illegal option"), (-1, "sh: 1: read: Illegal option")]
    assert access_outcomes("", 2) == [(-1, "the command stopped before proving it")] * 2


def test_a_garbled_exit_code_is_a_failure_not_an_exception():
    assert access_outcomes(f"boom\n{ACCESS_MARKER}x\n", 1) == [(-1, "boom")]
