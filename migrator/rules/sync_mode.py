"""Synchronous replication follows the primary role from site to site. Pure.

Patroni (>= 3.2, observed on 4.1.5) ignores `synchronous_mode` in a standby cluster: the setting is
stored in the dynamic config but `synchronous_standby_names` stays empty until the site is
promoted. So the plan writes the source's synchronous settings into the target's config before
the cut-over (in force from the target's first commit: with synchronous_mode_strict no commit is
ever acknowledged there without a synchronous standby), and removes them from the source once it
is a standby cluster, so exactly one site declares them and `migrate rollback` carries them back.
"""

from __future__ import annotations

import json
from typing import Any

# The dynamic-config keys that make up "synchronous mode" in Patroni 4.1.
SYNC_KEYS = ("synchronous_mode", "synchronous_mode_strict", "synchronous_node_count")


def sync_mode_on(value: Any) -> bool:
    """Patroni's reading: true (bool or a YAML-ish string) or "quorum" switch it on."""
    if isinstance(value, str):
        return value.strip().lower() in ("on", "true", "yes", "1", "quorum")
    return value is True


def sync_settings(config: dict[str, Any] | None) -> dict[str, Any]:
    """The synchronous keys present in a dynamic config."""
    return {k: config[k] for k in SYNC_KEYS if config and config.get(k) is not None}


def settings_text(settings: dict[str, Any]) -> str:
    """{"synchronous_mode": True} -> "synchronous_mode: true", as the dynamic config reads."""
    return ", ".join(f"{k}: {json.dumps(v)}" for k, v in settings.items()) or "none"


def sync_mode_carry(
    source_config: dict[str, Any] | None, target_config: dict[str, Any] | None
) -> dict[str, Any] | None:
    """What the switchover PATCHes, or None when the source does not use synchronous mode or the
    target has the very same settings and the source has none left to drop.

    target_patch    the source's synchronous keys (null for a key only the target has)
    target_previous the target's values of those keys before (null = absent), for the undo
    source_patch    null for each synchronous key of the source (after its demotion)
    """
    source = sync_settings(source_config)
    if not sync_mode_on(source.get("synchronous_mode")):
        return None
    target = sync_settings(target_config)
    keys = [k for k in SYNC_KEYS if k in source or k in target]
    return {
        "settings": source,
        "target_patch": {k: source.get(k) for k in keys},
        "target_previous": {k: target.get(k) for k in keys},
        "source_patch": {k: None for k in source},
    }


def configs_with_sync_mode_carried(
    after: dict[str, dict[str, Any]], source: str, target: str, carry: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """The planned configs after the switchover, with the synchronous keys moved."""
    if carry is None:
        return after
    moved = {name: dict(config) for name, config in after.items()}
    for key, value in carry["target_patch"].items():
        if value is None:
            moved[target].pop(key, None)
        else:
            moved[target][key] = value
    for key in carry["source_patch"]:
        moved[source].pop(key, None)
    return moved
