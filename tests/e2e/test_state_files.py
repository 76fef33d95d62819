"""The state files after a crash, on the real testbed: a run killed right before its demotion
PATCH (the test-only crash point, like a power cut) leaves a journal and a stored plan; an edited
plan file or a damaged journal line is refused in one line (exit 2) by --resume and rollback,
and a torn last journal line is no obstacle to rollback."""

from __future__ import annotations

import os
import subprocess

from migrator.run.crashpoint import CRASH_EXIT_CODE, ENV as CRASH_ENV
from tests.helpers.faults import inventory_with_gates, one_line
from tests.e2e.test_execute import MIGRATE, assert_primary_site, explain, journal_records
from tests.testbed import SITE_BY_NAME

import pytest

pytestmark = pytest.mark.testbed

DC1 = SITE_BY_NAME["dc1"]


def run_migrate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MIGRATE, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_resume_and_rollback_refuse_an_edited_plan_and_a_damaged_journal_then_roll_back(baseline, tmp_path):
    inventory = str(inventory_with_gates(baseline, tmp_path / "inventory.yml", lag_window_seconds=1))
    state = tmp_path / "state"
    common = ["-i", inventory, "--yes", "--state-dir", str(state)]
    crashed = run_migrate("execute", "--dc", "dc2", *common, env={CRASH_ENV: "before-patch:demote-source"})
    assert crashed.returncode == CRASH_EXIT_CODE, explain(crashed)
    assert_primary_site(baseline, DC1)  # the crash came before the PATCH
    started = next(r for r in journal_records(state) if r["event"] == "migration-started")
    plan_file = state / "demo" / os.path.basename(started["plan_file"])
    assert started["plan_sha256"] and plan_file.stat().st_mode & 0o777 == 0o600
    original_plan, original_journal = plan_file.read_bytes(), (state / "demo" / "journal.jsonl").read_bytes()

    # An edited stored plan: refused by both, nothing done.
    plan_file.write_bytes(original_plan.replace(b'"dc2"', b'"dc3"', 1))
    for command in (["execute", "--resume", "--dc", "dc2"], ["rollback"]):
        out = run_migrate(*command, *common)
        assert out.returncode == 2, explain(out)
        assert f"the stored plan {plan_file} was changed after the migration started" in one_line(out.stderr)
    plan_file.write_bytes(original_plan)

    # A damaged journal line (not the last): one line naming the file and the line.
    journal = state / "demo" / "journal.jsonl"
    lines = original_journal.split(b"\n")
    journal.write_bytes(b"\n".join([lines[0], b"\x00\x00 damaged", *lines[1:]]))
    out = run_migrate("execute", "--resume", "--dc", "dc2", *common)
    assert out.returncode == 2, explain(out)
    assert f"journal {journal} line 2 is not valid JSON: " in one_line(out.stderr)

    # A torn last line, as a crash mid-append leaves it: rollback reads past it and undoes.
    journal.write_bytes(original_journal + b'{"event": "step-sta')
    out = run_migrate("rollback", *common)
    assert out.returncode == 0, explain(out)
    assert_primary_site(baseline, DC1)
    records = journal_records(state)  # every line parses: the torn fragment was cut off
    assert [r["outcome"] for r in records if r["event"] == "migration-finished"] == ["rolled-back"]
