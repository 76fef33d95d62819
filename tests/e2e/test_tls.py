"""Patroni's REST API and etcd over TLS, with the CA verified and client certificates required
(issue 6, security), and each TLS mismatch one line naming the member and the fix with nothing
changed (issue 6, case 10).

The module builds the TLS variant of the testbed (tests/testbed/tls.py: a CA made with openssl
for this run, https on every REST API and etcd, Patroni's own etcd3 client on TLS too) over the
plain one, and rebuilds the plain one when it is done.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import secret_scan
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.e2e.test_execute import assert_primary_site, explain, migrate
from tests.testbed import MEMBER_BY_NAME, SITE_BY_NAME
from tests.testbed.tls import TlsTestbed

# Slow as a whole: the module builds the TLS testbed and rebuilds the plain one (about 35 s).
pytestmark = [pytest.mark.testbed, pytest.mark.slow]


@pytest.fixture(scope="module")
def tls_bed(testbed):
    bed = TlsTestbed(testbed.base, testbed.patroni_version)
    try:
        print(f"\nTLS testbed up in {bed.up():.1f}s")
        secret_scan.remember(bed)
        yield bed
    finally:
        secret_scan.remember(bed)
        # The plain testbed again, for every test after this module.
        print(f"\nplain testbed rebuilt in {testbed.up(dc2_cluster=testbed.dc2_cluster):.1f}s")
        secret_scan.remember(testbed)


def _roles(bed) -> dict[str, str | None]:
    roles = {}
    for name, member in MEMBER_BY_NAME.items():
        try:
            roles[name] = bed.patroni_state(member).get("role")
        except requests.RequestException:
            roles[name] = None
    return roles


def _snapshot(bed) -> tuple[dict, dict]:
    return {name: bed.get_config(site) for name, site in SITE_BY_NAME.items()}, _roles(bed)


def _variant(bed, tmp_path: Path, section: str, **values: Path) -> str:
    """The TLS inventory with the given keys of every site's `section` (rest_api or dcs) replaced."""
    text = bed.inventory_path.read_text()
    for key, value in values.items():
        pattern = re.compile(rf"(\n    {section}:\n(?:      .*\n)*?      {key}: )\S+")
        text, count = pattern.subn(lambda m: f"{m.group(1)}{value}", text)
        assert count == 2, (section, key)
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    return str(path)


def test_check_and_plan_over_tls_with_client_certificates(tls_bed):
    dc1_a = SITE_BY_NAME["dc1"].members[0]
    # TLS is really on: plain HTTP gets no answer, and etcd refuses a client without a certificate.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{dc1_a.host}:8008/patroni", timeout=3)
    bare = requests.Session()
    bare.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        bare.get(f"https://{SITE_BY_NAME['dc1'].etcd_host}:2379/health", verify=str(tls_bed.pki.ca_cert),
                 timeout=3)
    check = migrate("check", "-i", str(tls_bed.inventory_path))
    assert check.returncode == 0, explain(check)
    assert "no blocking finding for dc1 -> dc2" in check.stdout
    plan = migrate("plan", "-i", str(tls_bed.inventory_path), "--dc", "dc2", "--format", "json")
    assert plan.returncode == 0, explain(plan)
    # Every member's REST API answered over TLS: its version is known, so the graceful path.
    assert '"graceful_demote": true' in plan.stdout and '"executable": true' in plan.stdout
    # https with the CA verified: no password goes over plain http, so no warning says it does.
    assert "WARNING" not in check.stdout and json.loads(plan.stdout)["warnings"] == []


MISMATCHES = {
    # what is wrong -> (inventory variant, what the line must say)
    "REST API certificate from a CA the inventory does not name": (
        lambda bed, tmp: _variant(bed, tmp, "rest_api", ca_file=bed.rogue.ca_cert),
        "is not signed by a CA this machine trusts; set rest_api.ca_file in the inventory"),
    "etcd certificate from a CA the inventory does not name": (
        lambda bed, tmp: _variant(bed, tmp, "dcs", ca_file=bed.rogue.ca_cert),
        "the TLS certificate of dc1's etcd is not signed by a CA this machine trusts; set dcs.ca_file"),
    "client certificate for etcd that its CA did not sign": (
        lambda bed, tmp: _variant(bed, tmp, "dcs", cert_file=bed.rogue.dir / "client.crt",
                                  key_file=bed.rogue.dir / "client.key"),
        "set dcs.cert_file/key_file to a certificate its CA signed"),
    "client certificate for the REST API that its CA did not sign": (
        lambda bed, tmp: _variant(bed, tmp, "rest_api", cert_file=bed.rogue.dir / "client.crt",
                                  key_file=bed.rogue.dir / "client.key"),
        "set rest_api.cert_file/key_file to a certificate its CA signed"),
}


@pytest.mark.parametrize("case", MISMATCHES)
def test_a_tls_mismatch_is_one_line_with_the_fix_and_changes_nothing(tls_bed, tmp_path, case):
    make_inventory, says = MISMATCHES[case]
    before = _snapshot(tls_bed)
    out = migrate("execute", "-i", make_inventory(tls_bed, tmp_path), "--dc", "dc2", "--yes",
                  "--state-dir", str(tmp_path / "state"))
    assert out.returncode == 1, explain(out)
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr + out.stdout
    assert says in out.stderr, out.stderr
    # etcd is reached per site, not per member: its line names the endpoint instead.
    where = SITE_BY_NAME["dc1"].etcd_host if "etcd" in case else "dc"
    assert where in out.stderr
    assert _snapshot(tls_bed) == before


def test_a_certificate_for_another_host_is_one_line_with_the_fix_and_changes_nothing(tls_bed, tmp_path):
    """dc1's replica is given the certificate of dc1's primary (a reissue for the wrong host) and
    reloads it on SIGHUP; its PostgreSQL keeps running."""
    primary = next(m for m in SITE_BY_NAME["dc1"].members
                   if tls_bed.patroni_state(m)["role"] == "primary")
    replica = next(m for m in SITE_BY_NAME["dc1"].members if m is not primary)
    own_cert, own_key = tls_bed.cert(replica.name)
    saved_cert, saved_key = tmp_path / "own.crt", tmp_path / "own.key"
    saved_cert.write_text(own_cert.read_text())
    saved_key.write_text(own_key.read_text())
    before = _snapshot(tls_bed)
    tls_bed.serve_rest_certificate(replica, *tls_bed.cert(primary.name))
    try:
        out = migrate("execute", "-i", str(tls_bed.inventory_path), "--dc", "dc2", "--yes",
                      "--state-dir", str(tmp_path / "state"))
        assert out.returncode == 1, explain(out)
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr + out.stdout
        assert (f"{replica.name}: the TLS certificate of Patroni REST API at https://{replica.host}:8008 "
                "is not issued for that host name or address") in out.stderr, out.stderr
        # Blocked before any change: the pause path would have needed this member's answer.
        assert "pause-path-reaches-source" in out.stderr
    finally:
        tls_bed.serve_rest_certificate(replica, saved_cert, saved_key)
    assert _snapshot(tls_bed) == before


def test_switchover_over_tls_loses_nothing(tls_bed, tmp_path):
    """One move, dc1 -> dc2, with every REST and etcd call over TLS; the plain testbed rebuilt after
    this module puts dc1 back, so the way back (the same code, mirrored) is not run here."""
    with WriterSampler(tls_bed) as sampler, WriteLedger(tls_bed, table="ledger_tls") as ledger:
        out = migrate("execute", "-i", str(tls_bed.inventory_path), "--dc", "dc2", "--yes",
                      "--state-dir", str(tmp_path / "state"))
        assert out.returncode == 0, explain(out)
        assert_primary_site(tls_bed, SITE_BY_NAME["dc2"])
        time.sleep(1)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(tls_bed, ledger)
