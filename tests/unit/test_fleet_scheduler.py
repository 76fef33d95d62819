"""The fleet scheduler's rules on plain functions: waves in order, bounded parallelism, the failure
budget, a stop that never abandons a running service, the question between waves."""

from __future__ import annotations

import threading
import time

from migrator.model.fleet_run import ServiceResult
from migrator.run.fleet_scheduler import Scheduler


class Recorder:
    """A fake service run: sleeps, records when it started and ended and how many ran at once."""

    def __init__(
        self,
        seconds: float = 0.05,
        failing: tuple[str, ...] = (),
        codes: dict[str, int] | None = None,
        durations: dict[str, float] | None = None,
    ):
        self.seconds = seconds
        self.durations = durations or {}
        self.failing = failing
        self.codes = codes or {}
        self.lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.spans: dict[str, tuple[float, float]] = {}
        self.order: list[str] = []

    def __call__(self, name: str, wave: int) -> ServiceResult:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            self.order.append(name)
        start = time.monotonic()
        time.sleep(self.durations.get(name, self.seconds))
        with self.lock:
            self.running -= 1
            self.spans[name] = (start, time.monotonic())
        if name in self.failing:
            return ServiceResult(name, wave, "rolled-back", exit_code=self.codes.get(name, 3))
        return ServiceResult(name, wave, "moved", exit_code=0)


def test_at_most_parallel_services_run_at_once_and_every_one_runs():
    run = Recorder(seconds=0.2)
    outcome = Scheduler([["a", "b", "c", "d", "e"]], 2, 1, run, tick_seconds=0.01).run()
    assert run.peak == 2
    assert {name: r.status for name, r in outcome.results.items()} == dict.fromkeys("abcde", "moved")
    assert outcome.stopped_early is None


def test_a_wave_starts_only_after_every_service_of_the_previous_wave_ended():
    run = Recorder()
    Scheduler([["a", "b"], ["c"]], 3, 1, run, tick_seconds=0.01).run()
    assert run.spans["c"][0] >= max(run.spans["a"][1], run.spans["b"][1])


def test_after_max_failures_no_new_service_starts_but_running_ones_finish():
    # a fails while b still runs: the slot a frees must not go to c.
    run = Recorder(seconds=0.3, failing=("a",), durations={"a": 0.05})
    outcome = Scheduler([["a", "b", "c", "d"], ["e"]], 2, 1, run, tick_seconds=0.01).run()
    assert outcome.results["a"].status == "rolled-back"
    assert outcome.results["b"].status == "moved", "a running service must finish"
    assert {outcome.results[n].status for n in "cde"} == {"not-started"}
    assert "max_failures" in (outcome.stopped_early or "") and "max_failures" in outcome.results["e"].message
    assert sorted(run.order) == ["a", "b"]


def test_max_failures_two_tolerates_one_failure():
    run = Recorder(failing=("a",))
    outcome = Scheduler([["a", "b", "c"]], 1, 2, run, tick_seconds=0.01).run()
    assert [outcome.results[n].status for n in "abc"] == ["rolled-back", "moved", "moved"]


def test_stop_lets_running_services_finish_and_starts_nothing_more():
    run = Recorder(seconds=0.8)
    scheduler = Scheduler([["a", "b", "c"]], 2, 1, run, tick_seconds=0.01)
    threading.Timer(0.1, scheduler.stop, args=("interrupted (Ctrl-C)",)).start()
    outcome = scheduler.run()
    assert outcome.results["a"].status == "moved" and outcome.results["b"].status == "moved"
    assert outcome.results["c"].status == "not-started" and outcome.stopped_early == "interrupted (Ctrl-C)"


def test_already_finished_services_are_not_run_again_and_their_failures_count():
    run = Recorder()
    done = {"a": ServiceResult("a", 1, "moved", exit_code=0)}
    outcome = Scheduler([["a", "b"]], 2, 1, run, tick_seconds=0.01).run(done)
    assert run.order == ["b"] and outcome.results["a"] is done["a"]
    failed = {"a": ServiceResult("a", 1, "rolled-back", exit_code=3)}
    run2 = Recorder()
    outcome2 = Scheduler([["a", "b"]], 2, 1, run2, tick_seconds=0.01).run(failed)
    assert run2.order == [] and outcome2.results["b"].status == "not-started"


def test_a_declined_wave_stops_the_run_and_the_question_is_asked_before_wave_two_only():
    asked: list[int] = []

    def between(number: int) -> bool:
        asked.append(number)
        return False

    run = Recorder()
    outcome = Scheduler([["a"], ["b"], ["c"]], 1, 1, run, between_waves=between, tick_seconds=0.01).run()
    assert asked == [2] and run.order == ["a"]
    assert outcome.results["b"].status == "not-started" and "wave 2 was not confirmed" in (outcome.stopped_early or "")


def test_a_crashing_service_function_is_a_failed_result_not_a_crash():
    def boom(name: str, wave: int) -> ServiceResult:
        raise RuntimeError("disk full")

    outcome = Scheduler([["a"]], 1, 1, boom, tick_seconds=0.01).run()
    assert outcome.results["a"].status == "failed" and "disk full" in outcome.results["a"].message
