"""Shared by every loader of YAML the operator writes (inventory, playbooks)."""

from __future__ import annotations

from typing import Any


def plain(node: Any) -> Any:
    """ruamel's round-trip types as plain Python, so pydantic sees ordinary dicts/lists/str
    (ruamel's node types carry line numbers, which the loaders keep for error messages)."""
    if isinstance(node, dict):
        return {plain(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    for kind in (bool, int, float, str):  # bool first: it is an int too
        if isinstance(node, kind):
            return kind(node)
    return node
