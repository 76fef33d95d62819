"""Patroni's REST API: reads need no credentials, writes use basic auth; TLS verified when set."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import requests

from migrator.adapters.net_errors import what_happened
from migrator.adapters.tls import path_or_none, tls_problem, tls_session
from migrator.errors import UnreachableError
from migrator.model.inventory import Site

log = logging.getLogger("migrator.patroni")


class PatroniRefused(UnreachableError):
    """Patroni answered and said no (401, 409, 5xx...): the request did not take effect there,
    unlike one that got no answer, which may still land."""


class PatroniApi:
    def __init__(
        self,
        timeout: float,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        verify_tls: bool = True,
    ):
        self.timeout = timeout
        self.session = tls_session(ca_file, cert_file, key_file, verify=verify_tls)
        # Basic auth on writes only: GETs need none, and the password stays off every read.
        self.write_auth: tuple[str, str] | None = None
        if username is not None and password is not None:
            self.write_auth = (username, password)

    def _request(self, method: str, api_url: str, path: str, member: str, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            auth = self.write_auth if method != "GET" else None
            resp = self.session.request(method, f"{api_url}{path}", timeout=self.timeout, auth=auth, **kwargs)
        except requests.RequestException as exc:
            log.debug("%s: %s %s%s: %s", member, method, api_url, path, what_happened(exc, self.timeout))
            raise self._unreachable(exc, member, api_url) from None
        log.debug(
            "%s: %s %s%s -> HTTP %s in %.3fs",
            member,
            method,
            api_url,
            path,
            resp.status_code,
            time.monotonic() - started,
        )
        return self._answer(resp, method, api_url, path, member)

    def _unreachable(self, exc: requests.RequestException, member: str, api_url: str) -> UnreachableError:
        if isinstance(exc, requests.exceptions.SSLError):
            return UnreachableError(tls_problem(member, f"Patroni REST API at {api_url}", exc, "rest_api"))
        return UnreachableError(
            f"{member}: Patroni REST API at {api_url} {what_happened(exc, self.timeout)}; "
            "check that Patroni runs there and the member's api_url in the inventory"
        )

    def _answer(self, resp: requests.Response, method: str, api_url: str, path: str, member: str) -> Any:
        if resp.status_code == 401:
            raise PatroniRefused(
                f"{member}: Patroni REST API at {api_url} refused the credentials "
                "(401); check rest_api.username/password in the inventory"
            )
        if method == "GET" and resp.status_code == 503 and path == "/patroni":
            return _json(resp, member, path)  # /patroni answers 503 while PostgreSQL is down: still a state
        if resp.status_code >= 400:
            # A 4xx is Patroni saying no (nothing changed); a 5xx may hide a half-done write.
            error = PatroniRefused if resp.status_code < 500 else UnreachableError
            raise error(
                f"{member}: {method} {api_url}{path} answered HTTP {resp.status_code}: {resp.text.strip()[:200]}"
            )
        return _json(resp, member, path) if resp.content else None

    def get(self, api_url: str, path: str, member: str) -> Any:
        return self._request("GET", api_url, path, member)

    def patch_config(self, api_url: str, patch: dict[str, Any], member: str) -> Any:
        log.debug("%s: PATCH %s/config with %s", member, api_url, json.dumps(patch, sort_keys=True))
        return self._request("PATCH", api_url, "/config", member, json=patch)


# Patroni's answers that are JSON objects (/history is a list).
OBJECT_PATHS = frozenset({"/patroni", "/config", "/cluster"})


def _json(resp: requests.Response, member: str, path: str) -> Any:
    """The reply's JSON; a reply that is not JSON (a proxy's error page, a truncated body) is a
    member that did not answer usefully, not a crash, and so is an object path that is not one."""
    try:
        data = resp.json()
    except ValueError:
        raise UnreachableError(
            f"{member}: {resp.request.method} {resp.url} answered HTTP {resp.status_code} "
            f"with something that is not JSON: {resp.text.strip()[:80]!r}"
        ) from None
    if path in OBJECT_PATHS and not isinstance(data, dict):
        raise UnreachableError(
            f"{member}: {resp.request.method} {resp.url} answered a JSON "
            f"{type(data).__name__}, not an object: is that really Patroni's REST API?"
        )
    return data


def patroni_api(site: Site, timeout: float) -> PatroniApi:
    """The REST API client of a site, with the inventory's credentials and TLS settings."""
    api = site.rest_api
    return PatroniApi(
        timeout=timeout,
        username=api.username,
        password=api.password.reveal(),
        ca_file=path_or_none(api.ca_file),
        cert_file=path_or_none(api.cert_file),
        key_file=path_or_none(api.key_file),
        verify_tls=api.verify_tls,
    )
