"""Build one immutable ServiceState from everything the sites can tell, read-only and in parallel.

Every member of every site is probed at once (Patroni REST, PostgreSQL, optionally SSH), each
call with its own timeout. A probe that fails becomes an `*_error` string in the snapshot; nothing
is raised past this module, so one dead host never hides what the others say.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from io import StringIO
from typing import Any

from ruamel.yaml import YAML

from migrator.adapters.dcs import site_dcs
from migrator.adapters.patroni import PatroniApi, patroni_api
from migrator.adapters.pg import PostgresProbe, connect_args
from migrator.adapters.remote import controldata_command
from migrator.adapters.ssh import SshResult, SshSession
from migrator.errors import MigratorError
from migrator.model.inventory import Inventory, Member, Site
from migrator.model.state import (
    DcsState,
    HostFacts,
    MemberState,
    PatroniState,
    PostgresState,
    ServiceState,
    SiteState,
)
from migrator.observe.controldata import controldata_failure, parse_controldata

MAX_PARALLEL = 32
HOST_FACTS_SEPARATOR = "--- migrator: patroni.yml ---"
CONTROLDATA_EXIT_MARKER = "--- migrator: pg_controldata exit"


def _outcome(future: Future) -> tuple[Any, str | None]:
    """(result, None) or (None, one-line error) — failures are data here."""
    try:
        return future.result(), None
    except MigratorError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - an unexpected probe failure is still only a finding
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


# Runs one command on a member's host over an open SSH session: (member name, command) -> result.
RunSsh = Callable[[str, str], SshResult]


class Observer:
    def __init__(self, inventory: Inventory, host_facts: bool = True, run_ssh: RunSsh | None = None):
        self.inventory = inventory
        self.host_facts = host_facts
        # A run's kept-open SSH sessions (Live.ssh: member name, command), so that the preflight
        # step's observation pays no handshake and leaves the sessions warm for the steps after
        # it; None: a session of its own per host, closed after the command.
        self.run_ssh = run_ssh
        self.timeout = inventory.gates.connect_timeout_seconds

    def observe(self) -> ServiceState:
        with ThreadPoolExecutor(max_workers=MAX_PARALLEL) as pool:
            pending = {name: self._submit_site(pool, name, site) for name, site in self.inventory.sites.items()}
            sites = {name: self._collect_site(name, self.inventory.sites[name], jobs) for name, jobs in pending.items()}
        return ServiceState(
            service=self.inventory.service,
            observed_at=datetime.now(UTC).isoformat(timespec="milliseconds"),
            sites=sites,
        )

    # ---- submit every probe first, so that all of them run at once -----------------------
    def _submit_site(self, pool: ThreadPoolExecutor, name: str, site: Site) -> dict[str, Any]:
        api = patroni_api(site, self.timeout)
        jobs: dict[str, Any] = {
            "dcs": pool.submit(self._dcs, name, site),
            "site_api": pool.submit(self._site_api, api, site),
            "members": {},
        }
        for member in site.members:
            jobs["members"][member.name] = {
                "patroni": pool.submit(api.get, member.api_url, "/patroni", member.name),
                "postgres": pool.submit(self._postgres, member),
                "host": pool.submit(self._host_facts, site, member) if self.host_facts else None,
            }
        return jobs

    def _dcs(self, name: str, site: Site) -> Any:
        return site_dcs(site, self.timeout, name).snapshot(site.namespace, site.scope)

    def _site_api(self, api: PatroniApi, site: Site) -> dict[str, Any]:
        """/config, /cluster and /history from the first member that answers."""
        errors = []
        for member in site.members:
            try:
                return {
                    path: api.get(member.api_url, f"/{path}", member.name) for path in ("config", "cluster", "history")
                }
            except MigratorError as exc:
                errors.append(str(exc))
        raise MigratorError(f"no member of site {site.scope} answered on its REST API: " + "; ".join(errors))

    def _postgres(self, member: Member) -> dict[str, Any]:
        probe = PostgresProbe(connect_args(member, self.inventory.credentials.superuser, self.timeout, kept_open=False))
        return probe.observe(member.name)

    def _host_facts(self, site: Site, member: Member) -> HostFacts:
        # One command, one round trip: pg_controldata (the token step's very command, run once),
        # its exit code, a separator, then the watchdog mode.
        read = controldata_command(
            site.ssh_for(member).user, site.postgres.bin_dir, site.data_dir_for(member), self.timeout, wait=False
        )
        command = (
            f'{read}; echo "{CONTROLDATA_EXIT_MARKER} $?"; echo {HOST_FACTS_SEPARATOR}; '
            f"cat {shlex.quote(site.patroni_config_for(member))}"
        )
        if self.run_ssh is not None:
            result = self.run_ssh(member.name, command)
        else:
            with SshSession(member.name, site.ssh_for(member), self.timeout) as ssh:
                result = ssh.run(command)
        control, _, rest = result.stdout.partition(CONTROLDATA_EXIT_MARKER + " ")
        code, _, rest = rest.partition("\n")
        _, _, config = rest.partition(HOST_FACTS_SEPARATOR + "\n")
        return HostFacts(
            controldata=parse_controldata(control),
            controldata_error=controldata_failure(code, result.stderr),
            watchdog_mode=watchdog_mode(config) if config.strip() else None,
        )

    # ---- gather ----------------------------------------------------------------------------
    def _collect_site(self, name: str, site: Site, jobs: dict[str, Any]) -> SiteState:
        dcs_result, dcs_error = _outcome(jobs["dcs"])
        api_result, api_error = _outcome(jobs["site_api"])
        members = tuple(self._collect_member(name, m, jobs["members"][m.name]) for m in site.members)
        dcs = _dcs_state(site, dcs_result, dcs_error)
        config = api_result["config"] if api_result else dcs.config
        return SiteState(
            name=name,
            scope=site.scope,
            dynamic_config=config,
            config_error=api_error if config is None else None,
            cluster=api_result["cluster"] if api_result else None,
            history=api_result["history"] if api_result else None,
            dcs=dcs,
            members=members,
        )

    def _collect_member(self, site_name: str, member: Member, jobs: dict[str, Any]) -> MemberState:
        patroni, patroni_error = _outcome(jobs["patroni"])
        postgres, postgres_error = _outcome(jobs["postgres"])
        host, host_error = _outcome(jobs["host"]) if jobs["host"] is not None else (None, None)
        return MemberState(
            name=member.name,
            site=site_name,
            host=member.host,
            api_url=member.api_url,
            patroni=_patroni_state(patroni) if patroni is not None else None,
            patroni_error=patroni_error,
            postgres=PostgresState.model_validate(postgres) if postgres is not None else None,
            postgres_error=postgres_error,
            host_facts=host,
            host_error=host_error,
        )


def observe(inventory: Inventory, host_facts: bool = True, run_ssh: RunSsh | None = None) -> ServiceState:
    return Observer(inventory, host_facts=host_facts, run_ssh=run_ssh).observe()


def _patroni_state(raw: dict[str, Any]) -> PatroniState:
    return PatroniState(
        role=raw.get("role"),
        state=raw.get("state"),
        timeline=raw.get("timeline"),
        version=(raw.get("patroni") or {}).get("version"),
        pause=bool(raw.get("pause", False)),
        tags=raw.get("tags") or {},
        replication_state=raw.get("replication_state"),
        database_system_identifier=raw.get("database_system_identifier"),
    )


def _dcs_state(site: Site, snap: Any, error: str | None) -> DcsState:
    if snap is None:
        return DcsState(endpoints=tuple(site.dcs.endpoints), healthy=False, error=error)
    keys = snap.keys
    members = {k.split("/", 1)[1]: v for k, v in keys.items() if k.startswith("members/")}
    return DcsState(
        endpoints=tuple(site.dcs.endpoints),
        healthy=snap.healthy,
        cluster_size=snap.cluster_size,
        leader=keys.get("leader"),
        members=members,
        config=_dict_or_none(keys.get("config")),
        status=_dict_or_none(keys.get("status")),
        initialize=str(keys["initialize"]) if "initialize" in keys else None,
        history=keys.get("history") if isinstance(keys.get("history"), list) else None,
        sync=_dict_or_none(keys.get("sync")),
        failover=_dict_or_none(keys.get("failover")),
    )


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def watchdog_mode(patroni_yml: str) -> str:
    """Only the watchdog mode leaves this function: the file also holds passwords."""
    try:
        config = YAML(typ="safe").load(StringIO(patroni_yml)) or {}
    except Exception:  # noqa: BLE001 - an unparsable file is reported as an unknown mode
        return "unknown"
    mode = (config.get("watchdog") or {}).get("mode", "automatic")
    # YAML 1.1 readers (Patroni's) take a bare `off` as False.
    return "off" if mode is False else str(mode)
