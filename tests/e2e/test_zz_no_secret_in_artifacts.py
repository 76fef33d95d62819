"""No test password in any artifact the suite produced (issue 6, security): every plan, report,
journal and --out file under pytest's base temporary directory and every log of the testbed.

It runs last in the session (RUN_LAST, see tests/conftest.py) so that it sees what every other
test left. Run alone, or with a selection that ran no switchover, it has nothing to judge and
says so (skip); after the switchover scenarios it must have scanned a minimum of each kind of
artifact, so it cannot pass by finding nothing to scan.

In a parallel run (pytest-xdist) no test can run after every other worker's tests, and each
worker only knows its own passwords: there the test skips, and the same verdict
(`secret_scan.suite_verdict`) is reached once by the controlling process at session end over every
worker's base temporary directory, testbeds and passwords (tests/helpers/parallel_scan.py); a
problem fails the run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import secret_scan

RUN_LAST = True
pytestmark = pytest.mark.testbed


def test_no_test_password_in_any_plan_report_journal_or_log(request, tmp_path_factory):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("parallel run: the controller scans every worker's artifacts at session end "
                    "(tests/helpers/parallel_scan.py)")
    ran = secret_scan.producers_among(i.nodeid for i in request.session.items)
    if not ran:
        pytest.skip("no switchover or plan test ran in this session: nothing to scan")
    testbed = request.getfixturevalue("testbed")
    secret_scan.remember(testbed)
    basetemp = Path(tmp_path_factory.getbasetemp())
    problems, result, passwords = secret_scan.suite_verdict(
        secret_scan.SEEN, [basetemp], secret_scan.BASES, ran)
    assert problems == [], "\n".join(problems)
    print(f"\nscanned for {passwords} passwords: {dict(result.scanned)}")


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
