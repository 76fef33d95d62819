"""What the inventory trusts without verifying, said out loud wherever the tool reports.

Two kinds of exposure are repeated as warnings in every report the tool prints or writes (plan in
every format, check, execute, rollback), so that nobody runs with them by accident:

- accepting unknown SSH host keys (`ssh.accept_unknown_host_keys: true`), an explicit opt-in; a
  *changed* key is refused whatever the option says (adapters/ssh.py);
- a password sent where it can be read or sent to an impostor: the Patroni REST API password over
  plain http, REST TLS certificates not verified (`rest_api.verify_tls: false`), and the etcd
  password over plain http. Whoever holds either password can rewrite the keys that decide which
  site is primary.

Everything here is pure: it reads the inventory only, never a secret's value.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

# The warning's words live with the plan that says them; read here too, as before.
from migrator.model.trust_text import unknown_host_key_warnings as unknown_host_key_warnings


def insecure_ssh_sites(inventory: Any) -> tuple[str, ...]:
    """The sites whose inventory accepts unknown SSH host keys."""
    return tuple(name for name, site in inventory.sites.items() if site.ssh.accept_unknown_host_keys)


def _scheme(url: str) -> str:
    return urlsplit(url).scheme.lower()


def _rest_password_over_http(name: str, site: Any) -> list[str]:
    # The inventory always carries a REST password (writes use basic auth), so any member
    # reached over http exposes it on every PATCH the tool sends there.
    plain = [f"{m.name} {m.api_url}" for m in site.members if _scheme(m.api_url) == "http"]
    if not plain:
        return []
    return [
        f"WARNING: site {name} sends the Patroni REST API password over plain http "
        f"({', '.join(plain)}): anyone on the network path can read it and then rewrite the "
        f"site's dynamic config; give sites.{name}.members api_url values with https:// and set "
        f"sites.{name}.rest_api.ca_file to the CA that signed Patroni's certificates"
    ]


def _rest_tls_unverified(name: str, site: Any) -> list[str]:
    # verify_tls only matters where TLS is spoken; plain http is the warning above.
    tls = [m.name for m in site.members if _scheme(m.api_url) == "https"]
    if site.rest_api.verify_tls or not tls:
        return []
    return [
        f"WARNING: site {name} does not verify the TLS certificates of its Patroni REST API "
        f"(sites.{name}.rest_api.verify_tls: false; members {', '.join(tls)}): the REST API "
        f"password goes to whoever answers at those addresses; set sites.{name}.rest_api.ca_file "
        "to the CA that signed Patroni's certificates and remove verify_tls: false"
    ]


def _etcd_password_over_http(name: str, site: Any) -> list[str]:
    dcs = site.dcs
    plain = [url for url in dcs.endpoints if _scheme(url) == "http"]
    if dcs.password is None or not plain:
        return []
    return [
        f"WARNING: site {name} sends the etcd password (sites.{name}.dcs.password) over plain "
        f"http ({', '.join(plain)}): anyone on the network path can read it and then rewrite the "
        f"keys that decide which site is primary; give sites.{name}.dcs.endpoints with https:// "
        f"and set sites.{name}.dcs.ca_file to the CA that signed etcd's certificates"
    ]


def insecure_transport_warnings(inventory: Any) -> tuple[str, ...]:
    """One warning per site and exposure: a REST API password over plain http, REST TLS
    certificates not verified, an etcd password over plain http. (etcd's certificates are always
    verified: the inventory has no switch to turn that off.)"""
    found: list[str] = []
    for name, site in inventory.sites.items():
        found += _rest_password_over_http(name, site)
        found += _rest_tls_unverified(name, site)
        found += _etcd_password_over_http(name, site)
    return tuple(found)
