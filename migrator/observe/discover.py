"""What `migrate init` learns from one Patroni REST URL per site (and, given the superuser's
secret reference, from PostgreSQL itself).

Read-only. Every answer is untrusted: a value of the wrong type or shape is refused with one line
naming the site, the URL and what was wrong (a `UsageError`, exit 2: the operator gave a URL
that is not a usable Patroni). A site URL that does not answer is the same kind of error.
What REST cannot show (SSH access, secrets, the DCS endpoints, the namespace) is left to the
caller, which writes it as a marked placeholder.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace as _replace
from typing import Any
from urllib.parse import urlsplit

from migrator.adapters.dcs import Etcd3Dcs
from migrator.adapters.patroni import PatroniApi
from migrator.adapters.pg import PostgresProbe, probe_args
from migrator.errors import MigratorError, UsageError, shown
from migrator.model.discovered import DiscoveredMember, DiscoveredSite
from migrator.model.secrets import SecretRef

SITE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
MEMBER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SLOT_NAME = re.compile(r"[a-z0-9_]{1,63}")
HOST = re.compile(r"[^\s/,]+")
ROLE = re.compile(r"[a-z_]{1,40}")
VERSION = re.compile(r"[0-9A-Za-z.+-]{1,40}")
# A REST answer never lists more members than this; more is not a Patroni cluster we can trust.
MAX_MEMBERS = 64


def parse_site_options(values: list[str], option: str = "--site") -> dict[str, str]:
    """`dc1=URL` pairs, in the order given; a bad one is a UsageError naming it and the fix."""
    sites: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name or not url:
            raise UsageError(f"{option} '{shown(value)}' is not NAME=URL; write it like {option} dc1=http://db1:8008")
        if not SITE_NAME.fullmatch(name):
            raise UsageError(
                f"{option} '{shown(value)}': site name '{shown(name)}' is not valid; use lowercase letters, "
                "digits, '-' and '_'"
            )
        parts = urlsplit(url)
        try:
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            parts = parts._replace(netloc="")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                f"{option} '{shown(value)}': '{shown(url)}' is not an http(s) URL; write it like "
                f"{name}=http://db1.example.net:8008"
            )
        if name in sites:
            raise UsageError(f"{option}: site '{name}' is given twice; give each site once")
        sites[name] = url.rstrip("/")
    return sites


def discover(
    site_urls: dict[str, str],
    timeout: float,
    superuser: tuple[str, SecretRef] | None = None,
    ca_file: str | None = None,
) -> list[DiscoveredSite]:
    """Every site read in parallel, then related to each other (who follows whom, which slot)."""
    if len(site_urls) < 2:
        raise UsageError(
            f"init needs one --site per site, at least two (got {len(site_urls)}); write --site dc1=URL --site dc2=URL"
        )
    password = _reveal(superuser[1]) if superuser is not None else None  # before any network call
    api = PatroniApi(timeout=timeout, ca_file=ca_file)
    with ThreadPoolExecutor(max_workers=len(site_urls)) as pool:
        futures = {name: pool.submit(read_site, api, name, url) for name, url in site_urls.items()}
        sites = [futures[name].result() for name in site_urls]
    seen: dict[str, str] = {}
    for site in sites:
        for member in site.members:
            if (other := seen.setdefault(member.name, site.name)) != site.name:
                raise UsageError(
                    f"--site {other} and --site {site.name} both list member {member.name}: they are the same "
                    "Patroni cluster; give one REST URL of each site's own cluster"
                )
    if superuser is not None and password is not None:
        sites = [_with_server_paths(site, superuser[0], password, timeout) for site in sites]
    return relate(sites)


def look_up_in_dcs(site: DiscoveredSite, endpoints: list[str], namespace: str, timeout: float) -> DiscoveredSite:
    """Ask the site's etcd whether Patroni's keys sit under namespace + scope (REST does not show
    the namespace); an etcd that does not answer leaves it unknown and says why in a note."""
    try:
        snapshot = Etcd3Dcs(endpoints, timeout).snapshot(namespace, site.scope)
    except MigratorError:
        # The library's retry chain says nothing more useful to the operator than this.
        note = f"the namespace: etcd at {', '.join(endpoints)} did not answer"
        return _replace(site, notes=(*site.notes, note))
    return _replace(site, namespace_in_dcs=any(k == "leader" or k.startswith("members/") for k in snapshot.keys))


def read_site(api: PatroniApi, name: str, url: str) -> DiscoveredSite:
    where = f"site {name} ({url})"

    def get(path: str) -> dict[str, Any]:
        try:
            answer = api.get(url, path, f"site {name}")
        except MigratorError as exc:
            raise UsageError(f"{exc}; check --site {name}=URL") from None
        if not isinstance(answer, dict):
            raise UsageError(f"{where}: GET {path} did not answer a JSON object; is that Patroni's REST API?")
        return answer

    patroni, cluster, config = get("/patroni"), get("/cluster"), get("/config")
    own = _mapping(patroni.get("patroni"), f"{where}: GET /patroni 'patroni'")
    scope = _text(own.get("scope") or cluster.get("scope"), f"{where}: the Patroni scope")
    raw_members = cluster.get("members")
    if not isinstance(raw_members, list) or not raw_members or len(raw_members) > MAX_MEMBERS:
        raise UsageError(f"{where}: GET /cluster listed no members (or not a list of at most {MAX_MEMBERS})")
    members = tuple(_member(raw, f"{where}: GET /cluster members[{i}]") for i, raw in enumerate(raw_members))
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise UsageError(f"{where}: GET /cluster lists a member name twice; is the DCS in a sane state?")
    slots = _mapping(config.get("slots") or {}, f"{where}: GET /config 'slots'")
    standby = config.get("standby_cluster")
    standby_hosts: tuple[str, ...] = ()
    standby_slot = None
    if standby is not None:
        standby = _mapping(standby, f"{where}: GET /config 'standby_cluster'")
        host = standby.get("host")
        if isinstance(host, str):
            standby_hosts = tuple(h.strip() for h in host.split(",") if HOST.fullmatch(h.strip()))
        slot = standby.get("primary_slot_name")
        if isinstance(slot, str) and SLOT_NAME.fullmatch(slot):
            standby_slot = slot
    identifier = patroni.get("database_system_identifier")
    version = own.get("version")
    return DiscoveredSite(
        name=name,
        url=url,
        scope=scope,
        members=members,
        patroni_version=version if isinstance(version, str) and VERSION.fullmatch(version) else None,
        system_identifier=identifier if isinstance(identifier, str) and identifier.isdigit() else None,
        slots=tuple(s for s in slots if isinstance(s, str) and SLOT_NAME.fullmatch(s)),
        standby_hosts=standby_hosts,
        standby_slot=standby_slot,
        replication_user=_replication_user([patroni, *_members_own_state(api, name, members, url)]),
    )


def _members_own_state(api: PatroniApi, site: str, members: tuple[DiscoveredMember, ...], seed: str) -> list[Any]:
    """Every other member's own GET /patroni, best effort: only a primary (or a standby leader
    with cascading replicas) lists its walsenders, which name the replication role."""
    others = [m for m in members if m.api_url and m.api_url != seed]

    def own(member: DiscoveredMember) -> Any:
        try:
            return api.get(member.api_url or "", "/patroni", f"site {site} member {member.name}")
        except MigratorError:
            return None  # a silent member hides nothing the inventory needs

    if not others:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(others))) as pool:
        return list(pool.map(own, others))


def relate(sites: list[DiscoveredSite]) -> list[DiscoveredSite]:
    """Who follows whom (a standby's standby_cluster hosts are the other site's members), and the
    slot each site's standby leader consumes: a standby names it in standby_cluster; the primary
    site's is the permanent slot its follower keeps for it (patroni-facts: slot named after the
    site that consumes it)."""
    related = []
    for site in sites:
        follows = None
        if site.standby_hosts:
            for other in sites:
                if other is not site and set(site.standby_hosts) & {m.host for m in other.members}:
                    follows = other.name
        slot = site.standby_slot
        if slot is None:
            followers = [o for o in sites if o is not site and set(o.standby_hosts) & {m.host for m in site.members}]
            kept = {s for o in followers for s in o.slots}
            if len(kept) == 1:
                slot = kept.pop()
        related.append(_replace(site, follows=follows, replication_slot=slot))
    return related


def _reveal(ref: SecretRef) -> str:
    try:
        return ref.reveal()
    except (OSError, LookupError) as exc:
        raise UsageError(
            f"--superuser-password {ref}: cannot read it ({exc}); set it or leave the option out"
        ) from None


def _with_server_paths(site: DiscoveredSite, user: str, password: str, timeout: float) -> DiscoveredSite:
    """Each member's data directory and BINDIR from PostgreSQL; a member that does not answer
    keeps None (written as a CHECK default), it does not stop init."""
    notes = list(site.notes)

    def paths(member: DiscoveredMember) -> DiscoveredMember:
        probe = PostgresProbe(probe_args(member.host, member.pg_port, user, password, timeout))
        try:
            found = probe.server_paths(member.name)
        except MigratorError as exc:
            notes.append(f"{member.name}: {exc}")
            return member
        return _replace(member, data_dir=found["data_dir"], bin_dir=found["bin_dir"])

    with ThreadPoolExecutor(max_workers=min(8, len(site.members))) as pool:
        members = tuple(pool.map(paths, site.members))
    return _replace(site, members=members, notes=tuple(notes))


def _member(raw: Any, where: str) -> DiscoveredMember:
    entry = _mapping(raw, where)
    name = _text(entry.get("name"), f"{where} name")
    if not MEMBER_NAME.fullmatch(name):
        raise UsageError(f"{where}: member name '{shown(name)}' is not a usable name")
    host = _text(entry.get("host"), f"{where} ({name}) host")
    if not HOST.fullmatch(host):
        raise UsageError(f"{where}: host '{shown(host)}' of {name} is not a host name or address")
    port = entry.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UsageError(f"{where}: port of {name} is not a port number")
    api_url = entry.get("api_url")
    if isinstance(api_url, str) and urlsplit(api_url).scheme in ("http", "https") and urlsplit(api_url).hostname:
        # /cluster shows the member's /patroni endpoint; the inventory wants the API's base.
        api_url = re.sub(r"/patroni/?$", "", api_url.strip()).rstrip("/")
    else:
        api_url = None
    role = entry.get("role")
    return DiscoveredMember(
        name=name,
        host=host,
        pg_port=port,
        api_url=api_url,
        role=role if isinstance(role, str) and ROLE.fullmatch(role) else None,
    )


def _replication_user(answers: list[Any]) -> str | None:
    """The replication role, as walsenders show it in GET /patroni (a primary's, or a standby
    leader's with cascading replicas); None unless exactly one role streams."""
    users = {
        r.get("usename")
        for answer in answers
        if isinstance(answer, dict) and isinstance(answer.get("replication"), list)
        for r in answer["replication"]
        if isinstance(r, dict) and isinstance(r.get("usename"), str) and r["usename"].strip()
    }
    return users.pop() if len(users) == 1 else None


def _mapping(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{what} is not a JSON object; is that Patroni's REST API?")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise UsageError(f"{what} is missing or not text in the REST answer; is that Patroni's REST API?")
    return value.strip()
