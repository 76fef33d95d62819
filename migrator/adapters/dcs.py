"""The site's DCS, behind a small interface so Consul or ZooKeeper can follow etcd.

etcd v3 is reached over its HTTP/JSON gateway with etcd3gw, the way Patroni's etcd3 module
talks to it. Patroni keeps a cluster's keys under /<namespace>/<scope>/: config, leader,
members/<name>, status, initialize, history, sync, failover.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import etcd3gw
from etcd3gw.client import Etcd3Client

from migrator.adapters.net_errors import what_happened
from migrator.adapters.tls import is_tls_failure, path_or_none, tls_problem, tls_session
from migrator.errors import UnreachableError
from migrator.model.inventory import Site

log = logging.getLogger("migrator.etcd")


@dataclass(frozen=True)
class DcsSnapshot:
    healthy: bool
    cluster_size: int | None
    keys: dict[str, Any] = field(default_factory=dict)  # key below the scope prefix -> parsed value


class Dcs(Protocol):
    def snapshot(self, namespace: str, scope: str) -> DcsSnapshot: ...


def _parse(raw: bytes) -> Any:
    text = raw.decode("utf-8", "replace")
    try:
        return json.loads(text)
    except ValueError:
        return text  # leader and initialize are plain strings


class Etcd3Dcs:
    """One etcd cluster; tries each endpoint in turn, as a client of a multi-node etcd should."""

    def __init__(
        self,
        endpoints: list[str],
        timeout: float,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        username: str | None = None,
        password: str | None = None,
        label: str = "etcd",
    ):
        self.endpoints = list(endpoints)
        self.label = label  # how messages name it: "dc1's etcd"

        self.timeout = timeout
        self.tls = (ca_file, cert_file, key_file)
        self.credentials = (username, password) if username else None

    def _client(self, endpoint: str) -> Etcd3Client:
        url = urlsplit(endpoint)
        if url.hostname is None:  # the inventory's endpoints are http(s) URLs, each with a host
            raise UnreachableError(f"{endpoint}: the etcd endpoint URL names no host")
        ca, cert, key = self.tls
        # etcd3gw applies ca_cert/cert_* only to a session it makes itself: ours carries them.
        session = tls_session(ca, cert, key)
        client = etcd3gw.client(
            host=url.hostname,
            port=url.port or 2379,
            protocol=url.scheme,
            ca_cert=ca,
            cert_cert=cert,
            cert_key=key,
            timeout=self.timeout,
            api_path="/v3/",
            session=session,
        )
        if self.credentials:
            # etcd3gw has no auth of its own: fetch a token and send it on every request.
            user, password = self.credentials
            resp = client.post(client.get_url("/auth/authenticate"), json={"name": user, "password": password})
            session.headers["Authorization"] = resp["token"]
        return client

    def _first_answering(self) -> tuple[str, Any]:
        errors = []
        for endpoint in self.endpoints:
            try:
                client = self._client(endpoint)
                client.status()
                log.debug("%s at %s answered", self.label, endpoint)
                return endpoint, client
            except Exception as exc:  # noqa: BLE001 - etcd3gw raises its own and requests' errors
                log.debug("%s at %s: %s", self.label, endpoint, what_happened(exc, self.timeout))
                if is_tls_failure(exc):
                    errors.append(tls_problem(endpoint, self.label, exc, "dcs"))
                else:
                    errors.append(f"{self.label} at {endpoint} {what_happened(exc, self.timeout)}")
        if len(errors) == 1:
            raise UnreachableError(errors[0])
        raise UnreachableError(f"no endpoint of {self.label} answered (" + "; ".join(errors) + ")")

    def client(self) -> Any:
        """An etcd3gw client on the first endpoint that answers (for the migration lock)."""
        return self._first_answering()[1]

    def client_for(self, endpoint: str) -> Any:
        """A new etcd3gw client on one endpoint, with a new auth token when the site has a user
        (the lock's keep-alive moves to another endpoint, or outlives a token, this way)."""
        return self._client(endpoint)

    def snapshot(self, namespace: str, scope: str) -> DcsSnapshot:
        _, client = self._first_answering()
        members = client.members()
        prefix = f"{namespace.rstrip('/')}/{scope}/"
        keys: dict[str, Any] = {}
        for value, meta in client.get_prefix(prefix):
            key = meta["key"]
            key = key.decode() if isinstance(key, bytes) else base64.b64decode(key).decode()
            keys[key[len(prefix) :]] = _parse(value)
        return DcsSnapshot(healthy=True, cluster_size=len(members), keys=keys)


def site_dcs(site: Site, timeout: float, name: str | None = None) -> Etcd3Dcs:
    """The DCS client of a site, with the inventory's endpoints, credentials and TLS settings;
    `name` (the inventory's site name) is how error lines call it."""
    dcs = site.dcs
    return Etcd3Dcs(
        list(dcs.endpoints),
        timeout,
        ca_file=path_or_none(dcs.ca_file),
        cert_file=path_or_none(dcs.cert_file),
        key_file=path_or_none(dcs.key_file),
        username=dcs.username,
        password=dcs.password.reveal() if dcs.password else None,
        label=f"{name}'s etcd" if name else f"the etcd of scope {site.scope}",
    )
