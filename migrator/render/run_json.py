"""Machine output of `migrate execute` / `rollback` / `status` with `--format json`.

One JSON document on stdout per command (a `status --watch` prints one per line), with a
`"schema"` number that changes only when a key is removed or changes meaning (new keys may
appear within a schema). The shapes are documented in docs/output.md, and a unit test holds the
documents to `RUN_KEYS` / `STATUS_KEYS` / `ERROR_KEYS` below. Every string in a document is
masked with the inventory's secrets, as the journal is.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from migrator.errors import MigratorError
from migrator.model.secrets import mask_values
from migrator.model.state import MemberState, ServiceState, lsn_text
from migrator.render.gate_samples import gate_samples
from migrator.render.window_breakdown import journal_parts
from migrator.run.engine import Outcome, summary
from migrator.run.journal import Journal

SCHEMA = 1

# The documented top-level keys of each document kind (docs/output.md).
RUN_KEYS = frozenset(
    {
        "schema",
        "kind",
        "command",
        "service",
        "migration",
        "source",
        "target",
        "exit_code",
        "verdict",
        "message",
        "steps",
        "token",
        "timelines",
        "new_primary",
        "write_unavailable_seconds",
        "events",
        "warnings",
        "report_file",
        "journal_file",
        "timeline_file",
        "window_parts",
        "gate_samples",
    }
)
STEP_KEYS = frozenset({"id", "status", "started", "done", "seconds", "error"})
STATUS_KEYS = frozenset({"schema", "kind", "service", "observed_at", "writable_members", "split_brain", "sites"})
SITE_KEYS = frozenset({"name", "scope", "cluster", "paused", "dcs", "members"})
MEMBER_KEYS = frozenset(
    {
        "name",
        "host",
        "api_url",
        "role",
        "writable",
        "patroni_state",
        "timeline",
        "lsn",
        "lag_bytes",
        "replay_lag_seconds",
        "streams_from",
        "slots",
        "error",
    }
)
ERROR_KEYS = frozenset({"schema", "kind", "command", "service", "exit_code", "verdict", "message", "warnings"})


def dumps(document: dict[str, Any], secrets: Iterable[str], pretty: bool = True) -> str:
    """The document as JSON text, every string in it masked."""
    masked = mask_values(document, list(secrets))
    return json.dumps(masked, indent=2 if pretty else None, sort_keys=False) + "\n"


# ---- execute / rollback ------------------------------------------------------------------


def run_document(
    command: str,
    service: str,
    journal: Journal,
    outcome: Outcome,
    warnings: list[str],
    report_file: str | None,
    timeline_file: str | None = None,
) -> dict[str, Any]:
    """What a run did, from its outcome and its journal (the same facts as the text report)."""
    records = [r for r in journal.records() if r.get("migration") == outcome.migration]
    started = next((r for r in records if r["event"] == "migration-started"), {})
    data = summary(journal, outcome.migration)
    facts: dict[str, dict[str, Any]] = data["facts"]
    token = next((f for f in facts.values() if "token" in f), None)
    promoted = next((f for f in facts.values() if "new_timeline" in f), None)
    return {
        "schema": SCHEMA,
        "kind": "run",
        "command": command,
        "service": service,
        "migration": outcome.migration,
        "source": started.get("source"),
        "target": started.get("target"),
        "exit_code": outcome.exit_code,
        "verdict": outcome.outcome,
        "message": outcome.message,
        "steps": _steps(records),
        "token": None
        if token is None
        else {
            "lsn": token.get("token_text"),
            "pg_control_state": token.get("token_state"),
            "timeline": token.get("token_timeline"),
        },
        "timelines": None
        if promoted is None
        else {"before": promoted.get("timeline_before"), "after": promoted.get("new_timeline")},
        "new_primary": promoted.get("primary") if promoted else None,
        "write_unavailable_seconds": data["write_unavailable_seconds"],
        "events": _events(records),
        "warnings": list(warnings),
        "report_file": report_file,
        "journal_file": str(journal.path),
        "timeline_file": timeline_file,
        "window_parts": _window_parts(records, outcome.migration),
        "gate_samples": [sample.as_json() for sample in gate_samples(records, outcome.migration)],
    }


def _window_parts(records: list[dict[str, Any]], migration: str) -> list[dict[str, Any]]:
    """The report's "part by part" table as data: null instants and seconds where not measured."""
    return [
        {
            "name": part.name,
            "start": part.start.isoformat() if part.start else None,
            "end": part.end.isoformat() if part.end else None,
            "seconds": part.seconds,
            "in_window": part.in_window,
        }
        for part in journal_parts(records, migration)
    ]


def noop_document(command: str, service: str, message: str, warnings: list[str]) -> dict[str, Any]:
    """`execute` found the service already where asked: nothing ran, exit 0."""
    return _short_document("run", command, service, 0, "nothing-to-do", message, warnings)


def error_document(command: str, service: str, exit_code: int, message: str, warnings: list[str]) -> dict[str, Any]:
    """The command stopped before a run had an outcome (bad input, lock busy, blocked plan...):
    the same one line as on stderr, so a pipeline still reads one document."""
    return _short_document("error", command, service, exit_code, "error", message, warnings)


@contextmanager
def errors_as_document(
    enabled: bool, command: str, service: str, secrets: Iterable[str], warnings: list[str]
) -> Iterator[None]:
    """With `--format json`, an error that ends the command before a run outcome also prints its
    document on stdout; the error then goes on to the CLI's one line on stderr and exit code."""
    try:
        yield
    except MigratorError as exc:
        if enabled:
            sys.stdout.write(dumps(error_document(command, service, exc.exit_code, str(exc), warnings), secrets))
            sys.stdout.flush()
        raise


def _short_document(
    kind: str, command: str, service: str, exit_code: int, verdict: str, message: str, warnings: list[str]
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "kind": kind,
        "command": command,
        "service": service,
        "exit_code": exit_code,
        "verdict": verdict,
        "message": message,
        "warnings": list(warnings),
    }


def _steps(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each step in the order it started: done, failed, undone or started (interrupted)."""
    steps: dict[str, dict[str, Any]] = {}
    for record in records:
        name = record.get("step")
        if not name:
            continue
        entry = steps.setdefault(
            name, {"id": name, "status": "started", "started": None, "done": None, "seconds": None, "error": None}
        )
        event = record["event"]
        if event == "step-started" and entry["started"] is None:
            entry["started"] = record["ts"]
        elif event == "step-done":
            entry["done"] = record["ts"]
            entry["status"] = "done"
        elif event == "step-failed":
            entry["status"] = "failed"
            entry["error"] = record.get("error")
        elif event == "undo-done" and record.get("changed"):
            entry["status"] = "undone"
    for entry in steps.values():
        if entry["started"] and entry["done"]:
            entry["seconds"] = round(_ts(entry["done"]) - _ts(entry["started"]), 3)
    return list(steps.values())


def _events(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What happened beside the steps: DCS holds and a lost lock."""
    kept = ("dcs-hold", "dcs-back", "dcs-hold-expired", "lock-lost")
    return [{k: v for k, v in r.items() if k not in ("migration",)} for r in records if r["event"] in kept]


def _ts(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


# ---- status --------------------------------------------------------------------------------


def status_document(state: ServiceState) -> dict[str, Any]:
    """Both sites, every member with its role, timeline, position and lag (as `migrate status`)."""
    writers = state.writable_members
    head = writers[0].postgres.current_lsn if len(writers) == 1 and writers[0].postgres else None
    by_host = {m.host: m.name for s in state.sites.values() for m in s.members}
    lag_by_name = {
        conn.application_name: conn.replay_lag_seconds
        for site in state.sites.values()
        for member in site.members
        for conn in (member.postgres.replication if member.postgres else ())
        if conn.replay_lag_seconds is not None
    }
    return {
        "schema": SCHEMA,
        "kind": "status",
        "service": state.service,
        "observed_at": state.observed_at,
        "writable_members": [m.name for m in writers],
        "split_brain": len(writers) > 1,
        "sites": [
            {
                "name": site.name,
                "scope": site.scope,
                "cluster": "unknown"
                if site.dynamic_config is None
                else "standby"
                if site.is_standby_cluster
                else "primary",
                "paused": site.paused,
                "dcs": {"healthy": site.dcs.healthy, "error": site.dcs.error},
                "members": [_member(m, head, by_host, lag_by_name) for m in site.members],
            }
            for site in state.sites.values()
        ],
    }


def _member(
    member: MemberState, head: int | None, by_host: dict[str, str], lag_by_name: dict[str, float]
) -> dict[str, Any]:
    pg = member.postgres
    position = pg.position if pg else None
    receiver = pg.wal_receiver if pg else None
    error = None
    if pg is None:
        error = member.postgres_error or member.patroni_error or "unreachable"
    return {
        "name": member.name,
        "host": member.host,
        "api_url": member.api_url,
        "role": member.role,
        "writable": member.writable,
        "patroni_state": member.patroni.state if member.patroni else None,
        "timeline": pg.timeline if pg else None,
        "lsn": lsn_text(position) if position is not None else None,
        "lag_bytes": max(head - position, 0) if head is not None and position is not None else None,
        "replay_lag_seconds": lag_by_name.get(member.name),
        "streams_from": None
        if receiver is None
        else {
            "member": by_host.get(receiver.sender_host or "", receiver.sender_host),
            "status": receiver.status,
            "slot": receiver.slot_name,
        },
        "slots": [{"name": s.name, "active": s.active} for s in pg.slots] if pg else [],
        "error": error,
    }
