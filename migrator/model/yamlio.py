"""Shared by every loader of YAML the operator writes (inventory, playbooks)."""

from __future__ import annotations

from typing import Any

# No real inventory or playbook comes near this; YAML aliases can make a small file expand
# exponentially ("billion laughs"), or refer to themselves.
MAX_NODES = 100_000


class YamlShapeError(ValueError):
    """The document refers to itself or expands beyond MAX_NODES through aliases."""


def plain(node: Any) -> Any:
    """ruamel's round-trip types as plain Python, so pydantic sees ordinary dicts/lists/str
    (ruamel's node types carry line numbers, which the loaders keep for error messages)."""
    budget = [MAX_NODES]
    return _plain(node, budget, set())


def _plain(node: Any, budget: list[int], path: set[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise YamlShapeError(f"more than {MAX_NODES} values once its aliases (*name) are expanded")
    if isinstance(node, (dict, list)):
        if id(node) in path:
            raise YamlShapeError("an alias (*name) refers to a mapping or list that contains it")
        path = path | {id(node)}
        if isinstance(node, dict):
            return {_plain(k, budget, path): _plain(v, budget, path) for k, v in node.items()}
        return [_plain(v, budget, path) for v in node]
    if isinstance(node, str):
        try:
            node.encode("utf-8")
        except UnicodeEncodeError:  # a "\uD800" escape: no character, and unprintable in errors
            raise YamlShapeError(
                "a string holds an escape that is not a Unicode character (a lone surrogate such as \\uD800)"
            ) from None
        return str(node)
    for kind in (bool, int, float):  # bool first: it is an int too
        if isinstance(node, kind):
            return kind(node)
    return node
