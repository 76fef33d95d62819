"""Parallel test runs: each pytest-xdist worker gets its own testbed (net and directory), and the
suite's secret scan judges every worker's artifacts together."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import secret_scan
from tests.testbed.topology import FALLBACK_BASE_DIR, WORKER_MARKER, use_worker_testbed


def test_a_serial_run_keeps_the_configured_testbed():
    env = {"MIGRATOR_TESTBED_NET": "40", "MIGRATOR_TESTBED_DIR": "/tmp/tb"}
    assert use_worker_testbed(env) is None
    assert env == {"MIGRATOR_TESTBED_NET": "40", "MIGRATOR_TESTBED_DIR": "/tmp/tb"}


@pytest.mark.parametrize("worker, net, directory", [("gw0", "40", "/tmp/tb-gw0"), ("gw1", "41", "/tmp/tb-gw1")])
def test_each_worker_moves_to_its_own_net_and_directory(worker, net, directory):
    env = {"PYTEST_XDIST_WORKER": worker, "MIGRATOR_TESTBED_NET": "40", "MIGRATOR_TESTBED_DIR": "/tmp/tb"}
    assert use_worker_testbed(env) == worker
    assert (env["MIGRATOR_TESTBED_NET"], env["MIGRATOR_TESTBED_DIR"]) == (net, directory)


def test_a_child_process_of_a_worker_does_not_move_again():
    """migrate and the patroni-service script inherit the worker's moved environment."""
    env = {"PYTEST_XDIST_WORKER": "gw1", "MIGRATOR_TESTBED_NET": "40"}
    use_worker_testbed(env)
    moved = dict(env)
    use_worker_testbed(env)
    assert env == moved == {"PYTEST_XDIST_WORKER": "gw1", "MIGRATOR_TESTBED_NET": "41",
                            "MIGRATOR_TESTBED_DIR": f"{FALLBACK_BASE_DIR}-gw1", WORKER_MARKER: "gw1"}


@pytest.mark.parametrize("env, says", [
    ({"PYTEST_XDIST_WORKER": "master"}, "expected gw<number>"),
    ({"PYTEST_XDIST_WORKER": "gw3", "MIGRATOR_TESTBED_NET": "254"}, "257"),
])
def test_a_worker_without_a_usable_net_is_refused(env, says):
    with pytest.raises(RuntimeError, match=says):
        use_worker_testbed(env)


def _worker_dirs(root: Path, worker: str, journal: str) -> tuple[Path, Path]:
    """One worker's basetemp (a journal, plans, reports) and testbed base (logs)."""
    temp, base = root / f"popen-{worker}", root / f"tb-{worker}"
    state = temp / "test_x0" / "state" / "demo"
    state.mkdir(parents=True)
    (state / "journal.jsonl").write_text(journal)
    for n in range(2):
        (state / f"plan-{n}.json").write_text("{}")
        (state / f"report-{n}.txt").write_text("ok")
    for n in range(4):
        log = base / "dc1" / f"m{n}" / "patroni.log"
        log.parent.mkdir(parents=True)
        log.write_text("INFO: no lock")
    return temp, base


def test_the_suite_verdict_finds_a_password_of_one_worker_in_the_other_workers_artifacts(tmp_path):
    temp0, base0 = _worker_dirs(tmp_path, "gw0", '{"event": "x"}\n')
    temp1, base1 = _worker_dirs(tmp_path, "gw1", '{"error": "auth failed for pw-of-gw0-1"}\n')
    seen = {"pw-of-gw0-1", "pw-of-gw0-2", "pw-of-gw1-1"}
    problems, result, _ = secret_scan.suite_verdict(seen, [temp0, temp1], [base0, base1], ["t::x"])
    assert problems == [f"{temp1 / 'test_x0' / 'state' / 'demo' / 'journal.jsonl'}: contains test password #1"]
    assert result.scanned == {"journal": 2, "plan": 4, "report": 4, "log": 8}


def test_the_suite_verdict_refuses_to_pass_on_too_little_to_scan(tmp_path):
    temp0, base0 = _worker_dirs(tmp_path, "gw0", "{}\n")
    problems, _, _ = secret_scan.suite_verdict({"a1", "b2", "c3"}, [temp0], [base0], ["t::x"])
    assert problems == ["too few artifacts scanned (found, minimum): "
                        "{'journal': (1, 2), 'plan': (2, 3), 'log': (4, 8)}; from ['t::x']"]
    assert secret_scan.suite_verdict(set(), [temp0], [base0], ["t::x"])[0] == [
        "the testbed's passwords were not read"]
