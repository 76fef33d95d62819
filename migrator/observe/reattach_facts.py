"""What a reattach plan needs beyond the snapshot, read-only: the timeline history file of the new
primary's current timeline (where it left each older timeline: the fork points the old site's
members are judged against). The old site's pg_control comes with the snapshot (host facts)."""

from __future__ import annotations

import psycopg

from migrator.adapters.pg import connect_args
from migrator.adapters.pg_queries import READ_FILE, history_path, parse_file
from migrator.errors import MigratorError
from migrator.model.inventory import Inventory
from migrator.model.state import ServiceState


def primary_history(inventory: Inventory, state: ServiceState, site: str) -> tuple[str | None, str | None]:
    """(the .history text of the site leader's timeline, None) or (None, why not); timeline 1
    has no history file: ("", None)."""
    leader = state.sites[site].leader
    if leader is None or leader.postgres is None:
        return None, f"{site} has no leader that answers"
    timeline = leader.postgres.timeline
    if timeline <= 1:
        return "", None
    _, _, member = inventory.member(leader.name)
    path = history_path(timeline)
    timeout = inventory.gates.connect_timeout_seconds
    try:
        with psycopg.connect(**connect_args(member, inventory.credentials.superuser, timeout, kept_open=False)) as conn:
            return parse_file(leader.name, path, conn.execute(READ_FILE, (path,)).fetchall()), None
    except (psycopg.Error, MigratorError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, f"{leader.name}: cannot read {path} ({first})"
