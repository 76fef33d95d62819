"""Witnesses for tests that move the primary between sites while clients write.

- `WriteLedger` writes sequential ids through one multi-host connection string, as a real client
  behind a host list would, and remembers which ids the server acknowledged and when.
- `WriterSampler` asks every member whether it is writable, ten times a second, and records any
  moment with two writable members (split brain).
- `assert_no_acknowledged_commit_lost` checks afterwards that every acknowledged id reached every
  member.

A commit is "acknowledged" only when the INSERT returned successfully to the client: that is the
promise a database makes, and the only one a switchover must keep. An id whose commit was in doubt
(the connection broke during the commit) is retried with the same id and `ON CONFLICT DO NOTHING`
until the client sees it succeed, so ids are never skipped and never written twice (docs/architecture.md,
"Tests").
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import psycopg
from psycopg import sql

from tests.testbed import MEMBER_BY_NAME, Testbed
from tests.testbed.topology import PG_PORT, SUPERUSER, Member

ALL_MEMBERS: tuple[Member, ...] = tuple(MEMBER_BY_NAME.values())
DEFAULT_TABLE = "migrator_ledger"

# Detect a peer that vanished without closing the socket within seconds, so no statement hangs
# for the kernel's default of minutes. No statement_timeout on the ledger's INSERT on purpose:
# cancelling a commit that waits for a synchronous standby commits it locally and still reports
# success, which would blur what "acknowledged" means.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1,
               "keepalives_count": 3, "tcp_user_timeout": 5000}


# Pause before retrying after an error (see WriteLedger._run).
_RETRY_PAUSE = 0.02


def _check_loopback(members: Iterable[Member]) -> None:
    # These helpers are for the local testbed only: refuse to dial anything off this machine.
    for member in members:
        if not ipaddress.ip_address(member.host).is_loopback:
            raise ValueError(f"{member.name}: {member.host} is not a loopback address")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


@dataclass(frozen=True)
class Ack:
    id: int
    monotonic: float
    wall: datetime


@dataclass(frozen=True)
class Gap:
    """A stretch without acknowledgement. `after_id` is None for the stretch before the first
    acknowledgement; `before_id` is None for the stretch between the last one and stop()."""
    after_id: int | None
    before_id: int | None
    seconds: float
    since: datetime


class _Bounded:
    """A daemon thread with start/stop/context manager and a safety time limit, so a forgotten
    witness can never outlive its test by more than `max_seconds`."""

    def __init__(self, max_seconds: float) -> None:
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline = 0.0
        self.failure: BaseException | None = None  # a bug in the witness itself, raised by stop()

    def _run(self) -> None:
        raise NotImplementedError

    def _guarded_run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test through stop()
            self.failure = exc

    def _should_stop(self) -> bool:
        return self._stop.is_set() or time.monotonic() >= self._deadline

    def start(self):
        if self._thread is not None:
            raise RuntimeError(f"{type(self).__name__} already started")
        self._deadline = time.monotonic() + self.max_seconds
        self._thread = threading.Thread(target=self._guarded_run, name=type(self).__name__,
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not stop within {timeout:.0f}s")
        if self.failure is not None:
            raise RuntimeError(f"{type(self).__name__} failed") from self.failure

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class WriteLedger(_Bounded):
    """Inserts ids 1, 2, 3... (or from where `table` left off) at `rate` per second into whichever
    member is primary, and records each acknowledgement."""

    def __init__(self, testbed: Testbed, *, rate: float = 100.0, table: str = DEFAULT_TABLE,
                 members: Iterable[Member] = ALL_MEMBERS, max_seconds: float = 600.0,
                 connect_timeout: int = 2) -> None:
        super().__init__(max_seconds)
        self.members = tuple(members)
        _check_loopback(self.members)
        self.rate = rate
        self.table = table
        # One libpq connection string with every member: libpq tries them in order and keeps the
        # first that accepts writes, as an application configured with a host list does.
        self._conninfo = psycopg.conninfo.make_conninfo(
            host=",".join(m.host for m in self.members),
            port=",".join(str(PG_PORT) for _ in self.members),
            user=SUPERUSER, dbname="postgres", password=testbed.passwords()["superuser"],
            target_session_attrs="read-write", connect_timeout=connect_timeout,
            application_name="migrator-write-ledger", **_KEEPALIVES)
        self._lock = threading.Lock()
        self._acks: list[Ack] = []
        self._started_at: float | None = None   # monotonic, when writing began
        self._started_wall: datetime | None = None
        self._stopped_at: float | None = None   # monotonic, when the writer stopped trying
        self.first_id: int | None = None
        self.errors = 0          # failed INSERTs and failed connection attempts
        self.reconnects = 0      # successful connections after the first
        self.already_present = 0  # retried ids the server already had: their commit was in doubt
        self.error_kinds: Counter[str] = Counter()

    # ---- setup, synchronous so a misconfiguration fails the test at start() -------------------
    def start(self) -> WriteLedger:
        with self._connect() as conn:
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY,"
                " written_at timestamptz DEFAULT clock_timestamp())").format(
                    sql.Identifier(self.table)))
            (last,) = conn.execute(
                sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(sql.Identifier(self.table))
            ).fetchone()
        self.first_id = last + 1
        return super().start()

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self._conninfo, autocommit=True)

    # ---- the writer ---------------------------------------------------------------------------
    def _run(self) -> None:
        insert = sql.SQL("INSERT INTO {} (id) VALUES (%s) ON CONFLICT DO NOTHING").format(
            sql.Identifier(self.table))
        interval = 1.0 / self.rate
        conn: psycopg.Connection | None = None
        connected_once = False
        next_id = self.first_id
        self._started_wall = datetime.now(timezone.utc)
        self._started_at = next_due = time.monotonic()
        try:
            while not self._should_stop():
                # Pace by a schedule, not by sleeping a fixed interval, so the rate holds; after a
                # stall, restart the schedule instead of bursting to catch up.
                now = time.monotonic()
                if next_due > now:
                    self._stop.wait(next_due - now)
                    continue
                next_due = max(next_due + interval, now - interval)
                try:
                    if conn is None or conn.closed:
                        conn = self._connect()
                        if connected_once:
                            self.reconnects += 1
                        connected_once = True
                    # Retrying the same id is safe whatever happened to the previous attempt.
                    cur = conn.execute(insert, (next_id,))
                except psycopg.Error as exc:
                    # Connection lost, read-only, terminated, or a commit in doubt: the id is not
                    # acknowledged; drop the connection and try the same id again.
                    self.errors += 1
                    self.error_kinds[_first_line(exc)] += 1
                    if conn is not None:
                        conn.close()
                    conn = None
                    # A short pause, so a long outage costs tens of connection attempts a second,
                    # not hundreds; it also bounds how much it blurs the measured gap.
                    next_due = time.monotonic() + _RETRY_PAUSE
                    continue
                acked = time.monotonic()
                if cur.rowcount == 0:
                    self.already_present += 1
                with self._lock:
                    self._acks.append(Ack(next_id, acked, datetime.now(timezone.utc)))
                next_id += 1
        finally:
            self._stopped_at = time.monotonic()
            if conn is not None:
                conn.close()

    # ---- what was seen --------------------------------------------------------------------------
    @property
    def acks(self) -> list[Ack]:
        with self._lock:
            return list(self._acks)

    @property
    def acknowledged(self) -> list[int]:
        return [a.id for a in self.acks]

    @property
    def achieved_rate(self) -> float:
        if self._started_at is None:
            return 0.0
        end = self._stopped_at if self._stopped_at is not None else time.monotonic()
        return len(self.acks) / max(end - self._started_at, 1e-9)

    def gaps(self) -> list[Gap]:
        """Every stretch without acknowledgement, including the one from start to the first
        acknowledgement and the one from the last acknowledgement to stop (or now): an outage at
        either end is write unavailability too."""
        if self._started_at is None:
            return []
        acks = self.acks
        end = self._stopped_at if self._stopped_at is not None else time.monotonic()
        points: list[tuple[int | None, float, datetime]] = (
            [(None, self._started_at, self._started_wall)]
            + [(a.id, a.monotonic, a.wall) for a in acks])
        result = [Gap(prev[0], cur[0], cur[1] - prev[1], prev[2])
                  for prev, cur in zip(points, points[1:])]
        last = points[-1]
        result.append(Gap(last[0], None, end - last[1], last[2]))
        return result

    @property
    def max_gap_seconds(self) -> float:
        """The longest time without acknowledgement (= observed write unavailability)."""
        return max((g.seconds for g in self.gaps()), default=0.0)

    def gaps_over(self, threshold: float) -> list[Gap]:
        return [g for g in self.gaps() if g.seconds > threshold]

    def summary(self) -> str:
        return (f"{len(self.acks)} acknowledged from id {self.first_id}"
                f" at {self.achieved_rate:.1f}/s,"
                f" max gap {self.max_gap_seconds:.3f}s, {self.errors} errors, {self.reconnects}"
                f" reconnects, {self.already_present} in doubt and found present,"
                f" errors: {dict(self.error_kinds)}")


@dataclass(frozen=True)
class Violation:
    wall: datetime
    monotonic: float
    writable: tuple[str, ...]  # names of the members that answered pg_is_in_recovery() = false


class WriterSampler(_Bounded):
    """Asks every member `SELECT pg_is_in_recovery()` every `interval` seconds and records each
    round where more than one member is writable. A member that does not answer counts as not
    writable: it cannot accept a commit either."""

    def __init__(self, testbed: Testbed, *, members: Iterable[Member] = ALL_MEMBERS,
                 interval: float = 0.1, max_seconds: float = 600.0, connect_timeout: int = 1,
                 statement_timeout_ms: int = 500) -> None:
        super().__init__(max_seconds)
        self.members = tuple(members)
        _check_loopback(self.members)
        if len({m.name for m in self.members}) != len(self.members):
            raise ValueError("member names must be unique: violations are reported by name")
        self.interval = interval
        self._password = testbed.passwords()["superuser"]
        # libpq (and psycopg) raise a connect_timeout under 2 s to 2 s; on loopback a stopped
        # server refuses at once, so this only matters for a hung one.
        self._connect_timeout = connect_timeout
        self._statement_timeout_ms = statement_timeout_ms
        self._conns: dict[str, psycopg.Connection | None] = {m.name: None for m in self.members}
        self._lock = threading.Lock()
        self._violations: list[Violation] = []
        self.samples = 0
        # (wall time, writable names) each time the set of writable members changed: the story of
        # a switchover, for failure messages.
        self.changes: list[tuple[datetime, tuple[str, ...]]] = []

    def _probe(self, member: Member) -> bool:
        conn = self._conns[member.name]
        try:
            if conn is None or conn.closed:
                conn = self._conns[member.name] = psycopg.connect(
                    host=member.host, port=PG_PORT, user=SUPERUSER, dbname="postgres",
                    password=self._password, connect_timeout=self._connect_timeout,
                    autocommit=True, application_name="migrator-writer-sampler",
                    options=f"-c statement_timeout={self._statement_timeout_ms}", **_KEEPALIVES)
            (in_recovery,) = conn.execute("SELECT pg_is_in_recovery()").fetchone()
            return not in_recovery
        except psycopg.Error:
            if conn is not None:
                conn.close()
            self._conns[member.name] = None
            return False

    def _run(self) -> None:
        # Probe all members in parallel so one slow member neither stretches the round nor skews
        # the answers of the others in time.
        pool = ThreadPoolExecutor(max_workers=len(self.members), thread_name_prefix="sampler")
        last: tuple[str, ...] | None = None
        try:
            next_due = time.monotonic()
            while not self._should_stop():
                answers = list(pool.map(self._probe, self.members))
                writable = tuple(m.name for m, w in zip(self.members, answers) if w)
                now = time.monotonic()
                self.samples += 1
                if writable != last:
                    self.changes.append((datetime.now(timezone.utc), writable))
                    last = writable
                if len(writable) > 1:
                    with self._lock:
                        self._violations.append(
                            Violation(datetime.now(timezone.utc), now, writable))
                next_due = max(next_due + self.interval, now)
                self._stop.wait(max(0.0, next_due - time.monotonic()))
        finally:
            pool.shutdown(wait=True)
            for conn in self._conns.values():
                if conn is not None:
                    conn.close()

    @property
    def violations(self) -> list[Violation]:
        with self._lock:
            return list(self._violations)


def assert_no_acknowledged_commit_lost(testbed: Testbed, ledger: WriteLedger,
                                       members: Iterable[Member] = ALL_MEMBERS,
                                       timeout: float = 60.0) -> None:
    """Wait until every id the ledger saw acknowledged is present on every member (replicas and
    the other site catch up asynchronously), then assert it; at the deadline, say what is missing
    where."""
    members = tuple(members)
    _check_loopback(members)
    wanted = set(ledger.acknowledged)
    if not wanted:
        raise AssertionError(f"the ledger acknowledged nothing: {ledger.summary()}")
    low, high = min(wanted), max(wanted)
    query = sql.SQL("SELECT id FROM {} WHERE id BETWEEN %s AND %s").format(
        sql.Identifier(ledger.table))
    missing: dict[str, list[int] | str] = {m.name: "not checked yet" for m in members}
    deadline = time.monotonic() + timeout
    while True:
        for member in members:
            if missing[member.name] == []:
                continue  # ids never disappear once replicated: no need to ask again
            try:
                present = {row[0] for row in testbed.sql(member, query, (low, high))}
                missing[member.name] = sorted(wanted - present)
            except psycopg.Error as exc:
                missing[member.name] = f"unreachable ({_first_line(exc)})"
        if all(v == [] for v in missing.values()) or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    problems = []
    for name, value in missing.items():
        if isinstance(value, str):
            problems.append(f"{name}: {value}")
        elif value:
            problems.append(f"{name}: {len(value)} of {len(wanted)} acknowledged ids missing,"
                            f" first {value[:20]}")
    assert not problems, (f"acknowledged commits lost after {timeout:g}s in {ledger.table!r}: "
                          + "; ".join(problems))
