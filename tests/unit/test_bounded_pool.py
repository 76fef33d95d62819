"""The bounded pool `fleet plan` and `fleet status` observe with: each job within its own deadline
from the moment a worker takes it, the whole wait bounded, outcomes in the items' order."""

from __future__ import annotations

import threading
import time

from migrator.run.bounded_pool import Ended, Late, run_bounded


def test_a_hung_job_is_late_and_does_not_hold_up_the_others():
    release = threading.Event()

    def job(item: str) -> str:
        if item == "hung":
            release.wait(30)
        if item == "broken":
            raise RuntimeError("no answer")
        return item.upper()

    began = time.monotonic()
    try:
        outcomes = run_bounded(["a", "hung", "broken", "b"], job, 4, lambda item: 0.5, "test")
    finally:
        release.set()
    assert time.monotonic() - began < 5
    a, hung, broken, b = outcomes
    assert isinstance(a, Ended) and a.future.result() == "A" and isinstance(b, Ended) and b.future.result() == "B"
    assert isinstance(hung, Late) and hung.started is not None
    assert isinstance(broken, Ended) and isinstance(broken.future.exception(), RuntimeError)


def test_a_job_that_never_gets_a_worker_ends_the_wait_too():
    release = threading.Event()
    try:
        # One worker, the first job hangs: the second never starts, and the whole wait is bounded
        # by the rounds the pool needs (2 x 0.3 s), not by the hung job.
        outcomes = run_bounded(["hung", "next"], lambda item: release.wait(30), 1, lambda item: 0.3, "test")
    finally:
        release.set()
    assert isinstance(outcomes[0], Late) and outcomes[0].started is not None
    assert outcomes[1] == Late(None)


def test_nothing_to_run_is_nothing_returned():
    assert run_bounded([], lambda item: item, 3, lambda item: 1.0, "test") == []
