"""The plan's config YAML written directly (planning/yaml_block.py) is the text ruamel writes.

`block_yaml` writes a subset and says None for the rest; wherever it writes, the text must be
ruamel's to the byte, or plans (and their fingerprints) would change with the writer used.
"""

from __future__ import annotations

import io
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from migrator.planning.switchover import _sorted_deep, yaml_text
from migrator.planning.yaml_block import block_yaml
from tests.helpers.snapshots import load_baseline


def ruamel_text(value: dict[str, Any]) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(_sorted_deep(value), out)
    return out.getvalue()


def test_the_recorded_dynamic_configs_are_written_directly_and_as_ruamel_writes_them() -> None:
    state = load_baseline()
    configs = [site.dynamic_config for site in state.sites.values() if site.dynamic_config]
    assert len(configs) == 2
    for config in configs:
        quick = block_yaml(_sorted_deep(config))
        assert quick is not None  # the fast path is taken for what Patroni really keeps
        assert quick == ruamel_text(config)
    # dc2's standby_cluster host list has a comma: still plain, still the same text
    assert "host: 127.0.1.1,127.0.1.2\n" in yaml_text(state.sites["dc2"].dynamic_config or {})


def test_what_it_does_not_handle_falls_back_to_ruamel() -> None:
    for awkward in (
        {"a": 1.5},  # floats: ruamel's own spelling
        {"a": "two words"},  # spaces can fold at 80 columns
        {"a": "true"},  # text that reads as a boolean needs quotes
        {"a": "0x1F"},  # ... or as a number
        {"a": "1e3"},
        {"a": "null"},
        {"a": [{"b": 1}]},  # a mapping inside a list
        {"a": "x" * 90},  # past the line width
        {"a": "-x"},  # an indicator first
        {"a": "k: v"},
        {"a": ""},
    ):
        assert block_yaml(awkward) is None, awkward
        assert yaml_text(awkward) == ruamel_text(awkward)


_WORD = st.text(alphabet="abcxyzABZ019_./=+,-:# %'\"", min_size=0, max_size=12)
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(10**20), 10**20), _WORD)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_WORD, inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_WORD, _VALUE, min_size=1, max_size=6))
def test_whatever_it_writes_is_ruamels_text(value: dict[str, Any]) -> None:
    ordered = _sorted_deep(value)
    quick = block_yaml(ordered)
    if quick is not None:
        assert quick == ruamel_text(value)
    assert yaml_text(value) == ruamel_text(value)


def test_the_generator_reaches_the_fast_path() -> None:
    # Without this the property above could pass by always falling back.
    value = {
        "loop_wait": 10,
        "postgresql": {"parameters": {"wal_level": "replica", "on": True}},
        "tags": ["a", 1, None],
    }
    assert block_yaml(_sorted_deep(value)) == ruamel_text(value)


# Words that are mostly plain, so most generated configs take the fast path (the property above,
# with quotes and spaces in its alphabet, mostly tests the fallback).
_PLAIN_ISH = st.text(alphabet="abzAZ019_./=+,-", min_size=1, max_size=10)
_CONFIG_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**6), 10**6), _PLAIN_ISH),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_PLAIN_ISH, inner, max_size=4)),
    max_leaves=10,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_PLAIN_ISH, _CONFIG_VALUE, min_size=1, max_size=6))
def test_configs_of_plain_words_are_written_as_ruamel_writes_them(value: dict[str, Any]) -> None:
    quick = block_yaml(_sorted_deep(value))
    if quick is not None:
        assert quick == ruamel_text(value)
