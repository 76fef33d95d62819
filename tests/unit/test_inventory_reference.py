"""The inventory's reference (docs/inventory.md) and JSON Schema come from the models and stay in
sync with them; the production-shaped example is valid; validation prints every problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from migrator import cli
from migrator.model.inventory import parse_inventory
from migrator.model.reference import DOC_PATH, markdown_reference, missing_meanings
from tests.unit.test_inventory import FIXTURE, secret_env, write_two_sites  # noqa: F401 - fixture

REPO_ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = REPO_ROOT / "examples" / "production.yml"
TESTBED = REPO_ROOT / "examples" / "testbed.yml"


def test_docs_inventory_md_is_the_generated_reference():
    assert DOC_PATH == REPO_ROOT / "docs" / "inventory.md"
    assert DOC_PATH.read_text() == markdown_reference(), (
        "docs/inventory.md is out of date: run `python -m migrator.model.reference` and commit it"
    )


def test_every_inventory_key_has_a_meaning():
    assert missing_meanings() == [], "add these to MEANINGS in migrator/model/reference.py"


def test_the_reference_shows_each_key_with_its_real_default():
    text = markdown_reference()
    assert "| `lag_window_seconds` | number | `10` |" in text
    assert "| `namespace` | text | `/service/` |" in text
    assert "| `key_file` | local file path | required |" in text or "| `key_file` | local file path (optional)" in text
    assert "## `sites.<name>.members[].ssh`" in text


def schema(capsys) -> dict[str, Any]:
    assert cli.run(["inventory", "schema"]) == 0
    return json.loads(capsys.readouterr().out)


def test_inventory_schema_prints_a_json_schema_with_a_description_for_every_key(capsys):
    printed = schema(capsys)
    assert printed["$schema"].startswith("https://json-schema.org/")
    definitions = {**printed["$defs"], "Inventory": printed}
    for name, definition in definitions.items():
        # A model also written as one line (a jump host) is anyOf [its text form, its mapping].
        mapping = next(o for o in definition.get("anyOf", [definition]) if "properties" in o)
        for key, prop in mapping["properties"].items():
            assert prop.get("description"), f"{name}.{key}"
            assert not {"ge", "gt", "le", "lt"} & set(prop), f"{name}.{key}: {prop}"
    assert printed["$defs"]["Gates"]["properties"]["lock_ttl_seconds"]["minimum"] == 5


@pytest.mark.parametrize("example", [PRODUCTION, TESTBED], ids=["production", "testbed"])
def test_the_examples_validate_against_the_schema(example, capsys):
    printed = schema(capsys)
    problems = list(_schema_problems(YAML(typ="safe").load(example.read_text()), printed, printed, "$"))
    assert problems == []


def test_the_schema_refuses_what_the_loader_refuses(capsys):
    printed = schema(capsys)
    data = YAML(typ="safe").load(PRODUCTION.read_text())
    data["sites"]["east"]["ssh"]["prot"] = 22
    data["gates"]["lock_ttl_seconds"] = 1
    del data["sites"]["west"]["members"][0]["api_url"]
    problems = list(_schema_problems(data, printed, printed, "$"))
    assert len(problems) == 3, problems


def _schema_problems(value: Any, node: dict[str, Any], root: dict[str, Any], at: str):
    """The small part of JSON Schema the inventory's schema uses, enough to prove editors would
    accept the examples and refuse a typo (no jsonschema package in the dependencies)."""
    if "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in node:
        if all(list(_schema_problems(value, option, root, at)) for option in node["anyOf"]):
            yield f"{at}: matches none of {node['anyOf']}"
        return
    kinds = node.get("type")
    kinds = [kinds] if isinstance(kinds, str) else kinds or []
    python = {"object": dict, "array": list, "string": str, "integer": int, "number": (int, float),
              "boolean": bool, "null": type(None)}  # fmt: skip
    if kinds and not any(isinstance(value, python[k]) and not (k != "boolean" and isinstance(value, bool))
                         for k in kinds):  # fmt: skip
        yield f"{at}: {value!r} is not {kinds}"
        return
    if "const" in node and value != node["const"]:
        yield f"{at}: not {node['const']}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in node and value < node["minimum"]:
            yield f"{at}: under {node['minimum']}"
        if "maximum" in node and value > node["maximum"]:
            yield f"{at}: over {node['maximum']}"
    if isinstance(value, dict):
        properties = node.get("properties", {})
        for key in node.get("required", []):
            if key not in value:
                yield f"{at}: {key} missing"
        for key, item in value.items():
            if key in properties:
                yield from _schema_problems(item, properties[key], root, f"{at}.{key}")
            elif isinstance(node.get("additionalProperties"), dict):
                yield from _schema_problems(item, node["additionalProperties"], root, f"{at}.{key}")
            elif node.get("additionalProperties") is False:
                yield f"{at}: unknown key {key}"
    if isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            yield from _schema_problems(item, node["items"], root, f"{at}[{index}]")


# --- the production-shaped example ------------------------------------------------------------


def test_the_production_example_loads_with_two_sites_of_three_members_tls_and_hooks():
    text = PRODUCTION.read_text()
    assert "/tmp" not in text
    inventory = parse_inventory(text, source=str(PRODUCTION), base_dir=PRODUCTION.parent, check_local_files=False)
    assert {name: len(site.members) for name, site in inventory.sites.items()} == {"east": 3, "west": 3}
    for site in inventory.sites.values():
        assert all(url.startswith("https://") for url in site.dcs.endpoints)
        assert all(m.api_url.startswith("https://") for m in site.members)
        assert site.rest_api.ca_file is not None and site.rest_api.cert_file is not None
        assert any(m.ssh is not None for m in site.members), "a per-member SSH override"
    hooks = inventory.hooks
    assert hooks.before_demote and hooks.before_promote and hooks.after_promote and hooks.on_undo
    east = inventory.sites["east"]
    assert east.ssh_for(east.members[2]).host == "db3-mgmt.east.example.net"
    assert east.members[2].pg_port == 5433


# --- every problem, one line each --------------------------------------------------------------


def test_validation_prints_every_problem_one_line_each_with_file_path_line_and_fix(tmp_path, secret_env, capsys):  # noqa: F811
    text = FIXTURE.read_text()
    text = text.replace("service: shop", "service: Shop!")  # 1: bad name
    text = text.replace("      port: 2222\n", "      port: 70000\n", 1)  # 2: port out of range
    text = text.replace("    scope: shop-west\n", "    scope: shop-west\n    scopes: typo\n")  # 3: unknown key
    path = write_two_sites(tmp_path, text)
    code = cli.run(["check", "-i", str(path)])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(lines) == 3, lines
    expected = [
        ("service (line 3)", "service name 'Shop!' is not valid; use lowercase"),
        ("sites.dc-west.scopes (line", "unknown key 'scopes'; allowed keys here:"),
        ("sites.dc-west.ssh.port (line", "must be at most 65535, got 70000"),
    ]
    for line, (where, what) in zip(lines, expected, strict=True):
        assert line.startswith(f"migrate: error: inventory {path}: {where}"), line
        assert what in line, line


def test_more_than_ten_problems_print_ten_and_count_the_rest(tmp_path, secret_env, capsys):  # noqa: F811
    text = FIXTURE.read_text() + "".join(f"extra_{i}: 1\n" for i in range(13))
    path = write_two_sites(tmp_path, text)
    code = cli.run(["status", "-i", str(path)])
    lines = capsys.readouterr().err.splitlines()
    assert code == 2
    assert len(lines) == 11, lines
    assert all("unknown key 'extra_" in line for line in lines[:10])
    assert lines[10] == f"migrate: error: inventory {path}: and 3 more problem(s) not shown"
