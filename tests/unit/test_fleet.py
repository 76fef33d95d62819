"""The fleet file, `migrate fleet plan`'s bad inputs, the fleet plan and its fingerprint, and the
fleet report, on plain data (plans from the baseline snapshot; no site is contacted)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from migrator import cli
from migrator.errors import FleetError, UnreachableError
from migrator.model.fleet import load_fleet
from migrator.model.fleet_plan import FleetPlan, fleet_fingerprint
from migrator.model.fleet_reference import DOC_PATH, markdown_reference, missing_meanings
from migrator.model.state import SeedFacts
from migrator.render.fleet_report import render
from migrator.run.fleet_plan import plan_fleet
from tests.helpers.snapshots import EXAMPLE_INVENTORY, load_baseline, unreachable, with_member

SECRET = "fleet-secret-value-0451"


def write_inventory(directory: Path, file: str, service: str) -> Path:
    """examples/testbed.yml as service `service`, its secrets and key files in `directory`."""
    secrets = directory / "secrets"
    secrets.mkdir(exist_ok=True)
    (secrets / "pw").write_text(SECRET + "\n")
    text = EXAMPLE_INVENTORY.read_text().replace("service: demo", f"service: {service}")
    text = re.sub(r"file:/tmp/migrator-testbed/secrets/\w+", f"file:{secrets / 'pw'}", text)
    text = re.sub(r"(key_file|known_hosts): .*", rf"\1: {secrets / 'pw'}", text)
    path = directory / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    write_inventory(tmp_path, "inv/orders.yml", "orders")
    write_inventory(tmp_path, "inv/small-a.yml", "small-a")
    write_inventory(tmp_path, "inv/small-b.yml", "small-b")
    return tmp_path


def write_fleet(directory: Path, text: str) -> Path:
    path = directory / "fleet.yml"
    path.write_text(text)
    return path


# --- the fleet file -----------------------------------------------------------------------------


def test_a_good_fleet_file_resolves_globs_waves_and_the_implicit_last_wave(fleet_dir):
    fleet = load_fleet(write_fleet(fleet_dir, "services:\n  - inv/small-*.yml\n  - inv/orders.yml\n"
                                              "waves:\n  - [small-b]\nparallel: 3\n"))  # fmt: skip
    assert [s.name for s in fleet.services] == ["small-a", "small-b", "orders"]
    assert [(w.number, w.services, w.implicit) for w in fleet.waves] == [
        (1, ("small-b",), False),
        (2, ("small-a", "orders"), True),
    ]
    assert (fleet.parallel, fleet.max_failures, fleet.pause_between_waves) == (3, 1, False)
    assert SECRET in fleet.secrets()


def test_without_waves_every_service_is_in_one_wave(fleet_dir):
    fleet = load_fleet(write_fleet(fleet_dir, "services: [inv/orders.yml, inv/small-a.yml]\n"))
    assert [(w.number, w.services, w.implicit) for w in fleet.waves] == [(1, ("orders", "small-a"), False)]


BAD_FLEETS = [
    ("services: [inv/orders.yml]\nparalel: 3\n", r"fleet \S+: paralel \(line 2\): unknown key 'paralel'"),
    ("services: [inv/orders.yml]\nparallel: 0\n", r"parallel \(line 2\): must be at least 1, got 0"),
    ("services: [inv/orders.yml]\nparallel: 65\n", r"parallel \(line 2\): must be at most 64, got 65"),
    ("services: [inv/orders.yml]\nmax_failures: -1\n", r"max_failures \(line 2\): must be at least 0"),
    ("services: [inv/orders.yml]\npause_between_waves: 'yes'\n", r"pause_between_waves \(line 2\): "),
    ("parallel: 2\n", r"fleet \S+: services: missing required key 'services'"),
    ("services:\n  - inv/none-*.yml\n", r"services\[0\] \(line 2\): 'inv/none-\*.yml' matches no file"),
    ("services:\n  - inv/gone.yml\n", r"services\[0\] \(line 2\): inventory 'inv/gone.yml' not found \(looked for \S+/inv/gone.yml\)"),
    ("services:\n  - inv/orders.yml\n  - inv/order*.yml\n", r"services\[1\] \(line 3\): inventory \S+orders.yml is "
                                                         r"listed twice \(also by services\[0\]\)"),
    ("services: [inv/orders.yml, inv/copy.yml]\n", r"services\[1\] \(line 1\): inventories \S+orders.yml and "
                                                   r"\S+copy.yml both have service: orders"),
    ("services: [inv/orders.yml]\nwaves:\n  - [orders]\n  - [orders]\n", r"waves\[1\]\[0\] \(line 4\): service "
                                                                         r"'orders' is already in wave 1"),
    ("services: [inv/orders.yml]\nwaves:\n  - [billing]\n", r"waves\[0\]\[0\] \(line 3\): 'billing' is not the "
                                                             r"service of any inventory"),
    ("services: [inv/broken.yml]\n", r"^migrate: error: inventory \S+broken.yml: sites.dc1.scope \(line \d+\): "
                                     r"expected text"),
    ("services: [inv/orders.yml]\nservices: [inv/orders.yml]\n", r"fleet \S+: line 2: key 'services' appears twice"),
    ("", r"fleet \S+: the file is empty"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), BAD_FLEETS)
def test_each_bad_fleet_is_one_line_naming_file_and_line_exit_2(fleet_dir, capsys, text, expected):
    write_inventory(fleet_dir, "inv/copy.yml", "orders")
    broken = write_inventory(fleet_dir, "inv/broken.yml", "broken")
    broken.write_text(broken.read_text().replace("scope: dc1", "scope: [dc1]"))
    fleet = write_fleet(fleet_dir, text)
    assert cli.run(["fleet", "plan", "--fleet", str(fleet), "--dc", "dc2"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert re.search(expected, lines[0]), lines[0]
    assert "Traceback" not in err


def test_every_problem_of_the_fleet_and_its_inventories_is_listed(fleet_dir):
    broken = write_inventory(fleet_dir, "inv/broken.yml", "broken")
    broken.write_text(broken.read_text().replace("scope: dc1", "scope: [dc1]"))
    with pytest.raises(FleetError) as raised:
        load_fleet(write_fleet(fleet_dir, "services: [inv/broken.yml, inv/nothing-*.yml]\nparallel: 0\n"))
    assert len(raised.value.problems) == 1  # the model's problems stop before the files are read
    with pytest.raises(FleetError) as raised:
        load_fleet(write_fleet(fleet_dir, "services: [inv/broken.yml, inv/nothing-*.yml]\n"))
    problems = raised.value.problems
    assert len(problems) == 2 and "matches no file" in problems[0] and "broken.yml" in problems[1]


def test_a_site_missing_in_one_inventory_is_one_line_naming_it_and_its_sites(fleet_dir, capsys):
    other = write_inventory(fleet_dir, "inv/other.yml", "other")
    other.write_text(other.read_text().replace("  dc2:", "  dc3:").replace("scope: dc2", "scope: dc3"))
    fleet = write_fleet(fleet_dir, "services: [inv/orders.yml, inv/other.yml]\n")
    assert cli.run(["fleet", "plan", "--fleet", str(fleet), "--dc", "dc2"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert "inventory" in lines[0] and "other.yml (service other) has no site 'dc2'; its sites: dc1, dc3" in lines[0]


def test_docs_fleet_md_is_generated_from_the_model_and_every_key_has_a_meaning():
    assert missing_meanings() == []
    assert DOC_PATH.read_text() == markdown_reference(), "run python -m migrator.model.fleet_reference"


# --- the fleet plan -----------------------------------------------------------------------------


def no_seed_facts(inventory, state, source, target) -> SeedFacts:
    return SeedFacts()


def of_service(state, service: str):
    """The snapshot as if observed for `service` (the planner refuses another service's)."""
    return state.model_copy(update={"service": service})


def fleet_plan(fleet_dir: Path, states: dict, skip_blocked: bool = False, text: str | None = None) -> FleetPlan:
    fleet = load_fleet(write_fleet(fleet_dir, text or "services: [inv/*.yml]\nwaves:\n  - [small-b]\n"))

    def observe_state(inventory):
        found = states.get(inventory.service, load_baseline())
        if isinstance(found, Exception):
            raise found
        return of_service(found, inventory.service)

    return plan_fleet(fleet, "dc2", skip_blocked, observe_state, no_seed_facts)


def test_every_service_is_planned_as_migrate_plan_plans_it_in_wave_order(fleet_dir):
    result = fleet_plan(fleet_dir, {})
    assert [(r.service, r.wave) for r in result.services] == [("small-b", 1), ("orders", 2), ("small-a", 2)]
    for row in result.services:
        assert (row.verdict, row.proposal, row.source, row.target) == ("executable", "switchover", "dc1", "dc2")
        assert row.write_unavailable_seconds is not None and row.demote_path == "graceful-demote"
        stored = row.stored_plan()
        assert stored is not None and stored.verify_fingerprint() and stored.fingerprint == row.fingerprint
    assert result.exit_code == 0


def test_a_service_that_cannot_be_observed_is_a_blocked_row_naming_why(fleet_dir):
    states = {
        "orders": UnreachableError("orders: etcd at http://127.0.9.100:2379 did not answer"),
        "small-a": unreachable(load_baseline(), "dc1-a", "dc1-b", "dc2-a", "dc2-b"),
    }
    result = fleet_plan(fleet_dir, states)
    rows = {r.service: r for r in result.services}
    assert rows["orders"].verdict == "blocked" and rows["orders"].plan is None
    assert rows["orders"].blocking == "orders: etcd at http://127.0.9.100:2379 did not answer"
    assert rows["small-a"].verdict == "blocked" and rows["small-a"].proposal is None
    assert rows["small-a"].blocking.startswith("cannot be observed: no member answered: dc1-a (127.0.1.1)")
    assert rows["small-b"].verdict == "executable"
    assert result.exit_code == 1

    skipped = fleet_plan(fleet_dir, states, skip_blocked=True)
    assert {r.service: r.verdict for r in skipped.services} == {
        "small-b": "executable", "orders": "skipped", "small-a": "skipped"}  # fmt: skip
    assert skipped.exit_code == 0


def test_a_blocking_finding_is_the_row_s_first_blocking_line_with_its_fix(fleet_dir):
    paused = with_member(load_baseline(), "dc2-a", patroni={"pause": True})
    row = {r.service: r for r in fleet_plan(fleet_dir, {"orders": paused}).services}["orders"]
    assert row.verdict == "blocked" and row.blocking
    finding = next(f for f in row.stored_plan().findings if f.verdict.value == "block")
    assert row.blocking.startswith(f"{finding.check}: {finding.finding}; {finding.fix}")


def test_the_plan_to_the_site_already_primary_is_a_no_op_row(fleet_dir):
    fleet = load_fleet(write_fleet(fleet_dir, "services: [inv/orders.yml]\n"))
    result = plan_fleet(fleet, "dc1", observe_state=lambda inventory: of_service(load_baseline(), "orders"))
    (row,) = result.services
    assert (row.verdict, row.proposal, row.write_unavailable_seconds) == ("no-op", "noop", None)
    assert result.exit_code == 0


def test_the_fleet_fingerprint_is_order_independent_and_follows_each_plan(fleet_dir):
    pairs = [("a", "1" * 64), ("b", "2" * 64), ("c", None)]
    assert fleet_fingerprint(pairs) == fleet_fingerprint(list(reversed(pairs)))
    assert fleet_fingerprint(pairs) != fleet_fingerprint([("a", "1" * 64), ("b", "3" * 64), ("c", None)])

    first = fleet_plan(fleet_dir, {})
    reordered = fleet_plan(fleet_dir, {}, text="services: [inv/small-a.yml, inv/orders.yml, inv/small-b.yml]\n")
    assert first.fingerprint == reordered.fingerprint
    changed = fleet_plan(fleet_dir, {"small-a": unreachable(load_baseline(), "dc2-b")})
    assert changed.fingerprint != first.fingerprint
    assert {r.service: r.fingerprint for r in changed.services}["orders"] == \
        {r.service: r.fingerprint for r in first.services}["orders"]  # fmt: skip


# --- the report ---------------------------------------------------------------------------------


def test_the_report_in_every_format_has_the_rows_totals_waves_and_fingerprint(fleet_dir):
    result = fleet_plan(fleet_dir, {"orders": UnreachableError("orders: nothing answered")}, skip_blocked=True)
    common = ("small-a", "small-b", "switchover", "wave 1: small-b",
              "wave 2 (implicit: the services named in no wave): orders (skipped), small-a",
              "services: 3; executable 2, no-op 0, blocked 0, skipped 1", "--skip-blocked")  # fmt: skip
    # The text table folds long cells over several lines; Markdown keeps each row on one.
    for fmt, needles in (("text", common), ("md", (*common, "orders: nothing answered", "skipped (blocked)",
                                                   "graceful-demote"))):  # fmt: skip
        text = render(result, fmt)
        assert result.fingerprint in text
        for needle in needles:
            assert needle in text, (fmt, needle)
    document = json.loads(render(result, "json"))
    assert document["kind"] == "fleet-plan" and document["fingerprint"] == result.fingerprint
    assert document["totals"]["skipped"] == 1
    plans = {row["service"]: row["plan"] for row in document["services"]}
    assert plans["orders"] is None and plans["small-a"]["fingerprint"] and plans["small-b"]["steps"]
    assert FleetPlan.model_validate(document) == result  # `fleet execute --plan` can read it back


def test_the_blocked_verdict_line_says_how_to_go_on(fleet_dir):
    result = fleet_plan(fleet_dir, {"orders": UnreachableError("orders: nothing answered")})
    text = render(result, "text")
    assert "BLOCKED: fix the blocked services, or pass --skip-blocked" in text


def test_at_most_parallel_services_are_observed_at_once(fleet_dir):
    import threading
    import time

    for letter in "cdef":
        write_inventory(fleet_dir, f"inv/small-{letter}.yml", f"small-{letter}")
    fleet = load_fleet(write_fleet(fleet_dir, "services: [inv/*.yml]\nparallel: 2\n"))
    lock, running, peak = threading.Lock(), [0], [0]

    def observe_state(inventory):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return of_service(load_baseline(), inventory.service)

    result = plan_fleet(fleet, "dc2", observe_state=observe_state)
    assert len(result.services) == 7 and all(r.verdict == "executable" for r in result.services)
    assert peak[0] == 2


def test_every_inventory_s_secret_is_masked_in_the_fleet_plan_and_every_report(fleet_dir):
    from migrator.model.secrets import MASK
    from tests.helpers.snapshots import with_config

    leaky = with_config(load_baseline(), "dc1", {"migrator_test_note": f"archive pw {SECRET}"})
    result = fleet_plan(fleet_dir, {"orders": leaky, "small-a": UnreachableError(f"refused for {SECRET}")})
    outputs = [render(result, fmt) for fmt in ("text", "md", "json")]
    assert not any(SECRET in text for text in outputs)
    assert f"archive pw {MASK}" in outputs[2] and f"refused for {MASK}" in outputs[1]
