"""What the inventory trusts without verifying, said out loud wherever the tool reports.

Accepting unknown SSH host keys (`ssh.accept_unknown_host_keys: true`) is an explicit opt-in;
every report the tool prints or writes (plan in every format, check, execute, rollback) repeats
it as a warning, so that nobody runs with it by accident. A *changed* key is refused whatever the
option says (adapters/ssh.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def insecure_ssh_sites(inventory: Any) -> tuple[str, ...]:
    """The sites whose inventory accepts unknown SSH host keys."""
    return tuple(name for name, site in inventory.sites.items()
                 if site.ssh.accept_unknown_host_keys)


def unknown_host_key_warnings(sites: Iterable[str]) -> list[str]:
    return [
        f"WARNING: site {site} accepts unknown SSH host keys (ssh.accept_unknown_host_keys: true "
        "in the inventory): a host key is trusted on first use, so an impostor host would not "
        "be noticed; pin the keys in known_hosts and remove the option"
        for site in sites
    ]
