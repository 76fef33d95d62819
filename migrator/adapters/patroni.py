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
            raise UnreachableError(tls_problem(member, f"Patroni REST API at {api_url}", exc, "rest_api")) from None
        except requests.RequestException as exc:
            raise UnreachableError(f"{member}: Patroni REST API at {api_url} did not answer "
                                   f"({_reason(exc, self.timeout)}); check that Patroni runs there and "
                                   "the member's api_url in the inventory") from None
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


def _reason(exc: Exception, timeout: float) -> str:
    """The usual causes in plain words instead of urllib3's retry wrapper."""
    if isinstance(exc, requests.exceptions.ConnectTimeout | requests.exceptions.ReadTimeout):
        return f"no answer within {timeout:g}s"
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "host name not found"
    if "No route to host" in text:
        return "no route to host"
    return _short(exc)


def tls_problem(member: str, what: str, exc: Exception, section: str) -> str:
    """One line for a failed TLS handshake: which of the usual causes, and the fix."""
    text = str(exc)
    if "Hostname mismatch" in text or "IP address mismatch" in text or "doesn't match" in text:
        return (f"{member}: the TLS certificate of {what} is not issued for that host name or "
                "address; use the name the certificate names, or reissue it with this one")
    if "unable to get local issuer certificate" in text or "self-signed certificate" in text \
            or "self signed certificate" in text or "certificate verify failed" in text:
        return (f"{member}: the TLS certificate of {what} is not signed by a CA this machine trusts; "
                f"set {section}.ca_file in the inventory to the CA that signed it")
    if "certificate required" in text or "unknown ca" in text or "bad certificate" in text \
            or "certificate unknown" in text:
        return (f"{member}: {what} refused this machine's TLS client certificate; set "
                f"{section}.cert_file/key_file to a certificate its CA signed")
    if "wrong version number" in text or "record layer failure" in text:
        return f"{member}: {what} does not speak TLS; write its URL with http://, not https://"
    return f"{member}: TLS with {what} failed ({_short(exc)}); check {section}.ca_file/cert_file/key_file"


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
