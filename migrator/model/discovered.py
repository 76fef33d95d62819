"""What `migrate init` discovered about the sites: plain data between observe/discover.py and
render/inventory_file.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from migrator.model.inventory import MEMBER_PLACEHOLDER


@dataclass(frozen=True)
class DiscoveredMember:
    name: str
    host: str
    pg_port: int
    api_url: str | None
    role: str | None
    data_dir: str | None = None
    bin_dir: str | None = None


@dataclass(frozen=True)
class DiscoveredSite:
    name: str
    url: str
    scope: str
    members: tuple[DiscoveredMember, ...]
    patroni_version: str | None
    system_identifier: str | None
    # The permanent slots of the site's dynamic config (`slots:`), names only.
    slots: tuple[str, ...]
    # standby_cluster of the dynamic config: where this site follows from, if it is a standby.
    standby_hosts: tuple[str, ...] = ()
    standby_slot: str | None = None
    replication_user: str | None = None
    # Filled in by relate(): the site this one follows, and the slot its standby leader uses.
    follows: str | None = None
    replication_slot: str | None = None
    notes: tuple[str, ...] = field(default=())
    # Whether the site's DCS (when given) holds Patroni's keys under namespace + scope: True,
    # False (wrong namespace, or the wrong etcd), None (not asked, or it did not answer).
    namespace_in_dcs: bool | None = None


def member_template(site: DiscoveredSite, attribute: str) -> str | None:
    """One path for every member of the site, with {member} where each has its own name; None
    when the members disagree in another way or one is unknown."""
    values = [getattr(m, attribute) for m in site.members]
    if not values or any(not isinstance(v, str) or not v.startswith("/") for v in values):
        return None
    templates = {v.replace(m.name, MEMBER_PLACEHOLDER) for v, m in zip(values, site.members, strict=True)}
    if len(set(values)) == 1:
        return values[0]
    return templates.pop() if len(templates) == 1 else None
