"""A secret of the inventory that sits in a site's dynamic config (a password in an
archive_command, say) is copied into every plan, and must come out masked everywhere: plan
output, --out files, the plan file a run keeps in its state directory, the journal, the report.

The run is stopped early on purpose (dc2's replica's address leads nowhere, so the replication
access proof fails before anything changes) because the plan file and the journal are written
as soon as a run starts, and a full switchover would prove nothing more here.
"""

from __future__ import annotations

import pytest

from migrator.model.secrets import MASK
from tests.e2e.test_execute import explain, migrate
from tests.e2e.test_unreachable import _moved_to_nowhere
from tests.testbed import SITE_BY_NAME

pytestmark = pytest.mark.testbed

NOTE = "migrator_test_note"  # a top-level key Patroni keeps in the dynamic config and ignores


def test_a_secret_copied_from_a_dynamic_config_is_masked_in_every_artifact(baseline, tmp_path):
    password = baseline.passwords()["replication"]
    dc1 = SITE_BY_NAME["dc1"]
    baseline.patch_config(dc1, {NOTE: f"scp %p backup@archive:/wal/ # pw {password}"})
    try:
        outputs = []
        for fmt in ("json", "runbook"):
            out_file = tmp_path / f"plan.{fmt}"
            shown = migrate("plan", "-i", str(baseline.inventory_path), "--dc", "dc2", "--format", fmt)
            written = migrate("plan", "-i", str(baseline.inventory_path), "--dc", "dc2", "--format", fmt,
                              "--out", str(out_file))
            assert shown.returncode == 0 and written.returncode == 0, explain(shown) + explain(written)
            outputs += [shown.stdout, shown.stderr, out_file.read_text()]
        replica = next(m for m in SITE_BY_NAME["dc2"].members
                       if baseline.patroni_state(m)["role"] == "replica")
        state = tmp_path / "state"
        run = migrate("execute", "-i", _moved_to_nowhere(baseline, tmp_path, replica.name), "--dc", "dc2",
                      "--yes", "--state-dir", str(state))
        assert run.returncode == 1, explain(run)
        outputs += [run.stdout, run.stderr]
        files = sorted((state / "demo").iterdir())
        plan_files = [f for f in files if f.name.startswith("plan-")]
        assert len(plan_files) == 1 and (state / "demo" / "journal.jsonl") in files
        outputs += [f.read_text() for f in files if f.is_file() and f.name != "lock"]
    finally:
        baseline.patch_config(dc1, {NOTE: None})
    assert not [text[:80] for text in outputs if password in text]
    # Not vacuous: the note was copied into the plans, masked.
    assert f"# pw {MASK}" in plan_files[0].read_text()
    assert sum(f"# pw {MASK}" in text for text in outputs) >= 3  # plan JSON shown, --out, state
