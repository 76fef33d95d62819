"""Inventories load through ruamel's safe loader when valid (model/yaml_problems.quick_load) and
through the round-trip loader when something is wrong, for the line numbers: both paths must give
the same inventory, and a broken file must still be told where it is broken."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.errors import InventoryError
from migrator.model.inventory import Inventory, parse_inventory
from migrator.model.yaml_problems import parse_yaml, quick_load
from migrator.model.yamlio import plain

REPO_ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = [
    REPO_ROOT / "examples" / "testbed.yml",
    REPO_ROOT / "examples" / "production.yml",
    Path(__file__).parent / "fixtures" / "inventory" / "two_sites.yml",
]


@pytest.mark.parametrize("path", INVENTORIES, ids=lambda path: path.name)
def test_the_fast_and_the_round_trip_paths_give_the_same_inventory(path: Path) -> None:
    text = path.read_text()
    quick = quick_load(text)
    round_trip = plain(parse_yaml(text, str(path)))
    assert quick is not None and quick == round_trip
    context = {"base_dir": path.parent, "check_local_files": False}
    from_quick = Inventory.model_validate(quick, context=context)
    assert from_quick == Inventory.model_validate(round_trip, context=context)
    assert from_quick == parse_inventory(text, source=str(path), base_dir=path.parent, check_local_files=False)


@pytest.mark.parametrize(
    "value",
    [
        "2001-12-14",  # a date: the round-trip path reads it (and says what is wrong with it)
        "!!set {a, b}",
        "!custom x",
        "*anchorless",
    ],
)
def test_the_fast_path_does_not_vouch_for_values_that_are_not_plain_data(value: str) -> None:
    assert quick_load(f"service: {value}\n") is None


def test_an_alias_inside_itself_is_left_to_the_round_trip_path() -> None:
    assert quick_load("a: &x\n  b: *x\n") is None


def test_a_broken_inventory_still_gets_its_line() -> None:
    text = (REPO_ROOT / "examples" / "testbed.yml").read_text()
    assert "\nsites:\n" in text
    broken = text.replace("\nsites:\n", "\nsites:\n  # a comment line the line number must count\n", 1)
    broken = broken.replace("    scope: ", "    scopee: ", 1)
    line = next(n for n, row in enumerate(broken.splitlines(), start=1) if "scopee:" in row)
    assert quick_load(broken) is not None  # the YAML is fine: validation fails, then the line is found
    with pytest.raises(InventoryError) as caught:
        parse_inventory(broken, source="broken.yml", base_dir=REPO_ROOT, check_local_files=False)
    assert f"inventory broken.yml: sites.dc1.scopee (line {line}): unknown key 'scopee'" in "\n".join(
        caught.value.problems
    )


def test_a_value_the_safe_loader_trips_on_gets_the_round_trip_paths_message() -> None:
    text = (REPO_ROOT / "examples" / "testbed.yml").read_text().replace("service: ", "service: 2001-13-45 #", 1)
    assert quick_load(text) is None
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, source="dated.yml", base_dir=REPO_ROOT, check_local_files=False)
    assert "put quotes around values that look like dates" in str(caught.value)
