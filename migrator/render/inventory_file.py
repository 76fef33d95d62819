"""The commented inventory `migrate init` writes from what discovery found.

Three kinds of value, each told apart on its line:
- discovered: written as found (the comment says where from, when it is not obvious);
- `CHECK:` a default or a guess REST could not confirm; valid, but read it;
- `FILL IN:` the placeholder `<FILL IN>`, which the loader refuses until it is replaced (secrets,
  SSH access, DCS endpoints: nothing REST shows).
No secret value is ever written: passwords are only the `env:`/`file:` references given.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from migrator.errors import one_line, shown
from migrator.model.discovered import DiscoveredSite, member_template
from migrator.model.inventory import PatroniHost, PostgresPaths, SshSettings, default_slot_name
from migrator.model.placeholders import PLACEHOLDER

FILL_IN = "FILL IN: "
DEFAULT_NAMESPACE = "/service/"
CHECK = "CHECK: "


@dataclass(frozen=True)
class InitAnswers:
    """What the operator said on the command line; None means "not given"."""

    service: str | None = None
    superuser: str = "postgres"
    superuser_password: str | None = None
    replication_user: str | None = None
    replication_password: str | None = None
    rest_user: str | None = None
    rest_password: str | None = None
    rest_ca_file: str | None = None
    ssh_user: str | None = None
    ssh_port: int | None = None
    ssh_key: str | None = None
    known_hosts: str | None = None
    namespace: str | None = None
    dcs: dict[str, list[str]] = field(default_factory=dict)


def render_inventory(sites: list[DiscoveredSite], answers: InitAnswers) -> str:
    root = CommentedMap()
    root["service"] = answers.service or sites[0].scope
    if answers.service is None:
        _note(root, "service", CHECK + "the name locks, journals and reports use; taken from the first site's scope")
    root["credentials"] = _credentials(sites, answers)
    root["sites"] = sites_map = CommentedMap()
    for site in sites:
        sites_map[site.name] = _site(site, answers)
        summary = "\n".join(comment_safe(line) for line in _site_summary(site).splitlines())
        sites_map.yaml_set_comment_before_after_key(site.name, before=summary, indent=2)
    root.yaml_set_start_comment(_header(sites))
    yaml = YAML(typ="rt")
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # a long comment stays on its line
    out = io.StringIO()
    yaml.dump(root, out)
    return out.getvalue()


def placeholder_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if f"# {FILL_IN}" in line)


def _header(sites: list[DiscoveredSite]) -> str:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    urls = comment_safe(", ".join(f"{s.name}={s.url}" for s in sites))
    return (
        f"Inventory written by `migrate init` on {stamp} from {urls}.\n"
        f"'{FILL_IN.strip()}' lines hold the placeholder {PLACEHOLDER}: migrate refuses the file until each\n"
        "is replaced (REST does not show secrets, SSH access or the DCS endpoints). Passwords are\n"
        "references only: env:NAME or file:PATH, never the value.\n"
        f"'{CHECK.strip()}' lines hold a default or a guess: valid, but confirm them.\n"
        "Every key, its type and default: docs/inventory.md; then run `migrate check -i <this file>`."
    )


def _site_summary(site: DiscoveredSite) -> str:
    leader = next((m.name for m in site.members if m.role in ("leader", "primary", "standby_leader")), "none")
    if site.follows:
        relation = f"standby cluster of {site.follows} (standby_cluster.host {','.join(site.standby_hosts)})"
    elif site.standby_hosts:
        relation = f"standby cluster of {','.join(site.standby_hosts)} (not one of the sites given)"
    else:
        relation = "primary site"
    lines = [
        f"{site.name}: {relation}, leader {leader}, Patroni {site.patroni_version or 'version unknown'}, "
        f"system identifier {site.system_identifier or 'unknown'}",
        f"permanent slots in its dynamic config: {', '.join(site.slots) or 'none'}",
    ]
    lines += [f"not discovered: {comment_safe(note)}" for note in site.notes]
    return "\n".join(lines)


def _credentials(sites: list[DiscoveredSite], answers: InitAnswers) -> CommentedMap:
    creds = CommentedMap()
    creds["superuser"] = superuser = CommentedMap()
    superuser["username"] = answers.superuser
    _password(superuser, answers.superuser_password, "the PostgreSQL superuser's password")
    creds["replication"] = replication = CommentedMap()
    found = next((s.replication_user for s in sites if s.replication_user), None)
    replication["username"] = answers.replication_user or found or PLACEHOLDER
    if answers.replication_user is None:
        if found:
            _note(replication, "username", "as the primary's walsenders show it")
        else:
            _note(replication, "username", FILL_IN + "the replication role (no walsender was streaming)")
    _password(replication, answers.replication_password, "the replication role's password")
    return creds


def _password(section: CommentedMap, reference: str | None, what: str) -> None:
    section["password"] = reference or PLACEHOLDER
    if reference is None:
        _note(section, "password", FILL_IN + f"env:NAME or file:PATH holding {what}")


def _site(site: DiscoveredSite, answers: InitAnswers) -> CommentedMap:
    out = CommentedMap()
    out["scope"] = site.scope
    out["namespace"] = namespace = answers.namespace or DEFAULT_NAMESPACE
    if site.namespace_in_dcs:
        _note(out, "namespace", f"Patroni's keys are under {namespace}{site.scope}/ in the site's etcd")
    elif site.namespace_in_dcs is False:
        _note(out, "namespace", CHECK + f"no Patroni keys under {namespace}{site.scope}/ in the etcd given: "
              "write patroni.yml's namespace here (or fix --dcs)")  # fmt: skip
    else:
        _note(out, "namespace", CHECK + "Patroni's default; REST does not show it (--dcs lets init look it up)")
    out["replication_slot"] = site.replication_slot or default_slot_name(site.name)
    if site.replication_slot is None:
        _note(out, "replication_slot", CHECK + "no standby_cluster or follower's slot named it; the site name")
    else:
        _note(out, "replication_slot", "the slot this site's standby leader consumes on the other site")
    out["dcs"] = dcs = CommentedMap()
    dcs["type"] = "etcd3"
    endpoints = answers.dcs.get(site.name)
    dcs["endpoints"] = CommentedSeq(endpoints or [PLACEHOLDER])
    if not endpoints:
        _note(dcs, "endpoints", FILL_IN + f"{site.name}'s etcd client URL(s), e.g. http://etcd1:2379 (or --dcs)")
    out["rest_api"] = rest = CommentedMap()
    rest["username"] = answers.rest_user or "patroni"
    if answers.rest_user is None:
        _note(rest, "username", CHECK + "restapi.authentication.username of patroni.yml (used to PATCH /config)")
    _password(rest, answers.rest_password, "restapi.authentication.password of patroni.yml")
    if answers.rest_ca_file:
        rest["ca_file"] = answers.rest_ca_file
    out["postgres"] = postgres = CommentedMap()
    defaults = PostgresPaths()
    for key, attribute, default in (
        ("bin_dir", "bin_dir", defaults.bin_dir),
        ("data_dir", "data_dir", defaults.data_dir),
    ):
        found = member_template(site, attribute)
        postgres[key] = found or default
        if found:
            _note(postgres, key, "read from PostgreSQL")
        else:
            _note(postgres, key, CHECK + "not discovered (give --superuser-password to read it); the default")
    out["patroni"] = patroni = CommentedMap()
    host_defaults = PatroniHost()
    patroni["config_file"] = host_defaults.config_file
    _note(patroni, "config_file", CHECK + "REST does not show where patroni.yml is; {member} expands")
    patroni["start_command"] = host_defaults.start_command
    patroni["stop_command"] = host_defaults.stop_command
    out["ssh"] = ssh = CommentedMap()
    ssh_defaults = SshSettings.model_fields
    ssh["port"] = answers.ssh_port or ssh_defaults["port"].default
    ssh["user"] = answers.ssh_user or ssh_defaults["user"].default
    if answers.ssh_user is None:
        _note(ssh, "user", CHECK + "the SSH user on the database hosts (root, or a user with sudo -n -u postgres)")
    ssh["key_file"] = answers.ssh_key or PLACEHOLDER
    if answers.ssh_key is None:
        _note(ssh, "key_file", FILL_IN + "the private key that logs in to every member (a file here)")
    ssh["known_hosts"] = answers.known_hosts or PLACEHOLDER
    if answers.known_hosts is None:
        _note(ssh, "known_hosts", FILL_IN + "a known_hosts file holding every member's host key")
    out["members"] = members = CommentedSeq()
    for member in site.members:
        entry = CommentedMap()
        entry["name"] = member.name
        entry["host"] = member.host
        entry["pg_port"] = member.pg_port
        entry["api_url"] = member.api_url or PLACEHOLDER
        if member.api_url is None:
            _note(entry, "api_url", FILL_IN + f"{member.name}'s REST API URL (GET /cluster did not show it)")
        elif member.role:
            _note(entry, "api_url", f"{member.role} when discovered")
        members.append(entry)
    return out


def _note(section: CommentedMap, key: str, text: str) -> None:
    section.yaml_add_eol_comment(comment_safe(text), key)


def comment_safe(text: str, limit: int = 300) -> str:
    """Text from REST answers (roles, versions, hosts) put into a comment: a newline in it would
    end the comment and start YAML of the sender's choosing, so whitespace runs become one space
    and control characters are escaped."""
    return shown(one_line(text), limit)
