"""Error lines in the operator's words on the real testbed: with one site's etcd stopped, every
command names the site, the etcd endpoint and what it did ("refused the connection"), never
urllib3's chain of reprs (HTTPConnectionPool ... Max retries exceeded ... object at 0x...)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_execute import explain, migrate
from tests.helpers.faults import start_etcd_again, stop_etcd
from tests.testbed import SITE_BY_NAME

pytestmark = pytest.mark.testbed

DC1 = SITE_BY_NAME["dc1"]
LIBRARY_WORDS = ("HTTPConnectionPool", "Max retries", "object at 0x", "NewConnectionError", "Caused by")


def _no_library_words(text: str) -> None:
    for word in LIBRARY_WORDS:
        assert word not in text, text


def test_a_stopped_etcd_is_named_in_plain_words_by_execute_check_and_status(baseline, tmp_path):
    inventory = str(baseline.inventory_path)
    endpoint = DC1.etcd_url
    stop_etcd(baseline, DC1)
    try:
        run = migrate("execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", str(tmp_path / "state"))
        check = migrate("check", "-i", inventory, "--json")  # findings whole, not wrapped in a table
        status = migrate("status", "-i", inventory)
    finally:
        start_etcd_again(baseline, DC1)
    # execute: one line, exit 1, nothing done; the lock's etcd named with what it did.
    assert run.returncode == 1, explain(run)
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert "cannot take the migration lock: dc1's etcd at " + endpoint in run.stderr, run.stderr
    assert "refused the connection" in run.stderr and "nothing was changed" in run.stderr
    _no_library_words(run.stderr)
    assert not (tmp_path / "state" / "demo" / "journal.jsonl").exists()
    # check: the dcs-quorum finding blocks, in the same words.
    assert check.returncode == 1, explain(check)
    quorum = [f for f in json.loads(check.stdout)["findings"] if f["check"] == "dcs-quorum" and f["site"] == "dc1"]
    assert quorum and f"dc1's etcd at {endpoint} refused the connection" in json.dumps(quorum), quorum
    _no_library_words(check.stdout + check.stderr)
    # status: the site's etcd is down, said the same way.
    assert status.returncode == 0, explain(status)
    assert "etcd DOWN (dc1's etcd at" in status.stdout and "refused the connection" in status.stdout
    _no_library_words(status.stdout + status.stderr)
