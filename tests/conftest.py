"""Shared fixtures. The testbed starts once per test run, only when a test asks for it, and every
process it started is stopped at the end, whatever happened.

Under pytest-xdist (`-n 2`) each worker has its own testbed: tests.testbed.topology moves
MIGRATOR_TESTBED_NET and MIGRATOR_TESTBED_DIR to the worker's own (net base+i, dir <dir>-gw<i>)
when it is imported, whoever imports it first."""

from __future__ import annotations

import os

import pytest

from tests.helpers import secret_scan
from tests.helpers.parallel_scan import ParallelSecretScan
from tests.testbed import Testbed
from tests.testbed.services import extra_services as extra_service_list


def pytest_configure(config):
    # In a parallel run the artifact scan is judged by the controller once every worker is done.
    config.pluginmanager.register(ParallelSecretScan(), "parallel-secret-scan")


@pytest.fixture(scope="session", autouse=True)
def _state_home(tmp_path_factory):
    """A command a test runs without --state-dir keeps its state in the XDG state home: a directory
    of this test run (inherited by every subprocess, read by the artifact scan), never the
    developer's own."""
    os.environ.pop("MIGRATOR_STATE_DIR", None)
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("xdg-state"))


@pytest.fixture(scope="session")
def testbed():
    bed = Testbed()
    try:
        # MIGRATOR_REUSE_TESTBED=1 (with MIGRATOR_KEEP_TESTBED=1): attach to a running healthy
        # testbed instead of rebuilding it, for the edit-test loop. CI always builds from nothing.
        if os.environ.get("MIGRATOR_REUSE_TESTBED") == "1" and not bed.baseline_problems():
            print("\ntestbed reused")
        else:
            seconds = bed.up()
            print(f"\ntestbed up in {seconds:.1f}s (Patroni {bed.patroni_version}, base {bed.base})")
        secret_scan.remember(bed)
        yield bed
    finally:
        if os.environ.get("MIGRATOR_KEEP_TESTBED") != "1":
            bed.down()


@pytest.fixture
def baseline(testbed):
    """The testbed as every scenario expects to find it: dc1 primary, dc2 a standby cluster of dc1,
    all members streaming. Repairs what an earlier test changed; rebuilds only when it must."""
    testbed.restore_baseline()
    secret_scan.remember(testbed)  # a rebuild draws new passwords; the final scan looks for all
    return testbed


@pytest.fixture
def extra_services(baseline, request):
    """demo at its baseline plus svc1..svcK (K = the module's EXTRA_SERVICES, default 3), each one
    member per site sharing the sites' etcd (tests/testbed/services.py), healthy. Built the first
    time a module asks, then kept for the session with the testbed: only such modules pay for it."""
    count = getattr(request.module, "EXTRA_SERVICES", 3)
    baseline.up_services(count)
    return extra_service_list(count)


def pytest_collection_modifyitems(session, config, items):
    """Tests of a module that sets RUN_LAST = True run after all others (the artifact scan)."""
    items.sort(key=lambda item: bool(getattr(getattr(item, "module", None), "RUN_LAST", False)))
