"""A crash of the machine running the tool inside a step that changes a site (issue 6, case 9).

The dangerous moments are the two sides of a PATCH: the journal says `step-started` in both, and
only the sites know whether the demotion or promotion was sent. `--resume` must read the sites,
send the change that is missing and never send one twice.

A machine crash cannot be timed to an instruction from outside the process (a SIGKILL on seeing
the journal's `step-started` lands before or after the PATCH by chance), so these runs use the
test-only fault injection point MIGRATOR_TEST_CRASH_AT (migrator/run/crashpoint.py): the engine ends
its process with os._exit right before or right after sending the change, with no journal record,
no cleanup and the lock left held, as a power cut would.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from migrator.run.crashpoint import CRASH_EXIT_CODE, ENV
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.e2e.test_execute import MIGRATE, assert_primary_site, explain, journal_records
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = pytest.mark.testbed

# Two migrations, two crashes each (the first run dies at the demotion, the first resume at the
# promotion), so every point is covered for both steps in two switchovers. Directions alternate
# so the testbed ends where it began.
MIGRATIONS = [
    ("dc2", [("before-patch", "demote-source"), ("after-patch", "promote-target")]),
    ("dc1", [("after-patch", "demote-source"), ("before-patch", "promote-target")]),
]


def _events(records: list[dict], migration: str, step: str) -> list[str]:
    return [r["event"] for r in records if r.get("migration") == migration and r.get("step") == step]


def _change_sent(testbed, target: str, step: str) -> bool:
    """What the sites say: the demotion adds standby_cluster to the source's dynamic config, the
    promotion removes it from the target's."""
    source = "dc1" if target == "dc2" else "dc2"
    in_config = bool(testbed.get_config(SITE_BY_NAME[source if step == "demote-source" else target])
                     .get("standby_cluster"))
    return in_config if step == "demote-source" else not in_config


def _run(inventory: str, state: Path, target: str, crash_at: str | None, resume: bool):
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if crash_at:
        env[ENV] = crash_at
    return subprocess.run([*MIGRATE, "execute", "-i", inventory, "--dc", target, "--yes", "--state-dir",
                           str(state), *(["--resume"] if resume else [])], capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.mark.slow
def test_crash_on_either_side_of_the_patch_then_resume_decides_from_the_sites(baseline, tmp_path):
    inventory, state = str(baseline.inventory_path), tmp_path / "state"
    ledger = WriteLedger(baseline, table="ledger_machine_crash")
    with WriterSampler(baseline) as sampler, ledger:
        for target, crashes in MIGRATIONS:
            seen = len(journal_records(state))
            for number, (point, step) in enumerate(crashes):
                out = _run(inventory, state, target, f"{point}:{step}", resume=number > 0)
                assert out.returncode == CRASH_EXIT_CODE, f"{point} {step}: {explain(out)}"
                records = journal_records(state)[seen:]
                migration = next(r["migration"] for r in records if r["event"] == "migration-started")
                # The journal reads the same on both sides of a demotion PATCH: the step started, no
                # more. A promotion journals its attempt just before the PATCH: from then on it may
                # have landed, and nothing is undone by a PATCH.
                attempted = point == "after-patch" and step == "promote-target"
                last = "promotion-attempted" if attempted else "step-started"
                assert _events(records, migration, step)[-1] == last, records[-3:]
                if point == "after-patch":
                    # Patroni acknowledged the PATCH; its members read the DCS through a watch, so
                    # a GET /config right after it may still show the old config for a moment.
                    wait_until(lambda: _change_sent(baseline, target, step), 5,
                               f"{step}'s acknowledged change on the site")
                else:
                    assert not _change_sent(baseline, target, step), (point, step)
            out = _run(inventory, state, target, None, resume=True)
            assert out.returncode == 0, f"resume after the crashes of {crashes}: {explain(out)}"
            assert_primary_site(baseline, SITE_BY_NAME[target])
            records = journal_records(state)
            for point, step in crashes:
                events = _events(records, migration, step)
                if point == "before-patch":
                    # The change was missing: a resume sent it, once.
                    assert events.count("step-applied") == 1 and "step-in-place" not in events, events
                else:
                    # The change was there: the resume saw it on the site and did not send it again.
                    assert events.count("step-applied") == 0, events
                    assert events.count("step-in-place") == 1, events
                assert events[-1] == "step-done", events
        time.sleep(1)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)
    records = journal_records(state)
    outcomes = [r["outcome"] for r in records if r["event"] == "migration-finished"]
    assert outcomes == ["done"] * len(MIGRATIONS)
    for kind in ("demote-source", "promote-target"):
        sent: dict[str, int] = {}
        for r in records:
            if r.get("step") == kind and r["event"] in ("step-applied", "step-in-place"):
                sent[r["migration"]] = sent.get(r["migration"], 0) + 1
        assert sorted(sent.values()) == [1] * len(MIGRATIONS), f"{kind} sent twice: {sent}"
    assert Path(state, "demo").stat().st_mode & 0o077 == 0
