"""No test password in any artifact the suite produced (issue 6, security): every plan, report,
journal and --out file under pytest's base temporary directory and every log of the testbed.

It runs last in the session (RUN_LAST, see tests/conftest.py) so that it sees what every other
test left. Run alone, or with a selection that ran no switchover, it has nothing to judge and
says so (skip); after the switchover scenarios it must have scanned a minimum of each kind of
artifact, so it cannot pass by finding nothing to scan.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import secret_scan

RUN_LAST = True
pytestmark = pytest.mark.testbed

# Tests whose runs leave journals, plans and reports behind; at least one must have run.
PRODUCERS = ("test_execute.py::test_execute_to_dc2_and_roll_back_under_load_twice",
             "test_machine_crash.py::", "test_plan_and_check.py::")
MINIMUM = {"journal": 2, "plan": 3, "report": 2, "log": 8}


def test_no_test_password_in_any_plan_report_journal_or_log(request, tmp_path_factory):
    ran = [i.nodeid for i in request.session.items if any(p in i.nodeid for p in PRODUCERS)]
    if not ran:
        pytest.skip("no switchover or plan test ran in this session: nothing to scan")
    testbed = request.getfixturevalue("testbed")
    secret_scan.remember(testbed)
    passwords = {f"test password #{n}": value for n, value in enumerate(sorted(secret_scan.SEEN), 1)}
    passwords.update({f"'{p}'": p for p in secret_scan.EXTRA_TEST_PASSWORDS})
    assert len(secret_scan.SEEN) >= 3, "the testbed's passwords were not read"
    basetemp = Path(tmp_path_factory.getbasetemp())
    result = secret_scan.scan(secret_scan.artifacts(basetemp, Path(testbed.base)), passwords)
    assert result.hits == [], "\n".join(result.hits)
    short = {kind: (result.scanned[kind], least) for kind, least in MINIMUM.items()
             if result.scanned[kind] < least}
    assert not short, f"too few artifacts scanned (found, minimum): {short}; from {ran[:3]}"
    print(f"\nscanned for {len(passwords)} passwords: {dict(result.scanned)}")


def test_the_scan_finds_a_planted_password_and_names_the_file_not_the_value(tmp_path):
    state = tmp_path / "state" / "demo"
    state.mkdir(parents=True)
    (state / "journal.jsonl").write_text('{"event": "x", "error": "auth failed for pw-Planted-123"}\n')
    (state / "plan-1.json").write_text('{"password": "********"}\n')
    (tmp_path / "secret").write_text("pw-Planted-123\n")  # the file that holds it: not a hit
    files = secret_scan.artifacts(tmp_path, tmp_path / "none")
    result = secret_scan.scan(files, {"#1": "pw-Planted-123"})
    assert result.hits == [f"{state / 'journal.jsonl'}: contains #1"]
    assert result.scanned == {"journal": 1, "plan": 1}
