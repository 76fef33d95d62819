"""patroni.yml for the members of a site the tool seeds from nothing.

`render_member_config` is pure: it renders templates/patroni.yml.j2 with password placeholders, so
the text can go into a plan, a report and the journal as it is. `reveal` puts the real passwords
in, only in the seeding step, on the way to the host.
"""

from __future__ import annotations

import copy
import io
import json
import posixpath
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from ruamel.yaml import YAML

from migrator.model.inventory import MEMBER_PLACEHOLDER, Inventory, Member
from migrator.model.playbook import TEMPLATE_DIR
from migrator.planning.switchover import standby_cluster_following

SECRET_NAMES = ("restapi", "superuser", "replication")
# Keys of the source's dynamic config that describe the source itself, not the service.
SITE_OWN_KEYS = ("slots", "standby_cluster", "pause", "synchronous_mode", "synchronous_mode_strict", "failsafe_mode")


def placeholder(name: str) -> str:
    return f'"<secret:{name}>"'


def _to_yaml(value: Any, indent: int) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = io.StringIO()
    yaml.dump(json.loads(json.dumps(value)), out)
    pad = " " * indent
    return "\n".join(pad + line for line in out.getvalue().rstrip("\n").splitlines())


@lru_cache(maxsize=1)
def _template() -> Any:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.filters["to_yaml"] = _to_yaml
    return env.from_string((TEMPLATE_DIR / "patroni.yml.j2").read_text(encoding="utf-8"))


def bootstrap_dcs(inventory: Inventory, source: str, target: str, source_config: dict[str, Any]) -> dict[str, Any]:
    """The target's first dynamic config: the source's service-wide settings, the standby_cluster
    section that follows the source, and the slot the source's standby leader uses after the move."""
    dcs = {k: copy.deepcopy(v) for k, v in (source_config or {}).items() if k not in SITE_OWN_KEYS}
    # A site that may have to be rewound one day (after it diverged) needs both from its start;
    # a source that sets them otherwise keeps its own values.
    postgresql = dcs.setdefault("postgresql", {})
    postgresql.setdefault("use_pg_rewind", True)
    postgresql.setdefault("parameters", {}).setdefault("wal_log_hints", True)
    dcs["standby_cluster"] = standby_cluster_following(inventory, target, source)
    source_slot = inventory.site(source).replication_slot or source
    dcs["slots"] = {source_slot: {"type": "physical"}}
    return dcs


def _host_port(url: str, default_port: int) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or default_port}"


def _expand(value: Any, member: Member) -> Any:
    return value.replace(MEMBER_PLACEHOLDER, member.name) if isinstance(value, str) else value


def render_member_config(
    inventory: Inventory, source: str, target: str, member: Member, dcs: dict[str, Any], *, crosses_sites: bool
) -> str:
    """The member's patroni.yml, with "<secret:NAME>" where passwords go.

    `crosses_sites`: this member's base backup comes from the other site (the member started
    first, which becomes the standby leader). Only its file gets `patroni.basebackup_max_rate`
    (pg_basebackup --max-rate): Patroni reads basebackup options from the local patroni.yml for
    every clone, with no way to tell a remote source from a local one, so the limit goes where
    the inter-site copy is made. The other members clone the standby leader inside the site, at
    the site's own speed. Only its file has a bootstrap section: the others can never bootstrap
    the site (Patroni races for the initialize key only with one), only clone its leader."""
    site = inventory.site(target)
    data_dir = site.data_dir_for(member)
    endpoints = list(site.dcs.endpoints)
    basebackup: list[Any] = [{"checkpoint": "fast"}]
    if crosses_sites and site.patroni.basebackup_max_rate:
        basebackup.append({"max-rate": site.patroni.basebackup_max_rate})
    tags = {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False, **member.tags}
    return _template().render(
        source_site=source,
        scope=site.scope,
        namespace=site.namespace,
        name=member.name,
        rest_listen=_host_port(member.api_url, 8008),
        rest_connect=_host_port(member.api_url, 8008),
        rest_user=site.rest_api.username,
        etcd_hosts=[_host_port(e, 2379) for e in endpoints],
        etcd_protocol=urlsplit(endpoints[0]).scheme,
        bootstrap_dcs=dcs,
        may_bootstrap=crosses_sites,
        pg_listen=f"{member.host}:{member.pg_port}",
        pg_connect=f"{member.host}:{member.pg_port}",
        data_dir=data_dir,
        bin_dir=site.postgres.bin_dir,
        pgpass=posixpath.join(posixpath.dirname(data_dir.rstrip("/")), "pgpass"),
        superuser=inventory.credentials.superuser.username,
        replication_user=inventory.credentials.replication.username,
        basebackup=basebackup,
        local_parameters={k: _expand(v, member) for k, v in site.patroni.local_parameters.items()},
        tags=tags,
    )


def reveal(text: str, inventory: Inventory, target: str) -> str:
    """The text with the real passwords in place of the placeholders (JSON strings are valid
    YAML double-quoted scalars, so any character in a password survives)."""
    values = {
        "restapi": inventory.site(target).rest_api.password.reveal(),
        "superuser": inventory.credentials.superuser.password.reveal(),
        "replication": inventory.credentials.replication.password.reveal(),
    }
    for name in SECRET_NAMES:
        text = text.replace(placeholder(name), json.dumps(values[name]))
    return text


def member_command(command: str, member: Member) -> str:
    """A site's service command (start_command / stop_command) for one member."""
    return command.replace(MEMBER_PLACEHOLDER, member.name)
