"""Which demotion path a site's Patroni version allows (read by the planner and by the checks)."""

from __future__ import annotations

import re

from migrator.model.state import MemberState, ServiceState

# The first Patroni release whose demote-cluster does a fast shutdown (docs/architecture.md, "Patroni behaviour").
GRACEFUL_DEMOTE_MIN_PATRONI = (4, 1)


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    """The release numbers a version string starts with, at most major.minor.patch: "4.1.5" ->
    (4, 1, 5); "v3.3.11.post1" -> (3, 3, 11); "4.0.0rc1" -> (4, 0, 0); "v3" -> (3,); None when it
    starts with no number. Compare its first two numbers with GRACEFUL_DEMOTE_MIN_PATRONI."""
    if not text:
        return None
    match = re.match(r"\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def patroni_version(member: MemberState) -> str | None:
    if member.patroni is not None and member.patroni.version:
        return member.patroni.version
    if member.host_facts is not None and member.host_facts.patroni_version:
        return member.host_facts.patroni_version
    return None


def graceful_demote_possible(state: ServiceState, sites: list[str]) -> bool:
    """True when every member of `sites` reports Patroni >= 4.1 (demotion by PATCH is a fast
    shutdown there). An unknown version counts as old: the pause + clean stop path is safe on
    every version, the PATCH path is not."""
    members = [m for name in sites if name in state.sites for m in state.sites[name].members]
    if not members:
        return False
    for member in members:
        version = version_tuple(patroni_version(member))
        if version is None or version[:2] < GRACEFUL_DEMOTE_MIN_PATRONI:
            return False
    return True
