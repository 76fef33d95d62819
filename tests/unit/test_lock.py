"""The migration lock: who may take over a dead holder's lock (plain data), how a keep-alive
answer is judged, and when the lease counts as lost.

The keep-alive tests use a fake etcd: the testbed has one etcd per site and no etcd users, so it
cannot produce a second endpoint to move to, nor an auth token that expires. The fake answers
the way etcd's JSON gateway does (`{"result": {"ID": "<decimal>", "TTL": "<seconds>"}}`, no TTL
for a lease that is gone) and raises etcd3gw's own exceptions.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from etcd3gw.exceptions import ConnectionFailedError, Etcd3Exception

from migrator.run.lock import EtcdLease, holder_description, holder_died_here, read_refresh

HERE = {"host": "db-ops-1", "boot_id": "b-1", "pid_ns": "pid:[4026531836]", "pid": 4242, "lease": 77}
DEAD = lambda pid: False  # noqa: E731 - the pid probe, as plain data
ALIVE = lambda pid: True  # noqa: E731


# ---- holder identity -------------------------------------------------------------------------
def test_a_dead_holder_on_the_same_host_boot_and_pid_namespace_is_taken_over():
    assert holder_died_here(dict(HERE), dict(HERE, pid=1), DEAD)


def test_a_live_holder_is_never_taken_over():
    assert not holder_died_here(dict(HERE), dict(HERE, pid=1), ALIVE)


@pytest.mark.parametrize("field, other", [("host", "db-ops-2"), ("boot_id", "b-2"),
                                          ("pid_ns", "pid:[4026532000]")])
def test_a_holder_elsewhere_is_never_taken_over_even_when_its_pid_is_free_here(field, other):
    """Two containers of one image share host name and pid numbers; a reboot reuses pids: the
    pid probe only speaks about the holder when host, boot and pid namespace are all the same."""
    assert not holder_died_here(dict(HERE, **{field: other}), dict(HERE, pid=1), DEAD)


@pytest.mark.parametrize("field", ["host", "boot_id", "pid_ns", "lease"])
def test_a_holder_record_without_identity_is_never_taken_over(field):
    """A record written by an older migrate (host+pid only) or a broken one: wait out its TTL."""
    holder = {k: v for k, v in HERE.items() if k != field}
    me = {k: v for k, v in dict(HERE, pid=1).items() if k != field} if field != "lease" else dict(HERE, pid=1)
    assert not holder_died_here(holder, me, DEAD)


def test_each_run_gets_its_own_id_with_this_machines_boot_id_and_pid_namespace():
    first, second = holder_description(), holder_description()
    assert first["run_id"] != second["run_id"] and len(first["run_id"]) == 32
    assert first["pid"] == os.getpid()
    if os.path.exists("/proc/sys/kernel/random/boot_id"):
        assert first["boot_id"] == open("/proc/sys/kernel/random/boot_id").read().strip()
        assert first["pid_ns"] == os.readlink("/proc/self/ns/pid")


# ---- one keep-alive answer -------------------------------------------------------------------
def test_a_refresh_with_a_ttl_for_our_lease_keeps_it():
    assert read_refresh({"result": {"ID": "77", "TTL": "30"}}, 77).gone is None


def test_a_refresh_without_ttl_means_the_lease_is_gone():
    gone = read_refresh({"result": {"ID": "77", "header": {}}}, 77).gone
    assert gone and "no longer exists" in gone


def test_a_refresh_about_another_lease_is_not_a_refresh_of_ours():
    gone = read_refresh({"result": {"ID": "78", "TTL": "30"}}, 77).gone
    assert gone and "4e" in gone and "4d" in gone  # both leases named, in etcdctl's hex


# ---- the keep-alive over time, with a fake etcd ------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# What etcd3gw raised when the testbed's etcd was stopped (its text: urllib3's chain of reprs).
REFUSED = ("HTTPConnectionPool(host='127.35.1.100', port=2379): Max retries exceeded with url: "
           "/v3/maintenance/status (Caused by NewConnectionError(\"HTTPConnection(host='127.35.1.100', "
           "port=2379): Failed to establish a new connection: [Errno 111] Connection refused\"))")


class FakeEtcd:
    """One etcd cluster behind several endpoints; `down` endpoints refuse connections, `token`
    is the auth token that is currently valid."""

    def __init__(self, endpoints: list[str]) -> None:
        self.endpoints = endpoints
        self.down: set[str] = set()
        self.leases: dict[int, int] = {}
        self.keys: dict[str, tuple[str, int]] = {}
        self.token = 1
        self.logins = 0

    # what EtcdSite asks for
    def client(self) -> FakeClient:
        return self.client_for(next(e for e in self.endpoints if e not in self.down))

    def client_for(self, endpoint: str) -> FakeClient:
        if endpoint in self.down:
            raise ConnectionFailedError(REFUSED)
        self.logins += 1
        return FakeClient(self, endpoint, self.token)


class FakeLease:
    def __init__(self, etcd: FakeEtcd, lease_id: int) -> None:
        self.etcd, self.id = etcd, lease_id

    def revoke(self) -> None:
        self.etcd.leases.pop(self.id, None)


class FakeClient:
    def __init__(self, etcd: FakeEtcd, endpoint: str, token: int) -> None:
        self.etcd, self.base_url, self.token = etcd, endpoint, token

    def _check(self) -> None:
        if self.base_url in self.etcd.down:
            raise ConnectionFailedError(REFUSED)
        if self.token != self.etcd.token:
            raise Etcd3Exception("etcdserver: invalid auth token", "Unauthorized")

    def lease(self, ttl: int) -> FakeLease:
        self._check()
        lease_id = 0x3d72a2453a4b5000 + len(self.etcd.leases)
        self.etcd.leases[lease_id] = ttl
        return FakeLease(self.etcd, lease_id)

    def create(self, key: str, value: str, lease: FakeLease) -> bool:
        self._check()
        if key in self.etcd.keys:
            return False
        self.etcd.keys[key] = (value, lease.id)
        return True

    def get(self, key: str) -> list[str]:
        self._check()
        value = self.etcd.keys.get(key)
        return [value[0]] if value and value[1] in self.etcd.leases else []

    def get_url(self, path: str) -> str:
        return path

    def post(self, url: str, json: dict) -> dict:
        self._check()
        if url == "/lease/keepalive":
            ttl = self.etcd.leases.get(json["ID"])
            return {"result": {"ID": str(json["ID"]), **({"TTL": str(ttl)} if ttl else {})}}
        if url == "/kv/lease/revoke":
            self.etcd.leases.pop(json["ID"], None)
            return {}
        raise AssertionError(url)


def held_lease(endpoints: list[str]) -> tuple[EtcdLease, FakeEtcd, FakeClock]:
    etcd, clock = FakeEtcd(endpoints), FakeClock()
    lease = EtcdLease(etcd, "/migrator/demo/lock", "dc1's etcd", ttl=6, clock=clock)
    lease._keep_alive = lambda: None  # type: ignore[method-assign] - the test drives refresh_once
    lease.acquire("demo", holder_description())
    return lease, etcd, clock


def test_a_refresh_moves_to_the_next_endpoint_when_the_current_one_is_down():
    lease, etcd, clock = held_lease(["http://e1:2379", "http://e2:2379"])
    etcd.down.add("http://e1:2379")
    clock.now += 5  # close to the TTL: only this refresh keeps the lock
    lease.refresh_once()
    clock.now += 5
    assert lease.lost() is None


def test_an_expired_auth_token_is_replaced_by_a_new_login():
    lease, etcd, clock = held_lease(["http://e1:2379"])
    logins = etcd.logins
    etcd.token += 1  # the token the keep-alive holds expired
    clock.now += 2
    lease.refresh_once()
    assert etcd.logins == logins + 1
    clock.now += 5
    assert lease.lost() is None


def test_no_successful_refresh_for_one_ttl_is_a_lost_lock_naming_key_etcd_and_error():
    lease, etcd, clock = held_lease(["http://e1:2379", "http://e2:2379"])
    etcd.down.update(etcd.endpoints)
    clock.now += 2
    lease.refresh_once()
    clock.now += 3.9
    assert lease.lost() is None  # 5.9 s since the last refresh was sent: not yet a TTL
    clock.now += 0.1
    lost = lease.lost()
    assert lost and "/migrator/demo/lock in dc1's etcd" in lost and "no keep-alive succeeded for 6s" in lost
    assert "http://e2:2379: refused the connection" in lost  # not urllib3's long repr
    assert "HTTPConnectionPool" not in lost and "object at 0x" not in lost


def test_a_lock_counted_lost_stays_lost_when_its_etcd_answers_again():
    """An etcd restarted after more than a TTL renews its leases: the next run may have taken the
    lock meanwhile, so a refresh that works again must not give it back."""
    lease, etcd, clock = held_lease(["http://e1:2379"])
    etcd.down.add("http://e1:2379")
    clock.now += 6
    assert lease.lost()
    etcd.down.clear()
    lease.refresh_once()
    assert lease.lost() and "no keep-alive succeeded" in lease.lost()


def test_a_revoked_lease_is_lost_at_the_next_refresh():
    lease, etcd, clock = held_lease(["http://e1:2379"])
    etcd.leases.clear()
    clock.now += 2
    lease.refresh_once()
    lost = lease.lost()
    assert lost and "no longer exists" in lost


def test_a_lock_key_deleted_or_taken_under_a_live_lease_is_lost():
    lease, etcd, clock = held_lease(["http://e1:2379"])
    value, lease_id = etcd.keys["/migrator/demo/lock"]
    etcd.keys["/migrator/demo/lock"] = (json.dumps({**json.loads(value), "run_id": "someone else"}), lease_id)
    lease.refresh_once()
    lost = lease.lost()
    assert lost and "another run" in lost


def test_a_lock_counted_lost_is_still_revoked_on_release():
    lease, etcd, clock = held_lease(["http://e1:2379"])
    clock.now += 7
    assert lease.lost()
    lease.release()
    assert etcd.leases == {}


def test_a_released_lock_is_not_lost_and_its_lease_is_revoked():
    lease, etcd, clock = held_lease(["http://e1:2379"])
    lease.release()
    clock.now += 60
    assert lease.lost() is None and etcd.leases == {}


def test_a_killed_run_left_a_zombie_is_dead_to_the_lock():
    """A run killed together with its parent (kill -9 of a fleet process, then of its child) stays
    a zombie until an init that may reap late collects it: `os.kill(pid, 0)` still succeeds, yet it
    keeps no lease alive. `fleet execute --resume` met it as "already running" (exit 5)."""
    from migrator.run.lock import _alive

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child did not exit"
        time.sleep(0.01)
    try:
        assert not _alive(child.pid)
        assert _alive(os.getpid())
    finally:
        child.wait()
    assert not _alive(child.pid)
