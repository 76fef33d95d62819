"""Preflight runs the token step's own pg_controldata command on the source leader, so a token
read that would fail after the demotion (here: dc1's bin_dir without pg_controldata) is known,
and blocks, before anything changes."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_execute import DC1, DC2, explain, journal_records, migrate, writable

pytestmark = pytest.mark.testbed


def _findings(inventory: str) -> tuple[int, dict[str, dict]]:
    out = migrate("check", "--inventory", inventory, "--json", timeout=120)
    assert "Traceback" not in out.stderr, out.stderr
    return out.returncode, {f["check"]: f for f in json.loads(out.stdout)["findings"]}


def test_a_bin_dir_without_pg_controldata_blocks_check_and_execute_changes_nothing(baseline, tmp_path):
    code, findings = _findings(str(baseline.inventory_path))
    assert findings["token-readable"]["verdict"] == "ok", findings["token-readable"]
    assert "latest checkpoint" in findings["token-readable"]["finding"]

    not_bin = "/usr/lib/postgresql/15"  # exists, pg_controldata is one level down
    text = baseline.inventory_path.read_text()
    original = "bin_dir: /usr/lib/postgresql/15/bin"
    assert text.count(original) == 2 and text.index(original) < text.index("\n  dc2:")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(text.replace(original, f"bin_dir: {not_bin}", 1))  # dc1's only

    code, findings = _findings(str(inventory))
    token = findings["token-readable"]
    assert code == 1 and token["verdict"] == "block", token
    assert f"{not_bin}/pg_controldata: not found" in token["finding"], token
    assert "postgres.bin_dir" in token["fix"]

    configs, writers = (baseline.get_config(DC1), baseline.get_config(DC2)), writable(baseline)
    state = tmp_path / "state"
    out = migrate("execute", "-i", str(inventory), "--dc", "dc2", "--yes", "--state-dir", str(state))
    print(f"\nexecute: exit {out.returncode}: {out.stderr.strip()}")
    assert out.returncode == 1, explain(out)
    assert out.stderr.count("\n") == 1 and "token-readable" in out.stderr, explain(out)
    assert not [r for r in journal_records(state) if r["event"] == "step-applied"]
    assert (baseline.get_config(DC1), baseline.get_config(DC2)) == configs
    assert writable(baseline) == writers
