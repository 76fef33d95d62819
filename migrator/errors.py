"""The one exception tree of migrator.

The CLI turns every `MigratorError` into a single line on stderr and the error's `exit_code`:
0 done, 1 failed with nothing unsafe left, 2 bad input, 3 a gate timed out
(or a failure after the demotion) and the change was rolled back, 4 stopped in an unsafe state,
5 another run holds the service's migration lock (try later), 6 the reviewed plan no longer
matches the sites (plan and review again). 5 and 6 let a pipeline tell "try later" and
"review again" from "fix the inventory" (2) and "failed" (1).
"""

from __future__ import annotations

# How much of a value the user gave is quoted back in a message.
SHOWN_VALUE_LIMIT = 60


def one_line(text: str) -> str:
    """Collapse every run of whitespace (newlines included) into one space, and escape any other
    character a terminal would act on (ESC, BEL, NUL, bidi overrides) instead of printing it."""
    return escape_controls(" ".join(str(text).split()))


def escape_controls(text: str) -> str:
    """Unprintable characters as Python escapes (\\x1b, \\u202e); spaces and letters stay."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def shown(value: object, limit: int = SHOWN_VALUE_LIMIT) -> str:
    """A value quoted back in a message: newlines and control characters escaped, and cut with
    '...' past `limit` characters (a 100 KB value must not flood the terminal or a log)."""
    text = escape_controls(str(value))
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


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
    kind = "inventory"  # how the file is named in its lines

    def __init__(self, message: str, problems: list[str] | None = None, source: str | None = None) -> None:
        super().__init__(message)
        # Every problem found, one line each, for callers that want more than the first.
        self.problems = [one_line(p) for p in problems] if problems else [self.message]
        self.source = source  # the file, as the user named it

    def lines(self, limit: int = 10) -> list[str]:
        """The problems to print, one line each, at most `limit` of them and a count of the rest."""
        shown_lines = self.problems[:limit]
        if len(self.problems) > limit:
            where = f"{self.kind} {self.source}: " if self.source else ""
            shown_lines.append(f"{where}and {len(self.problems) - limit} more problem(s) not shown")
        return shown_lines


class FleetError(InventoryError):
    """The fleet file, or an inventory it names, is missing, unreadable or invalid: every problem,
    one line each (those of an inventory name the inventory file)."""

    kind = "fleet"


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


class LockLost(GateTimeout):
    """The migration lock expired or was taken away before the demotion: what the run changed is
    undone (exit 3), so that no second run can act on the service at the same time as this one."""


class UnsafeStateError(MigratorError):
    """Stopped in a state that needs an operator; the message says exactly what to do."""

    exit_code = 4


class UnexpectedError(MigratorError):
    """An exception outside this tree (a reply of the wrong shape, a full disk) caught inside a
    run: it takes the same path as a failed step."""

    exit_code = 1


class LockBusy(MigratorError):
    """Another run holds the service's migration lock: nothing was changed; try again later."""

    exit_code = 5


class StalePlan(MigratorError):
    """The reviewed plan file no longer matches the sites: nothing was changed; plan and review
    again."""

    exit_code = 6
