"""Where the target's standby leader streams from, and the section that re-points it. Pure.

An in-site switchover on the source leaves a target whose `standby_cluster.host` is one fixed
address streaming from the source's new *replica*: PostgreSQL cascades from a standby, so WAL
(and new timelines) still arrive, but Patroni's check of the followed leader fails every loop
('session is read-only'), the target's slot on the source's real leader stays inactive and pins
WAL, and the switchover's gates would measure the wrong upstream. The planner re-points the
target at every source member (a host list: Patroni adds target_session_attrs=read-write and
attaches to whichever member is primary) before the cut-over.
"""

from __future__ import annotations

from typing import Any

from migrator.errors import InventoryError
from migrator.model.inventory import Inventory, Site
from migrator.model.state import MemberState, ServiceState


def stray_upstream(state: ServiceState, source: str, target: str) -> MemberState | None:
    """The source member that the target's standby leader streams from, when that member is not
    the source's leader; None when it follows the leader or when the snapshot cannot tell."""
    src, dst = state.sites.get(source), state.sites.get(target)
    if src is None or dst is None or source == target:
        return None
    standby, leader = dst.leader, src.leader
    receiver = standby.postgres.wal_receiver if standby and standby.postgres else None
    if receiver is None or receiver.status != "streaming" or leader is None:
        return None
    sender = next((m for m in src.members if m.host == receiver.sender_host), None)
    if sender is None or sender.name == leader.name:
        return None
    return sender


def target_repoint(inventory: Inventory, state: ServiceState, source: str, target: str) -> dict[str, Any] | None:
    """What the playbook's repoint step needs, or None when the target follows the source's
    leader already. Only host and port change; the slot and every other key stay as observed."""
    stray = stray_upstream(state, source, target)
    if stray is None:
        return None
    section = state.sites[target].standby_cluster or {}
    members = inventory.site(source).members
    leader = state.sites[source].leader
    return {
        "stray": stray.name,
        "source_leader": leader.name if leader else None,
        "previous": {"host": section.get("host"), "port": section.get("port")},
        "standby_cluster": {
            "host": ",".join(m.host for m in members),
            "port": common_pg_port(source, inventory.site(source)),
        },
    }


def common_pg_port(site_name: str, site: Site) -> int:
    """The one PostgreSQL port of a site's members (standby_cluster.port takes only one)."""
    ports = sorted({m.pg_port for m in site.members})
    if len(ports) != 1:
        raw = ", ".join(f"{m.name}:{m.pg_port}" for m in site.members)
        raise InventoryError(
            f"site {site_name}: its members use different pg_port values ({raw}); another site's "
            "standby_cluster can follow it only with one port for all members (a port list fails "
            "patroni --validate-config): give every member of the site the same pg_port"
        )
    return ports[0]
