"""A wait keeps its deadline while a probe hangs.

The hanging probe here is a fake (an Event nobody sets): the real fault, a SIGSTOPped standby
leader, is in tests/e2e/test_black_holed_target.py; this pins the timing rules without a testbed.
"""

from __future__ import annotations

import threading
import time

import pytest

from migrator.adapters.bounded import NoAnswer, call_with_deadline, first_answer
from migrator.errors import GateTimeout, UnreachableError
from migrator.adapters.pg import kept_open_options
from migrator.adapters.live import Live
from migrator.steps.base import RunContext, Step
from tests.unit.test_planner import example_inventory, make_plan


def _step(live) -> Step:
    plan = make_plan()
    spec = next(s for s in plan.steps if s.id == "catch-up")
    return Step(spec, RunContext(inventory=example_inventory(), plan=plan, live=live))


class _Abandons:
    def __init__(self):
        self.abandoned: list[threading.Thread] = []

    def abandon(self, thread):
        self.abandoned.append(thread)


def test_a_wait_gives_up_on_time_while_its_probe_hangs_and_abandons_that_probe():
    live, release = _Abandons(), threading.Event()
    step = _step(live)
    started = time.monotonic()
    with pytest.raises(GateTimeout, match="no answer for 1s"):
        step.wait(lambda: release.wait(60), "a frozen member", timeout=1.0)
    took = time.monotonic() - started
    release.set()
    assert 0.9 <= took <= 1.5, took
    assert len(live.abandoned) == 1 and live.abandoned[0].daemon  # never delays the process's exit


def test_a_wait_still_returns_the_first_truthy_answer_and_keeps_errors_for_the_message():
    answers = iter([UnreachableError("dc2-a: refused"), 0, 7])

    def probe():
        value = next(answers)
        if isinstance(value, Exception):
            raise value
        return value

    assert _step(_Abandons()).wait(probe, "an answer", interval=0.001, timeout=5) == 7
    with pytest.raises(GateTimeout, match="last: dc2-a: refused"):
        _step(_Abandons()).wait(lambda: (_ for _ in ()).throw(UnreachableError("dc2-a: refused")),
                                "an answer", interval=0.01, timeout=0.2)


def test_call_with_deadline_returns_raises_or_gives_up():
    assert call_with_deadline(lambda: 3, 1) == 3
    with pytest.raises(ZeroDivisionError):
        call_with_deadline(lambda: 1 / 0, 1)
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(NoAnswer):
        call_with_deadline(lambda: release.wait(60), 0.3)
    release.set()
    assert time.monotonic() - started < 1


def test_first_answer_wins_over_a_member_that_hangs():
    release = threading.Event()
    calls = {"frozen": lambda: release.wait(60), "alive": lambda: {"ttl": 20}}
    started = time.monotonic()
    assert first_answer(calls, "GET /config", 10) == {"ttl": 20}
    assert time.monotonic() - started < 1
    with pytest.raises(UnreachableError, match="no member answered: frozen: no answer within 0.2s; b: down"):
        first_answer({"frozen": lambda: release.wait(60),
                      "b": lambda: (_ for _ in ()).throw(UnreachableError("b: down"))}, "no member answered", 0.2)
    release.set()


def test_kept_open_connections_time_out_from_the_connect_timeout():
    assert kept_open_options(5) == {
        "connect_timeout": 5, "options": "-c statement_timeout=5000", "keepalives": 1,
        "keepalives_idle": 5, "keepalives_interval": 1, "keepalives_count": 3, "tcp_user_timeout": 5000}


def test_an_abandoned_thread_keeps_no_connection_and_changes_nothing_afterwards():
    live = Live(example_inventory())
    used = object()
    live._pg["dc2-a"] = used
    done = threading.Event()
    refused: list[str] = []

    def hung_probe():
        with live._claims.using(live._pg, "dc2-a", used, close=lambda conn: conn.close()):
            done.wait(5)
        live._claims.keep(live._pg, "dc2-a", object())  # a reconnect after the wait gave up
        try:
            live.patch_config("dc2", {"standby_cluster": None})  # what the probe was about to do
        except UnreachableError as exc:
            refused.append(str(exc))

    class _Closable:
        closed = False

        def close(self):
            self.closed = True

    live._pg["dc2-a"] = used = _Closable()
    thread = threading.Thread(target=hung_probe, daemon=True)
    thread.start()
    time.sleep(0.05)
    live.abandon(thread)
    assert "dc2-a" not in live._pg  # nothing reuses the hung connection
    done.set()
    thread.join(5)
    assert "dc2-a" not in live._pg  # the abandoned thread kept nothing
    assert used.closed  # closed by its last user, the abandoned thread
    assert refused and "given up on" in refused[0]  # it sent nothing after its wait ended
