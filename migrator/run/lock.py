"""One migration per service at a time, and a lock that cannot vanish unnoticed under a run.

Two locks: a local file lock (two terminals on one laptop) and a key with a lease in the first
site's etcd (two operators on two laptops). The lease expires by itself when the holder dies, so
a crashed run never blocks the next one for longer than the TTL.

While a run holds the lease, a keep-alive thread refreshes it every third of the TTL and checks
each answer: a TTL of 0 or less, another lease ID, or the key no longer holding this run's record
means the lease is gone. A refresh that fails is tried on every endpoint of the site in turn,
each with a new client (and so a new auth token when the site's etcd has a user). When no refresh
succeeded for one TTL, the lock is counted as lost even if no answer said so: by then etcd has
expired it. `MigrationLock.lost()` tells the engine, which stops a run before the demotion and
finishes (and says so) one that is past it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from migrator.adapters.net_errors import what_happened
from migrator.errors import LockBusy
from migrator.run.journal import utc_now
from migrator.run.process import is_zombie

LOCK_TTL_SECONDS = 30
KEEPALIVE_PER_TTL = 3  # refreshes per TTL: two may fail before the lease is in danger


def _read_boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _read_pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def holder_description() -> dict[str, Any]:
    """Who holds a lock. Host and pid alone are not unique (two containers of one image share
    both), so the record carries a random id per run, the kernel's boot id and the pid namespace."""
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "user": os.environ.get("USER", "?"),
        "since": utc_now(),
        "run_id": uuid.uuid4().hex,
        "boot_id": _read_boot_id(),
        "pid_ns": _read_pid_namespace(),
    }


def holder_died_here(holder: dict[str, Any], me: dict[str, Any], pid_alive: Callable[[Any], bool]) -> bool:
    """True when the holder ran on this very machine, boot and pid namespace, and its process is
    gone: only then is the pid probe about the same process. Anything missing means no."""
    for field in ("host", "boot_id", "pid_ns"):
        if not holder.get(field) or holder.get(field) != me.get(field):
            return False
    return bool(holder.get("lease")) and not pid_alive(holder.get("pid"))


class LocalLock:
    def __init__(self, directory: Path):
        self.path = directory / "lock"
        self._fd: int | None = None

    def acquire(self, holder: dict[str, Any]) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockBusy(
                f"another migrate run on this machine holds {self.path} ({text}); wait for it to finish"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class EtcdSite(Protocol):
    """What the lease needs of a site's etcd (migrator.adapters.dcs.Etcd3Dcs)."""

    endpoints: list[str]

    def client(self) -> Any: ...  # a client on the first endpoint that answers

    def client_for(self, endpoint: str) -> Any: ...  # a new client (and auth token) on one endpoint


@dataclass(frozen=True)
class Refresh:
    """What one keep-alive answer says: held (None) or why the lease is gone."""

    gone: str | None


def read_refresh(answer: Any, lease_id: int) -> Refresh:
    """Judge a /lease/keepalive answer. etcd omits TTL (the JSON default, 0) for a lease that no
    longer exists; an ID other than ours would be an answer about another lease."""
    result = answer.get("result", {}) if isinstance(answer, dict) else {}
    try:
        ttl = int(result.get("TTL", 0))
        answered_id = int(result.get("ID", lease_id))
    except (TypeError, ValueError):
        return Refresh(f"etcd answered the keep-alive with {str(answer)[:80]}")
    if answered_id != lease_id:
        return Refresh(f"etcd answered the keep-alive about lease {answered_id:x}, not {lease_id:x}")
    if ttl <= 0:
        return Refresh(f"etcd says lease {lease_id:x} no longer exists (revoked or expired)")
    return Refresh(None)


class EtcdLease:
    """A key that exists only while this process keeps its lease alive."""

    def __init__(
        self,
        site: EtcdSite,
        key: str,
        where: str,
        ttl: int = LOCK_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.site = site
        self.key = key
        self.where = where  # "dc1's etcd", for messages
        self.ttl = ttl
        self.clock = clock
        self.lease_id: int | None = None
        self.holder: dict[str, Any] = {}
        self._client: Any = None
        self._endpoint: str | None = None
        self._last_ok = 0.0
        self._gone: str | None = None
        self._last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- taking and giving back ------------------------------------------------------------
    def acquire(self, service: str, holder: dict[str, Any]) -> None:
        client = self.site.client()
        started = self.clock()
        lease = client.lease(self.ttl)
        mine = json.dumps({**holder, "lease": lease.id})
        if not client.create(self.key, mine, lease=lease):
            current = self._holder(client)
            if not self._take_over(client, current, holder) or not client.create(self.key, mine, lease=lease):
                lease.revoke()
                raise LockBusy(
                    f"a migration of service {service} is already running ({_describe(current)}); "
                    f"wait for it, or if that run died, its lock expires within {self.ttl}s"
                )
        self.holder, self.lease_id, self._client = holder, lease.id, client
        self._endpoint = getattr(client, "base_url", None)
        self._last_ok = started
        self._thread = threading.Thread(target=self._keep_alive, daemon=True, name="lock-keepalive")
        self._thread.start()

    def _holder(self, client: Any) -> dict[str, Any]:
        raw = client.get(self.key)
        try:
            return json.loads(raw[0]) if raw else {}
        except ValueError:
            return {}

    def _take_over(self, client: Any, holder: dict[str, Any], me: dict[str, Any]) -> bool:
        """A run on this machine that was killed (kill -9, a crash) cannot release its lease; a
        resume right after must not wait out the TTL. Only a holder on this host, boot and pid
        namespace whose process is gone is taken over (see holder_died_here)."""
        if not holder_died_here(holder, me, _alive):
            return False
        client.post(client.get_url("/kv/lease/revoke"), json={"ID": holder["lease"]})
        return True

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        # Revoked even when counted lost: an etcd that restarted gives its leases a fresh TTL, and
        # the next run should not wait for this one's to run out.
        if self.lease_id is not None and self._client is not None:
            try:
                self._client.post(self._client.get_url("/kv/lease/revoke"), json={"ID": self.lease_id})
            except Exception:  # noqa: BLE001 - it expires by itself within the TTL
                pass
        self.lease_id = None

    # ---- keeping it ------------------------------------------------------------------------
    def lost(self) -> str | None:
        """None while the lock is held; else one line naming the key, the etcd and what happened."""
        if self.lease_id is None:
            return None
        self._expire_if_silent()
        if self._gone is None:
            return None
        return f"{self.key} in {self.where}, lease {self.lease_id:x}: {self._gone}"

    def _expire_if_silent(self) -> None:
        """Lost for good once no refresh succeeded for one TTL: by then etcd expired the lease, and
        a refresh that succeeds later (an etcd restart renews every lease) does not give back a
        lock that another run could have taken meanwhile."""
        silent = self.clock() - self._last_ok
        if self._gone is None and silent >= self.ttl:
            self._gone = f"no keep-alive succeeded for {silent:.0f}s, longer than its {self.ttl}s TTL" + (
                f"; last error: {self._last_error}" if self._last_error else ""
            )

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.ttl / KEEPALIVE_PER_TTL) and self._gone is None:
            self.refresh_once()

    def refresh_once(self) -> None:
        """One refresh, on the current endpoint, then on every endpoint in turn."""
        self._expire_if_silent()
        if self._gone is not None:
            return
        sent = self.clock()  # etcd renewed no earlier than this: the TTL counts from here
        for endpoint, client in self._clients():
            try:
                verdict = read_refresh(
                    client.post(client.get_url("/lease/keepalive"), json={"ID": self.lease_id}), self.lease_id or 0
                )
                if verdict.gone is None:
                    verdict = self._still_ours(client)
            except Exception as exc:  # noqa: BLE001 - etcd3gw raises its own and requests' errors; next endpoint
                self._last_error = f"{endpoint}: {_short(exc)}"
                self._client = None
                continue
            if verdict.gone is not None:
                self._gone = verdict.gone
            else:
                self._last_ok = sent
                self._last_error = ""
            self._client, self._endpoint = client, endpoint
            return

    def _still_ours(self, client: Any) -> Refresh:
        current = self._holder(client)
        if current.get("run_id") == self.holder.get("run_id"):
            return Refresh(None)
        if not current:
            return Refresh("the key was deleted")
        return Refresh(f"the key now holds another run ({_describe(current)})")

    def _clients(self) -> Iterator[tuple[str, Any]]:
        """The client that answered last, then a new one on each endpoint: a new client also
        authenticates anew, so an expired auth token is replaced on the next try."""
        if self._client is not None:
            yield self._endpoint or "?", self._client
        for endpoint in self.site.endpoints:
            try:
                yield endpoint, self.site.client_for(endpoint)
            except Exception as exc:  # noqa: BLE001 - authentication or connection failed; next endpoint
                self._last_error = f"{endpoint}: {_short(exc)}"


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    # A run killed with its parent (a fleet process killed first) is a zombie until an init that
    # may reap late collects it: it holds nothing and keeps no lease alive, so it is dead here.
    return not is_zombie(int(pid))


def _short(exc: BaseException) -> str:
    """What etcd did, in plain words ("refused the connection"), never urllib3's repr."""
    return what_happened(exc)


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown"
    return (
        f"held by {holder.get('user', '?')}@{holder.get('host', '?')} pid {holder.get('pid', '?')} "
        f"since {holder.get('since', '?')}"
    )


class MigrationLock:
    def __init__(self, directory: Path, etcd: EtcdSite, service: str, where: str, ttl: int = LOCK_TTL_SECONDS):
        self.service = service
        self.holder = holder_description()
        self.local = LocalLock(directory)
        self.remote = EtcdLease(etcd, f"/migrator/{service}/lock", where, ttl)

    def lost(self) -> str | None:
        """None while held; else one line: the key, the site's etcd, what happened."""
        return self.remote.lost()

    def __enter__(self) -> MigrationLock:
        self.local.acquire(self.holder)
        try:
            self.remote.acquire(self.service, self.holder)
        except BaseException:  # noqa: BLE001 - any failure (Ctrl-C too) frees the local lock, then re-raises
            self.local.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remote.release()
        self.local.release()
