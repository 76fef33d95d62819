"""Block-style YAML of a plan's configs, as ruamel's safe dumper writes it, without its cost.

A plan shows each site's dynamic config before and after as YAML (`switchover.config_diff`), four
dumps per plan; ruamel's pure-Python emitter took half of the planner's time (about 4 ms a dump),
which a 500-service `fleet plan` pays 2000 times. The configs Patroni keeps are small mappings of
names, numbers, booleans and short words, whose YAML is simple to write: `block_yaml` writes
exactly those and returns None for anything else (a float, text that would need quotes or could
wrap, a mapping inside a list...), so the caller falls back to ruamel and the text never differs
from what ruamel writes (tests/unit/test_yaml_block.py compares the two).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from migrator.model.simple_yaml import plain_scalar_tag

# Text the emitter writes unquoted in block context: no indicator first, no space, no ":" or "#".
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./=+,-]*")
# ruamel's dumper folds lines past 80 columns and writes keys of 128 characters or more as `? key`.
_MAX_LINE = 78


@lru_cache(maxsize=8192)
def _plain_word(text: str) -> bool:
    """`text` is written as is: plain-safe characters and read back as text, not as a number,
    boolean or null (for those ruamel adds quotes)."""
    if not _PLAIN_WORD.fullmatch(text):
        return False
    return plain_scalar_tag(text) == "str"


def _scalar(value: Any) -> str | None:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is int:
        return str(value)
    if type(value) is str and _plain_word(value):
        return value
    return None  # floats, quoted text, other types: ruamel decides


def block_yaml(value: dict[str, Any]) -> str | None:
    """`value` (string keys) as ruamel's safe dumper writes it with default_flow_style=False, or
    None when it holds anything this writer does not handle."""
    lines: list[str] = []
    if not _mapping(value, "", lines) or any(len(line) > _MAX_LINE for line in lines):
        return None
    return "".join(line + "\n" for line in lines)


def _mapping(value: dict[str, Any], pad: str, lines: list[str]) -> bool:
    for key, item in value.items():
        if type(key) is not str or not _plain_word(key):
            return False
        head = f"{pad}{key}:"
        if isinstance(item, dict):
            if not item:
                lines.append(head + " {}")
            else:
                lines.append(head)
                if not _mapping(item, pad + "  ", lines):
                    return False
        elif isinstance(item, list):
            if not item:
                lines.append(head + " []")
                continue
            lines.append(head)
            for entry in item:  # a list under a key starts at the key's column
                text = _scalar(entry)
                if text is None:
                    return False
                lines.append(f"{pad}- {text}")
        else:
            text = _scalar(item)
            if text is None:
                return False
            lines.append(f"{head} {text}")
    return True
