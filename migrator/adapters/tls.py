"""TLS towards Patroni's REST API and etcd: a requests session that verifies against the
inventory's CA (or the system's) and presents the client certificate when one is set, and one
line per usual handshake failure, naming the inventory key that fixes it."""

from __future__ import annotations

import requests


def tls_session(
    ca_file: str | None, cert_file: str | None, key_file: str | None, verify: bool = True
) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment must not sit between us and the sites
    session.verify = (ca_file or True) if verify else False
    if cert_file:
        session.cert = (cert_file, key_file) if key_file else cert_file
    return session


def path_or_none(value: object) -> str | None:
    """An inventory path (a CA, a certificate, a key) as the clients take it; None when unset."""
    return str(value) if value else None


def first_line(exc: BaseException) -> str:
    # etcd3gw keeps the cause in detail_text and leaves str(exc) empty.
    text = (getattr(exc, "detail_text", None) or str(exc)).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def is_tls_failure(exc: BaseException) -> bool:
    text = getattr(exc, "detail_text", None) or str(exc)
    return isinstance(exc, requests.exceptions.SSLError) or "SSLError" in text or "SSL:" in text


def tls_problem(member: str, what: str, exc: Exception, section: str) -> str:
    """One line for a failed TLS handshake: which of the usual causes, and the fix."""
    text = getattr(exc, "detail_text", None) or str(exc)
    if "Hostname mismatch" in text or "IP address mismatch" in text or "doesn't match" in text:
        return (
            f"{member}: the TLS certificate of {what} is not issued for that host name or "
            "address; use the name the certificate names, or reissue it with this one"
        )
    if (
        "unable to get local issuer certificate" in text
        or "self-signed certificate" in text
        or "self signed certificate" in text
        or "certificate verify failed" in text
    ):
        return (
            f"{member}: the TLS certificate of {what} is not signed by a CA this machine "
            f"trusts; set {section}.ca_file in the inventory to the CA that signed it"
        )
    if (
        "certificate required" in text
        or "unknown ca" in text
        or "bad certificate" in text
        or "certificate unknown" in text
    ):
        return (
            f"{member}: {what} refused this machine's TLS client certificate; set "
            f"{section}.cert_file/key_file to a certificate its CA signed"
        )
    if "EOF occurred in violation of protocol" in text or "UNEXPECTED_EOF" in text:
        # TLS 1.3 servers that require a client certificate often just hang up.
        return (
            f"{member}: {what} closed the TLS handshake; if it requires client certificates, "
            f"set {section}.cert_file/key_file to a certificate its CA signed"
        )
    if "wrong version number" in text or "record layer failure" in text:
        return f"{member}: {what} does not speak TLS; write its URL with http://, not https://"
    return f"{member}: TLS with {what} failed ({first_line(exc)}); check {section}.ca_file/cert_file/key_file"
