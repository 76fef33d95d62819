"""TLS and connection failures as one line naming the inventory key that fixes them. The error
texts are the ones requests/urllib3 and etcd3gw raised on the TLS testbed (tests/e2e/test_tls.py
proves the same lines end to end)."""

from __future__ import annotations

import pytest
import requests
from etcd3gw.exceptions import ConnectionFailedError

from migrator.adapters.net_errors import what_happened
from migrator.adapters.tls import is_tls_failure, tls_problem, tls_session

POOL = "HTTPSConnectionPool(host='127.0.91.1', port=8008): Max retries exceeded (Caused by "
VERIFY = "SSLError(SSLCertVerificationError(1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
SEEN = {
    "wrong CA": POOL + VERIFY + "self-signed certificate in certificate chain')))",
    "wrong host": POOL + VERIFY + "IP address mismatch, certificate is not valid for '127.0.91.1'.')))",
    "unknown client CA": POOL + "SSLError(SSLError(1, '[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert "
                                "unknown ca')))",
    "no client certificate": POOL + "SSLError(SSLError(1, '[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] "
                                    "tlsv13 alert certificate required')))",
    "hung up": POOL + "SSLError(SSLEOFError(8, 'EOF occurred in violation of protocol')))",
    "plain listener": POOL + "SSLError(SSLError(1, '[SSL: WRONG_VERSION_NUMBER] wrong version "
                             "number')))",
}
SAYS = {
    "wrong CA": "is not signed by a CA this machine trusts; set rest_api.ca_file in the inventory",
    "wrong host": "is not issued for that host name or address",
    "unknown client CA": "refused this machine's TLS client certificate; set rest_api.cert_file",
    "no client certificate": "refused this machine's TLS client certificate",
    "hung up": "closed the TLS handshake; if it requires client certificates, set rest_api.cert_file",
    "plain listener": "does not speak TLS; write its URL with http://",
}


@pytest.mark.parametrize("case", SEEN)
def test_each_usual_tls_failure_names_its_fix(case):
    exc = requests.exceptions.SSLError(SEEN[case])
    line = tls_problem("dc1-a", "Patroni REST API at https://127.0.91.1:8008", exc, "rest_api")
    assert line.startswith("dc1-a: ") and SAYS[case] in line and "\n" not in line


def test_etcd3gw_keeps_the_cause_in_detail_text_and_it_is_still_read():
    # etcd3gw wraps requests' errors and leaves str(exc) empty.
    exc = ConnectionFailedError(SEEN["wrong CA"])
    assert str(exc) == "" and is_tls_failure(exc)
    assert "set dcs.ca_file" in tls_problem("https://127.0.91.10:2379", "etcd", exc, "dcs")
    assert not is_tls_failure(ConnectionFailedError("Connection refused"))


def test_connection_failures_in_plain_words():
    refused = requests.exceptions.ConnectionError(
        "HTTPConnectionPool(host='127.0.91.9', port=8008): Max retries exceeded (Caused by "
        "NewConnectionError('<urllib3...>: Failed to establish a new connection: [Errno 111] "
        "Connection refused'))")
    assert what_happened(refused, 5) == "refused the connection"
    assert what_happened(requests.exceptions.ConnectTimeout("x"), 5) == "did not answer within 5s"


def test_the_session_trusts_only_what_the_inventory_names(monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/somewhere/else.pem")
    session = tls_session("/etc/ca.pem", "/etc/client.crt", "/etc/client.key")
    assert session.verify == "/etc/ca.pem"
    assert session.cert == ("/etc/client.crt", "/etc/client.key")
    # Environment settings (a CA bundle, a proxy) must not override the inventory.
    assert session.trust_env is False
    assert tls_session(None, None, None).verify is True


def test_a_finding_quotes_the_longest_tls_diagnosis_whole_with_its_fix():
    # Cut short, the hedged TLS 1.3 line lost the inventory key to set (seen on the testbed).
    import ssl

    from migrator.adapters.tls import tls_problem
    from migrator.checks import short

    exc = ssl.SSLEOFError(8, "EOF occurred in violation of protocol (_ssl.c:2427)")
    line = tls_problem("dc1-a", "Patroni REST API at https://127.0.91.1:8008", exc, "rest_api")
    assert short(line).endswith("set rest_api.cert_file/key_file to a certificate its CA signed")
