"""The fleet scheduler: waves in order, at most `parallel` services at a time, a failure budget,
and a stop that lets running services finish.

It knows nothing of Patroni or of child processes: it calls `run_one(service)` in a thread per
service and gets a `ServiceResult` back (migrator/run/fleet_run.py runs a child `migrate execute`
there). So its rules are tested with plain functions (tests/unit/test_fleet_scheduler.py):

- a wave starts only when every service of the wave before it has ended;
- after `max_failures` failed services (0 counts as 1: the first failure stops new starts) no new
  service starts, in this wave or any later one; running ones finish;
- `stop(reason)` (the first Ctrl-C) does the same; nothing running is ever abandoned: `run()`
  returns only when every started service has ended;
- `between_waves(n)` is asked before wave n (n >= 2) when given; False stops there;
- services that never started get a `not-started` result saying why.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from migrator.model.fleet_run import ServiceResult

# How often the loop wakes up while services run, to call `tick` (the live view).
TICK_SECONDS = 0.5


@dataclass
class SchedulerOutcome:
    results: dict[str, ServiceResult]
    stopped_early: str | None = None  # why services were left unstarted
    running_names: list[str] = field(default_factory=list)


class Scheduler:
    def __init__(
        self,
        waves: Sequence[Sequence[str]],
        parallel: int,
        max_failures: int,
        run_one: Callable[[str, int], ServiceResult],
        tick: Callable[[], None] = lambda: None,
        between_waves: Callable[[int], bool] | None = None,
        tick_seconds: float = TICK_SECONDS,
    ):
        self.waves = [list(w) for w in waves]
        self.parallel = max(1, parallel)
        self.budget = max(1, max_failures)
        self.run_one = run_one
        self.tick = tick
        self.between_waves = between_waves
        self.tick_seconds = tick_seconds
        self._stop_reason: str | None = None
        self._lock = threading.Lock()
        self.running: dict[str, threading.Thread] = {}

    def stop(self, reason: str) -> None:
        """No new service starts from now on; running ones finish. The first reason is kept."""
        with self._lock:
            if self._stop_reason is None:
                self._stop_reason = reason

    @property
    def stopped(self) -> str | None:
        with self._lock:
            return self._stop_reason

    def running_names(self) -> list[str]:
        with self._lock:
            return sorted(self.running)

    def run(self, already: dict[str, ServiceResult] | None = None) -> SchedulerOutcome:
        """Run every service that has no result in `already` (a resumed fleet run's finished ones)."""
        results: dict[str, ServiceResult] = dict(already or {})
        done: queue.Queue[tuple[str, ServiceResult]] = queue.Queue()
        failures = sum(1 for r in results.values() if r.failed)
        if failures >= self.budget:
            self.stop(f"the failure budget (max_failures {self.budget}) was already spent")
        for index, wave in enumerate(self.waves):
            pending = [name for name in wave if name not in results]
            if not pending:
                continue
            if index > 0 and self.stopped is None and self.between_waves is not None:
                if not self.between_waves(index + 1):
                    self.stop(f"wave {index + 1} was not confirmed")
            while pending or self.running:
                while pending and self.stopped is None and len(self.running) < self.parallel:
                    name = pending.pop(0)
                    self._start(name, index + 1, done)
                if not self.running:
                    break  # stopped with services left: they are not started
                try:
                    name, result = done.get(timeout=self.tick_seconds)
                except queue.Empty:
                    self.tick()
                    continue
                self._ended(name)
                results[name] = result
                if result.failed:
                    failures += 1
                    if failures >= self.budget:
                        self.stop(f"{failures} service(s) failed (max_failures {self.budget})")
                self.tick()
            if self.stopped is not None:
                break
        reason = self.stopped
        for number, wave in enumerate(self.waves, start=1):
            for name in wave:
                if name not in results:
                    results[name] = ServiceResult(name, number, "not-started", message=f"not started: {reason}")
        return SchedulerOutcome(results, reason)

    def _start(self, name: str, wave: int, done: queue.Queue[tuple[str, ServiceResult]]) -> None:
        def work() -> None:
            try:
                result = self.run_one(name, wave)
            except Exception as exc:  # noqa: BLE001 - one service's crash must not hide the others
                result = ServiceResult(name, wave, "failed", exit_code=1, message=f"internal error: {exc}")
            done.put((name, result))

        thread = threading.Thread(target=work, name=f"fleet-{name}", daemon=True)
        with self._lock:
            self.running[name] = thread
        thread.start()

    def _ended(self, name: str) -> None:
        with self._lock:
            thread = self.running.pop(name, None)
        if thread is not None:
            thread.join(timeout=5)
