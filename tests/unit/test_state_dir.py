"""Where a service's state lives: --state-dir, else MIGRATOR_STATE_DIR, else the XDG state home, the
same whatever directory `migrate` runs in (migrator/run/state_dir.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migrator import cli
from migrator.errors import UsageError
from migrator.run.engine import latest_migration
from migrator.run.journal import Journal, state_dir_for
from migrator.run.state_dir import STATE_DIR_ENV, resolve_state_base
from tests.unit.test_inventory import TEST_ENV, write_two_sites

HOME = {"HOME": "/home/op"}


def test_the_flag_wins_over_the_variable_and_the_xdg_home():
    base = resolve_state_base(Path("/srv/flag"), {**HOME, STATE_DIR_ENV: "/srv/env", "XDG_STATE_HOME": "/srv/xdg"})
    assert (base.path, base.origin) == (Path("/srv/flag"), "--state-dir")
    assert base.for_service("shop") == Path("/srv/flag/shop")


def test_the_variable_wins_over_the_xdg_home():
    base = resolve_state_base(None, {**HOME, STATE_DIR_ENV: "/srv/env", "XDG_STATE_HOME": "/srv/xdg"})
    assert (base.path, base.origin) == (Path("/srv/env"), STATE_DIR_ENV)


def test_the_xdg_state_home_holds_a_migrator_directory():
    base = resolve_state_base(None, {**HOME, "XDG_STATE_HOME": "/srv/xdg"})
    assert (base.for_service("shop"), base.origin) == (Path("/srv/xdg/migrator/shop"), "XDG_STATE_HOME")


def test_without_any_the_default_is_under_the_home_directory():
    base = resolve_state_base(None, HOME)
    assert (base.for_service("shop"), base.origin) == (Path("/home/op/.local/state/migrator/shop"), "default")


@pytest.mark.parametrize("xdg", ["", "relative/state"], ids=["empty", "relative"])
def test_an_empty_or_relative_xdg_state_home_is_ignored_as_the_spec_says(xdg):
    assert resolve_state_base(None, {**HOME, "XDG_STATE_HOME": xdg}).path == Path("/home/op/.local/state/migrator")


def test_an_empty_variable_counts_as_unset():
    assert resolve_state_base(None, {**HOME, STATE_DIR_ENV: ""}).origin == "default"


def test_relative_paths_are_made_absolute_once_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_state_base(Path("state"), HOME).path == tmp_path / "state"
    assert resolve_state_base(None, {**HOME, STATE_DIR_ENV: "env-state"}).path == tmp_path / "env-state"
    assert resolve_state_base(Path("~/s"), HOME).path == Path.home() / "s"


def test_no_home_and_no_choice_is_one_error_naming_the_fix():
    with pytest.raises(UsageError) as raised:
        resolve_state_base(None, {})
    assert "pass --state-dir DIR or set MIGRATOR_STATE_DIR" in str(raised.value)


def test_the_line_plan_and_status_print_names_the_directory_and_why():
    assert resolve_state_base(None, HOME).describe("shop") == (
        "state: /home/op/.local/state/migrator/shop (journal, plans, reports; the default; "
        "--state-dir or MIGRATOR_STATE_DIR chooses another)"
    )
    line = resolve_state_base(None, {**HOME, STATE_DIR_ENV: "/srv/env"}).describe("shop")
    assert line.startswith("state: /srv/env/shop ") and "from MIGRATOR_STATE_DIR" in line


def test_resolving_creates_nothing(tmp_path):
    resolve_state_base(tmp_path / "never", HOME)
    resolve_state_base(None, {"HOME": str(tmp_path / "home")})
    assert list(tmp_path.iterdir()) == []


# --- the commands use it ----------------------------------------------------------------------


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    monkeypatch.delenv("MIGRATOR_INVENTORY", raising=False)
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    return write_two_sites(tmp_path / "inventory")


def test_rollback_looks_in_the_xdg_state_home_by_default(isolated, tmp_path, capsys):
    assert cli.run(["rollback", "-i", str(isolated), "--yes"]) == 2
    err = capsys.readouterr().err
    assert f"no migration is recorded in {tmp_path / 'xdg' / 'migrator' / 'shop'};" in err


def test_a_journal_written_from_one_directory_is_found_from_another(isolated, tmp_path, monkeypatch, capsys):
    """The run left a journal under MIGRATOR_STATE_DIR; `rollback` from another directory finds it
    and goes on to take the lock (which the fixture's unused addresses refuse)."""
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "state"))
    journal = Journal(state_dir_for(tmp_path / "state", "shop"))
    journal.append("migration-started", migration="m1", plan_file="plan-m1.json", target="dc-west", source="dc-east")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.run(["rollback", "-i", str(isolated), "--yes"]) == 1
    err = capsys.readouterr().err
    assert "no migration is recorded" not in err
    assert "cannot take the migration lock" in err
    assert not (elsewhere / ".migrator").exists() and list(elsewhere.iterdir()) == []


def test_plan_file_recorded_relative_is_read_beside_the_journal(tmp_path, monkeypatch):
    """Journals written before the state dir was made absolute hold a relative plan path."""
    directory = state_dir_for(tmp_path / "state", "shop")
    (directory / "journal.jsonl").write_text(
        json.dumps(
            {
                "ts": "2026-01-01T00:00:00.000+00:00",
                "event": "migration-started",
                "migration": "m1",
                "plan_file": ".migrator/shop/plan-m1.json",
                "target": "dc-west",
                "source": "dc-east",
            }
        )
        + "\n"
    )
    monkeypatch.chdir(tmp_path)
    found = latest_migration(Journal(directory))
    assert found is not None and found.plan_file == directory / "plan-m1.json"
