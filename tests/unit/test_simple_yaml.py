"""The fast inventory reader (model/simple_yaml.py) reads what ruamel reads, or steps aside.

Wherever `simple_load` returns a value it must be ruamel's value (types too: true is not 1);
wherever ruamel refuses a text, or reads it differently, `simple_load` must raise Unsure."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from migrator.model.simple_yaml import Unsure, simple_load

REPO_ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = [
    REPO_ROOT / "examples" / "testbed.yml",
    REPO_ROOT / "examples" / "production.yml",
    Path(__file__).parent / "fixtures" / "inventory" / "two_sites.yml",
]


def typed(value: Any) -> Any:
    """`value` with each scalar's type beside it, so True and 1 (or 1 and 1.0) differ."""
    if isinstance(value, dict):
        return {"dict": [(typed(k), typed(v)) for k, v in value.items()]}
    if isinstance(value, list):
        return {"list": [typed(v) for v in value]}
    return (type(value).__name__, value)


def ruamel_load(text: str) -> Any:
    yaml = YAML(typ="safe", pure=True)
    yaml.allow_duplicate_keys = False
    return yaml.load(text)


def agrees_with_ruamel(text: str) -> bool:
    """True when simple_load read `text` itself (and the same way); False when it stepped aside."""
    try:
        expected: Any = ruamel_load(text)
    except Exception:  # noqa: BLE001 - whatever ruamel refuses, simple_load must refuse too
        expected = Unsure
    try:
        got = simple_load(text)
    except Unsure:
        return False
    assert expected is not Unsure, f"ruamel refuses {text!r}, simple_load read {got!r}"
    assert typed(got) == typed(expected), text
    return True


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda path: path.name)
def test_the_example_inventories_are_read_without_ruamel_and_the_same(path: Path) -> None:
    assert agrees_with_ruamel(path.read_text())


@pytest.mark.parametrize(
    "text",
    [
        "a: [1, 2]\n",  # flow collections
        "a: {b: 1}\n",
        "a: &x 1\nb: *x\n",  # anchors
        "a: !!str 1\n",  # tags
        "a: |\n  text\n",  # block scalars
        "a: one\n  two\n",  # a plain scalar over two lines
        "a: 1.5\n",  # floats
        "a: 0o17\n",
        "a: 'open\n  quote'\n",
        'a: "esc\\"aped"\n',
        "a: 1\na: 2\n",  # a duplicate key: ruamel's message names its line
        "- a\n",  # not a mapping
        "a:\n\tb: 1\n",
        "---\na: 1\n",
        "",
    ],
)
def test_what_it_does_not_read_is_left_to_ruamel(text: str) -> None:
    with pytest.raises(Unsure):
        simple_load(text)


_KEY = st.sampled_from(["a", "b", "a1", "true", "1", "a.b", "'a'"])
_VALUE = st.text(alphabet="ab1 :-#'\"[]{}&*!|>~.", max_size=8)
_LINE = st.one_of(
    st.builds(lambda key, value: f"{key}: {value}", _KEY, _VALUE),
    st.builds(lambda key: f"{key}:", _KEY),
    _VALUE,
)
_INDENT = st.sampled_from(["", "  ", "    ", "- ", "  - ", "    - "])


@pytest.mark.filterwarnings("ignore")  # ruamel warns about reused anchors in some texts
@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(_INDENT, _LINE), min_size=1, max_size=8))
def test_generated_text_is_read_as_ruamel_reads_it_or_left_to_it(rows: list[tuple[str, str]]) -> None:
    agrees_with_ruamel("".join(indent + line + "\n" for indent, line in rows))


_WORD = st.text(alphabet="abAZ09_./-: '#", min_size=1, max_size=10)
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(10**9), 10**9), _WORD)
_DATA = st.recursive(
    _SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_WORD, inner, min_size=1, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(_WORD, _DATA, min_size=1, max_size=5), st.booleans())
def test_data_ruamel_wrote_is_read_back_the_same(data: dict[str, Any], indent_lists: bool) -> None:
    yaml = YAML(typ="rt")
    yaml.default_flow_style = False
    if indent_lists:
        yaml.indent(mapping=2, sequence=4, offset=2)
    out = io.StringIO()
    yaml.dump(data, out)
    agrees_with_ruamel(out.getvalue())


def test_the_generators_reach_the_reader() -> None:
    # Without this the properties above could pass by always stepping aside.
    text = "a: 1\nb:\n- x: 'it''s'\n  y: true\n- ~\nc: /p/{m}/d  # comment\nd:\n  e: null\n  f: \"q\"\n"
    assert simple_load(text) == {"a": 1, "b": [{"x": "it's", "y": True}, None], "c": "/p/{m}/d",
                                 "d": {"e": None, "f": "q"}}  # fmt: skip
    assert agrees_with_ruamel(text)
