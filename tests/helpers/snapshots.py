"""Test snapshots: the observed healthy testbed (fixtures/state/baseline.json) plus named mutations.

Every test state is `load_baseline()` with one or more of the helpers below applied, so a new
baseline observed from the real testbed can replace the file without touching the tests. The
baseline promises only this: sites dc1 (primary; dc1-a primary at 127.0.1.1, dc1-b replica at
127.0.1.2) and dc2 (standby cluster of dc1; dc2-a standby leader at 127.0.2.1 streaming from dc1-a
with slot dc2, dc2-b replica at 127.0.2.2 cascading from dc2-a); permanent slots dc2 in dc1's
config and dc1 in dc2's; dc2's standby_cluster.host "127.0.1.1,127.0.1.2". Helpers never rely on
LSN values or anything else the baseline does not promise.

Models are frozen: each helper dumps the state, changes the plain data and validates it again, so
a mutation that does not fit the model fails loudly here, not somewhere in a check.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

from migrator.model.inventory import Inventory, parse_inventory
from migrator.model.state import MemberState, ServiceState

FIXTURES = Path(__file__).resolve().parents[1] / "unit" / "fixtures"
BASELINE = FIXTURES / "state" / "baseline.json"
EXAMPLE_INVENTORY = Path(__file__).resolve().parents[2] / "examples" / "testbed.yml"


@lru_cache(maxsize=1)
def load_baseline() -> ServiceState:
    return ServiceState.model_validate_json(BASELINE.read_text())


@lru_cache(maxsize=1)
def example_inventory() -> Inventory:
    """examples/testbed.yml, validated without needing its secret and key files to exist."""
    return parse_inventory(EXAMPLE_INVENTORY.read_text(), source=str(EXAMPLE_INVENTORY),
                           base_dir=EXAMPLE_INVENTORY.parent, check_local_files=False)


# --- plumbing ---------------------------------------------------------------------------------


def _merge(base: dict[str, Any], changes: dict[str, Any], *, none_deletes: bool) -> dict[str, Any]:
    """Nested dicts merge; other values replace. With `none_deletes`, None removes the key
    (Patroni's PATCH /config semantics); otherwise None is stored as the value."""
    merged = dict(base)
    for key, value in changes.items():
        if value is None and none_deletes:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value, none_deletes=none_deletes)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _data(state: ServiceState) -> dict[str, Any]:
    return state.model_dump(mode="json")


def _build(data: dict[str, Any]) -> ServiceState:
    return ServiceState.model_validate(data)


def _member_data(data: dict[str, Any], name: str) -> dict[str, Any]:
    for site in data["sites"].values():
        for member in site["members"]:
            if member["name"] == name:
                return member
    raise KeyError(f"no member {name!r} in the snapshot")


def member(state: ServiceState, name: str) -> MemberState:
    for site in state.sites.values():
        if (found := site.member(name)) is not None:
            return found
    raise KeyError(f"no member {name!r} in the snapshot")


# --- mutations --------------------------------------------------------------------------------


def with_member(state: ServiceState, name: str, **changes: Any) -> ServiceState:
    """e.g. with_member(s, "dc1-b", postgres={"in_recovery": False})."""
    data = _data(state)
    target = _member_data(data, name)
    target.update(_merge(target, changes, none_deletes=False))
    return _build(data)


def with_site(state: ServiceState, site: str, **changes: Any) -> ServiceState:
    """e.g. with_site(s, "dc2", dcs={"healthy": False, "error": "connection refused"})."""
    data = _data(state)
    data["sites"][site] = _merge(data["sites"][site], changes, none_deletes=False)
    return _build(data)


def with_config(state: ServiceState, site: str, changes: dict[str, Any]) -> ServiceState:
    """Change a site's dynamic config as PATCH /config would (None deletes a key), in both the
    REST view and the DCS copy."""
    data = _data(state)
    site_data = data["sites"][site]
    for holder, key in ((site_data, "dynamic_config"), (site_data["dcs"], "config")):
        if holder.get(key) is not None:
            holder[key] = _merge(holder[key], changes, none_deletes=True)
    return _build(data)


def with_settings(state: ServiceState, *names: str, **settings: str) -> ServiceState:
    """Set pg_settings values (strings, as PostgreSQL shows them) on the named members."""
    for name in names:
        state = with_member(state, name, postgres={"settings": settings})
    return state


def with_slot(state: ServiceState, name: str, slot: str, **changes: Any) -> ServiceState:
    """Change (or add, with physical defaults) replication slot `slot` on member `name`."""
    data = _data(state)
    slots = _member_data(data, name)["postgres"]["slots"]
    found = next((s for s in slots if s["name"] == slot), None)
    if found is None:
        found = {"name": slot, "slot_type": "physical", "active": False, "wal_status": "reserved"}
        slots.append(found)
    found.update(changes)
    return _build(data)


def without_slot(state: ServiceState, name: str, slot: str) -> ServiceState:
    data = _data(state)
    postgres = _member_data(data, name)["postgres"]
    postgres["slots"] = [s for s in postgres["slots"] if s["name"] != slot]
    return _build(data)


def with_replication(state: ServiceState, name: str, **changes: Any) -> ServiceState:
    """Change every pg_stat_replication row on member `name`, e.g. sync_state="async"."""
    data = _data(state)
    for row in _member_data(data, name)["postgres"]["replication"]:
        row.update(changes)
    return _build(data)


def streaming_from(state: ServiceState, standby: str, upstream: str) -> ServiceState:
    """`standby` streams from `upstream`: its WAL receiver points there and its
    pg_stat_replication row moves from wherever it was to `upstream`."""
    data = _data(state)
    upstream_data = _member_data(data, upstream)
    row = {"application_name": standby, "client_addr": "127.0.0.1", "state": "streaming",
           "sync_state": "async"}
    for site in data["sites"].values():
        for m in site["members"]:
            if m["postgres"] is None:
                continue
            rows = m["postgres"]["replication"]
            row = next((r for r in rows if r["application_name"] == standby), row)
            m["postgres"]["replication"] = [r for r in rows if r["application_name"] != standby]
    upstream_data["postgres"]["replication"].append(row)
    receiver = _member_data(data, standby)["postgres"]["wal_receiver"] or {}
    receiver.update(status="streaming", sender_host=upstream_data["host"], sender_port=5432)
    _member_data(data, standby)["postgres"]["wal_receiver"] = receiver
    return _build(data)


def unreachable(state: ServiceState, *names: str, error: str = "connection refused",
                probes: tuple[str, ...] = ("patroni", "postgres")) -> ServiceState:
    """The named members did not answer the given probes ("patroni", "postgres", "host")."""
    for name in names:
        changes: dict[str, Any] = {}
        for probe in probes:
            section = "host_facts" if probe == "host" else probe
            changes[section] = None
            changes[f"{probe}_error"] = f"{error} ({name})"
        state = with_member(state, name, **changes)
    return state


def with_system_identifier(state: ServiceState, site: str, identifier: str) -> ServiceState:
    """Every view of `site` (PostgreSQL, Patroni, the DCS initialize key) shows `identifier`."""
    for m in state.sites[site].members:
        changes: dict[str, Any] = {}
        if m.postgres is not None:
            changes["postgres"] = {"system_identifier": identifier}
        if m.patroni is not None:
            changes["patroni"] = {"database_system_identifier": identifier}
        state = with_member(state, m.name, **changes)
    if state.sites[site].dcs.initialize is not None:
        state = with_site(state, site, dcs={"initialize": identifier})
    return state
