"""The words of the unknown-host-key warning. A plan stores only the sites that accept unknown
SSH host keys and says the warning from them (`Plan.warnings`), so the text lives with the
model; rules/trust.py decides which sites those are, and the CLI says the same words."""

from __future__ import annotations

from collections.abc import Iterable


def unknown_host_key_warnings(sites: Iterable[str]) -> list[str]:
    return [
        f"WARNING: site {site} accepts unknown SSH host keys (ssh.accept_unknown_host_keys: true "
        "in the inventory): a host key is trusted on first use, so an impostor host would not "
        "be noticed; pin the keys in known_hosts and remove the option"
        for site in sites
    ]
