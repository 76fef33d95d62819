"""PostgreSQL over psycopg 3: the one place connection arguments are built (`connect_args`), and
the read-only probe the observer runs per call.

LSNs come back as byte positions (`lsn - '0/0'`) so the rest of the tool compares integers.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from migrator.adapters.net_errors import what_happened
from migrator.errors import UnreachableError
from migrator.model.inventory import Credential, Member

RowT = TypeVar("RowT")

SETTINGS = (
    "wal_log_hints",
    "data_checksums",
    "max_wal_senders",
    "max_replication_slots",
    "wal_keep_size",
    "max_slot_wal_keep_size",
    "archive_mode",
    "archive_command",
    "synchronous_standby_names",
    "hot_standby",
    "hot_standby_feedback",
    "wal_level",
    "server_version_num",
)

NODE_QUERY = """
SELECT s.system_identifier::text AS system_identifier,
       current_setting('server_version_num')::int AS server_version,
       pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE (pg_current_wal_lsn() - '0/0')::bigint END AS current_lsn,
       (pg_last_wal_receive_lsn() - '0/0')::bigint AS receive_lsn,
       (pg_last_wal_replay_lsn() - '0/0')::bigint AS replay_lsn,
       pg_last_xact_replay_timestamp()::text AS replay_timestamp,
       c.timeline_id AS checkpoint_timeline
  FROM pg_control_system() s, pg_control_checkpoint() c
"""

# The live timeline: on a primary, from the current WAL file name; on a standby, what it replays
# (pg_control's checkpoint timeline lags until the next checkpoint or restartpoint, so it is
# only the fallback while the WAL receiver is not connected).
TIMELINE_QUERY = """
SELECT CASE WHEN pg_is_in_recovery()
            THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),
                          (SELECT timeline_id FROM pg_control_checkpoint()))
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END
"""

REPLICATION_QUERY = """
SELECT application_name, host(client_addr) AS client_addr, state, sync_state,
       (sent_lsn - '0/0')::bigint AS sent_lsn, (replay_lsn - '0/0')::bigint AS replay_lsn,
       extract(epoch FROM replay_lag)::float AS replay_lag_seconds
  FROM pg_stat_replication ORDER BY application_name
"""

WAL_RECEIVER_QUERY = """
SELECT status, sender_host, sender_port, slot_name,
       (flushed_lsn - '0/0')::bigint AS flushed_lsn, received_tli
  FROM pg_stat_wal_receiver
"""

SLOTS_QUERY = """
SELECT slot_name AS name, slot_type, active, (restart_lsn - '0/0')::bigint AS restart_lsn,
       wal_status, database
  FROM pg_replication_slots ORDER BY slot_name
"""

ARCHIVER_QUERY = "SELECT failed_count, last_failed_wal FROM pg_stat_archiver"
# Where the oldest WAL segment still in pg_wal starts (any timeline): a standby that needs WAL
# from before it cannot stream any more. Recycled segments are renamed forward, so the smallest
# name is the oldest segment really kept.
OLDEST_WAL_QUERY = """
SELECT (('x' || substr(n, 1, 8))::bit(32)::bigint << 32)
       + ('x' || substr(n, 9, 8))::bit(32)::bigint * pg_size_bytes(current_setting('wal_segment_size'))
  FROM (SELECT min(substr(name, 9, 16)) AS n FROM pg_ls_waldir()
         WHERE name ~ '^[0-9A-F]{24}$') w
 WHERE n IS NOT NULL
"""
SIZE_QUERY = "SELECT sum(pg_database_size(oid))::bigint FROM pg_database"

log = logging.getLogger("migrator.postgres")


def connect_args(member: Member, superuser: Credential, timeout: float, kept_open: bool) -> dict[str, Any]:
    """psycopg.connect's arguments for a member, built here only: every connection of the tool
    logs in as the inventory's superuser to `postgres`, in autocommit, named "migrator", and is
    bounded by the inventory's connect timeout. Each caller keeps its own lifetime: `Live` keeps
    its connection open through a run (`kept_open`: keepalives, see `kept_open_options`); a probe
    (the observer, the seed facts) connects per call, read-only. The password is read from its
    reference here, at every new connection, so a secret rotated (or removed) mid-run shows at
    the next one (OSError, LookupError, UnicodeError when it cannot be read). The inventory has
    no PostgreSQL TLS settings yet: libpq's defaults (sslmode=prefer) apply."""
    password = superuser.password.reveal()
    if kept_open:
        return {**_login(member.host, member.pg_port, superuser.username, password), **kept_open_options(timeout)}
    return probe_args(member.host, member.pg_port, superuser.username, password, timeout)


def probe_args(host: str, port: int, user: str, password: str, timeout: float) -> dict[str, Any]:
    """A probe's connection (per call, read-only, every statement bounded) to a server that is
    not in an inventory yet (`migrate init`) or is (`connect_args`)."""
    return {
        **_login(host, port, user, password),
        "connect_timeout": max(1, int(timeout)),
        "options": f"-c statement_timeout={int(timeout * 1000)} -c default_transaction_read_only=on",
    }


def _login(host: str, port: int, user: str, password: str) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "user": user,
        "password": password,
        "dbname": "postgres",
        "autocommit": True,
        "application_name": "migrator",
    }


class PostgresProbe:
    """One member's PostgreSQL facts for the snapshot, over a connection of its own per call."""

    def __init__(self, conninfo: dict[str, Any]):
        self.conninfo = conninfo  # from connect_args

    def observe(self, member: str) -> dict[str, Any]:
        log.debug("%s: PostgreSQL at %s:%s: observe", member, self.conninfo["host"], self.conninfo["port"])
        try:
            with psycopg.connect(row_factory=dict_row, **self.conninfo) as conn:
                node = one_row(conn.execute(NODE_QUERY))
                timeline = one_row(conn.execute(TIMELINE_QUERY))
                settings = {
                    r["name"]: r["setting"]
                    for r in conn.execute(
                        "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(SETTINGS),)
                    )
                }
                archiver = one_row(conn.execute(ARCHIVER_QUERY))
                return {
                    **{k: v for k, v in node.items() if k != "checkpoint_timeline"},
                    "timeline": next(iter(timeline.values())) or node["checkpoint_timeline"],
                    "replication": conn.execute(REPLICATION_QUERY).fetchall(),
                    "wal_receiver": conn.execute(WAL_RECEIVER_QUERY).fetchone(),
                    "slots": conn.execute(SLOTS_QUERY).fetchall(),
                    "settings": settings,
                    "archiver_failed_count": archiver["failed_count"],
                    "archiver_last_failed_wal": archiver["last_failed_wal"],
                    "database_size_bytes": one_row(conn.execute(SIZE_QUERY))["sum"],
                    "oldest_wal_lsn": _first_value(conn.execute(OLDEST_WAL_QUERY).fetchone()),
                }
        except psycopg.OperationalError as exc:
            raise UnreachableError(connection_problem(member, self.conninfo, exc)) from None
        except psycopg.Error as exc:
            raise UnreachableError(f"{member}: probing PostgreSQL failed ({_first_line(exc)})") from None

    def server_paths(self, member: str) -> dict[str, str | None]:
        """The data directory and the directory of PostgreSQL's programs (pg_config's BINDIR),
        both superuser-only reads, for `migrate init`."""
        try:
            with psycopg.connect(row_factory=dict_row, **self.conninfo) as conn:
                data_dir = _first_value(conn.execute("SELECT current_setting('data_directory')").fetchone())
                bin_dir = _first_value(conn.execute("SELECT setting FROM pg_config WHERE name = 'BINDIR'").fetchone())
        except psycopg.OperationalError as exc:
            raise UnreachableError(connection_problem(member, self.conninfo, exc)) from None
        except psycopg.Error as exc:
            raise UnreachableError(f"{member}: reading PostgreSQL's paths failed ({_first_line(exc)})") from None
        return {
            "data_dir": data_dir if isinstance(data_dir, str) else None,
            "bin_dir": bin_dir if isinstance(bin_dir, str) else None,
        }


def kept_open_options(timeout: float) -> dict[str, Any]:
    """libpq options for connections kept open through a run, all derived from the inventory's
    connect timeout: a statement the server does not finish in that time is cancelled by the
    server; keepalives and tcp_user_timeout make the kernel give up on a peer that stopped
    acknowledging (a host gone from the network), where a read would otherwise wait for the
    system's TCP retry limit (~15 minutes). A frozen process on a live host is left to
    `Step.wait`'s deadline (the kernel still answers for it)."""
    seconds = max(1, int(timeout))
    return {
        "connect_timeout": seconds,
        "options": f"-c statement_timeout={seconds * 1000}",
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": max(1, seconds // 3),
        "keepalives_count": 3,
        "tcp_user_timeout": seconds * 1000,
    }


def connection_problem(member: str, conninfo: dict[str, Any], exc: Exception) -> str:
    """One line that says which of the usual causes it is, and the fix."""
    where = f"{member}: PostgreSQL at {conninfo['host']}:{conninfo['port']}"
    text = str(exc)
    if "password authentication failed" in text or "no password supplied" in text:
        return (
            f"{where} refused the password of user {conninfo['user']}; check the credentials "
            "in the inventory (credentials.superuser)"
        )
    if "no pg_hba.conf entry" in text:
        return f"{where} has no pg_hba.conf entry for this machine; allow it for user {conninfo['user']}"
    if "Connection refused" in text:
        return f"{where} refused the connection; check that PostgreSQL runs and listens there"
    if "timeout" in text.lower():
        return f"{where} did not answer within {conninfo['connect_timeout']}s; check the host and the network"
    return f"{where} {what_happened(exc, conninfo.get('connect_timeout'))}"


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def one_row(cur: psycopg.Cursor[RowT]) -> RowT:
    """The row of a query that always returns exactly one (a function or an aggregate)."""
    row = cur.fetchone()
    if row is None:  # cannot happen for these queries; the TypeError indexing None would raise
        raise TypeError("the query returned no row")
    return row


def _first_value(row: dict[str, Any] | None) -> Any:
    """The row's first column; None for no row."""
    return next(iter(row.values())) if row else None
