"""`migrate fleet status` on plain data: the verdict per service (healthy, degraded, unobserved,
split brain) from snapshots, the bounded observation (parallel, per-service deadline), the table,
the JSON document and the exit codes. The observation is a stand-in returning recorded snapshots;
the real one is proven in tests/e2e/test_fleet_status.py."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from migrator import cli
from migrator.errors import UnreachableError
from migrator.model.fleet import load_fleet
from migrator.model.fleet_status import judge
from migrator.render.fleet_status import (
    FLEET_STATUS_KEYS,
    FLEET_STATUS_SERVICE_KEYS,
    FleetStatusView,
    fleet_status_document,
    render_text,
)
from migrator.run import fleet_status as run_fleet_status
from migrator.run.fleet_status import observe_fleet
from tests.helpers.snapshots import load_baseline, unreachable, with_config, with_member, with_site
from tests.unit.test_fleet import SECRET, of_service, write_fleet, write_inventory


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    for name in ("orders", "small-a", "small-b"):
        write_inventory(tmp_path, f"inv/{name}.yml", name)
    return tmp_path


def split_brain():
    """dc2's standby leader promoted by hand (standby_cluster removed): two writable sites."""
    promoted = with_config(load_baseline(), "dc2", {"standby_cluster": None})
    return with_member(promoted, "dc2-a", postgres={"in_recovery": False, "current_lsn": 1 << 28},
                       patroni={"role": "primary"})  # fmt: skip


def fleet_status(fleet_dir: Path, states: dict, text: str = "services: [inv/*.yml]\nparallel: 2\n"):
    fleet = load_fleet(write_fleet(fleet_dir, text))

    def observe_state(inventory):
        found = states.get(inventory.service, load_baseline())
        if isinstance(found, Exception):
            raise found
        return of_service(found, inventory.service)

    return observe_fleet(fleet, observe_state)


# --- the verdict on one snapshot ----------------------------------------------------------------


def test_the_healthy_baseline_is_healthy_with_no_problem():
    status = judge("demo", "demo.yml", load_baseline())
    assert (status.verdict, status.problems) == ("healthy", ())


def test_two_writable_sites_are_split_brain_naming_both_members_and_the_runbook():
    status = judge("demo", "demo.yml", split_brain())
    assert status.verdict == "split-brain"
    assert status.problems[0].startswith("SPLIT BRAIN: 2 writable members: dc1-a (dc1), dc2-a (dc2)")
    assert "runbooks/switchover.md#two-primaries" in status.problems[0]
    assert "sites dc1 and dc2 are both primary clusters (no standby_cluster in either)" in status.problems


def test_a_service_where_nothing_answered_is_unobserved_naming_a_member_and_its_host():
    state = unreachable(load_baseline(), "dc1-a", "dc1-b", "dc2-a", "dc2-b")
    status = judge("demo", "demo.yml", state)
    assert status.verdict == "unobserved" and len(status.problems) == 1
    assert status.problems[0].startswith("cannot be observed: no member answered: dc1-a (127.0.1.1): connection")
    assert "(nor 3 other member(s))" in status.problems[0]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda s: unreachable(s, "dc2-b"), "dc2-b (127.0.2.2) did not answer: connection refused (dc2-b)"),
        (lambda s: unreachable(s, "dc2-a", probes=("postgres",)), "dc2-a: PostgreSQL did not answer"),
        (lambda s: with_site(s, "dc2", dcs={"healthy": False, "error": "refused"}), "dc2: etcd did not answer: refused"),
        (lambda s: with_member(s, "dc2-a", patroni={"pause": True}), "dc2: Patroni is paused"),
        (lambda s: with_member(s, "dc2-b", patroni={"state": "running", "replication_state": None},
                               postgres={"wal_receiver": None}),
         "dc2-b is a standby but not streaming (Patroni: running)"),
        (lambda s: with_member(s, "dc1-a", postgres={"in_recovery": True}), "no writable member in any site"),
    ],
)  # fmt: skip
def test_each_degradation_is_named(mutate, expected):
    status = judge("demo", "demo.yml", mutate(load_baseline()))
    assert status.verdict == "degraded"
    assert any(p.startswith(expected) for p in status.problems), status.problems


# --- the fleet: bounded, every service a row ----------------------------------------------------


def test_every_service_is_a_row_in_wave_order_and_one_failure_does_not_hide_the_others(fleet_dir):
    text = "services: [inv/*.yml]\nwaves:\n  - [small-b]\n"
    states = {"orders": UnreachableError("orders: etcd at http://127.0.9.100:2379 did not answer"),
              "small-a": split_brain()}  # fmt: skip
    result = fleet_status(fleet_dir, states, text)
    assert [(r.service, r.verdict) for r in result.services] == [
        ("small-b", "healthy"), ("orders", "unobserved"), ("small-a", "split-brain")]  # fmt: skip
    assert result.services[1].problems == ("cannot be observed: orders: etcd at http://127.0.9.100:2379 did not answer",)
    assert result.exit_code == 4
    assert result.totals == {"services": 3, "healthy": 1, "degraded": 0, "unobserved": 1, "split-brain": 1}


def test_the_exit_code_is_1_for_degraded_or_unobserved_and_0_when_all_healthy(fleet_dir):
    assert fleet_status(fleet_dir, {}).exit_code == 0
    assert fleet_status(fleet_dir, {"orders": unreachable(load_baseline(), "dc2-b")}).exit_code == 1
    assert fleet_status(fleet_dir, {"orders": RuntimeError("boom")}).exit_code == 1


def test_at_most_parallel_services_are_observed_at_once(fleet_dir):
    for letter in "cde":
        write_inventory(fleet_dir, f"inv/small-{letter}.yml", f"small-{letter}")
    fleet = load_fleet(write_fleet(fleet_dir, "services: [inv/*.yml]\nparallel: 3\n"))
    lock, running, peak = threading.Lock(), [0], [0]

    def observe_state(inventory):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        # Stay until three observe at once (or 2 s passed), so the peak does not depend on how
        # fast the threads of a loaded machine get started; a fourth would show as a peak of 4.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with lock:
                if running[0] >= 3:
                    break
            time.sleep(0.005)
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return of_service(load_baseline(), inventory.service)

    result = observe_fleet(fleet, observe_state)
    assert len(result.services) == 6 and {r.verdict for r in result.services} == {"healthy"}
    assert peak[0] == 3


def test_a_service_past_its_deadline_is_unobserved_and_the_others_are_not_held_up(fleet_dir, monkeypatch):
    monkeypatch.setattr(run_fleet_status, "service_deadline", lambda member: 0.3)
    release = threading.Event()

    def observe_state(inventory):
        if inventory.service == "orders":
            release.wait(10)  # a service whose hosts black-hole every packet
        return of_service(load_baseline(), inventory.service)

    fleet = load_fleet(write_fleet(fleet_dir, "services: [inv/*.yml]\nparallel: 3\n"))
    started = time.monotonic()
    try:
        result = observe_fleet(fleet, observe_state)
    finally:
        release.set()
    assert time.monotonic() - started < 3
    rows = {r.service: r for r in result.services}
    assert rows["orders"].verdict == "unobserved" and rows["orders"].state is None
    assert rows["orders"].problems[0].startswith("cannot be observed: no answer within 0s")
    assert "127.0.1.1" in rows["orders"].problems[0] and "migrate status -i" in rows["orders"].problems[0]
    assert rows["small-a"].verdict == rows["small-b"].verdict == "healthy"


# --- the table, the document, the command -------------------------------------------------------


def test_the_table_has_a_row_per_service_with_roles_leader_lag_and_the_split_brain_banner(fleet_dir):
    result = fleet_status(fleet_dir, {"orders": split_brain(), "small-a": UnreachableError("small-a: silent")})
    text = render_text(result)
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.startswith("│ ")}
    assert "primary" in rows["small-b"] and "standby cluster" in rows["small-b"] and "dc1-a" in rows["small-b"]
    assert "healthy" in rows["small-b"] and "0 B" in rows["small-b"]
    assert "SPLIT BRAIN" in rows["orders"] and "UNOBSERVED" in rows["small-a"]
    assert "services: 3; 1 healthy, 0 degraded, 1 unobserved, 1 split-brain" in text
    assert "orders: SPLIT BRAIN: 2 writable members: dc1-a (dc1), dc2-a (dc2)" in text
    coloured = render_text(result, color=True)
    assert "\x1b[1;31m" in coloured  # the split-brain row and banner are bold red


def test_the_json_document_has_the_documented_keys_and_each_service_s_status_document(fleet_dir):
    result = fleet_status(fleet_dir, {"orders": split_brain(), "small-a": UnreachableError("small-a: silent")})
    document = json.loads(json.dumps(fleet_status_document(result)))
    assert set(document) == FLEET_STATUS_KEYS and document["kind"] == "fleet-status"
    assert document["exit_code"] == 4 and document["totals"]["split-brain"] == 1
    services = {s["service"]: s for s in document["services"]}
    assert all(set(s) == FLEET_STATUS_SERVICE_KEYS for s in services.values())
    assert services["small-b"]["leader"] == "dc1-a" and services["small-b"]["status"]["kind"] == "status"
    assert services["small-b"]["site_roles"] == {"dc1": "primary", "dc2": "standby cluster"}
    assert services["orders"]["status"]["split_brain"] is True and services["orders"]["leader"] is None
    assert services["small-a"]["status"] is None and services["small-a"]["problems"] == [
        "cannot be observed: small-a: silent"]  # fmt: skip


def test_every_inventory_secret_is_masked_in_the_rows_and_by_the_view(fleet_dir):
    from io import StringIO

    from rich.console import Console

    from migrator.model.fleet_status import FleetStatus, unobserved

    result = fleet_status(fleet_dir, {"orders": UnreachableError(f"refused for {SECRET}")})
    row = {r.service: r for r in result.services}["orders"]
    assert row.problems == ("cannot be observed: refused for ********",)  # masked where it is made
    leaky = FleetStatus("fleet.yml", "now", (unobserved("orders", "orders.yml", f"refused for {SECRET}"),))
    for as_json in (True, False):
        out = StringIO()
        view = FleetStatusView(as_json=as_json, watch=False, color=False, console=Console(file=out, width=200),
                               stream=out)  # fmt: skip
        view.remember([SECRET])
        view(leaky)
        assert SECRET not in out.getvalue() and "refused for ********" in out.getvalue()


def test_the_command_exits_4_on_a_split_brain_and_prints_the_table(fleet_dir, monkeypatch, capsys):
    states = {"orders": split_brain()}
    monkeypatch.setattr(run_fleet_status, "_observe",
                        lambda inventory: of_service(states.get(inventory.service, load_baseline()),
                                                     inventory.service))  # fmt: skip
    fleet = write_fleet(fleet_dir, "services: [inv/*.yml]\n")
    assert cli.run(["fleet", "status", "--fleet", str(fleet)]) == 4
    out = capsys.readouterr().out
    assert "SPLIT BRAIN" in out and "small-a" in out and "small-b" in out
    states.clear()
    assert cli.run(["fleet", "status", "--fleet", str(fleet), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["totals"]["healthy"] == 3


def test_a_missing_fleet_file_is_one_line_exit_2(tmp_path, capsys):
    assert cli.run(["fleet", "status", "--fleet", str(tmp_path / "none.yml")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and "none.yml: file not found" in err
