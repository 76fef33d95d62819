"""A reader for the plain block YAML inventories are written in, 10 times faster than ruamel's.

ruamel has no C loader here, and its pure-Python safe loader costs 6-8 ms an inventory: most of
loading a 500-service fleet. Inventories are block mappings and lists of keys, words, numbers,
booleans and quoted text, which a line-by-line reader handles in well under a millisecond. It
reads exactly that subset and raises `Unsure` for anything else (flow `[...]`/`{...}`, anchors,
tags, block scalars, multi-line scalars, floats, escapes, duplicate keys...): the caller then
asks ruamel, so no file is ever read differently (tests/unit/test_simple_yaml.py compares the
two on the example inventories and on generated text). Whether a word is text, a number, a
boolean or null is decided by ruamel's own YAML 1.2 resolver.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver


class Unsure(Exception):
    """The text is outside the subset this reader vouches for; ask ruamel."""


_KEY_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_.\-]*):(?: +(.*))?")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_TAG = "tag:yaml.org,2002:"
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_NULLS = ("null", "Null", "NULL", "~")
_Line = tuple[int, str]  # (indent, content without the indent and trailing spaces)


def simple_load(text: str) -> dict[str, Any]:
    """The top-level mapping of `text`, or Unsure."""
    if text.startswith("\ufeff") or "\t" in text or "\r" in text:
        raise Unsure
    lines: list[_Line] = []
    for raw in text.split("\n"):
        content = raw.lstrip(" ")
        if not content or content.startswith("#"):
            continue
        if content.startswith(("---", "...", "%")):
            raise Unsure  # document markers and directives
        lines.append((len(raw) - len(content), content.rstrip(" ")))
    if not lines or lines[0][0] != 0:
        raise Unsure
    value, end = _mapping(lines, 0, 0)
    if end != len(lines):
        raise Unsure
    return value


def _is_item(content: str) -> bool:
    return content == "-" or content.startswith("- ")


def _mapping(lines: list[_Line], i: int, indent: int) -> tuple[dict[str, Any], int]:
    result: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] >= indent:
        at, content = lines[i]
        if at != indent or _is_item(content):
            raise Unsure
        match = _KEY_LINE.fullmatch(content)
        if match is None:
            raise Unsure
        key, rest = match.group(1), match.group(2)
        if key in result or plain_scalar_tag(key) != "str":
            raise Unsure
        i += 1
        if rest is not None and not rest.startswith("#"):
            result[key] = _scalar(rest)
            continue
        if i < len(lines) and lines[i][0] > indent:
            result[key], i = _block(lines, i)
        elif i < len(lines) and lines[i][0] == indent and _is_item(lines[i][1]):
            result[key], i = _sequence(lines, i, indent)  # a list may start at its key's column
        else:
            result[key] = None
    return result, i


def _block(lines: list[_Line], i: int) -> tuple[Any, int]:
    indent, content = lines[i]
    if _is_item(content):
        return _sequence(lines, i, indent)
    return _mapping(lines, i, indent)


def _sequence(lines: list[_Line], i: int, indent: int) -> tuple[list[Any], int]:
    result: list[Any] = []
    while i < len(lines) and lines[i][0] == indent and _is_item(lines[i][1]):
        content = lines[i][1]
        item = content[1:].lstrip(" ")
        if not item or item.startswith("#") or _is_item(item):
            raise Unsure  # a nested block under a bare "-", or a list in a list
        if _KEY_LINE.fullmatch(item):
            # A mapping that starts on the dash's line: its keys sit at the column of the first.
            lines = [*lines[:i], (indent + len(content) - len(item), item), *lines[i + 1 :]]
            value, i = _mapping(lines, i, lines[i][0])
            result.append(value)
            continue
        result.append(_scalar(item))
        i += 1
    if i < len(lines) and lines[i][0] > indent:
        raise Unsure
    return result, i


def _scalar(text: str) -> Any:
    if text[0] == "'":
        return _quoted(text, "'")
    if text[0] == '"':
        return _quoted(text, '"')
    cut = text.find(" #")
    value = text if cut < 0 else text[:cut].rstrip(" ")
    first = value[0]
    if first in "?:,[]{}#&*!|>%@`'\"" or (first == "-" and not value[1:2].isdigit()):
        raise Unsure  # an indicator: ruamel's grammar, not this reader's
    if ": " in value or value.endswith(":"):
        raise Unsure
    tag = plain_scalar_tag(value)
    if tag == "str":
        return value
    if tag == "bool" and value in _BOOLS:
        return _BOOLS[value]
    if tag == "null" and value in _NULLS:
        return None
    if tag == "int" and _INT.fullmatch(value):
        return int(value)
    raise Unsure  # floats, octal, hex, 1_000...: ruamel's constructors decide


def _quoted(text: str, quote: str) -> str:
    end = 1
    while True:
        end = text.find(quote, end)
        if end < 0:
            raise Unsure  # continues on the next line
        if quote == "'" and text[end + 1 : end + 2] == "'":
            end += 2  # '' is one quote inside single quotes
            continue
        break
    inner = text[1:end]
    rest = text[end + 1 :].lstrip(" ")
    if (rest and not (rest.startswith("#") and text[end + 1 : end + 2] == " ")) or (quote == '"' and "\\" in inner):
        raise Unsure
    return inner.replace("''", "'") if quote == "'" else inner


@lru_cache(maxsize=1)
def _resolver() -> VersionedResolver:
    return VersionedResolver()  # YAML 1.2, as ruamel's loaders read a file without a %YAML line


@lru_cache(maxsize=16384)
def plain_scalar_tag(word: str) -> str:
    """What YAML 1.2 reads the plain (unquoted) scalar `word` as: "str", "int", "bool", "null",
    "float"... (ruamel's own resolver: the loaders' and the safe dumper's)."""
    tag = str(_resolver().resolve(ScalarNode, word, (True, False)))
    return tag[len(_TAG) :] if tag.startswith(_TAG) else tag
