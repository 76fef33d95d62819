"""Seeding dc2 from nothing on the real testbed: `migrate execute --dc dc2 --until cascade` while a
writer runs, a second run that changes nothing, the cut-over that does not seed again, kill -9
during the base backup then `--resume`, and the refusals, each provoked for real."""

from __future__ import annotations

import base64
import os
import pwd
import shutil
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.e2e.test_execute import (
    MIGRATE, assert_primary_site, explain, journal_records, migrate,
)
from tests.testbed import SITE_BY_NAME, wait_until
from tests.testbed.patroni_config import member_dir
from tests.testbed.testbed import run_as_os_user
from tests.testbed.topology import PG_BIN_DIR, SPARE_MEMBERS

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
SEED_STEPS = ("seed-preflight", "write-target-configs", "start-target-leader", "start-target-replicas")


@pytest.fixture
def empty_dc2(baseline):
    """dc2's hosts without a cluster (the testbed's next `baseline` builds or repairs it)."""
    baseline.remove_dc2_cluster()
    return baseline


def _dc2_keys(testbed) -> list[str]:
    prefix = "/service/dc2/"
    resp = requests.post(f"{DC2.etcd_url}/v3/kv/range", timeout=5, json={
        "key": base64.b64encode(prefix.encode()).decode(),
        "range_end": base64.b64encode(b"/service/dc20").decode(), "keys_only": True}).json()
    return [base64.b64decode(kv["key"]).decode() for kv in resp.get("kvs", [])]


def _dc2_config_files(testbed) -> list[Path]:
    return [member_dir(testbed.base, m) / "patroni.yml" for m in DC2.members
            if (member_dir(testbed.base, m) / "patroni.yml").exists()]


def _migration(records: list[dict], index: int = -1) -> list[dict]:
    ids = [r["migration"] for r in records if r["event"] == "migration-started"]
    return [r for r in records if r.get("migration") == ids[index]]


def _events(records: list[dict], event: str) -> list[str]:
    return [r["step"] for r in records if r["event"] == event]


def _primary(testbed, site):
    return next(m for m in site.members if testbed.patroni_state(m).get("role") == "primary")


def _cascade_facts(testbed) -> dict:
    """Who leads dc2, where each dc2 member streams from, and the shape everyone can compare."""
    leader, replica = DC2.members
    return {
        "roles": {m.name: testbed.patroni_state(m).get("role") for m in DC2.members},
        "leader_receiver": testbed.sql(leader, "SELECT status, slot_name FROM pg_stat_wal_receiver"),
        "replica_sender": testbed.sql(replica, "SELECT status, sender_host FROM pg_stat_wal_receiver"),
    }


@pytest.mark.slow
def test_seed_until_cascade_under_load_then_a_no_op_rerun_then_the_cut_over(empty_dc2, tmp_path):
    testbed, state = empty_dc2, str(tmp_path / "state")
    inventory = str(testbed.inventory_path)
    dc1_config_before = testbed.get_config(DC1)
    assert "dc2" not in (dc1_config_before.get("slots") or {}) and _dc2_keys(testbed) == []

    plan = migrate("plan", "-i", inventory, "--dc", "dc2")
    assert plan.returncode == 0, explain(plan)
    assert "start-target-leader" in plan.stdout and "dc2-b patroni.yml" in plan.stdout
    for secret in testbed.passwords().values():
        assert secret not in plan.stdout

    with WriterSampler(testbed) as sampler, WriteLedger(testbed, table="ledger_seed") as ledger:
        out = migrate("execute", "-i", inventory, "--dc", "dc2", "--until", "cascade", "--yes",
                      "--state-dir", state, timeout=600)
        assert out.returncode == 0, explain(out)
        assert "seeded and follows dc1" in out.stdout
        time.sleep(1)
    assert sampler.violations == []
    # Every acknowledged row reached both dc2 members (and dc1-b).
    assert_no_acknowledged_commit_lost(testbed, ledger)
    leader, replica = DC2.members
    facts = _cascade_facts(testbed)
    assert facts["roles"] == {leader.name: "standby_leader", replica.name: "replica"}, facts
    assert facts["leader_receiver"] == [("streaming", "dc2")], facts
    assert facts["replica_sender"] == [("streaming", leader.host)], facts
    assert testbed.sql(leader, "SELECT system_identifier FROM pg_control_system()") == \
        testbed.sql(_primary(testbed, DC1), "SELECT system_identifier FROM pg_control_system()")
    for path in _dc2_config_files(testbed):
        assert path.stat().st_mode & 0o777 == 0o600 and path.owner() == "postgres"
    # The files hold the passwords; the plan, journal and report of the run do not.
    for path in Path(state).rglob("*"):
        if path.is_file():
            assert not [s for s in testbed.passwords().values() if s in path.read_text()], path
    seeding = _migration(journal_records(Path(state)))
    assert set(SEED_STEPS[1:]) <= set(_events(seeding, "step-applied"))
    assert [r["outcome"] for r in seeding if r["event"] == "migration-finished"] == ["done"]

    # The same command again changes nothing: no step applied, same configs, same processes.
    pids = {name: pid for name, pid in testbed.registry.load().items() if name.startswith("patroni-dc2")}
    configs = (testbed.get_config(DC1), testbed.get_config(DC2))
    timeline = testbed.sql(leader, "SELECT received_tli FROM pg_stat_wal_receiver")
    again = migrate("execute", "-i", inventory, "--dc", "dc2", "--until", "cascade", "--yes",
                    "--state-dir", state)
    assert again.returncode == 0, explain(again)
    rerun = _migration(journal_records(Path(state)))
    assert _events(rerun, "step-applied") == [], rerun
    assert not set(SEED_STEPS) & set(_events(rerun, "step-started"))
    assert (testbed.get_config(DC1), testbed.get_config(DC2)) == configs
    assert {n: p for n, p in testbed.registry.load().items() if n.startswith("patroni-dc2")} == pids
    assert testbed.sql(leader, "SELECT received_tli FROM pg_stat_wal_receiver") == timeline

    # The cut-over: a plain execute, planned on the seeded site, seeds nothing again.
    with WriteLedger(testbed, table="ledger_seed_cut") as ledger:
        out = migrate("execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", state)
        assert out.returncode == 0, explain(out)
        time.sleep(1)
    assert_primary_site(testbed, DC2)
    cut = _migration(journal_records(Path(state)))
    assert not set(SEED_STEPS) & set(_events(cut, "step-started"))
    assert not {"slot-for-target-on-source", "slot-for-source-on-target"} & set(_events(cut, "step-applied"))
    assert "promote-target" in _events(cut, "step-done")
    assert_no_acknowledged_commit_lost(testbed, ledger)
    back = migrate("rollback", "-i", inventory, "--yes", "--state-dir", state)
    assert back.returncode == 0, explain(back)
    assert_primary_site(testbed, DC1)


@pytest.mark.slow
def test_kill_9_during_the_base_backup_then_resume_completes(empty_dc2, tmp_path):
    """The base backup is throttled with Patroni's basebackup option max-rate (4 MB/s, from the
    inventory's patroni.basebackup_max_rate) so that it lasts several seconds: long enough to kill
    `migrate` while pg_stat_progress_basebackup on a dc1 member shows it streaming."""
    testbed, state = empty_dc2, tmp_path / "state"
    primary = _primary(testbed, DC1)
    # Some data, so the throttled copy takes a while (the seed tests keep the database small).
    testbed.sql(primary, "DROP TABLE IF EXISTS seed_bulk")
    testbed.sql(primary, "CREATE TABLE seed_bulk AS SELECT g AS id, repeat('x', 200) AS pad "
                         "FROM generate_series(1, 40000) g")
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(testbed.inventory_path.read_text().replace(
        "      local_parameters:", "      basebackup_max_rate: 4M\n      local_parameters:"))
    output = tmp_path / "first-run.log"
    with open(output, "w") as log:
        proc = subprocess.Popen([*MIGRATE, "execute", "-i", str(inventory), "--dc", "dc2", "--until",
                                 "cascade", "--yes", "--state-dir", str(state)], stdout=log, stderr=log)

    def streaming() -> bool:
        # Patroni may take the base backup from either dc1 member (the first host that answers).
        # Killed once the other members are started too (their step applied, its gate waiting):
        # they start during the cross-site copy.
        assert proc.poll() is None, f"migrate ended early: {output.read_text()[-3000:]}"
        applied = state.exists() and "start-target-replicas" in _events(journal_records(state), "step-applied")
        return applied and any(testbed.sql(m, "SELECT phase FROM pg_stat_progress_basebackup")
                               == [("streaming database files",)] for m in DC1.members)

    try:
        wait_until(streaming, 120, "the base backup to stream", interval=0.1)
    except Exception as exc:
        raise AssertionError(f"{exc}; migrate printed: {output.read_text()[-3000:]}") from None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    records = journal_records(state)
    # The leader's step holds once it has taken dc2's initialize key; the other members start
    # during its copy, and the next step's gate waits for it to stream as standby leader.
    assert "start-target-leader" in _events(records, "step-done")
    assert "start-target-replicas" in _events(records, "step-started")
    assert "start-target-replicas" not in _events(records, "step-done")
    assert not [r for r in records if r["event"] == "migration-finished"]

    out = migrate("execute", "-i", str(inventory), "--dc", "dc2", "--resume", "--yes", "--state-dir",
                  str(state), timeout=600)
    assert out.returncode == 0, explain(out)
    resumed = journal_records(state)
    assert [r["outcome"] for r in resumed if r["event"] == "migration-finished"] == ["done"]
    # Patroni was started once on each member: the resumed run found them running and only waited.
    assert _events(resumed, "step-applied").count("start-target-leader") == 1
    assert _events(resumed, "step-applied").count("start-target-replicas") == 1
    assert "start-target-replicas" in _events(resumed, "step-in-place")
    facts = _cascade_facts(testbed)
    assert facts["replica_sender"] == [("streaming", DC2.members[0].host)], facts
    assert testbed.sql(DC2.members[1], "SELECT count(*) FROM seed_bulk") == [(40000,)]
    testbed.sql(_primary(testbed, DC1), "DROP TABLE seed_bulk")


def _refused(testbed, inventory: str, state: Path, words: str) -> None:
    """plan and execute both refuse with one line naming the cause, and nothing changed."""
    dc1_config = testbed.get_config(DC1)
    keys = _dc2_keys(testbed)
    plan = migrate("plan", "-i", inventory, "--dc", "dc2")
    assert plan.returncode == 1 and "BLOCKED" in plan.stdout and words in plan.stdout, explain(plan)
    out = migrate("execute", "-i", inventory, "--dc", "dc2", "--until", "cascade", "--yes",
                  "--state-dir", str(state))
    assert out.returncode == 1, explain(out)
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr + out.stdout, out.stderr
    assert words in " ".join(out.stderr.split()), out.stderr
    assert testbed.get_config(DC1) == dc1_config
    assert _dc2_keys(testbed) == keys and _dc2_config_files(testbed) == []


@pytest.mark.slow
def test_seeding_refusals_change_nothing(empty_dc2, tmp_path):
    testbed, inventory = empty_dc2, str(empty_dc2.inventory_path)
    data = member_dir(testbed.base, DC2.members[0]) / "data"

    # 1. A data directory holding another cluster (a real one, made by initdb).
    data.mkdir(mode=0o700)
    owner = pwd.getpwnam("postgres")
    os.chown(data, owner.pw_uid, owner.pw_gid)
    run_as_os_user([str(PG_BIN_DIR / "initdb"), "-D", str(data), "-A", "trust", "--no-sync"],
                   check=True, capture_output=True)
    _refused(testbed, inventory, tmp_path / "s1",
             f"data directory {data} on dc2-a is not empty and not of this lineage")
    shutil.rmtree(data)

    # 2. dc2's DCS already holds another cluster under scope dc2.
    requests.post(f"{DC2.etcd_url}/v3/kv/put", timeout=5, json={
        "key": base64.b64encode(b"/service/dc2/initialize").decode(),
        "value": base64.b64encode(b"7000000000000000001").decode()}).raise_for_status()
    _refused(testbed, inventory, tmp_path / "s2", "already holds a different cluster under scope dc2")
    testbed.delete_dcs_prefix(DC2, "/service/dc2/")

    # 3. Not enough disk: dc2's data directories on a 4 MB tmpfs.
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], check=True)
    try:
        tiny = tmp_path / "tiny.yml"
        tiny.write_text(testbed.inventory_path.read_text().replace(
            f"data_dir: {testbed.base}/dc2/{{member}}/data", f"data_dir: {small}/{{member}}/data"))
        _refused(testbed, str(tiny), tmp_path / "s3", "not enough disk on dc2-a")
    finally:
        subprocess.run(["umount", str(small)], check=True)


def _three_member_inventory(testbed, path: Path, max_rate: str) -> Path:
    """The testbed's inventory with dc2's spare host as a third dc2 member, and the cross-site
    copy limited to `max_rate`."""
    spare = SPARE_MEMBERS[0]
    text = testbed.inventory_text()
    dc2 = text.index("  dc2:\n")
    head, tail = text[:dc2], text[dc2:]
    tail = tail.replace("      local_parameters:", f"      basebackup_max_rate: {max_rate}\n      local_parameters:", 1)
    tail = tail.rstrip("\n") + (f"\n    - name: {spare.name}\n      host: {spare.host}\n      pg_port: 5432\n"
                                f"      api_url: {spare.api_url}\n")
    path.write_text(head + tail)
    return path


@pytest.mark.slow
def test_the_target_replicas_clone_the_standby_leader_at_the_same_time_and_all_stream(empty_dc2, tmp_path):
    """dc2 seeded with three members: dc2-a makes the one copy across sites (its patroni.yml alone
    carries the rate limit and a bootstrap section), dc2-b and dc2-c are started together while that
    copy runs and clone dc2-a at once when it leads: their intervals from start to first seen
    cascading overlap in the journal, begin before dc2-a streamed, and both stream from dc2-a."""
    testbed, state = empty_dc2, tmp_path / "state"
    spare = testbed.prepare_spare_hosts()[0]
    leader, replica = DC2.members
    inventory = _three_member_inventory(testbed, tmp_path / "inventory.yml", "64M")
    try:
        out = migrate("execute", "-i", str(inventory), "--dc", "dc2", "--until", "cascade", "--yes",
                      "--state-dir", str(state), timeout=600)
        assert out.returncode == 0, explain(out)
        roles = {m.name: testbed.patroni_state(m).get("role") for m in (leader, replica, spare)}
        assert roles == {leader.name: "standby_leader", replica.name: "replica", spare.name: "replica"}, roles
        for member in (replica, spare):
            assert testbed.sql(member, "SELECT status, sender_host FROM pg_stat_wal_receiver") == \
                [("streaming", leader.host)], member.name
        assert testbed.sql(leader, "SELECT status, slot_name FROM pg_stat_wal_receiver") == [("streaming", "dc2")]

        files = {m.name: (member_dir(testbed.base, m) / "patroni.yml").read_text() for m in (leader, replica, spare)}
        assert "max-rate" in files[leader.name] and "64M" in files[leader.name]
        assert "max-rate" not in files[replica.name] and "max-rate" not in files[spare.name]

        done = next(r for r in journal_records(state)
                    if r["event"] == "step-done" and r["step"] == "start-target-replicas")
        started, cascading = done["facts"]["started_at"], done["facts"]["cascading_at"]
        assert set(started) == set(cascading) == {replica.name, spare.name}, done["facts"]
        intervals = {name: (datetime.fromisoformat(started[name]), datetime.fromisoformat(cascading[name]))
                     for name in started}
        # Concurrent: each clone started before the other one was cascading.
        assert max(a for a, _ in intervals.values()) < min(b for _, b in intervals.values()), intervals
        # Started during the cross-site copy: before dc2-a first streamed as standby leader; and
        # only dc2-a's patroni.yml may bootstrap dc2, so neither could have raced it for that.
        leading = datetime.fromisoformat(done["facts"]["standby_leader_streaming_at"])
        assert max(a for a, _ in intervals.values()) < leading, (intervals, leading)
        assert [name for name, text in files.items() if "\nbootstrap:" in text] == [leader.name]
        # And every member passed the lag gate afterwards (wait-cascade covers all three).
        assert "wait-cascade" in _events(journal_records(state), "step-done")
    finally:
        testbed.remove_dc2_cluster()  # stops the spare member too; the next baseline rebuilds dc2


@pytest.mark.slow
def test_one_replica_that_cannot_start_stops_the_others_and_the_run_undoes_the_seed(empty_dc2, tmp_path):
    """dc2-c's start command fails (a real non-zero exit on its host) while dc2-b's succeeds: the
    run exits 1 naming dc2-c, and nothing of the seed keeps running: dc2-b, started in the same
    breath and cloning, is stopped (no data directory left in place), then the standby leader is
    undone and dc2's keys and dc1's slot for it removed."""
    testbed, state = empty_dc2, tmp_path / "state"
    spare = testbed.prepare_spare_hosts()[0]
    inventory = _three_member_inventory(testbed, tmp_path / "inventory.yml", "64M")
    start = f"{testbed.base}/bin/patroni-service start {{member}}"
    inventory.write_text(inventory.read_text().replace(
        f"start_command: {start}", f"start_command: '[ {{member}} != {spare.name} ] && {start}'"))
    try:
        out = migrate("execute", "-i", str(inventory), "--dc", "dc2", "--until", "cascade", "--yes",
                      "--state-dir", str(state), timeout=600)
        assert out.returncode == 1, explain(out)
        assert f"{spare.name}: the start command" in out.stderr and "Traceback" not in out.stderr, out.stderr
        running = {m.name for m in (*DC2.members, spare) if testbed.patroni_alive(m)}
        assert running == set(), running
        # dc2-b's clone was cut short: Patroni removes a partial copy itself, else it was moved aside.
        home = member_dir(testbed.base, DC2.members[1])
        assert not (home / "data").exists(), sorted(home.iterdir())
        assert testbed.postmaster_pid(DC2.members[1]) is None
        assert _dc2_keys(testbed) == []
        assert "dc2" not in (testbed.get_config(DC1).get("slots") or {})
    finally:
        testbed.remove_dc2_cluster()


def _pg_basebackup_pids(data_dir: Path) -> list[int]:
    """The pg_basebackup processes writing into `data_dir` (Patroni's clone for that member, which
    passes it as --pgdata=DIR)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"pg_basebackup") and f"--pgdata={data_dir}".encode() in argv:
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_when_the_first_members_copy_fails_the_others_started_beside_it_never_bootstrap_dc2(empty_dc2, tmp_path):
    """dc2-b and dc2-c start while dc2-a's throttled copy from dc1 runs. That copy is made to fail
    for real (its pg_basebackup killed on each of Patroni's attempts), so dc2-a's Patroni removes
    dc2's initialize key and exits. dc2-b and dc2-c, whose patroni.yml has no bootstrap section,
    must not bootstrap dc2 in its place (which would be a second, unthrottled copy across sites):
    no initialize key comes back, no copy from dc1 runs, no data directory appears on them, for
    several Patroni loops. The run then gives up at gates.seed_timeout_seconds and undoes the seed."""
    testbed, state = empty_dc2, tmp_path / "state"
    spare = testbed.prepare_spare_hosts()[0]
    leader, replica = DC2.members
    primary = _primary(testbed, DC1)
    testbed.sql(primary, "DROP TABLE IF EXISTS seed_bulk")
    testbed.sql(primary, "CREATE TABLE seed_bulk AS SELECT g AS id, repeat('x', 200) AS pad "
                         "FROM generate_series(1, 40000) g")
    inventory = _three_member_inventory(testbed, tmp_path / "inventory.yml", "2M")
    text = inventory.read_text()
    assert "\ngates:\n" in text, "no gates section in the inventory"
    inventory.write_text(text.replace("\ngates:\n", "\ngates:\n  seed_timeout_seconds: 45\n", 1))
    output = tmp_path / "run.log"
    with open(output, "w") as log:
        proc = subprocess.Popen([*MIGRATE, "execute", "-i", str(inventory), "--dc", "dc2", "--until",
                                 "cascade", "--yes", "--state-dir", str(state)], stdout=log, stderr=log)
    leader_data = member_dir(testbed.base, leader) / "data"
    try:
        def others_started_during_the_copy() -> bool:
            assert proc.poll() is None, f"migrate ended early: {output.read_text()[-3000:]}"
            return (testbed.patroni_alive(replica) and testbed.patroni_alive(spare)
                    and bool(_pg_basebackup_pids(leader_data)))

        wait_until(others_started_during_the_copy, 120, "dc2-b and dc2-c up while dc2-a copies", interval=0.1)
        assert "initialize" in " ".join(_dc2_keys(testbed))

        def copy_failed_for_good() -> bool:
            for pid in _pg_basebackup_pids(leader_data):  # each attempt of Patroni's (5 s apart)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return not testbed.patroni_alive(leader)

        wait_until(copy_failed_for_good, 60, "dc2-a's Patroni to give up its bootstrap", interval=0.1)
        # Several loops (the testbed's loop_wait is 2 s): nobody takes dc2 over.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            keys = _dc2_keys(testbed)
            assert not any(k.endswith("/initialize") or k.endswith("/leader") for k in keys), keys
            for member in DC1.members:
                assert testbed.sql(member, "SELECT count(*) FROM pg_stat_progress_basebackup") == [(0,)]
            for member in (replica, spare):
                assert testbed.patroni_state(member).get("role") not in ("standby_leader", "primary")
                assert not (member_dir(testbed.base, member) / "data" / "PG_VERSION").exists(), member.name
            time.sleep(0.5)
        proc.wait(120)
        printed = output.read_text()
        assert proc.returncode == 3, printed[-3000:]  # the gate's deadline: GateTimeout, then undone
        assert "gave up after 45s waiting for dc2-a to clone dc1" in printed and "Traceback" not in printed, printed
        running = {m.name for m in (*DC2.members, spare) if testbed.patroni_alive(m)}
        assert running == set(), running
        assert _dc2_keys(testbed) == []
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        testbed.remove_dc2_cluster()
        testbed.sql(_primary(testbed, DC1), "DROP TABLE IF EXISTS seed_bulk")
