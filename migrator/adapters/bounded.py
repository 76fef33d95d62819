"""Probes that cannot hold a wait past its deadline.

Generic deadline machinery with no protocol in it, below the adapters that use it (`Live` runs
each kept-open query through `call_with_deadline`) and the steps' waits (`poll_until`).

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
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from migrator.errors import MigratorError, UnreachableError

PENDING = object()  # `result` had no answer yet
_STOP = object()


class ProbeWorker:
    """One daemon thread that runs submitted callables one at a time."""

    def __init__(
        self,
        on_abandon: Callable[[threading.Thread], None],
        name: str = "migrator-probe",
        after_abandoned: Callable[[], None] | None = None,
    ):
        self._on_abandon = on_abandon
        self._after_abandoned = after_abandoned  # run by the worker when an abandoned probe ends
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
                if self._after_abandoned is not None:
                    self._after_abandoned()
                return
            self._answers.put(answer)


class NoAnswer(Exception):
    """`call_with_deadline`: the call did not return in time (it is left running, abandoned)."""


def call_with_deadline(call: Callable[[], Any], seconds: float, cleanup: Callable[[], None] | None = None) -> Any:
    """`call()`'s result (or its exception), or NoAnswer after `seconds`. For a single call on a
    connection whose own timeouts cannot fire against a frozen peer; the caller drops that
    connection on NoAnswer, so the abandoned thread is the only one left holding it, and it runs
    `cleanup` (e.g. closes the connection) if the call ever returns: a connection is closed only
    by a thread that is not using it (psycopg's C layer must not lose it under a running call)."""
    worker = ProbeWorker(lambda thread: None, name="migrator-call", after_abandoned=cleanup)
    try:
        worker.submit(call)
        result = worker.result(seconds)
    finally:
        worker.close()
    if result is PENDING:
        raise NoAnswer(f"no answer within {seconds:g}s")
    return result


def first_answer(calls: dict[str, Callable[[], Any]], what: str, seconds: float) -> Any:
    """Run the calls at once; the first that succeeds wins, the others are left to finish on
    their own (each has its own timeout). UnreachableError naming `what` and every error when
    none succeeds, or none answered within `seconds`."""
    answers: queue.SimpleQueue = queue.SimpleQueue()

    def run(name: str, call: Callable[[], Any]) -> None:
        try:
            answers.put((name, True, call()))
        except MigratorError as exc:
            answers.put((name, False, exc))
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread, raised there
            answers.put((name, None, exc))

    for name, call in calls.items():
        threading.Thread(target=run, args=(name, call), name=f"migrator-{name}", daemon=True).start()
    errors = {name: f"{name}: no answer within {seconds:g}s" for name in calls}
    deadline = time.monotonic() + seconds
    for _ in calls:
        try:
            name, ok, value = answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if ok:
            return value
        if ok is None:
            raise value
        errors[name] = str(value)
    raise UnreachableError(f"{what}: " + "; ".join(errors[name] for name in calls))


# A probe begun just before the deadline may still answer this long after it: the old loop's
# "one last probe" (it always ran the probe once more before giving up), now bounded.
LAST_PROBE_GRACE_SECONDS = 1.0
REPORT_EVERY_SECONDS = 1.0

# report(last_error, seconds a probe has been running without an answer or None, seconds left)
Report = Callable[[str, "float | None", float], None]


class PollTimedOut(Exception):
    def __init__(self, last_error: str, hung_seconds: float | None):
        super().__init__(last_error)
        self.last_error = last_error
        self.hung_seconds = hung_seconds  # the abandoned probe's time without an answer, if any


def poll_until(
    probe: Callable[[], Any],
    deadline: float,
    interval: float,
    report: Report,
    on_abandon: Callable[[threading.Thread], None],
    check: Callable[[], None] = lambda: None,
) -> Any:
    """Run `probe` (in a worker, one at a time, `interval` apart) until it returns something
    truthy, and return that. A MigratorError from it is remembered and the polling goes on.
    PollTimedOut at the monotonic `deadline`, even while a probe hangs: that probe is abandoned
    (`on_abandon(thread)`). `report` is called after a falsy answer and while a probe hangs, at
    most once a second. `check` runs on the caller's thread before every probe and while one
    hangs; what it raises ends the wait (the migration lock lost, say)."""
    last_error = ""
    next_report = 0.0
    with ProbeWorker(on_abandon) as worker:
        while True:
            check()
            if not worker.busy:
                worker.submit(probe)
            started = worker.busy_since or time.monotonic()
            give_up_at = max(deadline, started + LAST_PROBE_GRACE_SECONDS)
            try:
                result = worker.result(
                    min(give_up_at, max(next_report, started + REPORT_EVERY_SECONDS)) - time.monotonic()
                )
                if result is not PENDING and result:
                    return result
            except MigratorError as exc:
                last_error = str(exc)
            now = time.monotonic()
            hung = now - worker.busy_since if worker.busy_since is not None else None
            if now >= next_report and (hung is None or hung >= REPORT_EVERY_SECONDS):
                report(last_error, hung, deadline - now)
                next_report = now + REPORT_EVERY_SECONDS
            if now >= deadline and (hung is None or now >= give_up_at):
                raise PollTimedOut(last_error, hung)
            if not worker.busy:
                time.sleep(interval)


class Claims:
    """Which thread uses which kept-open connection (a connection lives in a `registry` dict
    under a `key`, e.g. Live's PostgreSQL connections by member name), so that a probe abandoned
    at its wait's deadline can have its connections taken out of the registry (nothing reuses
    one hung on a frozen host), and its thread, should it ever wake up, puts nothing back."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._in_use: dict[threading.Thread, list[tuple[dict, str, Any]]] = {}
        self._abandoned: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

    def keep(self, registry: dict[str, Any], key: str, resource: Any) -> None:
        """Keep a new connection for reuse, unless an abandoned thread made it (it is that
        thread's alone)."""
        with self._guard:
            if threading.current_thread() not in self._abandoned:
                registry[key] = resource

    @contextmanager
    def using(
        self, registry: dict[str, Any], key: str, resource: Any, close: Callable[[Any], None] | None = None
    ) -> Iterator[None]:
        """`resource` is in use by this thread for one call; if the thread was abandoned
        meanwhile, `close(resource)` at the end (nobody else holds it any more)."""
        me, entry = threading.current_thread(), (registry, key, resource)
        with self._guard:
            self._in_use.setdefault(me, []).append(entry)
        try:
            yield
        finally:
            with self._guard:
                entries = self._in_use.get(me, [])
                if entry in entries:
                    entries.remove(entry)
                if not entries:
                    self._in_use.pop(me, None)
                given_up = me in self._abandoned
            if given_up and close is not None:
                close(resource)

    def forget(self, registry: dict[str, Any], key: str, resource: Any) -> bool:
        """Take `resource` out of the registry if it is still the one kept there."""
        with self._guard:
            if registry.get(key) is resource:
                del registry[key]
                return True
            return False

    def refuse_if_abandoned(self) -> None:
        """A probe given up on must not act later: its wait already ended (GateTimeout), and the
        run may be undoing what it was about to do (a PATCH landing after the undo checked the
        target was not promoted would make two writable sites)."""
        if threading.current_thread() in self._abandoned:
            raise UnreachableError("this probe was given up on at its wait's deadline; it does nothing more")

    def abandon(self, thread: threading.Thread) -> None:
        with self._guard:
            self._abandoned.add(thread)
            for registry, key, resource in self._in_use.get(thread, []):
                if registry.get(key) is resource:
                    del registry[key]
