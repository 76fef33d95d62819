"""The suite's secret scan in a parallel run (pytest-xdist): once, after every worker finished.

Serially, tests/e2e/test_zz_no_secret_in_artifacts.py runs last and sees everything. With workers,
no test runs after the other workers' tests, and the passwords a worker's testbed drew (a new set
per rebuild) live only in that worker's memory. So each worker hands the controlling process what
the scan needs when its session ends (its passwords, testbed directories and base temporary
directory, through xdist's `workeroutput`, in memory, never on disk), the controller records which
tests ran, and at its own session end reaches the same verdict as the serial test over all of it.
A problem fails the run (exit 1) and is printed in its own summary section.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import secret_scan

KEY = "secret_scan"


class ParallelSecretScan:
    def __init__(self) -> None:
        self.ran: list[str] = []
        self.workers: dict[str, dict[str, Any] | None] = {}
        self.lines: list[str] = []
        self.failed = False

    # ---- in a worker -----------------------------------------------------------------------
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        output = getattr(session.config, "workeroutput", None)
        if output is not None:
            output[KEY] = {"seen": sorted(secret_scan.SEEN), "bases": sorted(secret_scan.BASES),
                           "basetemp": session.config.option.basetemp}
            return
        if self.workers:  # the controller of a parallel run, after every worker reported
            self._judge(session)

    # ---- in the controller -----------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        self.workers[node.gateway.id] = getattr(node, "workeroutput", {}).get(KEY)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.ran.append(report.nodeid)

    def _judge(self, session: pytest.Session) -> None:
        producers = secret_scan.producers_among(self.ran)
        if not producers:
            self.lines = ["no switchover or plan test ran in this session: nothing to scan"]
            return
        silent = sorted(worker for worker, output in self.workers.items() if output is None)
        if silent:
            self._fail(session, [f"worker {w} went down without reporting its passwords: the scan "
                                 "cannot be complete" for w in silent])
            return
        reports = [o for o in self.workers.values() if o is not None]
        seen = {value for o in reports for value in o["seen"]}
        bases = sorted({base for o in reports for base in o["bases"]})
        basetemps = [Path(o["basetemp"]) for o in reports if o["basetemp"]]
        problems, result, passwords = secret_scan.suite_verdict(seen, basetemps, bases, producers)
        if problems:
            self._fail(session, problems)
        else:
            self.lines = [f"scanned {len(self.workers)} workers' artifacts for {passwords} passwords: "
                          f"{dict(result.scanned)}: no test password in any of them"]

    def _fail(self, session: pytest.Session, problems: list[str]) -> None:
        self.failed = True
        self.lines = ["FAILED: " + p for p in problems]
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.lines:
            terminalreporter.section("secret scan of every worker's artifacts", red=self.failed,
                                     green=not self.failed)
            for line in self.lines:
                terminalreporter.line(line)
