"""A failed connection in the operator's words: the texts below are the ones requests/urllib3,
etcd3gw, psycopg and paramiko raised on the testbed (a stopped etcd, a stopped Patroni, an
address where nothing listens); the real exceptions are built where the library allows it."""

from __future__ import annotations

import socket

import pytest
import requests
from etcd3gw.exceptions import ConnectionFailedError, ConnectionTimeoutError

from migrator.adapters.net_errors import plain, what_happened

ETCD_STOPPED = (
    "HTTPConnectionPool(host='127.35.1.100', port=2379): Max retries exceeded with url: "
    "/v3/maintenance/status (Caused by NewConnectionError(\"HTTPConnection(host='127.35.1.100', "
    "port=2379): Failed to establish a new connection: [Errno 111] Connection refused\"))"
)
OLD_URLLIB3 = (
    "HTTPConnectionPool(host='127.0.91.9', port=8008): Max retries exceeded with url: /patroni "
    "(Caused by NewConnectionError('<urllib3.connection.HTTPConnection object at 0x7f3a1c2b3d90>: "
    "Failed to establish a new connection: [Errno 111] Connection refused'))"
)
NO_NAME = (
    "HTTPConnectionPool(host='etcd.nowhere.invalid', port=2379): Max retries exceeded with url: / "
    "(Caused by NameResolutionError(\"<urllib3.connection.HTTPConnection object at 0x7f00>: Failed "
    "to resolve 'etcd.nowhere.invalid' ([Errno -2] Name or service not known)\"))"
)
READ_TIMEOUT = "HTTPConnectionPool(host='127.35.2.1', port=8008): Read timed out. (read timeout=3)"


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (ConnectionFailedError(ETCD_STOPPED), "refused the connection"),
        (requests.exceptions.ConnectionError(OLD_URLLIB3), "refused the connection"),
        (ConnectionFailedError(NO_NAME), "cannot be reached: its host name does not resolve"),
        (ConnectionTimeoutError(READ_TIMEOUT), "did not answer within 3s"),
        (requests.exceptions.ReadTimeout(READ_TIMEOUT), "did not answer within 3s"),
        (ConnectionRefusedError(111, "Connection refused"), "refused the connection"),
        (socket.gaierror(-2, "Name or service not known"), "cannot be reached: its host name does not resolve"),
        (TimeoutError("timed out"), "did not answer within 3s"),
        (OSError(113, "No route to host"), "cannot be reached: no route to host"),
        (OSError(101, "Network is unreachable"), "cannot be reached: the network is unreachable"),
        (ConnectionResetError(104, "Connection reset by peer"), "reset the connection"),
    ],
)
def test_each_usual_connection_failure_in_plain_words(exc, says):
    assert what_happened(exc, 3) == says


def test_a_cause_kept_in_the_chain_is_found():
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("wrapper") from inner
    except RuntimeError as outer:
        assert what_happened(outer) == "refused the connection"


def test_tls_failures_say_tls_and_the_openssl_reason():
    exc = requests.exceptions.SSLError(
        "HTTPSConnectionPool(host='127.0.91.1', port=8008): Max retries exceeded (Caused by "
        "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
        "failed: self-signed certificate in certificate chain (_ssl.c:992)')))"
    )
    said = what_happened(exc)
    assert said.startswith("failed TLS: certificate verify failed: self-signed certificate")
    assert "Pool" not in said


def test_an_unknown_failure_keeps_its_words_but_not_the_reprs():
    exc = ConnectionFailedError(
        "HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: /x (Caused by "
        "ProtocolError('<urllib3.response.HTTPResponse object at 0x7f11aa>: something odd'))"
    )
    said = what_happened(exc)
    assert said == "failed: something odd"


@pytest.mark.parametrize("text", [ETCD_STOPPED, OLD_URLLIB3, NO_NAME])
def test_no_message_quotes_a_library_repr(text):
    for said in (what_happened(ConnectionFailedError(text)), plain(text)):
        assert "HTTPConnectionPool" not in said and "Max retries" not in said and "object at 0x" not in said


def test_an_empty_error_still_says_something():
    assert what_happened(ConnectionFailedError()) == "failed: no answer"


def test_paramiko_keeps_the_refusal_per_address():
    from paramiko.ssh_exception import NoValidConnectionsError

    exc = NoValidConnectionsError({("127.35.1.1", 2222): ConnectionRefusedError(111, "Connection refused")})
    assert "Unable to connect to port 2222" in str(exc)
    assert what_happened(exc, 3) == "refused the connection"
