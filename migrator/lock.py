"""One migration per service at a time.

Two locks: a local file lock (two terminals on one laptop) and a key with a lease in the source
site's etcd (two operators on two laptops). The lease expires by itself when the holder dies, so
a crashed run never blocks the next one for longer than the TTL.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
from pathlib import Path
from typing import Any

from migrator.errors import LockBusy
from migrator.journal import utc_now

LOCK_TTL_SECONDS = 30


def holder_description() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "user": os.environ.get("USER", "?"),
            "since": utc_now()}


class LocalLock:
    def __init__(self, directory: Path):
        self.path = directory / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockBusy(f"another migrate run on this machine holds {self.path} ({holder}); "
                             "wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder_description()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class EtcdLease:
    """A key that exists only while this process keeps its lease alive."""

    def __init__(self, client: Any, key: str, ttl: int = LOCK_TTL_SECONDS):
        self.client = client
        self.key = key
        self.ttl = ttl
        self._lease: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self, service: str) -> None:
        lease = self.client.lease(self.ttl)
        mine = json.dumps({**holder_description(), "lease": lease.id})
        if not self.client.create(self.key, mine, lease=lease):
            holder = self._holder()
            if not self._holder_died_here(holder) or not self.client.create(self.key, mine, lease=lease):
                lease.revoke()
                raise LockBusy(f"a migration of service {service} is already running ({_describe(holder)}); "
                                 f"wait for it, or if that run died, its lock expires within {self.ttl}s")
        self._lease = lease
        self._thread = threading.Thread(target=self._keep_alive, daemon=True, name="lock-keepalive")
        self._thread.start()

    def _holder(self) -> dict[str, Any]:
        raw = self.client.get(self.key)
        try:
            return json.loads(raw[0]) if raw else {}
        except ValueError:
            return {}

    def _holder_died_here(self, holder: dict[str, Any]) -> bool:
        """A run on this machine that was killed (kill -9, a crash) cannot release its lease; a
        resume right after must not wait out the TTL. Only a holder on this host whose process is
        gone is taken over: a live one, or one on another machine, is never touched."""
        if holder.get("host") != socket.gethostname() or not holder.get("lease") or _alive(holder.get("pid")):
            return False
        self.client.post(self.client.get_url("/kv/lease/revoke"), json={"ID": holder["lease"]})
        return True

    def _keep_alive(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._lease.refresh()
            except Exception:  # noqa: BLE001 - a DCS hiccup; the next refresh may succeed
                continue

    def release(self) -> None:
        self._stop.set()
        if self._lease is not None:
            try:
                self._lease.revoke()
            except Exception:  # noqa: BLE001 - it expires by itself within the TTL
                pass
            self._lease = None


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "holder unknown"
    return f"held by {holder.get('user', '?')}@{holder.get('host', '?')} pid {holder.get('pid', '?')} since {holder.get('since', '?')}"


class MigrationLock:
    def __init__(self, directory: Path, etcd_client: Any, service: str):
        self.service = service
        self.local = LocalLock(directory)
        self.remote = EtcdLease(etcd_client, f"/migrator/{service}/lock")

    def __enter__(self) -> MigrationLock:
        self.local.acquire()
        try:
            self.remote.acquire(self.service)
        except BaseException:
            self.local.release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remote.release()
        self.local.release()
