"""A crash of the machine running the tool inside a step that changes a site (issue 6, case 9).

The dangerous moments are the two sides of a PATCH: the journal says `step-started` in both, and
only the sites know whether the demotion or promotion was sent. `--resume` must read the sites,
send the change that is missing and never send one twice.

A machine crash cannot be timed to an instruction from outside the process (a SIGKILL on seeing
the journal's `step-started` lands before or after the PATCH by chance), so these runs use the
test-only fault injection point MIGRATOR_TEST_CRASH_AT (migrator/crashpoint.py): the engine ends
its process with os._exit right before or right after sending the change, with no journal record,
no cleanup and the lock left held, as a power cut would.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from migrator.crashpoint import CRASH_EXIT_CODE, ENV
from tests.e2e.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.e2e.test_execute import MIGRATE, assert_primary_site, explain, journal_records, migrate
from tests.testbed import SITE_BY_NAME

pytestmark = pytest.mark.testbed

# (target site, crash point, step). Directions alternate so the testbed ends where it began.
CRASHES = [
    ("dc2", "before-patch", "demote-source"),
    ("dc1", "after-patch", "demote-source"),
    ("dc2", "before-patch", "promote-target"),
    ("dc1", "after-patch", "promote-target"),
]


def _events(records: list[dict], migration: str, step: str) -> list[str]:
    return [r["event"] for r in records if r.get("migration") == migration and r.get("step") == step]


@pytest.mark.slow
def test_crash_on_either_side_of_the_patch_then_resume_decides_from_the_sites(baseline, tmp_path):
    inventory, state = str(baseline.inventory_path), tmp_path / "state"
    with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_machine_crash") as ledger:
        for target, point, step in CRASHES:
            seen = len(journal_records(state))
            crashed = subprocess.run([*MIGRATE, "execute", "-i", inventory, "--dc", target, "--yes",
                                      "--state-dir", str(state)], capture_output=True, text=True,
                                     timeout=300, env={**os.environ, ENV: f"{point}:{step}"})
            assert crashed.returncode == CRASH_EXIT_CODE, explain(crashed)
            records = journal_records(state)[seen:]
            migration = next(r["migration"] for r in records if r["event"] == "migration-started")
            # What the journal knows is the same on both sides of the PATCH: started, no more.
            assert _events(records, migration, step)[-1] == "step-started", records[-3:]
            # The sites, not the journal, say whether the change went out: the demotion adds
            # standby_cluster to the source's config, the promotion removes it from the target's.
            source = "dc1" if target == "dc2" else "dc2"
            site = SITE_BY_NAME[target if step == "promote-target" else source]
            in_config = bool(baseline.get_config(site).get("standby_cluster"))
            change_sent = in_config if step == "demote-source" else not in_config
            assert change_sent == (point == "after-patch"), (point, step, in_config)

            out = migrate("execute", "-i", inventory, "--dc", target, "--resume", "--yes",
                          "--state-dir", str(state))
            assert out.returncode == 0, f"resume after a crash {point} {step}: {explain(out)}"
            assert_primary_site(baseline, SITE_BY_NAME[target])
            events = _events(journal_records(state), migration, step)
            if point == "before-patch":
                # The change was missing: resume sent it, once.
                assert events.count("step-applied") == 1 and "step-in-place" not in events, events
            else:
                # The change was there: resume saw it on the site and did not send it again.
                assert events.count("step-applied") == 0 and events.count("step-in-place") == 1, events
            assert events[-1] == "step-done", events
        time.sleep(1)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)
    records = journal_records(state)
    outcomes = [r["outcome"] for r in records if r["event"] == "migration-finished"]
    assert outcomes == ["done"] * len(CRASHES)
    for kind in ("demote-source", "promote-target"):
        per_migration: dict[str, int] = {}
        for r in records:
            if r.get("step") == kind and r["event"] in ("step-applied", "step-in-place"):
                per_migration[r["migration"]] = per_migration.get(r["migration"], 0) + 1
        assert sorted(set(per_migration.values())) == [1], f"{kind} sent twice: {per_migration}"
    assert Path(state, "demo").stat().st_mode & 0o077 == 0
