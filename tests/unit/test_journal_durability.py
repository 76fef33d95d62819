"""The state files survive a power cut: the journal tolerates only what a crash can leave (a torn
last line), names any other damage in one line, and resume refuses a stored plan that is gone or
no longer the one the migration started with."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from migrator import cli
from migrator.run.engine import latest_migration
from migrator.errors import UsageError
from migrator.durable import write_private
from migrator.run.journal import Journal, JournalCorrupt, state_dir_for
from migrator.model.plan import Plan
from migrator.model.plan_file import store_plan
from tests.helpers.snapshots import load_baseline, with_config
from tests.unit.test_cli import _args, env_secrets, inventory  # noqa: F401 - pytest fixtures
from tests.unit.test_planner import make_plan


def _journal_with(tmp_path: Path, *events: str) -> Journal:
    journal = Journal(tmp_path)
    for event in events:
        journal.append(event, migration="m1")
    return journal


# --- torn, corrupt and empty journals ----------------------------------------------------------


def test_a_torn_last_line_is_ignored_and_cut_off_by_the_next_append(tmp_path):
    journal = _journal_with(tmp_path, "run-started", "step-started")
    with journal.path.open("ab") as fh:
        fh.write(b'{"event": "step-do')  # the power went mid-write
    assert [r["event"] for r in journal.records()] == ["run-started", "step-started"]
    journal.append("step-done", migration="m1")
    assert [r["event"] for r in journal.records()] == ["run-started", "step-started", "step-done"]
    assert b"step-do\"" not in journal.path.read_bytes() and b'"step-do{' not in journal.path.read_bytes()
    assert journal.path.read_bytes().count(b"\n") == 3


def test_a_torn_only_line_leaves_an_empty_journal(tmp_path):
    journal = Journal(tmp_path)
    journal.path.write_bytes(b'{"ts": "2026')
    assert journal.records() == []
    journal.append("migration-started", migration="m1")
    assert [r["event"] for r in journal.records()] == ["migration-started"]


def test_a_last_record_that_lost_only_its_newline_is_kept(tmp_path):
    journal = _journal_with(tmp_path, "run-started", "step-started")
    journal.path.write_bytes(journal.path.read_bytes()[:-1])
    journal.append("step-done", migration="m1")
    assert [r["event"] for r in journal.records()] == ["run-started", "step-started", "step-done"]


def test_a_corrupt_middle_line_is_one_error_naming_the_file_and_the_line(tmp_path):
    journal = _journal_with(tmp_path, "run-started", "step-started", "step-done")
    lines = journal.path.read_bytes().split(b"\n")
    lines[1] = b"\x00\x00\x00garbage"
    journal.path.write_bytes(b"\n".join(lines))
    with pytest.raises(JournalCorrupt) as raised:
        journal.records()
    message = str(raised.value)
    assert message.startswith(f"journal {journal.path} line 2 is not valid JSON: ")
    assert "\n" not in message and "restore it" in message
    assert raised.value.exit_code == 2


def test_a_middle_line_that_is_json_but_not_a_record_is_corrupt_too(tmp_path):
    journal = _journal_with(tmp_path, "run-started", "step-started")
    journal.path.write_text("[1, 2]\n" + journal.path.read_text())
    with pytest.raises(JournalCorrupt, match="line 1 is not valid JSON: a JSON list, not a record"):
        journal.records()


def test_an_empty_journal_file_has_no_records_and_takes_appends(tmp_path):
    journal = Journal(tmp_path)
    journal.path.write_bytes(b"")
    assert journal.records() == [] and latest_migration(journal) is None
    journal.append("run-started", migration="m1")
    assert [r["event"] for r in journal.records()] == ["run-started"]


def test_a_short_write_is_retried_until_the_whole_record_is_out(tmp_path, monkeypatch):
    """A fake: os.write returning fewer bytes than asked (a nearly full disk, a signal) is a fault
    the testbed cannot produce on demand, so os.write is replaced by one that writes 7 bytes at
    most per call."""
    real_write = os.write
    calls = []

    def short_write(fd: int, data: bytes) -> int:
        calls.append(len(data))
        return real_write(fd, bytes(data[:7]))

    monkeypatch.setattr(os, "write", short_write)
    journal = Journal(tmp_path)
    journal.append("migration-started", migration="m1", plan_file="/x/plan.json", source="dc1", target="dc2")
    journal.append("step-done", migration="m1", step="demote-source", facts={"token": 12345})
    monkeypatch.setattr(os, "write", real_write)
    records = journal.records()
    assert [r["event"] for r in records] == ["migration-started", "step-done"]
    assert records[1]["facts"] == {"token": 12345}
    assert len(calls) > 20  # the record really went out in pieces


def test_a_corrupt_journal_is_one_line_and_exit_2_for_resume_and_rollback(
        inventory, env_secrets, capsys, tmp_path):  # noqa: F811 - fixtures
    state = tmp_path / "state"
    journal = _journal_with(state_dir_for(state, "shop"), "migration-started", "run-started", "step-started")
    journal.path.write_bytes(journal.path.read_bytes().replace(b'"run-started"', b'"run-sta', 1))
    for command in (_args("execute", inventory) + ["--resume", "--yes"], _args("rollback", inventory) + ["--yes"]):
        assert cli.run(command + ["--state-dir", str(state)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert f"journal {journal.path} line 2 is not valid JSON: " in err


# --- the plan file ---------------------------------------------------------------------------


def test_write_private_replaces_the_file_whole_or_not_at_all(tmp_path, monkeypatch):
    """A fake: a disk that fills up in the middle of the write (ENOSPC) cannot be provoked on the
    testbed; the old file must survive it untouched, with no temporary file left behind."""
    path = tmp_path / "plan.json"
    write_private(path, "old plan\n")
    real_write = os.write

    def full_disk(fd: int, data: bytes) -> int:
        real_write(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError):
        write_private(path, "new plan, much longer than the old one\n")
    monkeypatch.setattr(os, "write", real_write)
    assert path.read_text() == "old plan\n"
    write_private(path, "new plan\n")
    assert path.read_text() == "new plan\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
    assert path.stat().st_mode & 0o777 == 0o600


def _started(tmp_path: Path, plan: Plan, secrets: list[str]) -> tuple[Journal, Path]:
    """What Engine.start records: the stored plan, then the journal line that points at it."""
    plan_file = tmp_path / "plan-m1.json"
    digest = store_plan(plan_file, plan, secrets)
    journal = Journal(tmp_path, secrets)
    journal.append("migration-started", migration="m1", plan_file=str(plan_file), fingerprint=plan.fingerprint,
                   plan_sha256=digest, source=plan.source, target=plan.target)
    return journal, plan_file


def test_the_stored_plan_loads_when_it_is_the_one_the_migration_started_with(tmp_path):
    # A secret copied from a dynamic config is masked in the file, so the file's content no longer
    # hashes to the plan's fingerprint: the journal's hash of the file is what proves it unchanged.
    plan = make_plan(with_config(load_baseline(), "dc1", {"note": "pw s3cr3t-Pw"}))
    journal, plan_file = _started(tmp_path, plan, ["s3cr3t-Pw"])
    assert "s3cr3t-Pw" not in plan_file.read_text()
    migration = latest_migration(journal)
    assert migration is not None and migration.fingerprint == plan.fingerprint
    assert migration.stored_plan().steps == plan.steps


def test_resume_refuses_a_stored_plan_that_is_missing_or_unreadable(tmp_path):
    journal, plan_file = _started(tmp_path, make_plan(), [])
    migration = latest_migration(journal)
    assert migration is not None
    plan_file.unlink()
    with pytest.raises(UsageError, match=f"the stored plan {plan_file} cannot be read"):
        migration.stored_plan()
    plan_file.mkdir()  # unreadable as a file, also for root
    with pytest.raises(UsageError, match=f"the stored plan {plan_file} cannot be read"):
        migration.stored_plan()


def test_resume_refuses_a_stored_plan_edited_after_the_start(tmp_path):
    journal, plan_file = _started(tmp_path, make_plan(), [])
    data = json.loads(plan_file.read_text())
    data["steps"][0]["args"]["edited"] = True
    plan_file.write_text(json.dumps(data, sort_keys=True, indent=2) + "\n")
    migration = latest_migration(journal)
    assert migration is not None
    with pytest.raises(UsageError) as raised:
        migration.stored_plan()
    assert str(raised.value).startswith(f"the stored plan {plan_file} was changed after the migration started")
    assert raised.value.exit_code == 2


def test_resume_refuses_another_plan_put_in_place_of_the_stored_one(tmp_path):
    # An older journal without the file's hash still has the fingerprint: another plan fails it.
    plan, other = make_plan(), make_plan(with_config(load_baseline(), "dc1", {"ttl": 31}))
    journal, plan_file = _started(tmp_path, plan, [])
    store_plan(plan_file, other, [])
    migration = latest_migration(journal)
    assert migration is not None
    migration.plan_sha256 = None
    with pytest.raises(UsageError, match=f"has fingerprint {other.fingerprint[:12]}, but the migration started "
                                         f"with {plan.fingerprint[:12]}"):
        migration.stored_plan()
