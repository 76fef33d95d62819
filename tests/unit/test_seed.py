"""Seeding an empty target, as pure functions of the baseline snapshot with dc2 taken away: when a
seed is planned, its refusals, the patroni.yml it writes, and the steps of the plan."""

from __future__ import annotations

from typing import Any

from ruamel.yaml import YAML

from migrator.checks import run_checks
from migrator.model.findings import Verdict
from migrator.model.playbook import PLAYBOOK_DIR, load_playbook
from migrator.checks.seed import needs_seed, seed_findings
from migrator.model.state import SeedFacts, SeedHost
from migrator.planning.seed_config import bootstrap_dcs, placeholder, render_member_config
from migrator.planning.seed import seed_plan
from migrator.model.state import ServiceState
from tests.helpers.snapshots import (
    example_inventory, load_baseline, unreachable, with_member, with_settings, with_site,
    without_slot,
)

MIB = 1048576


def empty_dc2() -> ServiceState:
    """dc2's hosts answer nothing and its etcd holds no key of scope dc2."""
    state = unreachable(load_baseline(), "dc2-a", "dc2-b", probes=("patroni", "postgres", "host"))
    data = state.model_dump(mode="json")
    data["sites"]["dc2"]["dynamic_config"] = None
    data["sites"]["dc2"]["dcs"].update(leader=None, members={}, config=None, status=None,
                                      initialize=None, history=None)
    return ServiceState.model_validate(data)


def facts(**host: Any) -> SeedFacts:
    hosts = tuple(SeedHost(**{"member": name, "data_dir": f"/data/{name}", "free_bytes": 50_000 * MIB,
                              **host}) for name in ("dc2-a", "dc2-b"))
    return SeedFacts(hosts=hosts, source_wal_bytes=64 * MIB)


def findings(state: ServiceState, seed: SeedFacts) -> dict[str, Any]:
    inventory = example_inventory()
    found = seed_findings(inventory, state, seed, "dc1", "dc2", run_checks(inventory, state, "dc1", "dc2"))
    return {f.check: f for f in found}


def test_a_target_with_no_patroni_and_no_dcs_member_needs_seeding_and_a_running_one_does_not():
    assert needs_seed(empty_dc2(), "dc2")
    assert not needs_seed(load_baseline(), "dc2")
    # All of dc2's agents down for a moment, but its members still registered in its etcd.
    down = unreachable(load_baseline(), "dc2-a", "dc2-b")
    assert not needs_seed(down, "dc2")


def test_an_empty_target_with_room_has_no_blocking_finding():
    found = findings(empty_dc2(), facts())
    assert [f.check for f in found.values() if f.verdict is Verdict.BLOCK] == []
    assert "members-reachable" not in found and "source-is-primary" not in found


def test_a_data_directory_of_another_lineage_blocks_and_one_of_this_lineage_is_reused():
    foreign = findings(empty_dc2(), facts(entries=20, system_identifier="7000000000000000001"))
    assert foreign["seed-target-data-dir"].verdict is Verdict.BLOCK
    assert "not empty and not of this lineage" in foreign["seed-target-data-dir"].finding
    junk = findings(empty_dc2(), facts(entries=3))
    assert "no PostgreSQL cluster" in junk["seed-target-data-dir"].finding
    lineage = load_baseline().sites["dc1"].members[0].postgres.system_identifier
    ours = findings(empty_dc2(), facts(entries=20, system_identifier=lineage))
    assert ours["seed-target-data-dir"].verdict is Verdict.OK


def test_a_different_cluster_in_the_target_dcs_blocks():
    state = with_site(empty_dc2(), "dc2", dcs={"initialize": "7000000000000000001"})
    found = findings(state, facts())["seed-target-dcs"]
    assert found.verdict is Verdict.BLOCK and "different cluster under scope dc2" in found.finding


def test_a_target_host_ssh_failed_on_blocks_with_its_error_and_the_disk_check_does_not_crash():
    # Found by mypy: the disk check formatted the free size of every host, None for one SSH
    # failed on, and seed planning died with a TypeError instead of this one-line refusal.
    seed = SeedFacts(hosts=(SeedHost(member="dc2-a", data_dir="/data/dc2-a", error="ssh refused"),
                            SeedHost(member="dc2-b", data_dir="/data/dc2-b", free_bytes=50_000 * MIB)),
                     source_wal_bytes=64 * MIB)
    found = findings(empty_dc2(), seed)
    assert found["seed-target-data-dir"].verdict is Verdict.BLOCK
    assert "dc2-a: cannot look at /data/dc2-a over SSH: ssh refused" in found["seed-target-data-dir"].finding
    assert "dc2-a not measured" in found["seed-target-disk"].finding


def test_too_little_disk_blocks_with_the_sizes():
    found = findings(empty_dc2(), facts(free_bytes=1 * MIB))["seed-target-disk"]
    assert found.verdict is Verdict.BLOCK
    assert "not enough disk on dc2-a" in found.finding and "1.0 MiB free" in found.finding


def test_rewind_planned_without_wal_log_hints_or_checksums_blocks():
    state = with_settings(empty_dc2(), "dc1-a", "dc1-b", wal_log_hints="off", data_checksums="off")
    found = findings(state, facts())["seed-rewind-fallback"]
    assert found.verdict is Verdict.BLOCK and "wal_log_hints off" in found.finding


def test_patroni_yml_holds_placeholders_not_passwords_and_follows_the_source():
    inventory = example_inventory()
    member = inventory.site("dc2").members[1]
    config = load_baseline().sites["dc1"].dynamic_config
    text = render_member_config(inventory, "dc1", "dc2", member, bootstrap_dcs(inventory, "dc1", "dc2", config),
                                crosses_sites=True)
    parsed = YAML(typ="safe").load(text)
    assert parsed["name"] == "dc2-b" and parsed["scope"] == "dc2"
    assert parsed["etcd3"]["hosts"] == ["127.0.2.100:2379"]
    assert parsed["restapi"]["authentication"]["password"] == "<secret:restapi>"
    assert placeholder("superuser") in text and placeholder("replication") in text
    dcs = parsed["bootstrap"]["dcs"]
    assert dcs["standby_cluster"]["host"] == "127.0.1.1,127.0.1.2"
    assert dcs["standby_cluster"]["primary_slot_name"] == "dc2"
    assert dcs["slots"] == {"dc1": {"type": "physical"}}
    assert dcs["postgresql"]["use_pg_rewind"] is True
    assert dcs["postgresql"]["parameters"]["wal_log_hints"] in (True, "on")
    assert parsed["postgresql"]["parameters"]["unix_socket_directories"].endswith("/dc2/dc2-b/sock")
    # Only the member started first may bootstrap the site: the others can only clone its leader,
    # so they can start while its copy still crosses sites.
    other = YAML(typ="safe").load(render_member_config(
        inventory, "dc1", "dc2", member, bootstrap_dcs(inventory, "dc1", "dc2", config), crosses_sites=False))
    assert "bootstrap" not in other and other["name"] == "dc2-b" and other["postgresql"]["data_dir"]


def test_the_seed_plan_seeds_then_streams_and_stops_before_any_cut_over():
    inventory = example_inventory()
    state = empty_dc2()
    plan = seed_plan(inventory, state, load_playbook(PLAYBOOK_DIR / "seed.yml"),
                     load_playbook(PLAYBOOK_DIR / "switchover.yml"), "dc1", "dc2",
                     list(findings(state, facts()).values()))
    assert [s.id for s in plan.steps] == [
        "seed-preflight", "slot-for-target-on-source", "replication-access-target-from-source",
        "write-target-configs", "start-target-leader", "start-target-replicas",
        "slot-for-source-on-target", "replication-access-source-from-target",
        "validate-standby-cluster-for-source", "wait-cascade"]
    assert plan.executable and plan.write_unavailability is None
    leader = plan.steps[4]
    assert leader.args["member"] == "dc2-a" and leader.args["start_command"].endswith("start dc2-a")
    assert plan.topology_after["dc2"].role == "standby" and plan.topology_after["dc2"].leader == "dc2-a"
    # Before: nothing answered in dc2, which the report must not call a primary.
    assert (plan.topology_before["dc2"].role, plan.topology_before["dc2"].leader) == ("unknown", None)
    assert "dc2-b patroni.yml" in plan.config_diff
    assert "promote" not in {s.phase for s in plan.steps}


# --- the target's WAL gone from the source (a re-seed is the only way back) -------------------

def wal_gone(oldest_offset: int) -> ServiceState:
    """dc2 down (its last position only in its DCS), slot dc2 gone from dc1, and dc1's oldest
    WAL segment `oldest_offset` bytes after that position."""
    base = load_baseline()
    optime = base.sites["dc2"].dcs.status["optime"]
    state = unreachable(base, "dc2-a", "dc2-b")
    state = without_slot(state, "dc1-a", "dc2")
    return with_member(state, "dc1-a", postgres={"oldest_wal_lsn": optime + oldest_offset})


def check(state: ServiceState, check_id: str):
    inventory = example_inventory()
    return next(f for f in run_checks(inventory, state, "dc1", "dc2") if f.check == check_id)


def test_wal_the_target_needs_gone_from_the_source_blocks_and_names_the_lsn():
    found = check(wal_gone(16 * MIB), "target-wal-available")
    assert found.verdict is Verdict.BLOCK
    assert "WAL needed from LSN" in found.finding and "no longer on dc1" in found.finding
    assert "re-seed dc2" in found.fix
    assert "slot dc2 missing on dc1" in check(wal_gone(16 * MIB), "slot-for-target").finding


def test_wal_still_there_or_kept_by_the_slot_is_ok():
    assert check(wal_gone(-16 * MIB), "target-wal-available").verdict is Verdict.OK
    assert check(load_baseline(), "target-wal-available").verdict is Verdict.OK


def test_wal_gone_plans_a_reseed_that_wipes_the_target_first():
    from migrator.checks.seed import needs_reseed, reseed_findings

    inventory, state = example_inventory(), wal_gone(16 * MIB)
    switchover = run_checks(inventory, state, "dc1", "dc2")
    reason = needs_reseed(switchover)
    assert reason is not None and not needs_seed(state, "dc2")
    found = reseed_findings(inventory, state, facts(entries=20), "dc1", "dc2", switchover, reason)
    plan = seed_plan(inventory, state, load_playbook(PLAYBOOK_DIR / "seed.yml"),
                     load_playbook(PLAYBOOK_DIR / "switchover.yml"), "dc1", "dc2", found, reseed=True)
    assert [s.id for s in plan.steps][:3] == ["wipe-target", "seed-preflight", "slot-for-target-on-source"]
    assert plan.executable and found[0].check == "reseed-target"


def test_the_seed_plan_report_shows_each_patroni_yml_with_placeholders_in_text_and_markdown():
    from migrator.render.plan_report import render

    inventory, state = example_inventory(), empty_dc2()
    plan = seed_plan(inventory, state, load_playbook(PLAYBOOK_DIR / "seed.yml"),
                     load_playbook(PLAYBOOK_DIR / "switchover.yml"), "dc1", "dc2",
                     list(findings(state, facts()).values()))
    for fmt in ("text", "md"):
        text = render(plan, fmt)
        assert "Seeding plan" in text and "seeding neither demotes nor promotes" in text.lower()
        assert "dc2-a patroni.yml" in text and '"<secret:replication>"' in text


def test_a_source_config_without_rewind_settings_still_seeds_a_rewindable_site():
    from migrator.planning.seed_config import bootstrap_dcs

    dcs = bootstrap_dcs(example_inventory(), "dc1", "dc2", {"ttl": 30, "slots": {"dc2": {"type": "physical"}}})
    assert dcs["postgresql"] == {"use_pg_rewind": True, "parameters": {"wal_log_hints": True}}
    assert dcs["ttl"] == 30 and dcs["slots"] == {"dc1": {"type": "physical"}}
    kept = bootstrap_dcs(example_inventory(), "dc1", "dc2", {"postgresql": {"use_pg_rewind": False}})
    assert kept["postgresql"]["use_pg_rewind"] is False


def test_until_a_phase_that_does_not_exist_is_refused_before_anything_is_contacted(tmp_path):
    import pytest

    from migrator.errors import UsageError
    from migrator.run.commands import execute

    with pytest.raises(UsageError, match="--until cascde: not a phase; --until takes preflight, pre-seed, cascade"):
        execute(example_inventory(), "dc2", tmp_path, None, False, lambda plan: True,
                lambda text: None, until="cascde")


def test_the_reseed_runbook_links_each_step_to_a_page_and_section_that_exist():
    import re
    from pathlib import Path

    from migrator.render.plan_report import render_runbook
    from migrator.checks.seed import needs_reseed, reseed_findings

    inventory, state = example_inventory(), wal_gone(16 * MIB)
    switchover = run_checks(inventory, state, "dc1", "dc2")
    found = reseed_findings(inventory, state, facts(entries=20), "dc1", "dc2", switchover,
                            needs_reseed(switchover))
    plan = seed_plan(inventory, state, load_playbook(PLAYBOOK_DIR / "seed.yml"),
                     load_playbook(PLAYBOOK_DIR / "switchover.yml"), "dc1", "dc2", found, reseed=True)
    runbook = render_runbook(plan)
    root = Path(__file__).resolve().parents[2]
    targets = set(re.findall(r"`(runbooks/[a-z-]+\.md(?:#[a-z0-9-]+)?)`", runbook))
    assert {"runbooks/seed.md", "runbooks/slot-or-wal-gone.md"} <= targets
    for target in targets:
        page, _, anchor = target.partition("#")
        assert (root / page).is_file(), target
        if anchor:
            assert f'<a id="{anchor}"></a>' in (root / page).read_text(), target


# --- the seed at link speed: one rate-limited copy across sites, the rest in parallel inside ----

THIRD_DC2_MEMBER = """    - name: dc2-c
      host: 127.0.2.3
      pg_port: 5432
      api_url: http://127.0.2.3:8008
"""


def wan_inventory(third_member: bool = False):
    """examples/testbed.yml with dc2's patroni.basebackup_max_rate set (and, optionally, a third
    dc2 member), validated without its secret and key files."""
    from migrator.model.inventory import parse_inventory
    from tests.helpers.snapshots import EXAMPLE_INVENTORY

    text = EXAMPLE_INVENTORY.read_text()
    dc2 = text.index("  dc2:\n")
    head, tail = text[:dc2], text[dc2:]
    tail = tail.replace("      local_parameters:", "      basebackup_max_rate: 64M\n      local_parameters:", 1)
    if third_member:
        tail = tail.rstrip("\n") + "\n" + THIRD_DC2_MEMBER
    return parse_inventory(head + tail, source=str(EXAMPLE_INVENTORY), base_dir=EXAMPLE_INVENTORY.parent,
                           check_local_files=False)


def wan_plan(third_member: bool = False):
    inventory, state = wan_inventory(third_member), empty_dc2()
    return seed_plan(inventory, state, load_playbook(PLAYBOOK_DIR / "seed.yml"),
                     load_playbook(PLAYBOOK_DIR / "switchover.yml"), "dc1", "dc2",
                     list(findings(state, facts()).values()))


def test_only_the_member_that_copies_across_sites_gets_the_rate_limit():
    plan = wan_plan(third_member=True)
    files = {f["member"]: YAML(typ="safe").load(f["text"]) for f in
             next(s for s in plan.steps if s.id == "write-target-configs").args["files"]}
    assert files["dc2-a"]["postgresql"]["basebackup"] == [{"checkpoint": "fast"}, {"max-rate": "64M"}]
    # The others clone the standby leader inside dc2: the inter-site limit would only slow them.
    assert files["dc2-b"]["postgresql"]["basebackup"] == [{"checkpoint": "fast"}]
    assert files["dc2-c"]["postgresql"]["basebackup"] == [{"checkpoint": "fast"}]
    leader = next(s for s in plan.steps if s.id == "start-target-leader")
    assert leader.args["member"] == "dc2-a"
    assert "the one copy across sites, at most 64M/s" in leader.title


def test_the_plan_starts_every_other_member_at_once_and_gates_each_one():
    plan = wan_plan(third_member=True)
    replicas = next(s for s in plan.steps if s.id == "start-target-replicas")
    assert [m["name"] for m in replicas.args["members"]] == ["dc2-b", "dc2-c"]
    assert "dc2-b, dc2-c at once" in replicas.title and "not rate limited" in replicas.title
    assert replicas.gate is not None
    assert "dc2-a is dc2's standby leader, streaming from dc1's primary over slot dc2" in replicas.gate.wait_for
    assert "each of dc2-b, dc2-c is a replica streaming from it" in replicas.gate.wait_for
    assert replicas.args["source"] == "dc1" and replicas.args["slot"] == "dc2"
    files = {f["member"]: YAML(typ="safe").load(f["text"]) for f in
             next(s for s in plan.steps if s.id == "write-target-configs").args["files"]}
    assert [name for name, f in files.items() if "bootstrap" in f] == ["dc2-a"]
    from migrator.render.plan_report import render

    for fmt in ("text", "md"):
        text = " ".join(render(plan, fmt).split())
        assert "dc2-b, dc2-c at once" in text and "at most 64M/s" in text


def test_without_a_rate_the_plan_says_the_cross_site_copy_is_not_limited():
    inventory, state = example_inventory(), empty_dc2()
    plan = seed_plan(inventory, state, load_playbook(PLAYBOOK_DIR / "seed.yml"),
                     load_playbook(PLAYBOOK_DIR / "switchover.yml"), "dc1", "dc2",
                     list(findings(state, facts()).values()))
    leader = next(s for s in plan.steps if s.id == "start-target-leader")
    assert "not rate limited: patroni.basebackup_max_rate spares the inter-site link" in leader.title
    files = next(s for s in plan.steps if s.id == "write-target-configs").args["files"]
    assert all("max-rate" not in f["text"] for f in files)
