"""The pure fleet planner over many services: 50 clones of the recorded baseline snapshot
(tests/helpers/fleet_clones.py: distinct service names, scopes and hosts) planned by `plan_fleet`
with a stand-in observation that returns the recorded snapshots. Each row is the plan `migrate
plan` makes for that clone alone, and the fleet fingerprint is made of those plans. Not timed:
bench/fleet_plan.py times 500."""

from __future__ import annotations

from migrator.model.fleet import load_fleet
from migrator.model.fleet_plan import fleet_fingerprint
from migrator.planning.preflight import check_outcome
from migrator.run.fleet_plan import plan_fleet
from tests.helpers.fleet_clones import Recorded, clone_name, no_seed_facts, recorded_observer, write_clones
from tests.helpers.snapshots import EXAMPLE_INVENTORY, load_baseline

COUNT = 50


def test_fifty_cloned_services_plan_as_each_alone_with_the_fleet_fingerprint_of_their_plans(tmp_path):
    recorded = Recorded(EXAMPLE_INVENTORY.read_text(), load_baseline())
    fleet_file, states = write_clones([recorded], COUNT, tmp_path, parallel=20)
    fleet = load_fleet(fleet_file)
    assert [s.name for s in fleet.services] == [clone_name("demo", i) for i in range(COUNT)]

    result = plan_fleet(fleet, "dc2", observe_state=recorded_observer(states), observe_seed_facts=no_seed_facts)

    assert len(result.services) == COUNT and result.exit_code == 0
    assert {(r.verdict, r.proposal, r.source, r.target) for r in result.services} == {
        ("executable", "switchover", "dc1", "dc2")}  # fmt: skip
    fingerprints = [r.fingerprint for r in result.services]
    assert len(set(fingerprints)) == COUNT  # each clone's own hosts and scopes are in its plan
    for member, row in list(zip(fleet.services, result.services, strict=True))[::7]:
        alone = check_outcome(member.inventory, states[member.name], "dc2", no_seed_facts).plan
        assert alone is not None and alone.fingerprint == row.fingerprint
        hosts = {m.host for site in alone.topology_before.values() for m in site.members}
        index = int(member.name.rsplit("-", 1)[1])
        assert hosts == {f"10.0.{index}.{n}" for n in (1, 2, 3, 4)}
        assert {s.scope for s in member.inventory.sites.values()} == {f"{member.name}-dc1", f"{member.name}-dc2"}
    assert result.fingerprint == fleet_fingerprint([(r.service, r.fingerprint) for r in result.services])
    assert result.totals["executable"] == COUNT
