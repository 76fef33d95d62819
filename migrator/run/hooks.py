"""Run the inventory's traffic hooks on the operator's machine, with a deadline.

Hooks are part of the reviewed change: the plan lists each one with its command and timeout
(migrator/planning/hooks.py, from the hook table in migrator/steps/kinds.py), and the plan's
fingerprint covers them. A hook's environment is built from
scratch: the `MIGRATOR_*` variables the tool gives it plus PATH, HOME and LANG, nothing else the
operator's shell holds (cloud keys, PGPASSWORD...). Its output goes to the journal masked.

A hook runs in a session of its own, so that on timeout its whole process group is killed: a
`pgbouncer` client it left waiting, or a `sleep &` it forked, does not outlive the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

from migrator.errors import MigratorError
from migrator.model.inventory import Hooks

# Taken from the tool's own environment when set; every other variable stays out of a hook.
PASSED_THROUGH = ("PATH", "HOME", "LANG")
# After SIGTERM, how long a timed-out hook's processes get to clean up before SIGKILL.
TERM_GRACE_SECONDS = 1.0
OUTPUT_KEPT = 2000  # characters of a hook's stdout kept for the journal


class HookFailed(MigratorError):
    exit_code = 1


def migration_env(
    service: str, source: str, target: str, new_primary: str | None = None, new_primary_host: str | None = None
) -> dict[str, str]:
    """What every hook is told: which service moves from where to where, and once it is proven
    (after_promote), the new primary."""
    env = {"MIGRATOR_SERVICE": service, "MIGRATOR_SOURCE": source, "MIGRATOR_TARGET": target}
    if new_primary:
        env.update(MIGRATOR_NEW_PRIMARY=new_primary, MIGRATOR_NEW_PRIMARY_HOST=new_primary_host or "")
    return env


def run_configured_hook(hooks: Hooks, name: str, env: dict[str, str]) -> str | None:
    """Run hook `name` if the inventory configures it; its output, or None when there is none."""
    command = getattr(hooks, name)
    if not command:
        return None
    return run_hook(name, command, hooks.timeout_seconds, env)


def hook_environment(given: dict[str, str]) -> dict[str, str]:
    """PATH, HOME and LANG of the tool's own environment, plus the MIGRATOR_* variables given."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.update({name: value for name, value in given.items() if name.startswith("MIGRATOR_")})
    return env


def run_hook(name: str, command: str, timeout: float, env: dict[str, str]) -> str:
    process = subprocess.Popen(
        command,
        shell=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env=hook_environment({**env, "MIGRATOR_HOOK": name}),
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_process_group(process)
        raise HookFailed(
            f"hook {name} did not finish within {timeout:g}s and was killed with every process it started: {command}"
        ) from None
    except BaseException:  # noqa: BLE001 - Ctrl-C while a hook runs: it must not outlive the tool; re-raised
        kill_process_group(process)
        raise
    if process.returncode != 0:
        last = (stderr.strip() or stdout.strip() or "no output").splitlines()[-1]
        raise HookFailed(f"hook {name} exited {process.returncode}: {last}")
    return stdout.strip()[-OUTPUT_KEPT:]


def kill_process_group(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the hook's whole process group, SIGKILL to whatever is left after a short
    grace, then reap the shell and close its pipes (a process that escaped the group with
    setsid could otherwise keep them open and hang us)."""
    group = process.pid  # start_new_session: the shell leads a group of its own
    _signal_group(group, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_SECONDS
    while time.monotonic() < deadline and _group_alive(group, process):
        time.sleep(0.02)
    _signal_group(group, signal.SIGKILL)
    try:
        process.wait(timeout=TERM_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass  # cannot happen after SIGKILL unless the kernel is stuck; do not hang on it
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass  # every process of the group is gone already


def _group_alive(group: int, process: subprocess.Popen[str]) -> bool:
    process.poll()  # reap the shell once it exited, so a zombie does not count as alive
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True
