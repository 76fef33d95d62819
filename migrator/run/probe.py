"""`migrate check --format prometheus|nagios`: observe, decide as `migrate check` does, and
render the outcome for a monitoring system (migrator/render/probe.py).

Nagios wants exit 3 (UNKNOWN) when the probe itself cannot decide, so every failure, an
unreadable inventory included, becomes its one status line. The Prometheus file is written
atomically (node_exporter's textfile collector may read it at any moment) and readable by the
collector's user: it holds no secret, every text in it is masked anyway.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from migrator.durable import write_all
from migrator.errors import MigratorError, one_line
from migrator.model.inventory import Inventory, load_inventory
from migrator.model.secrets import mask
from migrator.render.probe import NAGIOS_UNKNOWN, ProbeInput, nagios_line, prometheus_text


def run_probe(inventory_file: Path, fmt: str, target: str | None, out: Path | None) -> int:
    if fmt == "nagios":
        return _nagios(inventory_file, target)
    inventory = load_inventory(inventory_file)  # bad input: the usual one line and exit 2
    probe = _decide(inventory, target)
    previous = _read(out) if out is not None else None
    text = mask(prometheus_text(probe, previous), inventory.secrets())
    if out is None:
        sys.stdout.write(text)
    else:
        _write_readable(out, text)
    # The file is the report: the exit code still says ready (0) or not (1), as `migrate check`.
    return 0 if probe.ready and not probe.error else 1


def _nagios(inventory_file: Path, target: str | None) -> int:
    secrets: list[str] = []
    try:
        inventory = load_inventory(inventory_file)
        secrets = inventory.secrets()
        line, code = nagios_line(_decide(inventory, target))
    except MigratorError as exc:
        line, code = f"MIGRATOR UNKNOWN - {exc}", NAGIOS_UNKNOWN
    except Exception as exc:  # noqa: BLE001 - a plugin that cannot decide says UNKNOWN, never a traceback
        line, code = f"MIGRATOR UNKNOWN - internal error: {type(exc).__name__}: {exc}", NAGIOS_UNKNOWN
    sys.stdout.write(one_line(mask(line, secrets)) + "\n")
    return code


def _decide(inventory: Inventory, target: str | None) -> ProbeInput:
    from migrator.observe.observer import observe
    from migrator.planning.preflight import check_outcome

    now = time.time()
    slots_for = {site.replication_slot or name: name for name, site in inventory.sites.items()}
    if target is not None:
        inventory.site(target)  # an unknown site is bad input, not a failed probe
    try:
        state = observe(inventory)
        outcome = check_outcome(inventory, state, target)
    except MigratorError as exc:
        names = list(inventory.sites)
        return ProbeInput(
            inventory.service, names[0], target or names[-1], False, (), None, slots_for, now, error=str(exc)
        )
    return ProbeInput(
        inventory.service,
        outcome.source,
        outcome.target,
        outcome.executable,
        tuple(outcome.findings),
        state,
        slots_for,
        now,
    )


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeError):
        return None  # no earlier file (the first run) or an unreadable one: no last success known


def _write_readable(path: Path, text: str) -> None:
    """Temporary file in the same directory, then rename: the collector sees the old or the new
    file, never half of one. Mode 0644: node_exporter runs as its own user."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.fchmod(fd, 0o644)
        write_all(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
