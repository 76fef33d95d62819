"""The `<FILL IN>` placeholder `migrate init` writes where it could not discover a value.

The loader refuses a file that still holds one, naming each by path and line, before the models
see it: `<FILL IN>` as a key file would otherwise read as "file <FILL IN> does not exist", and as
a URL or a secret reference as something stranger still.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

PLACEHOLDER = "<FILL IN>"


def placeholder_locations(data: Any, at: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """The location (keys and list indexes) of every value that is still the placeholder."""
    if isinstance(data, str):
        if data.strip() == PLACEHOLDER:
            yield at
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from placeholder_locations(value, (*at, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from placeholder_locations(value, (*at, index))


PLACEHOLDER_FIX = (
    f"still the placeholder {PLACEHOLDER} that migrate init wrote; replace it with the value its comment asks for"
)
