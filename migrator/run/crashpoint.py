"""A test-only fault: end the process abruptly at a named point of a step, as a machine crash would.

A crash of the operator's machine cannot be timed to the instruction from outside (a SIGKILL
sent on seeing a journal record may land before or after the PATCH that follows it). The test
suite sets `MIGRATOR_TEST_CRASH_AT=<point>:<step id>` to make the engine call `os._exit` exactly
there: no `finally`, no journal record, no lock released, like a power cut. Operators never set it.

Points:
- `before-patch`: after the journal's `step-started` and the precheck, before the step's change
  is sent (apply);
- `after-patch`: after the change was sent, before the journal's `step-applied`.
"""

from __future__ import annotations

import os
import sys

ENV = "MIGRATOR_TEST_CRASH_AT"
POINTS = ("before-patch", "after-patch")
# The exit status of a process killed with SIGKILL, so callers see what a crash looks like.
CRASH_EXIT_CODE = 137


def crash_here(point: str, step_id: str) -> None:
    """End the process now if the environment names this point of this step."""
    wanted = os.environ.get(ENV)
    if wanted and wanted == f"{point}:{step_id}":
        sys.stderr.flush()
        os._exit(CRASH_EXIT_CODE)
