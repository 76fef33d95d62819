"""A failed connection in the operator's words, whichever library failed.

requests wraps urllib3, which wraps the socket error in a retry error whose text is a chain of
reprs (`HTTPConnectionPool(host=..): Max retries exceeded ... NewConnectionError('<... object at
0x..>: ... [Errno 111] Connection refused')`); etcd3gw flattens that chain into one string;
psycopg and paramiko have texts of their own. Every adapter asks `what_happened` for the short
verb phrase that follows the thing it tried to reach ("dc1's etcd at http://h:2379" +
" refused the connection"), so a message never quotes a library's repr.
"""

from __future__ import annotations

import re
import socket
import ssl

# The usual causes, recognised by the words the OS and the libraries put in their texts (the
# exception types differ between requests, etcd3gw, psycopg and paramiko; the strerror does not).
_BY_TEXT: tuple[tuple[tuple[str, ...], str], ...] = (
    (("connection refused", "errno 111", "actively refused"), "refused the connection"),
    (
        (
            "name or service not known",
            "nodename nor servname",
            "temporary failure in name resolution",
            "no address associated with hostname",
            "failed to resolve",
            "could not translate host name",
            "name resolution",
            "getaddrinfo failed",
        ),
        "cannot be reached: its host name does not resolve",
    ),
    (("no route to host",), "cannot be reached: no route to host"),
    (("network is unreachable",), "cannot be reached: the network is unreachable"),
    (("connection reset",), "reset the connection"),
    (
        ("remotedisconnected", "connection aborted", "closed connection without response", "eof received"),
        "closed the connection without an answer",
    ),
)
_TIMEOUT_WORDS = ("timed out", "timeout", "time out")
_TLS_WORDS = ("sslerror", "[ssl", "ssl:", "certificate verify failed")

# Reprs and wrappers that say nothing to an operator: `<urllib3... object at 0x7f..>`,
# `HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /x (Caused by ...)`.
_OBJECT_REPR = re.compile(r"<[^<>]*\bobject at 0x[0-9a-fA-F]+>:?\s*")
_POOL_WRAPPER = re.compile(
    r"HTTPS?ConnectionPool\([^)]*\):\s*Max retries exceeded(?: with url:\s*\S+)?\s*(?:\(Caused by\s*)?"
)
_EXCEPTION_CALL = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\(\s*")


def what_happened(exc: BaseException, timeout: float | None = None) -> str:
    """What the thing we tried to reach did, as a verb phrase: "refused the connection", "did
    not answer within 5s", "cannot be reached: its host name does not resolve", "failed TLS:
    certificate verify failed: ...", or "failed: <the cleaned first line>"."""
    chain = list(_chain(exc))
    text = " ".join(_text(e) for e in chain)
    lowered = text.lower()
    if any(isinstance(e, ssl.SSLError) for e in chain) or any(w in lowered for w in _TLS_WORDS):
        return f"failed TLS: {_tls_reason(text)}"
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "refused the connection"
    if any(isinstance(e, socket.gaierror) for e in chain):
        return "cannot be reached: its host name does not resolve"
    for words, phrase in _BY_TEXT:
        if any(w in lowered for w in words):
            return phrase
    if _timed_out(chain, lowered):
        return f"did not answer within {timeout:g}s" if timeout else "did not answer in time"
    return f"failed: {plain(text) or 'no answer'}"


def plain(text: str, limit: int = 200) -> str:
    """A library's message without its reprs and retry wrappers, on one line, cut at `limit`."""
    text = _POOL_WRAPPER.sub("", text)
    text = _OBJECT_REPR.sub("", text)
    text = _EXCEPTION_CALL.sub("", text)
    text = " ".join(text.split()).strip(" ()'\"")
    text = re.sub(r"[)'\"]+$", "", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts, what requests/urllib3 keep in `.reason` or in
    args, and paramiko's error per address, without looping."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if any(current is s for s in seen):
            continue
        seen.append(current)
        reason = getattr(current, "reason", None)
        candidates = [current.__cause__, current.__context__, reason]
        candidates += [a for a in getattr(current, "args", ()) if isinstance(a, BaseException)]
        per_address = getattr(current, "errors", None)  # paramiko's NoValidConnectionsError
        if isinstance(per_address, dict):
            candidates += list(per_address.values())
        todo.extend(c for c in candidates if isinstance(c, BaseException))
    return seen


def _text(exc: BaseException) -> str:
    # etcd3gw keeps the cause in detail_text and leaves str(exc) empty.
    detail = getattr(exc, "detail_text", None)
    return str(detail) if detail else str(exc)


def _timed_out(chain: list[BaseException], lowered: str) -> bool:
    if any(isinstance(e, TimeoutError | socket.timeout) for e in chain):
        return True
    if any("timeout" in type(e).__name__.lower() for e in chain):  # requests', etcd3gw's, psycopg's
        return True
    return any(w in lowered for w in _TIMEOUT_WORDS)


def _tls_reason(text: str) -> str:
    """The OpenSSL reason ("certificate verify failed: self-signed certificate") when there is one."""
    found = re.search(r"\[SSL(?:: [A-Z0-9_]+)?\]\s*([^'\")(]+)", text)
    return plain(found.group(1)) if found else plain(text)
