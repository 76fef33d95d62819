"""The SQL a run polls on a member over its kept-open connection, and the parse of each answer
into a typed value, so no step writes SQL or reads a row by position.

Every answer comes from the network and is untrusted: each parse checks the number of rows and
columns and the type of every value, and raises `UnexpectedRow` (a ValueError, not a
MigratorError) for anything else. Like the IndexError or TypeError that positional indexing
raised before, it is not retried by a wait as a connection failure is (a server that answers
garbage keeps doing so); it fails the step, which then takes the failed-step path.

LSNs are byte positions (`lsn - '0/0'`), so the rest of the tool compares integers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

IN_RECOVERY = "SELECT pg_is_in_recovery()"
REPLAY_LSN = "SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint"
WAL_HEAD = "SELECT (pg_current_wal_lsn() - '0/0')::bigint"
# The replay LSN is read in the same statement, so status and position are of one moment. The
# last column is how long the WAL receiver process has run, by the member's own clock (no skew
# with ours): the process ends with its connection, so this is how long the stream has been one
# connection (a new one means a new process and a new start).
WAL_RECEIVER = (
    "SELECT r.status, r.sender_host, r.slot_name, r.received_tli, "
    "(pg_last_wal_replay_lsn() - '0/0')::bigint, "
    "extract(epoch FROM clock_timestamp() - a.backend_start)::float8 "
    "FROM pg_stat_wal_receiver r LEFT JOIN pg_stat_activity a ON a.pid = r.pid"
)
# A standby's replay timeline is not exposed directly: the highest of what the WAL receiver
# streams, the last restartpoint's timeline, and the newest timeline history file in pg_wal
# (recovery follows the newest timeline it has the history of). greatest() skips NULLs: no WAL
# receiver running, or no history file (timeline 1).
REPLAY_POSITION = r"""
SELECT (pg_last_wal_replay_lsn() - '0/0')::bigint,
       greatest((SELECT received_tli FROM pg_stat_wal_receiver),
                (SELECT timeline_id FROM pg_control_checkpoint()),
                (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir()
                  WHERE name ~ '^[0-9A-F]{8}\.history$'))
"""
READ_FILE = "SELECT pg_read_file(%s)"
SLOT_EXISTS = "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s"
SLOT_ACTIVE = "SELECT active FROM pg_replication_slots WHERE slot_name = %s"
BASEBACKUP_PROGRESS = (
    "SELECT phase, backup_streamed, backup_total FROM pg_stat_progress_basebackup ORDER BY pid LIMIT 1"
)
# A transactional logical message: a WAL record with a position, and no row in any database.
EMIT_MESSAGE = "SELECT (pg_logical_emit_message(true, %s, %s::text || clock_timestamp()) - '0/0')::bigint"


class UnexpectedRow(ValueError):
    """A member answered a query with rows of another shape or type than the query returns."""


@dataclass(frozen=True)
class WalReceiver:
    """A standby's WAL receiver (its row of pg_stat_wal_receiver) and its replay LSN."""

    status: str
    sender_host: str | None  # NULL while it is not connected
    slot_name: str | None  # NULL when it streams without a slot
    timeline: int | None  # received_tli
    replayed: int | None  # pg_last_wal_replay_lsn()
    # Seconds since the WAL receiver process started (NULL when pg_stat_activity does not show it).
    connected_seconds: float | None = None

    @property
    def streaming(self) -> bool:
        return self.status == "streaming"


@dataclass(frozen=True)
class ReplayPosition:
    """Where a member's replay stands: the LSN (None: not in recovery, or nothing replayed) and
    the timeline it replays (see REPLAY_POSITION)."""

    replayed: int | None
    timeline: int | None


@dataclass(frozen=True)
class BaseBackupProgress:
    """A base backup this member serves (pg_stat_progress_basebackup)."""

    phase: str
    streamed: int | None
    total: int | None  # NULL when the size was not estimated


def history_path(timeline: int) -> str:
    """A timeline's history file, relative to the data directory (what pg_read_file reads)."""
    return f"pg_wal/{int(timeline):08X}.history"


# ---- the parses: rows as psycopg returns them (a list of tuples) -> typed values -----------------
def at_most_one_row(member: str, what: str, rows: Any, columns: int) -> tuple | None:
    """The one row of a query that returns none or one, checked to have `columns` columns."""
    if not isinstance(rows, list) or len(rows) > 1:
        raise UnexpectedRow(f"{member}: {what}: expected at most one row, got {_shown(rows)}")
    if not rows:
        return None
    row = rows[0]
    if not isinstance(row, tuple) or len(row) != columns:
        raise UnexpectedRow(f"{member}: {what}: expected a row of {columns} column(s), got {_shown(row)}")
    return row


def single_row(member: str, what: str, rows: Any, columns: int) -> tuple:
    """The row of a query that always returns exactly one (a SELECT of expressions)."""
    row = at_most_one_row(member, what, rows, columns)
    if row is None:
        raise UnexpectedRow(f"{member}: {what}: expected one row, got none")
    return row


def checked(member: str, what: str, value: Any, kind: type, nullable: bool = False) -> Any:
    """`value` when it is a `kind` (None too when `nullable`), else UnexpectedRow. A bool is not
    taken for an int (Python's bool is one)."""
    if value is None and nullable:
        return None
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    expected = kind.__name__ + (" or NULL" if nullable else "")
    raise UnexpectedRow(f"{member}: {what} is {_shown(value)}, expected {expected}")


def parse_in_recovery(member: str, rows: Any) -> bool:
    return checked(member, "pg_is_in_recovery()", single_row(member, "pg_is_in_recovery()", rows, 1)[0], bool)


def parse_lsn(member: str, what: str, rows: Any) -> int:
    return checked(member, what, single_row(member, what, rows, 1)[0], int)


def parse_optional_lsn(member: str, what: str, rows: Any) -> int | None:
    return checked(member, what, single_row(member, what, rows, 1)[0], int, nullable=True)


def parse_timeline(member: str, rows: Any) -> int:
    return checked(member, "the timeline", single_row(member, "the timeline", rows, 1)[0], int)


def parse_replay_position(member: str, rows: Any) -> ReplayPosition:
    replayed, timeline = single_row(member, "the replay position", rows, 2)
    return ReplayPosition(
        replayed=checked(member, "the replay LSN", replayed, int, nullable=True),
        timeline=checked(member, "the replay timeline", timeline, int, nullable=True),
    )


def parse_wal_receiver(member: str, rows: Any) -> WalReceiver | None:
    """None when the member runs no WAL receiver (no row)."""
    row = at_most_one_row(member, "pg_stat_wal_receiver", rows, 6)
    if row is None:
        return None
    status, sender, slot, timeline, replayed, connected = row
    return WalReceiver(
        status=checked(member, "the WAL receiver status", status, str),
        sender_host=checked(member, "the WAL receiver's sender_host", sender, str, nullable=True),
        slot_name=checked(member, "the WAL receiver's slot_name", slot, str, nullable=True),
        timeline=checked(member, "the WAL receiver's received_tli", timeline, int, nullable=True),
        replayed=checked(member, "the replay LSN", replayed, int, nullable=True),
        connected_seconds=checked(member, "the WAL receiver's age", connected, float, nullable=True),
    )


def parse_file(member: str, path: str, rows: Any) -> str:
    return checked(member, path, single_row(member, path, rows, 1)[0], str)


def parse_slot_exists(member: str, slot: str, rows: Any) -> bool:
    return at_most_one_row(member, f"slot {slot}", rows, 1) is not None


def parse_slot_active(member: str, slot: str, rows: Any) -> bool:
    """False when the slot does not exist."""
    row = at_most_one_row(member, f"slot {slot}", rows, 1)
    return row is not None and checked(member, f"slot {slot}'s active", row[0], bool)


def parse_basebackup_progress(member: str, rows: Any) -> BaseBackupProgress | None:
    """None when the member serves no base backup (no row)."""
    row = at_most_one_row(member, "pg_stat_progress_basebackup", rows, 3)
    if row is None:
        return None
    phase, streamed, total = row
    return BaseBackupProgress(
        phase=checked(member, "the base backup phase", phase, str),
        streamed=checked(member, "the base backup's bytes streamed", streamed, int, nullable=True),
        total=checked(member, "the base backup's total bytes", total, int, nullable=True),
    )


def _shown(value: Any) -> str:
    """An untrusted value in an error line: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
