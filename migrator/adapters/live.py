"""The live connections a run keeps open to every member, shared by every step.

Between demotion and promotion every millisecond is write unavailability, so steps poll over
connections that stay open (one psycopg connection per member, one SSH session per host) instead
of re-observing the whole service.

Steps read PostgreSQL through the typed methods below (the SQL and the checked parse of each
answer are in migrator/adapters/pg_queries.py), never through rows. `Live` knows no protocol and
imports nothing above the adapters: a step that needs a whole new snapshot calls the observer
itself (migrator/observe/), which is a layer above this one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

import psycopg

from migrator.adapters import pg_queries as sql
from migrator.adapters.bounded import Claims, NoAnswer, call_with_deadline, first_answer
from migrator.adapters.patroni import PatroniApi, PatroniRefused, patroni_api
from migrator.adapters.pg import TIMELINE_QUERY, connect_args
from migrator.adapters.pg_queries import BaseBackupProgress, ReplayPosition, WalReceiver
from migrator.adapters.remote import controldata_command
from migrator.adapters.ssh import SshSession
from migrator.errors import UnreachableError
from migrator.model.inventory import Inventory, Member, Site

Progress = Callable[[str], None]
# A kept-open query gets statement_timeout (connect timeout) on the server, and this much more
# before the client gives up on a server that does not answer at all.
QUERY_GRACE_SECONDS = 1.0


class Live:
    """Open connections to every member, reused by every step of a run."""

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self.timeout = inventory.gates.connect_timeout_seconds
        self._apis: dict[str, PatroniApi] = {}
        self._pg: dict[str, psycopg.Connection] = {}
        self._ssh: dict[str, SshSession] = {}
        self._pending: dict[str, tuple] = {}
        self._claims = Claims()  # which thread uses which connection (see `abandon`)
        self._new_session = threading.Lock()  # one SshSession per member, whichever thread asks first

    # ---- lookup ------------------------------------------------------------------------------
    def site(self, name: str) -> Site:
        return self.inventory.sites[name]

    def member(self, name: str) -> tuple[Site, Member]:
        _, site, member = self.inventory.member(name)
        return site, member

    def api(self, site_name: str) -> PatroniApi:
        if site_name not in self._apis:
            self._apis[site_name] = patroni_api(self.site(site_name), self.timeout)
        return self._apis[site_name]

    # ---- Patroni -----------------------------------------------------------------------------
    def patroni(self, member_name: str) -> dict[str, Any]:
        self._claims.refuse_if_abandoned()
        site_name, _, member = self.inventory.member(member_name)
        return self.api(site_name).get(member.api_url, "/patroni", member.name)

    def patch_config(self, site_name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """PATCH /config on the first member that answers (any member accepts it)."""
        errors: list[UnreachableError] = []
        for member in self.site(site_name).members:
            self._claims.refuse_if_abandoned()  # before each member: the last one may have hung
            try:
                return self.api(site_name).patch_config(member.api_url, patch, member.name)
            except UnreachableError as exc:
                errors.append(exc)
        message = f"no member of {site_name} accepted PATCH /config: " + "; ".join(map(str, errors))
        if errors and all(isinstance(e, PatroniRefused) for e in errors):
            raise PatroniRefused(message)  # every member answered no: nothing can land later
        raise UnreachableError(message)

    def config(self, site_name: str) -> dict[str, Any]:
        """The site's dynamic config from whichever member answers first (all read the same DCS
        key): a frozen member costs nothing while another answers."""
        self._claims.refuse_if_abandoned()
        api, members = self.api(site_name), self.site(site_name).members
        return first_answer(
            {m.name: partial(api.get, m.api_url, "/config", m.name) for m in members},
            f"no member of {site_name} answered GET /config",
            2 * self.timeout + 1,
        )

    def cluster(self, site_name: str) -> dict[str, Any]:
        """GET /cluster from whichever member answers first: the DCS view, i.e. what each
        member's Patroni wrote in its last loop (its state, timeline, receive/replay LSN)."""
        self._claims.refuse_if_abandoned()
        api, members = self.api(site_name), self.site(site_name).members
        return first_answer(
            {m.name: partial(api.get, m.api_url, "/cluster", m.name) for m in members},
            f"no member of {site_name} answered GET /cluster",
            2 * self.timeout + 1,
        )

    def site_roles(self, site_name: str) -> dict[str, str | None]:
        """Each member's role by its own word; None when it does not answer."""
        roles: dict[str, str | None] = {}
        for member in self.site(site_name).members:
            try:
                role = self.patroni(member.name).get("role")
                roles[member.name] = "primary" if role == "master" else role
            except UnreachableError:
                roles[member.name] = None
        return roles

    # ---- PostgreSQL --------------------------------------------------------------------------
    def query(self, member_name: str, sql: str, params: Any = None) -> list[tuple]:
        """Run one query on a member over a kept-open connection; reconnect once if it broke.
        The raw form under the typed reads below, which are what steps use."""
        self._claims.refuse_if_abandoned()
        for attempt in (1, 2):
            conn = self._pg_connection(member_name)
            still_running: list[bool] = []  # then the query's own thread closes it when done
            with self._claims.using(self._pg, member_name, conn, close=_close_unless_running(still_running)):
                try:
                    # statement_timeout ends a slow statement on the server; only this deadline
                    # ends one on a frozen server (whose kernel keeps the connection up).
                    # partial binds this attempt's connection (a lambda would read the loop variable late).
                    return call_with_deadline(
                        partial(_fetch, conn, sql, params),
                        self.timeout + QUERY_GRACE_SECONDS,
                        cleanup=partial(_close_quietly, conn),
                    )
                except NoAnswer as exc:
                    still_running.append(True)
                    self._claims.forget(self._pg, member_name, conn)
                    raise UnreachableError(
                        f"{member_name}: PostgreSQL gave no answer ({exc}); is the host frozen or cut off?"
                    ) from None
                except psycopg.OperationalError as exc:
                    self._drop_pg(member_name, conn)
                    if attempt == 2:
                        raise UnreachableError(f"{member_name}: PostgreSQL query failed ({_first_line(exc)})") from None
                except psycopg.Error as exc:
                    raise UnreachableError(f"{member_name}: PostgreSQL query failed ({_first_line(exc)})") from None
        return []

    def _pg_connection(self, member_name: str) -> psycopg.Connection:
        conn = self._pg.get(member_name)
        if conn is not None and not conn.closed:
            return conn
        _, member = self.member(member_name)
        creds = self.inventory.credentials.superuser
        try:
            args = connect_args(member, creds, self.timeout, kept_open=True)
        except (OSError, LookupError, UnicodeError) as exc:
            # Read at every new connection, so a secret rotated (or removed) mid-run shows here.
            raise UnreachableError(
                f"{member_name}: cannot read the superuser password {creds.password} ({_first_line(exc)})"
            ) from None
        try:
            conn = psycopg.connect(**args)
        except psycopg.Error as exc:
            raise UnreachableError(f"{member_name}: cannot connect to PostgreSQL ({_first_line(exc)})") from None
        self._claims.keep(self._pg, member_name, conn)
        return conn

    def _drop_pg(self, member_name: str, conn: psycopg.Connection | None = None) -> None:
        """Forget and close the member's connection (only `conn`, when given: another thread
        may have put a fresh one in its place)."""
        if conn is None:
            conn = self._pg.pop(member_name, None)
        else:
            self._claims.forget(self._pg, member_name, conn)
        if conn is not None:
            _close_quietly(conn)

    def abandon(self, thread: threading.Thread) -> None:
        """A wait gave up on a probe running in `thread` (it may hang on a frozen host): drop
        every connection it is using, so no later call reuses one, and let it keep nothing."""
        self._claims.abandon(thread)

    def writable(self, site_name: str) -> list[str]:
        """The members of a site that answer pg_is_in_recovery() false, by their own word."""
        return [m.name for m in self.site(site_name).members if self.in_recovery(m.name) is False]

    def in_recovery(self, member_name: str) -> bool | None:
        """True/False from the member itself; None when it does not answer (it writes nothing)."""
        try:
            rows = self.query(member_name, sql.IN_RECOVERY)
        except UnreachableError:
            return None
        return sql.parse_in_recovery(member_name, rows)

    # Typed reads: UnreachableError when the member does not answer, UnexpectedRow (see
    # pg_queries) when it answers something the query cannot return.
    def replay_lsn(self, member_name: str) -> int | None:
        """pg_last_wal_replay_lsn(); None when the member is not in recovery or replayed nothing."""
        return sql.parse_optional_lsn(member_name, "the replay LSN", self.query(member_name, sql.REPLAY_LSN))

    def replay_position(self, member_name: str) -> ReplayPosition:
        """The replay LSN and the timeline it is replayed on (see pg_queries.REPLAY_POSITION)."""
        return sql.parse_replay_position(member_name, self.query(member_name, sql.REPLAY_POSITION))

    def wal_head(self, member_name: str) -> int:
        """pg_current_wal_lsn() of a primary (a standby refuses: UnreachableError)."""
        rows = self.query(member_name, sql.WAL_HEAD)
        return sql.parse_lsn(member_name, "the current WAL LSN", rows)

    def timeline(self, member_name: str) -> int:
        """The live timeline: a primary's current one, or the one a standby replays."""
        return sql.parse_timeline(member_name, self.query(member_name, TIMELINE_QUERY))

    def wal_receiver(self, member_name: str) -> WalReceiver | None:
        """The member's WAL receiver; None when it runs none."""
        return sql.parse_wal_receiver(member_name, self.query(member_name, sql.WAL_RECEIVER))

    def history_file(self, member_name: str, timeline: int) -> str:
        """The text of a timeline's .history file in the member's pg_wal (UnreachableError when
        it has none: pg_read_file fails)."""
        path = sql.history_path(timeline)
        return sql.parse_file(member_name, path, self.query(member_name, sql.READ_FILE, (path,)))

    def slot_exists(self, member_name: str, slot: str) -> bool:
        return sql.parse_slot_exists(member_name, slot, self.query(member_name, sql.SLOT_EXISTS, (slot,)))

    def slot_active(self, member_name: str, slot: str) -> bool:
        """Whether a walsender uses the slot now; False when the slot does not exist."""
        return sql.parse_slot_active(member_name, slot, self.query(member_name, sql.SLOT_ACTIVE, (slot,)))

    def basebackup_progress(self, member_name: str) -> BaseBackupProgress | None:
        """The base backup the member serves now; None when it serves none."""
        return sql.parse_basebackup_progress(member_name, self.query(member_name, sql.BASEBACKUP_PROGRESS))

    def emit_wal_message(self, member_name: str, prefix: str, text: str) -> int:
        """Write a transactional logical message (`text` followed by the time) on a primary: a WAL
        record and its LSN, and no row in any database."""
        rows = self.query(member_name, sql.EMIT_MESSAGE, (prefix, text))
        return sql.parse_lsn(member_name, "the message's LSN", rows)

    # ---- SSH ---------------------------------------------------------------------------------
    def _session(self, member_name: str) -> SshSession:
        with self._new_session:  # no I/O inside: the session connects on its first command
            session = self._ssh.get(member_name)
            if session is None:
                site, member = self.member(member_name)
                session = SshSession(member.name, site.ssh_for(member), self.timeout)
                self._claims.keep(self._ssh, member_name, session)
        return session

    def ssh(self, member_name: str, command: str, timeout: float | None = None, stdin: str | None = None):
        self._claims.refuse_if_abandoned()
        session = self._session(member_name)
        with self._claims.using(self._ssh, member_name, session):
            try:
                return session.run(command, timeout=timeout, stdin=stdin)
            except UnreachableError:
                self._claims.forget(self._ssh, member_name, session)
                session.close()
                raise

    def ssh_read(self, member_name: str, command: str):
        """A read-only command over the kept-open session, run once more on a fresh session when
        the kept one fails: it may have gone stale while idle (say, while the operator read the
        plan before confirming), and running a read twice changes nothing."""
        try:
            return self.ssh(member_name, command)
        except UnreachableError:
            return self.ssh(member_name, command)  # `ssh` dropped the failed session: a new one

    def start_remote(self, key: str, member_name: str, command: str, timeout: float, stdin: str | None = None) -> None:
        """Start a command on a host now and collect it later with `finish_remote(key)`: a wait
        that runs on the host answers the moment its condition holds, with no round trip
        (an SSH exec costs 0.1-0.2 s) inside the write-unavailability window."""
        self._claims.refuse_if_abandoned()
        session = self._session(member_name)
        self._pending[key] = (session, session.start(command, timeout=timeout, stdin=stdin), timeout)

    def finish_remote(self, key: str):
        """The result of a command started with `start_remote`, or None if none was started."""
        pending = self._pending.pop(key, None)
        if pending is None:
            return None
        session, channel, timeout = pending
        return session.finish(channel, timeout=timeout + 5)

    def close(self) -> None:
        for name in list(self._pg):
            self._drop_pg(name)
        for session in self._ssh.values():
            session.close()
        self._ssh.clear()


def controldata_wait_command(live: Live, member: str, bin_dir: str, data_dir: str, seconds: float) -> str:
    """Shell that prints pg_controldata once the cluster is neither "in production" nor "shutting
    down" (so: shut down, or already restarted in recovery, which read_token tells apart). The
    same command preflight runs once on the source leader (check `token-readable`)."""
    site, found = live.member(member)
    return controldata_command(site.ssh_for(found).user, bin_dir, data_dir, seconds, wait=True)


def _fetch(conn: psycopg.Connection, sql: str, params: Any) -> list[tuple]:
    cur = conn.execute(sql, params)
    return cur.fetchall() if cur.description else []


def _close_quietly(conn: psycopg.Connection) -> None:
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - it is broken already
        pass


def _close_unless_running(still_running: list[bool]) -> Callable[[psycopg.Connection], None]:
    """A close for Claims.using bound to this attempt's flag: a connection whose query still
    runs (`still_running` not empty) is left to the query's own thread to close."""

    def close(conn: psycopg.Connection) -> None:
        if not still_running:
            _close_quietly(conn)

    return close


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
