"""What every step is made of, and the live connections steps share.

A step has four parts (ansible's check mode, made explicit): `precheck` says whether the change is
already in place (so applying it again changes nothing, and a resumed run never repeats a
demotion or a promotion), `apply` makes the change, `gate` waits with a deadline until the change
took effect and returns the facts it learned, `undo` reverses it where that is possible.

Between demotion and promotion every millisecond is write unavailability, so steps poll over
connections that stay open (one psycopg connection per member, one SSH session per host) instead
of re-observing the whole service.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import psycopg

from migrator.adapters.patroni import PatroniApi
from migrator.adapters.ssh import SshSession
from migrator.bounded import PENDING, ProbeWorker
from migrator.errors import GateTimeout, MigratorError, UnreachableError
from migrator.inventory import Inventory, Member, Site
from migrator.observe import observe, patroni_api
from migrator.plan import Plan, PlanStep, deadline_seconds
from migrator.state import ServiceState

Progress = Callable[[str], None]


class Live:
    """Open connections to every member, reused by every step of a run."""

    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self.timeout = inventory.gates.connect_timeout_seconds
        self._apis: dict[str, PatroniApi] = {}
        self._pg: dict[str, psycopg.Connection] = {}
        self._ssh: dict[str, SshSession] = {}
        self._pending: dict[str, tuple] = {}
        # Which thread uses which kept-open connection, so a probe abandoned at its wait's
        # deadline (migrator/bounded.py) can have its connections dropped, and its thread never
        # puts one back.
        self._guard = threading.Lock()
        self._claims: dict[threading.Thread, list[tuple[dict, str, Any]]] = {}
        self._abandoned: weakref.WeakSet[threading.Thread] = weakref.WeakSet()

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
        site_name, _, member = self.inventory.member(member_name)
        return self.api(site_name).get(member.api_url, "/patroni", member.name)

    def patch_config(self, site_name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """PATCH /config on the first member that answers (any member accepts it)."""
        errors = []
        for member in self.site(site_name).members:
            try:
                return self.api(site_name).patch_config(member.api_url, patch, member.name)
            except UnreachableError as exc:
                errors.append(str(exc))
        raise UnreachableError(f"no member of {site_name} accepted PATCH /config: " + "; ".join(errors))

    def config(self, site_name: str) -> dict[str, Any]:
        errors = []
        for member in self.site(site_name).members:
            try:
                return self.api(site_name).get(member.api_url, "/config", member.name)
            except UnreachableError as exc:
                errors.append(str(exc))
        raise UnreachableError(f"no member of {site_name} answered GET /config: " + "; ".join(errors))

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
        """Run one query on a member over a kept-open connection; reconnect once if it broke."""
        for attempt in (1, 2):
            conn = self._pg_connection(member_name)
            with self._claim(self._pg, member_name, conn):
                try:
                    cur = conn.execute(sql, params)
                    return cur.fetchall() if cur.description else []
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
            conn = psycopg.connect(host=member.host, port=member.pg_port, user=creds.username,
                                   password=creds.password.reveal(), dbname="postgres", autocommit=True,
                                   application_name="migrator", **kept_open_options(self.timeout))
        except psycopg.Error as exc:
            raise UnreachableError(f"{member_name}: cannot connect to PostgreSQL ({_first_line(exc)})") from None
        self._keep(self._pg, member_name, conn)
        return conn

    def _drop_pg(self, member_name: str, conn: psycopg.Connection | None = None) -> None:
        """Forget and close the member's connection (only `conn`, when given: another thread
        may have put a fresh one in its place)."""
        with self._guard:
            if conn is None:
                conn = self._pg.pop(member_name, None)
            elif self._pg.get(member_name) is conn:
                del self._pg[member_name]
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - it is broken already
                pass

    # ---- connections held by probes that were given up on ------------------------------------
    def _keep(self, registry: dict[str, Any], key: str, resource: Any) -> None:
        """Keep a new connection for reuse, unless an abandoned thread made it (it is that
        thread's alone, closed when its call ends)."""
        with self._guard:
            if threading.current_thread() not in self._abandoned:
                registry[key] = resource

    @contextmanager
    def _claim(self, registry: dict[str, Any], key: str, resource: Any) -> Iterator[None]:
        """Mark `resource` in use by this thread for the duration of one call."""
        me, entry = threading.current_thread(), (registry, key, resource)
        with self._guard:
            self._claims.setdefault(me, []).append(entry)
        try:
            yield
        finally:
            with self._guard:
                claims = self._claims.get(me, [])
                if entry in claims:
                    claims.remove(entry)
                if not claims:
                    self._claims.pop(me, None)
                given_up = me in self._abandoned
            if given_up and registry is self._pg:
                resource.close()  # nobody else holds it any more (abandon() took it out)

    def abandon(self, thread: threading.Thread) -> None:
        """A wait gave up on a probe running in `thread` (it may hang on a frozen host): drop
        every connection it is using, so no later call reuses one, and let it keep nothing."""
        with self._guard:
            self._abandoned.add(thread)
            for registry, key, resource in self._claims.get(thread, []):
                if registry.get(key) is resource:
                    del registry[key]

    def writable(self, site_name: str) -> list[str]:
        """The members of a site that answer pg_is_in_recovery() false, by their own word."""
        return [m.name for m in self.site(site_name).members if self.in_recovery(m.name) is False]

    def in_recovery(self, member_name: str) -> bool | None:
        """True/False from the member itself; None when it does not answer (it writes nothing)."""
        try:
            return self.query(member_name, "SELECT pg_is_in_recovery()")[0][0]
        except UnreachableError:
            return None

    # ---- SSH ---------------------------------------------------------------------------------
    def _session(self, member_name: str) -> SshSession:
        session = self._ssh.get(member_name)
        if session is None:
            site, member = self.member(member_name)
            session = SshSession(member.name, site.ssh_for(member), self.timeout)
            self._keep(self._ssh, member_name, session)
        return session

    def ssh(self, member_name: str, command: str, timeout: float | None = None, stdin: str | None = None):
        session = self._session(member_name)
        with self._claim(self._ssh, member_name, session):
            try:
                return session.run(command, timeout=timeout, stdin=stdin)
            except UnreachableError:
                with self._guard:
                    if self._ssh.get(member_name) is session:
                        del self._ssh[member_name]
                session.close()
                raise

    def start_remote(self, key: str, member_name: str, command: str, timeout: float) -> None:
        """Start a command on a host now and collect it later with `finish_remote(key)`: a wait
        that runs on the host answers the moment its condition holds, with no round trip
        (an SSH exec costs 0.1-0.2 s) inside the write-unavailability window."""
        session = self._session(member_name)
        self._pending[key] = (session, session.start(command, timeout=timeout), timeout)

    def finish_remote(self, key: str):
        """The result of a command started with `start_remote`, or None if none was started."""
        pending = self._pending.pop(key, None)
        if pending is None:
            return None
        session, channel, timeout = pending
        return session.finish(channel, timeout=timeout + 5)

    def observe(self) -> ServiceState:
        return observe(self.inventory, host_facts=False)

    def close(self) -> None:
        for name in list(self._pg):
            self._drop_pg(name)
        for session in self._ssh.values():
            session.close()
        self._ssh.clear()


@dataclass
class RunContext:
    inventory: Inventory
    plan: Plan
    live: Live
    facts: dict[str, Any] = field(default_factory=dict)  # learned by earlier steps, by step id
    resumed_steps: set[str] = field(default_factory=set)  # started by an earlier run of this migration
    progress: Progress = lambda text: None
    journal_sample: Callable[..., None] = lambda **fields: None


class Step:
    kind: ClassVar[str]
    # The change happens in `apply`; a step without a change only waits (gate).
    changes_state: ClassVar[bool] = False

    def __init__(self, spec: PlanStep, ctx: RunContext):
        self.spec = spec
        self.args = spec.args
        self.ctx = ctx
        self.live = ctx.live

    @property
    def timeout(self) -> float:
        return deadline_seconds(self.spec, self.ctx.inventory.gates.connect_timeout_seconds)

    def precheck(self) -> bool:
        """True when the change is already in place: apply is skipped, the gate still runs."""
        return not self.changes_state

    def apply(self) -> dict[str, Any]:
        return {}

    def gate(self) -> dict[str, Any]:
        return {}

    def undo(self, facts: dict[str, Any]) -> bool:
        """Reverse this step's change; True when something was changed back."""
        return False

    # ---- helpers -----------------------------------------------------------------------------
    def warm_up_switchover_connections(self) -> None:
        """Open now what the steps inside the write-unavailability window poll (SSH to the old
        primary for its pg_control, PostgreSQL on the target's standby leader), so the window
        does not pay for a handshake or a login."""
        from migrator.steps.switchover import controldata_wait_command

        for spec in self.ctx.plan.steps:
            if spec.kind == "read_token":
                # Waits on the host for pg_control to leave "in production"; read by read_token.
                self.live.start_remote(spec.id, spec.args["member"], controldata_wait_command(
                    self.live, spec.args["member"], spec.args["bin_dir"], spec.args["data_dir"], spec.gate.timeout_seconds),
                    timeout=spec.gate.timeout_seconds)
            elif spec.kind == "wait_replay_past_token":
                self.live.in_recovery(spec.args["member"])

    def wait(self, probe: Callable[[], Any], what: str, interval: float = 0.05,
             timeout: float | None = None, describe: Callable[[], str] | None = None) -> Any:
        """Poll `probe` until truthy; GateTimeout naming `what` (and the last reason) at the deadline.

        The deadline holds even while a probe hangs on a black-holed host: probes run in a
        worker thread (migrator/bounded.py) and one still running at the deadline is abandoned,
        its connections dropped from `Live`."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        last_error = ""
        next_report = 0.0
        # Test doubles of Live may lack `abandon`: then an abandoned probe just keeps its connection.
        with ProbeWorker(getattr(self.live, "abandon", lambda thread: None)) as worker:
            while True:
                if not worker.busy:
                    worker.submit(probe)
                try:
                    # Wake for the deadline, or once a second to report a probe in flight.
                    until = min(deadline, max(next_report, (worker.busy_since or 0.0) + 1.0))
                    result = worker.result(until - time.monotonic())
                    if result is not PENDING and result:
                        return result
                except MigratorError as exc:
                    last_error = str(exc)
                now = time.monotonic()
                in_flight = now - worker.busy_since if worker.busy_since is not None else None
                if now >= next_report and (in_flight is None or in_flight >= 1.0):
                    detail = describe() if describe else last_error
                    if in_flight is not None:
                        detail = f"no answer for {in_flight:.0f}s" + (f"; {detail}" if detail else "")
                    self.ctx.progress(f"{what} ({deadline - now:.0f}s left){': ' + detail if detail else ''}")
                    self.ctx.journal_sample(step=self.spec.id, waiting_for=what, detail=detail,
                                            seconds_left=round(deadline - now, 1))
                    next_report = now + 1.0
                if now >= deadline:
                    if in_flight is not None:
                        last_error = f"a probe got no answer for {in_flight:.0f}s" + (
                            f" (before it: {last_error})" if last_error else "")
                    reason = f"; last: {last_error}" if last_error else ""
                    if not reason and describe is not None:
                        reason = f"; last seen: {describe()}"  # the operator's next step starts here
                    raise GateTimeout(f"step {self.spec.id}: gave up after {limit:.0f}s waiting for {what}{reason}")
                if not worker.busy:
                    time.sleep(interval)


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


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__

