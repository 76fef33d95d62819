"""Probes that cannot hold a wait past its deadline.

A black-holed host (SIGSTOPped PostgreSQL, a frozen VM, a firewall dropping packets) keeps the
TCP connection up: the kernel still acknowledges, the server never answers, and statement_timeout
never fires because the server runs no timer. A probe blocked on such a connection would hold
`Step.wait` for as long as the host stays frozen, inside the write-unavailability window.

So a wait runs its probes in one worker thread, one at a time, and waits for each answer only
until the wait's own deadline. A probe still running then is abandoned: the worker is left to
finish on its own (it is a daemon thread, so it never delays the process's exit), and the owner
is told (`on_abandon(thread)`) so it can drop whatever connection that thread holds: nothing
reuses it, and nothing the thread does later lands in shared state.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

PENDING = object()  # `result` had no answer yet
_STOP = object()


class ProbeWorker:
    """One daemon thread that runs submitted callables one at a time."""

    def __init__(self, on_abandon: Callable[[threading.Thread], None], name: str = "migrator-probe"):
        self._on_abandon = on_abandon
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._answers: queue.SimpleQueue = queue.SimpleQueue()
        self._abandoned = False
        self.busy_since: float | None = None  # monotonic time the running probe started
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def __enter__(self) -> ProbeWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def busy(self) -> bool:
        return self.busy_since is not None

    def submit(self, probe: Callable[[], Any]) -> None:
        if self.busy:
            raise RuntimeError("one probe at a time")
        self.busy_since = time.monotonic()
        self._jobs.put(probe)

    def result(self, timeout: float) -> Any:
        """The running probe's return value (its exception is raised here), or PENDING when it
        has not answered within `timeout` seconds (it keeps running)."""
        try:
            ok, value = self._answers.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return PENDING
        self.busy_since = None
        if ok:
            return value
        raise value

    def close(self) -> None:
        """Stop the worker; a probe still running is abandoned (its result goes nowhere)."""
        if self.busy and not self._abandoned:
            self._abandoned = True
            self._on_abandon(self._thread)
        self._jobs.put(_STOP)

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            try:
                answer = (True, job())
            except BaseException as exc:  # noqa: BLE001 - handed over to the waiting thread as is
                answer = (False, exc)
            if self._abandoned:
                return
            self._answers.put(answer)
