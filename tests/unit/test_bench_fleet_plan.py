"""bench/fleet_plan.py still runs: a few clones of the committed baseline, planned and reported
(the figures themselves are printed by the benchmark, never asserted)."""

from __future__ import annotations

import sys

from bench import fleet_plan


def test_the_fleet_planning_bench_plans_its_clones_and_prints_every_figure(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["bench.fleet_plan", "--services", "6", "--parallel", "2"])
    assert fleet_plan.main() == 0
    out = capsys.readouterr().out
    assert "cloned into 6 at parallel 2" in out
    assert "verdicts: 6 executable, 0 blocked" in out
    for figure in ("load fleet file + 6 inventories", "plan_fleet, 6 services", "CPU", "peak RSS"):
        assert figure in out, figure
