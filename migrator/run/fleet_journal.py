"""The fleet journal and the fleet lock, in the fleet's state directory
`<state base>/fleet-<fleet file name>/`.

The journal (`journal.jsonl`, the single-service `Journal`: JSON lines, fsync'd, masked) records
what the scheduler did: `fleet-run-started` (fleet file, command, target, fingerprint of the
reviewed fleet plan, parallel, the services in wave order), `fleet-run-resumed`, per service
`service-started` (pid, wave, whether it resumed), `service-overrun`, `service-skipped` and
`service-finished` (its result), then `fleet-run-finished`. `--resume` reads it back
(`fleet_runs`); each service's own journal stays the authority on what was demoted or promoted.

The lock (`lock`, an flock) keeps two fleet runs of the same fleet from running at once; the kernel
releases it when the holder dies, so a kill -9 never blocks the `--resume` that follows.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.errors import LockBusy
from migrator.model.fleet_run import ServiceResult
from migrator.run.journal import Journal, state_dir_for, utc_now


def fleet_state_dir(state_base: Path, fleet_file: Path) -> Path:
    """`<state base>/fleet-<name>`, the name being the fleet file's without its extension."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(fleet_file).stem).strip(".-") or "fleet"
    return state_dir_for(state_base, f"fleet-{name}")


class FleetLock:
    def __init__(self, directory: Path, fleet: str):
        self.path = directory / "lock"
        self.fleet = fleet
        self._fd: int | None = None

    def __enter__(self) -> FleetLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.read(fd, 4096) or b"{}")
            except ValueError:
                holder = {}
            os.close(fd)
            pid = holder.get("pid", "?") if isinstance(holder, dict) else "?"
            since = holder.get("since", "?") if isinstance(holder, dict) else "?"
            raise LockBusy(
                f"another fleet run of {self.fleet} holds {self.path} (pid {pid}, since {since}); wait for it to "
                "finish, or watch it with its live view; nothing was started"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "since": utc_now()}).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass
class ServiceRecord:
    started: dict[str, Any] | None = None  # the latest service-started record of this run
    first_since: str | None = None  # when this run first started a child for it
    finished: ServiceResult | None = None
    skipped: ServiceResult | None = None


@dataclass
class FleetRunRecord:
    """One fleet run as its journal tells it."""

    run: str
    command: str
    started: dict[str, Any]
    services: dict[str, ServiceRecord] = field(default_factory=dict)
    finished: dict[str, Any] | None = None
    resumed: int = 0

    def service(self, name: str) -> ServiceRecord:
        return self.services.setdefault(name, ServiceRecord())

    def results(self) -> dict[str, ServiceResult]:
        """The services that ended (finished, or skipped as blocked), by name."""
        out: dict[str, ServiceResult] = {}
        for name, record in self.services.items():
            if record.finished is not None:
                out[name] = record.finished
            elif record.skipped is not None and record.skipped.status == "skipped":
                out[name] = record.skipped
        return out


def _result(record: dict[str, Any]) -> ServiceResult | None:
    data = record.get("result")
    if not isinstance(data, dict):
        return None
    try:
        return ServiceResult(**data)
    except TypeError:
        return None


def fleet_runs(journal: Journal) -> list[FleetRunRecord]:
    """Every fleet run in the journal, oldest first."""
    runs: dict[str, FleetRunRecord] = {}
    for record in journal.records():
        event, run_id = record.get("event"), record.get("run")
        if not isinstance(run_id, str):
            continue
        if event == "fleet-run-started":
            runs[run_id] = FleetRunRecord(run_id, str(record.get("command")), record)
            continue
        run = runs.get(run_id)
        if run is None:
            continue
        name = record.get("service")
        if event == "fleet-run-resumed":
            run.resumed += 1
        elif event == "fleet-run-finished":
            run.finished = record
        elif event == "service-started" and isinstance(name, str):
            service = run.service(name)
            service.started, service.finished = record, None
            if service.first_since is None:
                service.first_since = str(record.get("since") or record.get("ts"))
        elif event == "service-finished" and isinstance(name, str):
            run.service(name).finished = _result(record)
        elif event == "service-skipped" and isinstance(name, str):
            run.service(name).skipped = _result(record)
    return list(runs.values())


def latest_run(journal: Journal, command: str | None = None) -> FleetRunRecord | None:
    runs = [r for r in fleet_runs(journal) if command is None or r.command == command]
    return runs[-1] if runs else None
