"""`migrate fleet status`: one table row per service (terminal text), or one JSON document.

A row: the service, each site's role (primary / standby cluster / down ...), the writable
leader, its timeline, the furthest standby's lag, the verdict and the first reason for it. A
split-brain row is red, with a banner under the table naming its writable members. Nothing here
reads an inventory or a secret: the caller masks (`FleetStatusView` does, with the secrets it is
given).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, TextIO

from rich.table import Table
from rich.text import Text

from migrator.model.fleet_status import VERDICTS, FleetStatus, ServiceStatus, lag_bytes, site_role
from migrator.model.secrets import mask, mask_values
from migrator.model.state import MemberState
from migrator.render.plan_report import _console
from migrator.render.run_json import SCHEMA, status_document

FLEET_STATUS_KEYS = frozenset({"schema", "kind", "fleet", "observed_at", "exit_code", "totals", "services"})
FLEET_STATUS_SERVICE_KEYS = frozenset(
    {"service", "inventory", "verdict", "problems", "site_roles", "leader", "timeline", "lag_bytes", "status"}
)
_VERDICT_TEXT = {"healthy": "healthy", "degraded": "DEGRADED", "unobserved": "UNOBSERVED", "split-brain": "SPLIT BRAIN"}
_VERDICT_STYLE = {"healthy": "green", "degraded": "yellow", "unobserved": "red", "split-brain": "bold red"}


def site_names(status: FleetStatus) -> list[str]:
    """Every site name of the fleet, in the order first met (usually the same two everywhere)."""
    names: list[str] = []
    for row in status.services:
        for name in row.state.sites if row.state else ():
            if name not in names:
                names.append(name)
    return names


def leader(row: ServiceStatus) -> str | None:
    writers = row.state.writable_members if row.state else ()
    return ", ".join(m.name for m in writers) or None


def timeline(row: ServiceStatus) -> str | None:
    writers = row.state.writable_members if row.state else ()
    lines = [str(m.postgres.timeline) for m in writers if m.postgres is not None]
    return ", ".join(lines) or None


def human_bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def totals_line(status: FleetStatus) -> str:
    totals = status.totals
    return f"services: {totals['services']}; " + ", ".join(f"{totals[v]} {v}" for v in VERDICTS)


def render_text(status: FleetStatus, *, color: bool = False) -> str:
    console, out = _console(color)
    sites = site_names(status)
    table = Table(title=f"fleet {status.fleet} at {status.observed_at}", title_justify="left", expand=False)
    for header in ("service", *sites, "leader", "TL", "lag", "verdict", "why"):
        table.add_column(header, overflow="fold", justify="right" if header in ("TL", "lag") else "left")
    for row in status.services:
        style = "bold red" if row.verdict == "split-brain" else ""
        roles = [_site_cell(row, name) for name in sites]
        why = row.problems[0] if row.problems else ""
        if len(row.problems) > 1:
            why += f" (+{len(row.problems) - 1} more)"
        cells = [row.service, *roles, leader(row) or "-", timeline(row) or "-",
                 human_bytes(lag_bytes(row.state)) if row.state else "-"]  # fmt: skip
        table.add_row(
            *(Text(cell, style=style) for cell in cells),
            Text(_VERDICT_TEXT[row.verdict], style=_VERDICT_STYLE[row.verdict]),
            Text(why, style=style or ("red" if row.verdict == "unobserved" else "")),
        )
    console.print(table)
    console.print(Text(totals_line(status)), soft_wrap=True)
    for row in status.services:
        if row.verdict == "split-brain":
            console.print(Text(f"{row.service}: {row.problems[0]}", style="bold red"), soft_wrap=True)
    return out.getvalue()


def _site_cell(row: ServiceStatus, name: str) -> str:
    if row.state is None:
        return "?"
    site = row.state.sites.get(name)
    return "-" if site is None else site_role(site)


def fleet_status_document(status: FleetStatus) -> dict[str, Any]:
    """The fleet status as one JSON document (docs/output.md, `kind: "fleet-status"`)."""
    return {
        "schema": SCHEMA,
        "kind": "fleet-status",
        "fleet": status.fleet,
        "observed_at": status.observed_at,
        "exit_code": status.exit_code,
        "totals": status.totals,
        "services": [
            {
                "service": row.service,
                "inventory": row.inventory,
                "verdict": row.verdict,
                "problems": list(row.problems),
                "site_roles": {name: site_role(site) for name, site in row.state.sites.items()} if row.state else None,
                "leader": None if (one := _single_writer(row)) is None else one.name,
                "timeline": None if one is None or one.postgres is None else one.postgres.timeline,
                "lag_bytes": lag_bytes(row.state) if row.state else None,
                "status": status_document(row.state) if row.state else None,
            }
            for row in status.services
        ],
    }


def _single_writer(row: ServiceStatus) -> MemberState | None:
    writers = row.state.writable_members if row.state else ()
    return writers[0] if len(writers) == 1 else None


class FleetStatusView:
    """Prints each observation of the fleet: a JSON document (compact, one per line, with
    --watch), the table once, or the table rewritten in place (--watch on a terminal)."""

    def __init__(self, *, as_json: bool, watch: bool, color: bool, console: Any, stream: TextIO | None = None):
        self.as_json, self.watch, self.color, self.console = as_json, watch, color, console
        self.stream = stream or sys.stdout
        self.secrets: list[str] = []
        self._live: Any = None

    def remember(self, secrets: Iterable[str]) -> None:
        self.secrets += [s for s in secrets if s not in self.secrets]

    def __call__(self, status: FleetStatus) -> None:
        if self.as_json:
            document = mask_values(fleet_status_document(status), self.secrets)
            self.stream.write(json.dumps(document, indent=None if self.watch else 2) + "\n")
            self.stream.flush()
            return
        text = Text.from_ansi(mask(render_text(status, color=self.color), self.secrets).rstrip("\n"))
        if not self.watch:
            self.console.print(text, soft_wrap=True)
            return
        if self._live is None:
            from rich.live import Live

            self._live = Live(text, console=self.console, refresh_per_second=4)
            self._live.start()
        else:
            self._live.update(text)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
