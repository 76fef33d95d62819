"""`migrate runbook [PAGE[#SECTION]]`: the pages reports link to, printed from wherever migrator is
installed (migrator/render/runbook_page.py)."""

from __future__ import annotations

import pytest

from migrator import cli
from migrator.errors import UsageError
from migrator.render.runbook_page import runbook_index, runbook_page
from migrator.resources import shipped_dir

RUNBOOKS = shipped_dir("runbooks")


def test_a_section_runs_from_its_anchor_to_the_next_heading_of_its_level():
    section = runbook_page("runbooks/switchover.md#phase-demote")
    assert section.startswith('<a id="phase-demote"></a>\n### 4. demote')
    assert "### 5." not in section and '<a id="phase-token">' not in section
    assert len(section.splitlines()) > 3


@pytest.mark.parametrize("reference", ["seed", "seed.md", "runbooks/seed.md", str(RUNBOOKS / "seed.md")])
def test_a_page_is_named_as_reports_name_it_or_by_its_bare_name(reference):
    assert runbook_page(reference) == (RUNBOOKS / "seed.md").read_text()


def test_an_absolute_link_from_an_installed_report_opens_its_section():
    section = runbook_page(f"{RUNBOOKS / 'switchover.md'}#stale-plan")
    assert section.startswith('<a id="stale-plan"></a>\n### The reviewed plan is stale')


@pytest.mark.parametrize("reference", ["nope.md", "../../../etc/passwd", "/etc/hostname"])
def test_only_shipped_pages_are_read(reference):
    with pytest.raises(UsageError) as raised:
        runbook_page(reference)
    assert "no runbook page" in str(raised.value) and "switchover.md" in str(raised.value)


def test_an_unknown_section_names_the_page_and_its_sections():
    with pytest.raises(UsageError) as raised:
        runbook_page("switchover.md#no-such-section")
    message = str(raised.value)
    assert "no section #no-such-section in runbook switchover.md" in message and "phase-demote" in message


def test_the_index_says_where_the_pages_are_and_lists_each_with_its_title():
    index = runbook_index()
    assert index.splitlines()[0].startswith(f"runbooks in {RUNBOOKS} ")
    for page in RUNBOOKS.glob("*.md"):
        assert f"  {page.name} " in index
    assert "Runbook: seeding the target site from nothing" in index


def test_the_command_prints_the_page_and_refuses_an_unknown_one_in_one_line(capsys):
    assert cli.run(["runbook", "runbooks/switchover.md#rollback"]) == 0
    assert capsys.readouterr().out.startswith('<a id="rollback"></a>')
    assert cli.run(["runbook", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("migrate: error: no runbook page 'nope'") and err.count("\n") == 1
