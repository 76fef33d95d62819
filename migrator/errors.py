"""The one exception tree of migrator.

The CLI turns every `MigratorError` into a single line on stderr and the error's `exit_code`
(see conventions.md): 0 done, 1 failed with nothing unsafe left, 2 bad input, 3 a gate timed out
and the change was rolled back, 4 stopped in an unsafe state.
"""

from __future__ import annotations


def one_line(text: str) -> str:
    """Collapse every run of whitespace (newlines included) into one space."""
    return " ".join(str(text).split())


class MigratorError(Exception):
    """Base of every error the CLI knows how to report."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        # Stored collapsed so that log lines, journal entries and stderr never get split.
        self.message = one_line(message)
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class InventoryError(MigratorError):
    """The inventory file is missing, unreadable or invalid."""

    exit_code = 2

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        # Every problem found, one line each, for callers that want more than the first.
        self.problems = [one_line(p) for p in problems] if problems else [self.message]


class UsageError(MigratorError):
    """The command line asks for something the inventory or the tool cannot give."""

    exit_code = 2


class UnreachableError(MigratorError):
    """A member, DCS endpoint or host could not be reached within its timeout."""

    exit_code = 1


class PreflightError(MigratorError):
    """A blocking preflight finding: nothing was changed."""

    exit_code = 1


class GateTimeout(MigratorError):
    """A gate did not pass before its deadline and the completed steps were undone."""

    exit_code = 3


class UnsafeStateError(MigratorError):
    """Stopped in a state that needs an operator; the message says exactly what to do."""

    exit_code = 4


class NotImplementedYet(MigratorError):
    """A command or feature that exists in the interface but not yet in the code."""

    exit_code = 1
