"""bench/window_evidence.py: the milestones of a switchover that only the testbed's server logs and
the write ledger show. The log lines are copied from a testbed run (PostgreSQL 15, `%m [%p] `)."""

from __future__ import annotations

from datetime import UTC, datetime

from bench.window_evidence import CHAIN, WINDOW, chain, log_lines
from migrator.render.window_breakdown import parts

OLD_PRIMARY = """\
2026-12-05 16:32:20.100 UTC [24398] LOG:  checkpoint starting: time
2026-12-05 16:32:20.150 UTC [24398] LOG:  checkpoint complete: wrote 3 buffers (0.1%); distance=1 kB
2026-12-05 16:32:21.390 UTC [24398] LOG:  received fast shutdown request
2026-12-05 16:32:21.391 UTC [24398] LOG:  aborting any active transactions
2026-12-05 16:32:21.391 UTC [16254] FATAL:  terminating connection due to administrator command
2026-12-05 16:32:21.402 UTC [24413] LOG:  shutting down
2026-12-05 16:32:21.402 UTC [24413] LOG:  checkpoint starting: shutdown immediate
2026-12-05 16:32:21.412 UTC [24413] LOG:  checkpoint complete: wrote 23 buffers (1.1%); 0 WAL file(s) added
2026-12-05 16:32:21.424 UTC [24398] LOG:  database system is shut down
"""
TARGET = """\
2026-12-05 16:32:21.456 UTC [26624] LOG:  waiting for WAL to become available at 0/5174990
2026-12-05 16:32:21.658 UTC [26624] LOG:  received promote request
2026-12-05 16:32:21.659 UTC [26624] LOG:  selected new timeline ID: 4
2026-12-05 16:32:21.680 UTC [26619] LOG:  checkpoint starting: force
2026-12-05 16:32:21.684 UTC [26554] LOG:  database system is ready to accept connections
"""
OTHER_TARGET = """\
2026-12-05 16:32:21.680 UTC [13201] LOG:  replication terminated by primary server
2026-12-05 16:32:21.681 UTC [13200] LOG:  new target timeline is 4
"""


def _at(clock: str) -> datetime:
    return datetime.fromisoformat(f"2026-12-05T{clock}+00:00")


DRIVER = {
    "demote PATCH sent": _at("16:32:21.173"),
    "token read": _at("16:32:21.428"),
    "catch-up proven": _at("16:32:21.443"),
    "promote PATCH sent": _at("16:32:21.469"),
}
ACKS = [_at("16:32:21.380"), _at("16:32:21.460"), _at("16:32:21.700"), _at("16:32:21.710")]


def _logs(tmp_path, old: str = OLD_PRIMARY, target: str = TARGET):
    paths = []
    for name, text in (("old", old), ("other", OTHER_TARGET), ("target", target)):
        path = tmp_path / f"{name}.log"
        path.write_text(text)
        paths.append(path)
    return paths[0], paths[1:]


def test_the_chain_of_one_switchover_from_the_logs_the_ledger_and_the_driver(tmp_path):
    old, targets = _logs(tmp_path)
    milestones = chain(DRIVER, old, targets, ACKS)
    assert [(m.name, m.at) for m in milestones] == [
        ("demote PATCH sent", _at("16:32:21.173")),
        ("Patroni acts (fast shutdown)", _at("16:32:21.390")),
        # The shutdown checkpoint's "complete" line, not the earlier timed checkpoint's.
        ("shutdown checkpoint written", _at("16:32:21.412")),
        ("token read", _at("16:32:21.428")),
        ("catch-up proven", _at("16:32:21.443")),
        ("promote PATCH sent", _at("16:32:21.469")),
        ("Patroni acts (promote)", _at("16:32:21.658")),
        ("promotion done", _at("16:32:21.684")),
        # The first acknowledged after the promote PATCH (the one at 21.460 came before it, so
        # it cannot be a commit on the target).
        ("first commit acknowledged", _at("16:32:21.700")),
    ]
    found = parts(milestones, WINDOW)
    assert [p.seconds for p in found] == [0.217, 0.022, 0.016, 0.015, 0.026, 0.189, 0.026, 0.016]
    assert [p.in_window for p in found] == [False] + [True] * 7


def test_without_log_checkpoints_the_shutdown_is_the_end_of_the_checkpoint(tmp_path):
    quiet = "\n".join(line for line in OLD_PRIMARY.splitlines() if "checkpoint" not in line)
    old, targets = _logs(tmp_path, old=quiet)
    found = {m.name: m.at for m in chain(DRIVER, old, targets, ACKS)}
    assert found["shutdown checkpoint written"] == _at("16:32:21.424")


def test_a_log_in_another_zone_or_shape_is_no_evidence(tmp_path):
    elsewhere = OLD_PRIMARY.replace(" UTC ", " CET ")
    old, targets = _logs(tmp_path, old=elsewhere, target="promote request received somewhere\n")
    found = {m.name: m.at for m in chain(DRIVER, old, targets, ACKS)}
    missing = [name for name in CHAIN if found[name] is None]
    assert missing == ["Patroni acts (fast shutdown)", "shutdown checkpoint written",
                       "Patroni acts (promote)", "promotion done"]
    assert log_lines("2026-12-05 16:32:21 UTC [1] LOG:  received promote request") == []  # no milliseconds


def test_a_missing_log_file_leaves_its_milestones_not_measured(tmp_path):
    found = {m.name: m.at for m in chain(DRIVER, tmp_path / "nope.log", [tmp_path / "gone.log"], [])}
    assert found["Patroni acts (fast shutdown)"] is None and found["promotion done"] is None
    assert found["first commit acknowledged"] is None
    assert found["token read"] == DRIVER["token read"]


def test_log_lines_take_the_zone_as_utc():
    assert log_lines(TARGET)[1] == (datetime(2026, 12, 5, 16, 32, 21, 658000, tzinfo=UTC), "received promote request")
