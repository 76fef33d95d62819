"""Read-only jobs over a fleet's services on a bounded pool of threads, each job within its own
deadline from the moment a worker takes it, and the whole wait bounded too (the rounds the pool
needs at the slowest deadline): a job that never got a worker, because others hung past their
deadlines, ends the wait as well. `fleet plan` and `fleet status` observe this way.

A job past its deadline is left behind, not killed: a thread cannot be stopped, and each job's own
network calls are bounded by their timeouts, so it ends by itself; its result is ignored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Late:
    """A job that did not end in time: `started` is when a worker took it (monotonic), None when
    no worker was free before the whole wait's bound."""

    started: float | None


@dataclass(frozen=True)
class Ended(Generic[Result]):
    """A job that ended in time; `future.result()` gives its result or raises its exception."""

    future: Future[Result]


def run_bounded(
    items: Sequence[Item],
    job: Callable[[Item], Result],
    workers: int,
    deadline_of: Callable[[Item], float],
    name: str,
) -> list[Ended[Result] | Late]:
    """Run `job` over `items`, at most `workers` at a time; one outcome per item, in order."""
    if not items:
        return []
    workers = max(1, min(workers, len(items)))
    began: dict[int, float] = {}  # item index -> when its worker took it

    def taken(index: int) -> Result:
        began[index] = time.monotonic()
        return job(items[index])

    overall = time.monotonic() + max(deadline_of(i) for i in items) * math.ceil(len(items) / workers)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    futures = {pool.submit(taken, index): index for index in range(len(items))}
    outcomes: dict[int, Ended[Result] | Late] = {}
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                outcomes[futures[future]] = Ended(future)
            now = time.monotonic()
            for future in list(pending):
                index = futures[future]
                start = began.get(index)
                if (start is not None and now - start > deadline_of(items[index])) or now > overall:
                    future.cancel()
                    pending.discard(future)
                    outcomes[index] = Late(start)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return [outcomes[index] for index in range(len(items))]
