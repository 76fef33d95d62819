"""`migrate status`: both sites side by side, from one snapshot.

Lag is measured against the one writable member's current LSN, so it reads the same for a
replica in the primary's site and for a cascading replica in the other site. More than one
writable member is the alarm this view exists for: those rows are red and a banner says why.
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from migrator.model.state import MemberState, ServiceState, SiteState, lsn_text


def _sender_name(state: ServiceState, member: MemberState) -> str:
    receiver = member.postgres.wal_receiver if member.postgres else None
    if receiver is None:
        return "-"
    by_host = {m.host: m.name for s in state.sites.values() for m in s.members}
    source = by_host.get(receiver.sender_host or "", receiver.sender_host or "?")
    return f"{source} ({receiver.status})"


def _replay_lag_seconds(state: ServiceState, member: MemberState) -> str:
    for site in state.sites.values():
        for upstream in site.members:
            for conn in upstream.postgres.replication if upstream.postgres else ():
                if conn.application_name == member.name and conn.replay_lag_seconds is not None:
                    return f"{conn.replay_lag_seconds:.2f}"
    return "-"


def _row(
    state: ServiceState, site: SiteState, member: MemberState, head_lsn: int | None, split_brain: bool
) -> list[Text | str]:
    style = "bold red" if split_brain and member.writable else ""
    if member.postgres is None and member.patroni is None:
        error = member.patroni_error or member.postgres_error or "unreachable"
        return [
            site.name,
            Text(member.name, style="red"),
            Text("unreachable", style="red"),
            "",
            "",
            "",
            "",
            "",
            Text(_short_error(error), style="red"),
        ]
    pg = member.postgres
    position = pg.position if pg else None
    lag = head_lsn - position if head_lsn is not None and position is not None else None
    slots = ", ".join(f"{s.name}{'*' if s.active else ''}" for s in pg.slots) if pg else "-"
    role = member.role or "?"
    if pg is not None and not pg.in_recovery:
        role += " (writable)"
    patroni_state = member.patroni.state if member.patroni else (member.patroni_error or "")[:20]
    return [
        site.name,
        Text(member.name, style=style),
        Text(role, style=style),
        patroni_state or "-",
        str(pg.timeline) if pg else "-",
        lsn_text(position),
        "-" if lag is None else f"{max(lag, 0):,}",
        _replay_lag_seconds(state, member),
        f"{_sender_name(state, member)}  slots: {slots}" if pg else _short_error(member.postgres_error),
    ]


def _short_error(error: str | None) -> str:
    """The reason without the member name and address the row already shows."""
    text = (error or "").split(": ", 1)[-1]
    return text if len(text) <= 70 else text[:67] + "..."


def render_status(state: ServiceState) -> Group:
    writers = state.writable_members
    split_brain = len(writers) > 1
    head_lsn = writers[0].postgres.current_lsn if len(writers) == 1 and writers[0].postgres else None
    table = Table(title=f"service {state.service} at {state.observed_at}", expand=False)
    for column in ("site", "member", "role", "state", "TL", "LSN", "lag bytes", "lag s", "streams from / slots"):
        table.add_column(column, justify="right" if column in ("TL", "lag bytes", "lag s") else "left")
    for site in state.sites.values():
        for member in site.members:
            table.add_row(*_row(state, site, member, head_lsn, split_brain))
        table.add_section()
    parts: list = [table]
    for site in state.sites.values():
        kind = (
            "dynamic config unknown"
            if site.dynamic_config is None
            else "standby cluster"
            if site.is_standby_cluster
            else "primary cluster"
        )
        etcd = "etcd ok" if site.dcs.healthy else f"etcd DOWN ({site.dcs.error})"
        paused = ", PAUSED" if site.paused else ""
        parts.append(
            Text(f"{site.name}: {kind}, {etcd}{paused}", style="red" if (not site.dcs.healthy or site.paused) else "")
        )
    if split_brain:
        parts.append(
            Text(
                "TWO OR MORE WRITABLE MEMBERS: "
                + ", ".join(m.name for m in writers)
                + " - do not migrate; see runbooks/",
                style="bold red",
            )
        )
    elif not writers:
        parts.append(Text("no writable member in any site", style="bold red"))
    return Group(*parts)
