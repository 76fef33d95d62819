"""Patroni's REST API: reads need no credentials, writes use basic auth; TLS verified when set."""

from __future__ import annotations

from typing import Any

import requests

from migrator.errors import UnreachableError


class PatroniApi:
    def __init__(self, timeout: float, username: str | None = None, password: str | None = None,
                 ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None,
                 verify_tls: bool = True):
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # a proxy from the environment must not sit between us and Patroni
        if username is not None and password is not None:
            self.session.auth = (username, password)
        self.session.verify = ca_file if (verify_tls and ca_file) else verify_tls
        if cert_file:
            self.session.cert = (cert_file, key_file) if key_file else cert_file

    def _request(self, method: str, api_url: str, path: str, member: str, **kwargs: Any) -> Any:
        try:
            resp = self.session.request(method, f"{api_url}{path}", timeout=self.timeout, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise UnreachableError(f"{member}: TLS verification of {api_url} failed ({_short(exc)}); "
                                   "check rest_api.ca_file in the inventory") from None
        except requests.RequestException as exc:
            raise UnreachableError(f"{member}: Patroni REST API at {api_url} did not answer "
                                   f"({_short(exc)}); check that Patroni runs and the address") from None
        if resp.status_code == 401:
            raise UnreachableError(f"{member}: Patroni REST API at {api_url} refused the credentials "
                                   "(401); check rest_api.username/password in the inventory")
        if method == "GET" and resp.status_code == 503 and path == "/patroni":
            return resp.json()  # /patroni answers 503 while PostgreSQL is down: still a state
        if resp.status_code >= 400:
            raise UnreachableError(f"{member}: {method} {api_url}{path} answered HTTP {resp.status_code}: "
                                   f"{resp.text.strip()[:200]}")
        return resp.json() if resp.content else None

    def get(self, api_url: str, path: str, member: str) -> Any:
        return self._request("GET", api_url, path, member)

    def patch_config(self, api_url: str, patch: dict[str, Any], member: str) -> Any:
        return self._request("PATCH", api_url, "/config", member, json=patch)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
