"""`migrate failover` on the real testbed (issue 12): the source site is failing, the tool fences it,
proves what the target has, and promotes the target; under a write ledger and a two-writer sampler.

(a) dc1's etcd stopped, failsafe_mode off (Patroni makes dc1 read-only): fenced over SSH, lossless,
    dc2 promoted, 0 acknowledged commits lost; with dc1's etcd back, dc1 never takes writes.
(b) the same with failsafe_mode on (dc1 stays writable without its etcd), and a kill -9 of the tool
    right after the promotion PATCH (the test-only crash point, migrator/run/crashpoint.py):
    fencing stops dc1 before anything is promoted, `--resume` finishes without fencing or promoting
    again; 0 lost; never two writable members.
(c) dc1's primary host unreachable (REST, PostgreSQL and SSH): refused naming it; with --fenced it
    goes on and the outcome states the proof status (not proven for the unread member).
(d) dc2 behind the token (its WAL receiving cut before dc1 takes more commits): refused with the
    exact LSN range and bytes; with --resume --accept-data-loss it promotes, and the recorded lost
    range holds exactly the commits dc2 lacks (matched by their commit LSN).
(e) dc1-a's SSH cut while it still answers: fenced by hooks.fence (a power-off stand-in that stops
    its service), dc1-b over SSH, then dc2 promoted; dc1-a stays down.

(a) and (b) go on through the whole chain: dc1's etcd back, `migrate reattach --dc dc1` (dc1 a
standby cluster of dc2, never writable on the way, fence markers gone), `migrate execute --dc dc1`
(the primary back, 0 acknowledged commits lost): they leave a baseline, so the next scenario is
rebuilt only if the leaders moved (the scenarios name dc1-a and dc2-a). (c), (d) and (e) leave dc1
fenced: the next one starts from a testbed rebuilt from nothing (about 20 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from migrator.model.state import lsn_value
from migrator.run.crashpoint import CRASH_EXIT_CODE, ENV as CRASH_ENV
from tests.e2e.test_execute import MIGRATE, assert_primary_site, explain, journal_records, migrate, writable
from tests.e2e.test_reattach import Dc1Writers, assert_dc1_streams_from_dc2
from tests.helpers.faults import ensure_etcd_running, one_line, set_failsafe_mode, start_etcd_again, stop_etcd
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.testbed import MEMBER_BY_NAME, SITE_BY_NAME, wait_until

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]
DC2_MEMBERS = DC2.members


@pytest.fixture
def fresh(testbed):
    """A testbed built from nothing (the previous scenario left dc1 fenced); rebuilt again after
    the module's last scenario, for the modules that follow."""
    ensure_etcd_running(testbed)
    if testbed.baseline_problems() or not _leaders_as_built(testbed):
        testbed.up()
    yield testbed
    ensure_etcd_running(testbed)


def _leaders_as_built(testbed) -> bool:
    """The scenarios name dc1-a as dc1's primary and dc2-a as dc2's standby leader, as a fresh
    testbed has them; a chain that moved the primary away and back may leave other leaders."""
    try:
        return (testbed.patroni_state(MEMBER_BY_NAME["dc1-a"]).get("role") == "primary"
                and testbed.patroni_state(MEMBER_BY_NAME["dc2-a"]).get("role") == "standby_leader")
    except Exception:  # noqa: BLE001 - a member that does not answer: rebuild
        return False


@pytest.fixture(scope="module", autouse=True)
def _rebuild_after(testbed):
    yield
    if testbed.baseline_problems():
        testbed.up()


def failover(inventory, state, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MIGRATE, "failover", "-i", str(inventory), "--dc", "dc2", "--yes", "--state-dir",
                           str(state), *args], capture_output=True, text=True, timeout=400,
                          env={**os.environ, **(env or {})})


def events(state, event: str, step: str | None = None) -> list[dict]:
    return [r for r in journal_records(state) if r["event"] == event and (step is None or r.get("step") == step)]


def assert_dc1_fenced(bed) -> None:
    for member in DC1.members:
        assert not bed.patroni_alive(member), f"{member.name}'s Patroni runs again"
        assert bed.postmaster_pid(member) is None or not _alive(bed.postmaster_pid(member)), member.name
        assert (bed.patroni_config_file(member).parent / "MIGRATOR-FENCED").is_file(), member.name


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def assert_dc1_never_writable(bed, seconds: float = 10.0) -> None:
    """With dc1's etcd back, for a while: only dc2's primary takes writes, dc1 stays down."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert [w for w in writable(bed) if w.startswith("dc1")] == []
        time.sleep(0.5)
    assert_dc1_fenced(bed)


def test_a_dc1_etcd_gone_failsafe_off_fenced_proven_lossless_promoted_then_reattached_and_moved_back(
        fresh, tmp_path):
    """The whole chain under one ledger and one state directory: failover -> reattach -> execute.
    The inventory's patroni.disable_command / enable_command leave a file per member on its host
    (the testbed's service has no boot switch): the fence writes it, reattach removes it."""
    bed, state = fresh, tmp_path / "state"
    inventory = _inventory_with_service_switch(bed, tmp_path)
    switched_off = [bed.base / f"service-disabled-{m.name}" for m in DC1.members]
    with WriterSampler(bed) as sampler, WriteLedger(bed, table="ledger_failover_a") as ledger:
        time.sleep(1)
        stop_etcd(bed, DC1)
        wait_until(lambda: not writable(bed), 30, "dc1's primary to demote itself without its etcd")
        plan = migrate("plan", "--failover", "--dc", "dc2", "-i", str(bed.inventory_path), "--format", "json")
        assert plan.returncode == 0, explain(plan)
        planned = json.loads(plan.stdout)
        assert planned["dcs"]["dc1"] and planned["dcs"]["dc2"] is None  # dc1's etcd does not answer
        assert [f["method"] for f in planned["fences"]] == ["ssh", "ssh"]
        out = failover(inventory, state)
        assert out.returncode == 0, explain(out)
        assert "dc2 is primary; dc1 is fenced" in out.stdout and "lossless: dc2-a replayed" in out.stdout, out.stdout
        assert [f for f in switched_off if f.is_file()] == switched_off  # disable_command ran on each
        acked = len(ledger.acknowledged)
        wait_until(lambda: len(ledger.acknowledged) > acked + 50, 30, "the ledger writing on dc2")
        start_etcd_again(bed, DC1)
        assert_dc1_never_writable(bed)
        acked_at_failover = len(ledger.acknowledged)

        # The old site back as a standby cluster of dc2 (same state directory: the journal's latest
        # migration is the finished failover), never writable on the way.
        with Dc1Writers(bed) as dc1_writers:
            out = migrate("reattach", "-i", str(inventory), "--dc", "dc1", "--yes", "--state-dir", str(state))
        assert out.returncode == 0, explain(out)
        assert dc1_writers.samples > 10 and dc1_writers.seen == [], dc1_writers.seen
        assert "dc1 is a standby cluster of dc2" in out.stdout, out.stdout
        assert_dc1_streams_from_dc2(bed)
        markers = [bed.patroni_config_file(m).parent / "MIGRATOR-FENCED" for m in DC1.members]
        assert [m for m in markers if m.exists()] == []  # streaming as a standby: no longer fenced
        assert [f for f in switched_off if f.exists()] == []  # enable_command ran on each

        # ...and the primary moved back by a normal switchover.
        out = migrate("execute", "-i", str(inventory), "--dc", "dc1", "--yes", "--state-dir", str(state))
        assert out.returncode == 0, explain(out)
        assert_primary_site(bed, DC1)
        acked = len(ledger.acknowledged)
        wait_until(lambda: len(ledger.acknowledged) > acked + 50, 30, "the ledger writing on dc1 again")
    assert sampler.violations == [], sampler.changes
    assert acked_at_failover < acked  # commits on dc2, then on dc1 again
    assert_no_acknowledged_commit_lost(bed, ledger)  # every member of both sites, over the whole chain
    proof = events(state, "step-done", "prove")[0]["facts"]
    assert proof["status"] == "lossless" and proof["replayed"] > proof["token"]
    promoted = events(state, "step-done", "promote-dc2")[0]["facts"]
    assert promoted["primary"] == "dc2-a" and promoted["new_timeline"] > promoted["timeline_before"]
    assert lsn_value(promoted["fork_lsn"]) > proof["token"]
    # Timelines: dc2 forked one timeline on, the move back one more; every member on it.
    back = promoted["new_timeline"] + 1
    wait_until(lambda: {bed.patroni_state(m).get("timeline") for m in (*DC1.members, *DC2.members)} == {back},
               30, f"every member on timeline {back}")


def _inventory_with_service_switch(bed, tmp_path):
    """dc1's patroni section gets a disable_command that writes a file and an enable_command that
    removes it (`rm` without -f: it fails, and stops the reattach, if the file is not there)."""
    stop = f"      stop_command: {bed.base}/bin/patroni-service stop {{member}}\n"
    text = bed.inventory_path.read_text()
    assert text.count(stop) == 2, text
    text = text.replace(stop, stop + f"      disable_command: touch {bed.base}/service-disabled-{{member}}\n"
                        f"      enable_command: rm {bed.base}/service-disabled-{{member}}\n", 1)
    path = tmp_path / "switch.yml"
    path.write_text(text)
    return path


def test_b_failsafe_on_dc1_writable_fenced_first_a_crash_after_the_promotion_resumes_then_reattached(fresh, tmp_path):
    bed, state = fresh, tmp_path / "state"
    set_failsafe_mode(bed, True)
    with WriterSampler(bed) as sampler, WriteLedger(bed, table="ledger_failover_b") as ledger:
        stop_etcd(bed, DC1)
        time.sleep(8)  # longer than Patroni takes to demote a primary without failsafe
        assert writable(bed) == ["dc1-a"], "failsafe_mode on: dc1-a keeps taking writes without its etcd"
        acked_before = len(ledger.acknowledged)
        crashed = failover(bed.inventory_path, state, env={CRASH_ENV: "after-patch:promote-dc2"})
        assert crashed.returncode == CRASH_EXIT_CODE, explain(crashed)
        assert len(ledger.acknowledged) > acked_before  # dc1 took writes until it was fenced
        out = failover(bed.inventory_path, state, "--resume")
        assert out.returncode == 0, explain(out)
        assert "still holds" in out.stdout  # each fence re-checked on its host, not repeated
        wait_until(lambda: writable(bed) == ["dc2-a"], 30, "dc2-a the one writer")
        time.sleep(2)
    assert sampler.violations == [], sampler.changes
    assert_no_acknowledged_commit_lost(bed, ledger, members=DC2_MEMBERS)
    for fence in ("fence-dc1-a", "fence-dc1-b"):
        assert len(events(state, "step-applied", fence)) == 1, fence  # fenced once
    assert len(events(state, "promotion-attempted")) == 1  # the PATCH sent once
    assert events(state, "step-in-place", "promote-dc2"), "the resumed run found the promotion done"
    # The fence came before the promotion: dc1-a stopped before dc2 became writable.
    fenced = events(state, "step-done", "fence-dc1-a")[0]["facts"]
    promoted = events(state, "step-done", "promote-dc2")[0]["facts"]
    assert fenced["fenced_at"] < promoted["target_writable_at"]
    start_etcd_again(bed, DC1)
    assert_dc1_never_writable(bed)
    reattach_and_move_back(bed, state, fenced_as_primary="dc1-a")
    set_failsafe_mode(bed, False)  # the baseline the next scenario expects, without a rebuild


def reattach_and_move_back(bed, state, fenced_as_primary: str) -> None:
    """dc1 fenced while writable: its primary's pg_control says `shut down` with the token as its
    last checkpoint, which dc2 replayed before forking: it follows cleanly (no rewind), dc1 becomes a
    standby cluster of dc2, never writable, and `execute` moves the primary back with nothing lost."""
    inventory = str(bed.inventory_path)
    with WriterSampler(bed) as sampler, WriteLedger(bed, table="ledger_failover_b_back") as ledger:
        time.sleep(1)
        plan = json.loads(migrate("plan", "-i", inventory, "--reattach", "--dc", "dc1", "--format", "json").stdout)
        verdicts = {f["members"][0]: f for f in plan["findings"] if f["members"]}
        assert verdicts[fenced_as_primary]["check"] == "reattach-member", plan["findings"]
        assert "follows cleanly" in verdicts[fenced_as_primary]["finding"], plan["findings"]
        with Dc1Writers(bed) as dc1_writers:
            out = migrate("reattach", "-i", inventory, "--dc", "dc1", "--yes", "--state-dir", str(state))
        assert out.returncode == 0, explain(out)
        assert dc1_writers.samples > 10 and dc1_writers.seen == [], dc1_writers.seen
        assert not events(state, "step-applied", "rewind-diverged")
        assert_dc1_streams_from_dc2(bed)
        out = migrate("execute", "-i", inventory, "--dc", "dc1", "--yes", "--state-dir", str(state))
        assert out.returncode == 0, explain(out)
        assert_primary_site(bed, DC1)
        acked = len(ledger.acknowledged)
        wait_until(lambda: len(ledger.acknowledged) > acked + 20, 30, "the ledger writing on dc1 again")
    assert sampler.violations == [], sampler.changes
    assert_no_acknowledged_commit_lost(bed, ledger)


def _inventory_without_ssh_to(bed, tmp_path, member: str, fence_hook: str | None = None):
    """dc1's members share one sshd on the testbed: dc1-a's SSH path is cut by giving it, in the
    inventory the tool reads, a port nothing listens on (refused, as a dead host's would be)."""
    text = bed.inventory_path.read_text()
    host = MEMBER_BY_NAME[member].host
    marker = f"    - name: {member}\n      host: {host}\n"
    assert marker in text, text
    text = text.replace(marker, marker + "      ssh:\n        port: 2999\n", 1)
    if fence_hook:
        text = text.replace("gates:\n", f"hooks:\n  fence: {fence_hook}\ngates:\n", 1)
    path = tmp_path / ("hooked.yml" if fence_hook else "inventory.yml")
    path.write_text(text)
    return path


def test_c_primary_host_unreachable_is_refused_then_goes_on_with_fenced(fresh, tmp_path):
    bed, state = fresh, tmp_path / "state"
    inventory = _inventory_without_ssh_to(bed, tmp_path, "dc1-a")
    with WriterSampler(bed) as sampler:
        stop_etcd(bed, DC1)
        # dc1-a's host goes dark: its Patroni and PostgreSQL stop (REST and PostgreSQL refuse).
        bed.stop_patroni(MEMBER_BY_NAME["dc1-a"])
        wait_until(lambda: not writable(bed), 30, "no writer")
        out = failover(inventory, state)
        assert out.returncode == 1, explain(out)
        line = one_line(out.stderr)
        assert "dc1-a" in line and "--fenced dc1-a" in line and "nothing was changed" in line, line
        assert bed.patroni_alive(MEMBER_BY_NAME["dc1-b"]), "refused: nothing was fenced"
        # A fence hook (a STONITH command) is run for it, told which member; it fails here.
        told = tmp_path / "fence-hook.txt"
        hooked = _inventory_without_ssh_to(
            bed, tmp_path, "dc1-a", f"'echo \"$MIGRATOR_FENCE_MEMBER $MIGRATOR_FENCE_HOST\" > {told}; exit 1'")
        out = failover(hooked, state)
        assert out.returncode == 4, explain(out)
        line = one_line(out.stderr)
        assert "hook fence exited 1" in line and "dc1-a is not fenced" in line and "--fenced dc1-a" in line, line
        assert told.read_text().split() == ["dc1-a", MEMBER_BY_NAME["dc1-a"].host]
        assert writable(bed) == [] and not events(state, "promotion-attempted")
        # The operator fenced it by other means: a new run replaces the stopped one.
        out = failover(hooked, state, "--fenced", "dc1-a")
        assert out.returncode == 0, explain(out)
        assert "not proven for dc1-a (pg_control not read)" in out.stdout, out.stdout
    assert sampler.violations == [], sampler.changes
    fence = events(state, "step-done", "fence-dc1-a")[0]["facts"]
    assert fence["fenced_by"] == "operator"
    assert events(state, "step-done", "fence-dc1-b")[0]["facts"]["fenced_by"] == "ssh"
    assert writable(bed) == ["dc2-a"]


def test_d_target_behind_the_token_refused_with_the_gap_then_accepted_and_recorded(fresh, tmp_path):
    bed, state = fresh, tmp_path / "state"
    primary, standby = MEMBER_BY_NAME["dc1-a"], MEMBER_BY_NAME["dc2-a"]
    bed.sql(primary, "CREATE TABLE failover_gap (id int PRIMARY KEY, lsn pg_lsn)")
    for i in range(1, 6):
        bed.sql(primary, "INSERT INTO failover_gap VALUES (%s, pg_current_wal_insert_lsn())", (i,))
    wait_until(lambda: bed.sql(standby, "SELECT count(*) FROM failover_gap")[0][0] == 5, 30, "dc2 has rows 1-5")
    # dc2's WAL receiving cut: its standby_cluster points at a port nothing listens on.
    bed.patch_config(DC2, {"standby_cluster": {"port": 1}})
    wait_until(lambda: not bed.sql(standby, "SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'"),
               30, "dc2-a's walreceiver gone")
    lost = {}
    for i in range(6, 31):  # acknowledged on dc1 only
        with bed.connect(primary) as conn:
            conn.execute("INSERT INTO failover_gap VALUES (%s, '0/0')", (i,))
            lost[i] = lsn_value(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])
    out = failover(bed.inventory_path, state)
    assert out.returncode == 4, explain(out)
    line = one_line(out.stderr)
    assert "gap: dc2-a lacks WAL" in line and "bytes" in line and "--accept-data-loss" in line, line
    assert writable(bed) == [], "refused: dc1 fenced, dc2 not promoted"
    proof = events(state, "step-failed", "prove")[0]["error"]
    out = failover(bed.inventory_path, state, "--resume", "--accept-data-loss")
    assert out.returncode == 0, explain(out)
    assert "DATA LOSS ACCEPTED" in out.stdout, out.stdout
    accepted = events(state, "data-loss-accepted")[0]
    low, high = lsn_value(accepted["lost_from"]), lsn_value(accepted["lost_to"])
    assert accepted["lost_bytes"] == high - low and accepted["lost_from"] in proof and accepted["lost_to"] in proof
    wait_until(lambda: writable(bed) == ["dc2-a"], 30, "dc2-a promoted")
    present = {row[0] for row in bed.sql(standby, "SELECT id FROM failover_gap")}
    missing = set(range(1, 31)) - present
    assert missing == set(lost), f"dc2 lacks {sorted(missing)}"  # exactly the commits made after the cut
    # ...and the recorded range holds every one of them (each commit's WAL position lies in it).
    assert all(low < lsn <= high for lsn in lost.values()), (accepted, lost)
    promoted = events(state, "step-done", "promote-dc2")[0]["facts"]
    assert lsn_value(promoted["fork_lsn"]) >= low


def test_e_a_fence_hook_that_powers_the_host_off_fences_it_and_the_failover_goes_on(fresh, tmp_path):
    """dc1-a's SSH is cut (in the inventory the tool reads) while its Patroni and PostgreSQL still
    answer: the plan fences it with hooks.fence, a STONITH stand-in that stops dc1-a's service as a
    power-off would and says whom it was told to fence. dc1-b is fenced over SSH. The promotion
    comes after both fences; dc1-a stays down; never two writers."""
    bed, state = fresh, tmp_path / "state"
    told = tmp_path / "fence-hook.txt"
    power_off = (f"'{bed.base}/bin/patroni-service stop \"$MIGRATOR_FENCE_MEMBER\" && "
                 f"echo \"$MIGRATOR_FENCE_MEMBER $MIGRATOR_FENCE_HOST\" > {told}'")  # fmt: skip
    hooked = _inventory_without_ssh_to(bed, tmp_path, "dc1-a", power_off)
    dc1_a = MEMBER_BY_NAME["dc1-a"]
    with WriterSampler(bed) as sampler:
        stop_etcd(bed, DC1)
        wait_until(lambda: not writable(bed), 30, "dc1's primary to demote itself without its etcd")
        plan = migrate("plan", "--failover", "--dc", "dc2", "-i", str(hooked), "--format", "json")
        assert plan.returncode == 0, explain(plan)
        assert {f["member"]: f["method"] for f in json.loads(plan.stdout)["fences"]} == {"dc1-a": "hook",
                                                                                         "dc1-b": "ssh"}  # fmt: skip
        assert bed.patroni_alive(dc1_a), "planning changed nothing"
        out = failover(hooked, state)
        assert out.returncode == 0, explain(out)
        assert "dc2 is primary; dc1 is fenced" in out.stdout, out.stdout
    assert sampler.violations == [], sampler.changes
    assert told.read_text().split() == ["dc1-a", dc1_a.host]  # told whom to fence, once
    assert not bed.patroni_alive(dc1_a) and not _alive(bed.postmaster_pid(dc1_a)), "dc1-a is not down"
    hooked_fence = events(state, "step-done", "fence-dc1-a")[0]
    assert hooked_fence["facts"]["fenced_by"] == "hook"
    assert events(state, "step-done", "fence-dc1-b")[0]["facts"]["fenced_by"] == "ssh"
    attempted = events(state, "promotion-attempted")
    assert len(attempted) == 1 and hooked_fence["ts"] < attempted[0]["ts"]
    assert writable(bed) == ["dc2-a"]
    start_etcd_again(bed, DC1)
    assert [w for w in writable(bed) if w.startswith("dc1")] == []
