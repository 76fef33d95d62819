"""Synchronous mode on the primary site moves with the primary role (issue 6, case 6).

dc1 runs `synchronous_mode: true`; the switchover to dc2 writes it into dc2's dynamic config
before the cut-over (Patroni ignores it while dc2 is a standby cluster) and removes it from dc1
once dc1 is a standby. dc2 then gets `synchronous_mode_strict: true` as well, and the move back
carries both to dc1. Finally dc1 loses its only replica: strict mode puts '*' into
synchronous_standby_names and dc2's standby leader becomes dc1's synchronous standby, which
`check` names.
"""

from __future__ import annotations

import json

import pytest

from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.helpers.site_moves import inventory_with_gates, member_with_role
from tests.e2e.test_execute import assert_primary_site, explain, migrate
from tests.testbed import SITE_BY_NAME, wait_until

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
SYNC_KEYS = ("synchronous_mode", "synchronous_mode_strict")
REPLICATION = ("SELECT current_setting('synchronous_standby_names'), "
               "coalesce(string_agg(application_name || ':' || sync_state, ',' "
               "ORDER BY application_name), '') FROM pg_stat_replication")


def sync_config(testbed, site) -> dict:
    config = testbed.get_config(site)
    return {k: config.get(k) for k in SYNC_KEYS}


def replication(testbed, member) -> tuple[str, str]:
    return testbed.sql(member, REPLICATION)[0]


def wait_synchronous_standby_in_site(testbed, site) -> tuple[str, str]:
    """The site's primary names one of its own replicas synchronous, and pg_stat_replication
    agrees: Patroni picks among the members of its own cluster."""
    def named():
        primary = member_with_role(testbed, site, "primary")
        names, rows = replication(testbed, primary)
        local = [m.name for m in site.members if m != primary]
        return (names, rows) if any(f"{n}:sync" in rows and n in names for n in local) else None
    return wait_until(named, 30, f"a synchronous standby inside {site.name}", interval=0.5)


def findings(inventory: str) -> dict[str, dict]:
    out = migrate("check", "-i", inventory, "--json")
    assert out.returncode in (0, 1) and "Traceback" not in out.stderr, explain(out)
    return {f["check"]: f for f in json.loads(out.stdout)["findings"]}


def test_synchronous_mode_moves_with_the_primary_there_and_back(baseline, tmp_path):
    inventory = str(inventory_with_gates(baseline, tmp_path / "inventory.yml",
                                         lag_window_seconds=1))
    state = str(tmp_path / "state")
    baseline.patch_config(DC1, {"synchronous_mode": True})
    try:
        wait_synchronous_standby_in_site(baseline, DC1)
        with WriterSampler(baseline) as sampler, \
                WriteLedger(baseline, table="ledger_sync") as ledger:
            found = findings(inventory)
            assert found["synchronous-mode"]["verdict"] == "ok", found["synchronous-mode"]
            assert "carries it to dc2" in found["synchronous-mode"]["finding"]
            target = found["synchronous-mode-target"]
            assert target["verdict"] == "ok", target

            out = migrate("plan", "-i", inventory, "--dc", "dc2", "--format", "json")
            assert out.returncode == 0, explain(out)
            plan = json.loads(out.stdout)
            assert "+synchronous_mode: true" in plan["config_diff"]["dc2"]
            assert "-synchronous_mode: true" in plan["config_diff"]["dc1"]
            ids = [s["id"] for s in plan["steps"]]
            assert ids.index("carry-synchronous-mode-to-target") < ids.index("demote-source")
            assert ids.index("promote-target") < ids.index("drop-synchronous-mode-from-source")

            out = migrate("execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", state)
            assert out.returncode == 0, explain(out)
            assert_primary_site(baseline, DC2)
            assert sync_config(baseline, DC2) == {"synchronous_mode": True,
                                                  "synchronous_mode_strict": None}
            assert sync_config(baseline, DC1) == {"synchronous_mode": None,
                                                  "synchronous_mode_strict": None}
            names, rows = wait_synchronous_standby_in_site(baseline, DC2)
            print(f"\ndc2 primary: synchronous_standby_names {names!r}, replication {rows}")
            # A standby cluster never names a synchronous standby (Patroni >= 3.2 ignores it).
            for member in DC1.members:
                assert replication(baseline, member)[0] == ""

            baseline.patch_config(DC2, {"synchronous_mode_strict": True})
            out = migrate("rollback", "-i", inventory, "--yes", "--state-dir", state)
            assert out.returncode == 0, explain(out)
            assert_primary_site(baseline, DC1)
            assert sync_config(baseline, DC1) == {"synchronous_mode": True,
                                                  "synchronous_mode_strict": True}
            assert sync_config(baseline, DC2) == {"synchronous_mode": None,
                                                  "synchronous_mode_strict": None}
            names, rows = wait_synchronous_standby_in_site(baseline, DC1)
            print(f"dc1 primary (strict): synchronous_standby_names {names!r}, replication {rows}")
            for member in DC2.members:
                assert replication(baseline, member)[0] == ""

            # dc1 loses its only replica: strict mode names '*', and the walsender of dc2's
            # standby leader satisfies it. Commits go on; check says where they wait.
            primary = member_with_role(baseline, DC1, "primary")
            replica = next(m for m in DC1.members if m != primary)
            standby_leader = member_with_role(baseline, DC2, "standby_leader")
            baseline.stop_patroni(replica)
            try:
                wait_until(lambda: replication(baseline, primary) == (
                    "*", f"{standby_leader.name}:sync"), 30,
                    "'*' satisfied by dc2's standby leader", interval=0.5)
                finding = findings(inventory)["synchronous-mode"]
                assert finding["verdict"] == "warn", finding
                outside = f"synchronous standby is {standby_leader.name}, outside dc1"
                assert outside in finding["finding"], finding
            finally:
                baseline.start_patroni(replica)
            wait_synchronous_standby_in_site(baseline, DC1)
        assert sampler.violations == []
        assert_no_acknowledged_commit_lost(baseline, ledger)
        print(f"ledger: {ledger.summary()}")
        assert ledger.max_gap_seconds < 10, ledger.summary()
    finally:
        for site in (DC1, DC2):  # synchronous mode off again, wherever the run left it
            baseline.patch_config(site, {k: None for k in SYNC_KEYS})
