"""Run the inventory's traffic hooks on the operator's machine, with a deadline.

A hook's output goes to the journal masked, never its environment: it may hold credentials of
the load balancer it talks to, which the inventory does not know about."""

from __future__ import annotations

import os
import subprocess
from typing import Any

from migrator.errors import MigratorError


class HookFailed(MigratorError):
    exit_code = 1


def run_hook(name: str, command: str, timeout: float, env: dict[str, str]) -> str:
    try:
        out = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, **env}, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise HookFailed(f"hook {name} did not finish within {timeout:.0f}s: {command}") from None
    if out.returncode != 0:
        last = (out.stderr.strip() or out.stdout.strip() or "no output").splitlines()[-1]
        raise HookFailed(f"hook {name} exited {out.returncode}: {last}")
    return out.stdout.strip()[-2000:]


def traffic_hook_env(ctx: Any, primary: str | None = None, primary_host: str | None = None) -> dict[str, str]:
    """What a traffic hook is told: the service, the move, and once known the new primary."""
    env = {"MIGRATOR_SERVICE": ctx.inventory.service, "MIGRATOR_SOURCE": ctx.plan.source,
           "MIGRATOR_TARGET": ctx.plan.target}
    if primary:
        env.update(MIGRATOR_NEW_PRIMARY=primary, MIGRATOR_NEW_PRIMARY_HOST=primary_host or "")
    return env
