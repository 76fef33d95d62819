"""The test-only crash point ends the process only at the point and step it names."""

from __future__ import annotations

import subprocess
import sys

from migrator.run.crashpoint import CRASH_EXIT_CODE, ENV

PROGRAM = ("from migrator.run.crashpoint import crash_here\n"
           "crash_here('before-patch', 'promote-target')\n"
           "crash_here('after-patch', 'demote-source')\n"
           "print('ran to the end')\n")


def _run(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin"}
    if value is not None:
        env[ENV] = value
    return subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, env=env,
                          timeout=60)


def test_it_crashes_exactly_at_the_named_point_and_step():
    out = _run("after-patch:demote-source")
    assert out.returncode == CRASH_EXIT_CODE and out.stdout == ""


def test_it_does_nothing_anywhere_else():
    for value in (None, "", "before-patch:demote-source", "after-patch:promote-target",
                  "after-patch"):
        out = _run(value)
        assert (out.returncode, out.stdout) == (0, "ran to the end\n"), value
