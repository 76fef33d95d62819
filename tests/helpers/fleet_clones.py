"""Many services from a few recorded ones: a recorded snapshot (`ServiceState`) and its inventory,
cloned into service number i with its own service name, Patroni scopes and member hosts, so that a
fleet of hundreds can be planned by the pure planner (the fleet planning benchmark,
bench/fleet_plan.py, and its unit test) without a site per service.

A clone is the recorded service with three things changed, consistently in the inventory and the
snapshot: `service:` (`<name>-<i>`), each site's scope (`<name>-<i>-<scope>`), and every member
host (10.<i/256>.<i%256>.<n>, n per host). Everything else (LSNs, timelines, slots, settings,
member names) is as recorded, so each clone plans exactly as the recorded service does, with its
own plan fingerprint (the hosts are in the plan). The etcd endpoints stay shared, as a data
center's services share its DCS. Secret and key file references point at one stand-in file: a
clone is planned, never contacted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from migrator.model.state import SeedFacts, ServiceState

_FILE_REFERENCE = re.compile(r"file:\S+")
_KEY_FILES = re.compile(r"(?m)^(\s*(?:key_file|known_hosts|ca_file|cert_file)): .*$")


@dataclass(frozen=True)
class Recorded:
    inventory_text: str  # the inventory YAML the snapshot was observed with
    state: ServiceState


def clone_name(service: str, index: int) -> str:
    return f"{service}-{index:04d}"


def clone(recorded: Recorded, index: int, stand_in_file: Path) -> tuple[str, ServiceState]:
    """Clone number `index` (0..65535): its inventory YAML and its snapshot."""
    state = recorded.state
    name = clone_name(state.service, index)
    hosts = sorted({m.host for site in state.sites.values() for m in site.members})
    new_host = {host: f"10.{(index >> 8) & 255}.{index & 255}.{n}" for n, host in enumerate(hosts, start=1)}

    text = re.sub(r"(?m)^service: .*$", f"service: {name}", recorded.inventory_text)
    text = re.sub(r"(?m)^(\s+scope: )(\S+)$", lambda m: f"{m.group(1)}{name}-{m.group(2)}", text)
    text = _FILE_REFERENCE.sub(f"file:{stand_in_file}", text)
    text = _KEY_FILES.sub(lambda m: f"{m.group(1)}: {stand_in_file}", text)
    text = _with_hosts(text, new_host)

    data = state.model_dump(mode="json")
    data["service"] = name
    for site in data["sites"].values():
        site["scope"] = f"{name}-{site['scope']}"
    cloned = ServiceState.model_validate_json(_with_hosts(json.dumps(data), new_host))
    return text, cloned


def _with_hosts(text: str, new_host: dict[str, str]) -> str:
    for old, new in new_host.items():
        text = re.sub(rf"(?<![\d.]){re.escape(old)}(?![\d])", new, text)
    return text


def write_clones(recorded: list[Recorded], count: int, directory: Path, parallel: int = 20) -> tuple[Path, dict]:
    """`count` clones (round robin over `recorded`), each inventory in `directory`/inv/, a fleet
    file listing them (parallel `parallel`), and the snapshots by service name."""
    inventories = directory / "inv"
    inventories.mkdir(parents=True, exist_ok=True)
    stand_in = directory / "stand-in-secret"
    stand_in.write_text("not-a-real-secret\n")
    stand_in.chmod(0o600)
    states: dict[str, ServiceState] = {}
    for index in range(count):
        text, state = clone(recorded[index % len(recorded)], index, stand_in)
        (inventories / f"{state.service}.yml").write_text(text)
        states[state.service] = state
    fleet = directory / "fleet.yml"
    fleet.write_text(f"services:\n  - inv/*.yml\nparallel: {parallel}\n")
    return fleet, states


def recorded_observer(states: dict[str, ServiceState]):
    """The stand-in observation `plan_fleet` takes: each inventory's recorded snapshot."""

    def observe_state(inventory) -> ServiceState:
        return states[inventory.service]

    return observe_state


def no_seed_facts(inventory, state, source, target) -> SeedFacts:
    return SeedFacts()


def load_recorded(inventory_file: Path, snapshot_file: Path) -> Recorded:
    return Recorded(inventory_file.read_text(), ServiceState.model_validate_json(snapshot_file.read_text()))

