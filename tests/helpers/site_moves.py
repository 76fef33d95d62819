"""Small testbed moves shared by the topology-fault scenarios: who leads a site, where a standby
streams from, an in-site switchover through Patroni's REST API, an inventory with other gates."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from tests.testbed import Testbed, wait_until
from tests.testbed.topology import REST_USER, Member, Site

# An in-site switchover on the testbed takes 3-5 s; Patroni's own REST call waits for it.
SWITCHOVER_HTTP_TIMEOUT = 90


def member_with_role(testbed: Testbed, site: Site, role: str) -> Member:
    found = [m for m in site.members if _role(testbed, m) == role]
    assert len(found) == 1, f"{site.name}: expected one {role}, found {[m.name for m in found]}"
    return found[0]


def _role(testbed: Testbed, member: Member) -> str | None:
    try:
        return testbed.patroni_state(member).get("role")
    except requests.RequestException:
        return None


def receiver(testbed: Testbed, member: Member) -> tuple | None:
    """(status, sender_host, slot_name) of the member's WAL receiver, None when it has none."""
    rows = testbed.sql(member, "SELECT status, sender_host, slot_name FROM pg_stat_wal_receiver")
    return rows[0] if rows else None


def wait_streams_from(testbed: Testbed, standby: Member, upstream: Member,
                      timeout: float = 60) -> float:
    """Wait until `standby` streams from `upstream`; returns the seconds it took."""
    began = time.monotonic()
    wait_until(lambda: (receiver(testbed, standby) or ("",))[:2] == ("streaming", upstream.host),
               timeout, f"{standby.name} to stream from {upstream.name}", interval=0.2)
    return time.monotonic() - began


def in_site_switchover(testbed: Testbed, site: Site, candidate: Member) -> None:
    """Patroni's own switchover inside one site (what `patronictl switchover` does), by REST."""
    leader = member_with_role(testbed, site, "primary")
    if leader == candidate:
        return
    resp = requests.post(f"{leader.api_url}/switchover",
                         json={"leader": leader.name, "candidate": candidate.name},
                         auth=(REST_USER, testbed.passwords()["restapi"]),
                         timeout=SWITCHOVER_HTTP_TIMEOUT)
    assert resp.status_code == 200, (f"switchover to {candidate.name}: {resp.status_code} "
                                      f"{resp.text}")
    wait_until(lambda: _role(testbed, candidate) == "primary"
               and _role(testbed, leader) == "replica", 60, f"{candidate.name} to lead {site.name}")


def inventory_with_gates(testbed: Testbed, path: Path, **gates: float) -> Path:
    """The testbed inventory with some gates changed (the rest as the testbed writes them)."""
    text = testbed.inventory_path.read_text()
    lines = []
    for line in text.splitlines():
        key = line.strip().split(":", 1)[0]
        if line.startswith("  ") and not line.startswith("   ") and key in gates:
            continue
        lines.append(line)
        if line == "gates:":
            lines += [f"  {name}: {json.dumps(value)}" for name, value in gates.items()]
    path.write_text("\n".join(lines) + "\n")
    return path
