"""`migrate init`: discover the sites, write the commented inventory, say what is left to fill in."""

from __future__ import annotations

import sys
from pathlib import Path

from migrator.durable import write_private
from migrator.errors import UsageError, shown
from migrator.model.secrets import SecretRef, readable_file_problem
from migrator.observe.discover import discover, look_up_in_dcs, parse_site_options
from migrator.render.inventory_file import DEFAULT_NAMESPACE, InitAnswers, placeholder_count, render_inventory

# Discovery's REST and PostgreSQL calls; the inventory's own gates do not exist yet.
INIT_TIMEOUT_SECONDS = 5.0


def run_init(
    site_options: list[str],
    out: Path | None,
    dcs_options: list[str],
    service: str | None,
    superuser_password: str | None,
    replication_password: str | None,
    rest_password: str | None,
    rest_ca_file: Path | None,
    ssh_user: str | None,
    ssh_port: int | None,
    force: bool,
) -> int:
    sites = parse_site_options(site_options)
    dcs: dict[str, list[str]] = {}
    for name, url in _dcs_pairs(dcs_options).items():
        if name not in sites:
            raise UsageError(f"--dcs {name}=...: no --site {name}; name one of the sites: {', '.join(sites)}")
        dcs[name] = [u for u in url.split(",") if u]
    refs = {
        "--superuser-password": _reference("--superuser-password", superuser_password),
        "--replication-password": _reference("--replication-password", replication_password),
        "--rest-password": _reference("--rest-password", rest_password),
    }
    if out is not None and out.exists() and not force:
        raise UsageError(f"--out {shown(out)} exists; pass --force to overwrite it or choose another file")
    if rest_ca_file is not None:
        rest_ca_file = rest_ca_file.expanduser().absolute()
        if problem := readable_file_problem(rest_ca_file):
            raise UsageError(f"--rest-ca-file: {problem}; pass the CA that signed the REST API's certificate")
    superuser = refs["--superuser-password"]
    discovered = discover(
        sites,
        INIT_TIMEOUT_SECONDS,
        ("postgres", superuser) if superuser else None,
        ca_file=str(rest_ca_file) if rest_ca_file else None,
    )
    discovered = [
        look_up_in_dcs(site, dcs[site.name], DEFAULT_NAMESPACE, INIT_TIMEOUT_SECONDS) if site.name in dcs else site
        for site in discovered
    ]
    answers = InitAnswers(
        service=service,
        superuser_password=superuser_password,
        replication_password=replication_password,
        rest_password=rest_password,
        rest_ca_file=str(rest_ca_file) if rest_ca_file else None,
        ssh_user=ssh_user,
        ssh_port=ssh_port,
        dcs=dcs,
    )
    text = render_inventory(discovered, answers)
    if out is None:
        sys.stdout.write(text)
        return 0
    write_private(out, text)
    members = sum(len(s.members) for s in discovered)
    left = placeholder_count(text)
    todo = f"{left} value(s) to fill in (lines marked FILL IN)" if left else "nothing to fill in"
    print(
        f"inventory written to {out}: {len(discovered)} sites, {members} members; {todo}; then: migrate check -i {out}"
    )
    return 0


def _dcs_pairs(values: list[str]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, urls = value.partition("=")
        if not sep or not name.strip() or not urls.strip():
            raise UsageError(f"--dcs '{shown(value)}' is not NAME=URL[,URL]; write it like --dcs dc1=http://etcd1:2379")
        pairs[name.strip()] = urls.strip()
    return pairs


def _reference(option: str, value: str | None) -> SecretRef | None:
    if value is None:
        return None
    try:
        return SecretRef(value)
    except ValueError:
        # Never echo it: it may be the password itself.
        raise UsageError(f"{option} takes a reference, env:NAME or file:PATH, never the secret itself") from None
