"""Where a service's journal, stored plans, reports and local lock live.

The same place whatever directory `migrate` runs from, so `--resume` and `rollback` find the run
they continue: `--state-dir DIR`, else `$MIGRATOR_STATE_DIR`, else the XDG state home
(`$XDG_STATE_HOME/migrator`, by default `~/.local/state/migrator`); the service's own directory
is `<that>/<service>`. A relative DIR is made absolute once, here, so the paths the journal
records (the stored plan's) still hold when the next command runs elsewhere.

Resolving creates nothing: `plan` and `status` only say where the state is;
`run.journal.state_dir_for` creates the directory when a run needs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from migrator.errors import UsageError

STATE_DIR_ENV = "MIGRATOR_STATE_DIR"


@dataclass(frozen=True)
class StateBase:
    """The directory under which each service has its own state directory, and why it is that one."""

    path: Path  # absolute
    origin: str  # "--state-dir", "MIGRATOR_STATE_DIR", "XDG_STATE_HOME" or "default"

    def for_service(self, service: str) -> Path:
        return self.path / service

    def describe(self, service: str) -> str:
        """The one line `plan`, `status` and run reports show."""
        how = {
            "--state-dir": "from --state-dir",
            STATE_DIR_ENV: f"from {STATE_DIR_ENV}",
            "XDG_STATE_HOME": "from XDG_STATE_HOME",
            "default": f"the default; --state-dir or {STATE_DIR_ENV} chooses another",
        }[self.origin]
        return f"state: {self.for_service(service)} (journal, plans, reports; {how})"


def resolve_state_base(flag: Path | None, environ: Mapping[str, str] | None = None) -> StateBase:
    """--state-dir, else MIGRATOR_STATE_DIR, else $XDG_STATE_HOME/migrator, else
    ~/.local/state/migrator. An empty variable counts as unset; XDG_STATE_HOME must be absolute
    (the XDG base directory specification says to ignore a relative one)."""
    env = os.environ if environ is None else environ
    if flag is not None:
        return StateBase(_absolute(flag), "--state-dir")
    if env.get(STATE_DIR_ENV):
        return StateBase(_absolute(Path(env[STATE_DIR_ENV])), STATE_DIR_ENV)
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and Path(xdg).is_absolute():
        return StateBase(Path(xdg) / "migrator", "XDG_STATE_HOME")
    home = env.get("HOME", "")
    if not home or not Path(home).is_absolute():
        raise UsageError(
            f"no home directory to keep the migration state in (HOME is {'unset' if not home else repr(home)}); "
            f"pass --state-dir DIR or set {STATE_DIR_ENV}"
        )
    return StateBase(Path(home) / ".local" / "state" / "migrator", "default")


def _absolute(path: Path) -> Path:
    # expanduser: a quoted "~/x" from a config or a CI variable means what the operator meant.
    return Path(os.path.abspath(path.expanduser()))
