"""The live view of a fleet run: on a terminal a rich Live table (one row per service: wave, state,
phase, replay lag, time left before its deadline, write gap, outcome); without one, a line per
event (started, phase changed, finished with its exit code) on stderr, each with the seconds since
the fleet run started. Events may come from several threads and from the Ctrl-C handler: one
re-entrant lock serialises them."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from migrator.model.fleet_run import ServiceProgress

_STYLE = {
    "moved": "green",
    "no-op": "green",
    "skipped": "yellow",
    "not-started": "yellow",
    "blocked": "red",
    "failed": "red",
    "rolled-back": "red",
    "unsafe": "bold red",
    "overran": "bold red",
    "running": "cyan",
}


def _lag(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1024 / 1024:.1f} MiB" if value >= 1 << 20 else f"{value} B"


def progress_table(rows: list[ServiceProgress], title: str = "fleet") -> Table:
    table = Table(title=title, expand=False)
    for column in ("wave", "service", "state", "phase", "lag", "deadline", "write gap", "exit", "note"):
        table.add_column(column, no_wrap=column != "note", overflow="fold")
    for row in rows:
        style = _STYLE.get(row.state, "")
        table.add_row(
            str(row.wave),
            escape(row.service),
            f"[{style}]{row.state}[/]" if style else row.state,
            escape(row.phase or "-"),
            _lag(row.lag_bytes),
            "-" if row.deadline_seconds is None else f"{row.deadline_seconds:.0f} s",
            "-" if row.write_unavailable_seconds is None else f"{row.write_unavailable_seconds:.3f} s",
            "-" if row.exit_code is None else str(row.exit_code),
            escape(row.note[:80]),
        )
    return table


class LiveTable:
    """On a terminal: the table, refreshed; events print above it."""

    def __init__(self, console: Console, title: str):
        self._title = title
        self._lock = threading.RLock()
        self._live = Live(progress_table([], title), console=console, refresh_per_second=2, transient=False)
        self._live.start()

    def event(self, text: str) -> None:
        with self._lock:
            self._live.console.print(escape(text), highlight=False)

    def refresh(self, rows: list[ServiceProgress]) -> None:
        with self._lock:
            self._live.update(progress_table(rows, self._title))

    def close(self) -> None:
        with self._lock:
            self._live.stop()

    def pause(self) -> None:
        with self._lock:
            self._live.stop()

    def resume(self) -> None:
        with self._lock:
            self._live.start()


class EventLines:
    """Without a terminal: one line per event, nothing else."""

    def __init__(self, stream: TextIO | None = None):
        self._stream = stream or sys.stderr
        self._lock = threading.RLock()
        self._started = time.monotonic()

    def event(self, text: str) -> None:
        line = " ".join(text.split())
        with self._lock:
            self._stream.write(f"{time.monotonic() - self._started:8.2f}s {line}\n")
            self._stream.flush()

    def refresh(self, rows: list[ServiceProgress]) -> None:
        return None

    def close(self) -> None:
        return None

    def pause(self) -> None:
        return None

    def resume(self) -> None:
        return None


def fleet_view(console: Console, interactive: bool, title: str) -> LiveTable | EventLines:
    return LiveTable(console, title) if interactive else EventLines()
