"""The parse of every PostgreSQL answer a run polls (rows as psycopg returns them, untrusted) into
typed values, and the one place connection arguments are built. Pure: no server needed; the
e2e switchover and seed tests run the same reads against the real testbed."""

from __future__ import annotations

import time

import pytest

from migrator.adapters.pg import connect_args
from migrator.adapters.pg_queries import (
    BaseBackupProgress,
    ReplayPosition,
    UnexpectedRow,
    WalReceiver,
    history_path,
    parse_basebackup_progress,
    parse_file,
    parse_in_recovery,
    parse_lsn,
    parse_optional_lsn,
    parse_replay_position,
    parse_slot_active,
    parse_slot_exists,
    parse_timeline,
    parse_wal_receiver,
)
from migrator.errors import GateTimeout, MigratorError, UnreachableError
from migrator.model.inventory import Credential
from tests.helpers.snapshots import example_inventory
from tests.unit.test_bounded_waits import _Abandons, _step

LSN = 0x51A2B38


# ---- good rows -------------------------------------------------------------------------------
def test_a_streaming_wal_receiver_becomes_a_typed_record():
    receiver = parse_wal_receiver("dc2-a", [("streaming", "127.0.1.1", "dc2", 3, LSN, 812.25)])
    assert receiver == WalReceiver("streaming", "127.0.1.1", "dc2", 3, LSN, 812.25)
    assert receiver.streaming


def test_no_wal_receiver_row_means_none_and_nulls_stay_none():
    assert parse_wal_receiver("dc2-a", []) is None
    starting = parse_wal_receiver("dc2-a", [("starting", None, None, None, None, None)])
    assert starting == WalReceiver("starting", None, None, None, None, None)
    assert not starting.streaming


def test_replay_position_lsn_and_timeline_with_nulls():
    assert parse_replay_position("dc2-a", [(LSN, 2)]) == ReplayPosition(LSN, 2)
    # A primary replays nothing: pg_last_wal_replay_lsn() is NULL.
    assert parse_replay_position("dc1-a", [(None, 1)]) == ReplayPosition(None, 1)


def test_single_values():
    assert parse_in_recovery("dc2-a", [(True,)]) is True
    assert parse_in_recovery("dc1-a", [(False,)]) is False
    assert parse_timeline("dc1-a", [(4,)]) == 4
    assert parse_lsn("dc1-a", "the current WAL LSN", [(LSN,)]) == LSN
    assert parse_optional_lsn("dc1-a", "the replay LSN", [(None,)]) is None
    assert parse_file("dc2-b", history_path(2), [("1\t0/3000060\tno recovery target\n",)]).startswith("1\t")


def test_slots_absent_inactive_active():
    assert parse_slot_exists("dc1-a", "dc2", [(1,)]) is True
    assert parse_slot_exists("dc1-a", "dc2", []) is False
    assert parse_slot_active("dc1-a", "dc2", [(True,)]) is True
    assert parse_slot_active("dc1-a", "dc2", [(False,)]) is False
    assert parse_slot_active("dc1-a", "dc2", []) is False  # no such slot


def test_base_backup_progress_and_its_unknown_total():
    assert parse_basebackup_progress("dc1-a", []) is None
    assert parse_basebackup_progress("dc1-a", [("streaming database files", 1024, None)]) == BaseBackupProgress(
        "streaming database files", 1024, None
    )


def test_history_path_names_the_timeline_in_hex():
    assert history_path(10) == "pg_wal/0000000A.history"


# ---- garbage rows ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("parse", "rows", "message"),
    [
        # wrong number of rows or columns
        (lambda rows: parse_wal_receiver("dc2-a", rows), [("streaming", "h", "dc2")], "row of 6 column"),
        (lambda rows: parse_wal_receiver("dc2-a", rows), [("a", None, None, 1, 1, 1.0)] * 2, "at most one row"),
        (lambda rows: parse_timeline("dc1-a", rows), [], "expected one row, got none"),
        (lambda rows: parse_replay_position("dc2-a", rows), [(LSN,)], "row of 2 column"),
        (lambda rows: parse_in_recovery("dc2-a", rows), None, "at most one row"),
        (lambda rows: parse_slot_active("dc1-a", "dc2", rows), ["t"], "row of 1 column"),
        # wrong types
        (lambda rows: parse_wal_receiver("dc2-a", rows), [(7, "h", "dc2", 1, LSN, 1.0)], "status is 7, expected str"),
        (lambda rows: parse_wal_receiver("dc2-a", rows), [("streaming", "h", "dc2", "1", LSN, 1.0)], "received_tli"),
        (lambda rows: parse_wal_receiver("dc2-a", rows), [("streaming", ["h"], "dc2", 1, LSN, 1.0)], "sender_host"),
        (lambda rows: parse_wal_receiver("dc2-a", rows), [("streaming", "h", "dc2", 1, LSN, "5 s")], "age is '5 s'"),
        (lambda rows: parse_replay_position("dc2-a", rows), [("0/51A2B38", 2)], "replay LSN is '0/51A2B38'"),
        (lambda rows: parse_replay_position("dc2-a", rows), [(LSN, True)], "timeline is True, expected int"),
        (lambda rows: parse_in_recovery("dc2-a", rows), [("f",)], "is 'f', expected bool"),
        (lambda rows: parse_in_recovery("dc2-a", rows), [(None,)], "is None, expected bool"),
        (lambda rows: parse_slot_active("dc1-a", "dc2", rows), [(1,)], "active is 1, expected bool"),
        (lambda rows: parse_basebackup_progress("dc1-a", rows), [("x", "1024", None)], "bytes streamed"),
        (lambda rows: parse_file("dc2-b", "pg_wal/00000002.history", rows), [(None,)], "expected str"),
        # NULL where the query cannot return one
        (lambda rows: parse_timeline("dc1-a", rows), [(None,)], "the timeline is None, expected int"),
        (lambda rows: parse_lsn("dc1-a", "the current WAL LSN", rows), [(None,)], "expected int"),
    ],
)
def test_garbage_rows_raise_unexpected_row_naming_member_and_value(parse, rows, message):
    with pytest.raises(UnexpectedRow, match=message) as raised:
        parse(rows)
    assert str(raised.value).startswith(("dc1-a: ", "dc2-a: ", "dc2-b: "))
    # Not a MigratorError: a wait does not retry it as a connection failure; the step fails,
    # as the IndexError / TypeError of positional indexing made it fail before.
    assert not isinstance(raised.value, MigratorError)


def test_a_huge_garbage_value_is_cut_short_in_the_error():
    with pytest.raises(UnexpectedRow) as raised:
        parse_timeline("dc1-a", [("x" * 10_000,)])
    assert len(str(raised.value)) < 200


# ---- connection arguments --------------------------------------------------------------------
def _superuser(monkeypatch: pytest.MonkeyPatch, password: str) -> Credential:
    monkeypatch.setenv("MIGRATOR_TEST_PG_PASSWORD", password)
    return Credential.model_validate({"username": "postgres", "password": "env:MIGRATOR_TEST_PG_PASSWORD"})


def test_kept_open_and_probe_connections_share_login_and_differ_in_lifetime_options(monkeypatch):
    _, _, member = example_inventory().member("dc1-a")
    superuser = _superuser(monkeypatch, "s3cret")
    common = {
        "host": member.host, "port": member.pg_port, "user": "postgres", "password": "s3cret",
        "dbname": "postgres", "autocommit": True, "application_name": "migrator",
    }
    assert connect_args(member, superuser, 5, kept_open=True) == {
        **common, "connect_timeout": 5, "options": "-c statement_timeout=5000", "keepalives": 1,
        "keepalives_idle": 5, "keepalives_interval": 1, "keepalives_count": 3, "tcp_user_timeout": 5000,
    }
    assert connect_args(member, superuser, 2.5, kept_open=False) == {
        **common, "connect_timeout": 2,
        "options": "-c statement_timeout=2500 -c default_transaction_read_only=on",
    }


def test_the_password_is_read_at_every_connection(monkeypatch):
    _, _, member = example_inventory().member("dc1-a")
    superuser = _superuser(monkeypatch, "first")
    assert connect_args(member, superuser, 5, kept_open=True)["password"] == "first"
    monkeypatch.setenv("MIGRATOR_TEST_PG_PASSWORD", "rotated")
    assert connect_args(member, superuser, 5, kept_open=True)["password"] == "rotated"
    monkeypatch.delenv("MIGRATOR_TEST_PG_PASSWORD")
    with pytest.raises(LookupError):  # Live turns this into its "cannot read the password" line
        connect_args(member, superuser, 5, kept_open=True)


def test_a_wait_fails_at_once_on_a_garbage_answer_but_retries_a_silent_member():
    """The two outcomes a probe of a step's wait can meet, with no server: garbage ends the wait
    (the step fails), no answer is retried until the deadline (GateTimeout)."""
    step = _step(_Abandons())
    started = time.monotonic()
    with pytest.raises(UnexpectedRow):
        step.wait(lambda: parse_wal_receiver("dc2-a", [("streaming",)]), "garbage", timeout=5)
    assert time.monotonic() - started < 2
    tries: list[int] = []

    def silent():
        tries.append(1)
        raise UnreachableError("dc2-a: PostgreSQL gave no answer")

    with pytest.raises(GateTimeout, match="last: dc2-a: PostgreSQL gave no answer"):
        step.wait(silent, "silence", interval=0.05, timeout=0.5)
    assert len(tries) > 1
