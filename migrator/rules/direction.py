"""Which site moves where, when the operator named only the target (or nothing, for `check`)."""

from __future__ import annotations

from migrator.errors import UsageError
from migrator.model.inventory import Inventory
from migrator.model.state import ServiceState


def source_site(inventory: Inventory, state: ServiceState) -> str:
    """The site that is primary now; when the snapshot cannot say (split brain, no writer), the
    site configured as a primary cluster, so the checks still run and name what is wrong."""
    if state.primary_site is not None:
        return state.primary_site.name
    not_standby = [n for n, s in state.sites.items() if s.dynamic_config is not None and not s.is_standby_cluster]
    if len(not_standby) == 1:
        return not_standby[0]
    writers = [m.site for m in state.writable_members]
    return writers[0] if writers else next(iter(inventory.sites))


def direction(inventory: Inventory, state: ServiceState, target: str | None) -> tuple[str, str]:
    source = source_site(inventory, state)
    if target is not None:
        inventory.site(target)
        return source, target
    others = [name for name in inventory.sites if name != source]
    if len(others) != 1:
        raise UsageError(
            f"the inventory has {len(inventory.sites)} sites; name the target with --dc (one of {', '.join(others)})"
        )
    return source, others[0]
