"""An unreachable member: one line naming the member and the fix, exit 1, and nothing changed on
either site (issue 6, case 10: unreachable host). The TLS half of the case is in test_tls.py.

Three real faults: a member address where nothing listens (the inventory names an unused loopback
address for it, so REST, PostgreSQL and SSH are all refused), a member whose Patroni (and with it
its PostgreSQL) is stopped while its host and sshd stay up, and sshd stopped on every host. A black-holed address (packets
dropped, every call running into its timeout) needs a firewall rule this testbed cannot set.
"""

from __future__ import annotations

import pytest

from tests.e2e.test_execute import explain, migrate
from tests.testbed import MEMBER_BY_NAME, SITE_BY_NAME
from tests.testbed.sshd import start_sshd
from tests.testbed.topology import NET

pytestmark = pytest.mark.testbed

NOWHERE = f"127.{NET}.9.9"  # on loopback, and nothing of the testbed listens there


def _roles(testbed) -> dict[str, str | None]:
    roles = {}
    for name, member in MEMBER_BY_NAME.items():
        try:
            roles[name] = testbed.patroni_state(member).get("role")
        except Exception:  # noqa: BLE001 - a stopped member has no role
            roles[name] = None
    return roles


def _snapshot(testbed) -> tuple[dict, dict]:
    return ({name: testbed.get_config(site) for name, site in SITE_BY_NAME.items()}, _roles(testbed))


def _by_role(testbed, site: str, role: str) -> str:
    return next(m.name for m in SITE_BY_NAME[site].members
                if testbed.patroni_state(m).get("role") == role)


def _moved_to_nowhere(testbed, tmp_path, member_name: str) -> str:
    member = MEMBER_BY_NAME[member_name]
    text = testbed.inventory_path.read_text()
    for old, new in ((f"host: {member.host}\n", f"host: {NOWHERE}\n"),
                     (f"api_url: http://{member.host}:8008", f"api_url: http://{NOWHERE}:8008")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    return str(path)


def _assert_one_line_and_nothing_changed(testbed, out, before, member: str, fix: str) -> None:
    assert out.returncode == 1, explain(out)
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr + out.stdout, out.stderr
    assert member in out.stderr and fix in out.stderr, out.stderr
    assert _snapshot(testbed) == before


@pytest.mark.parametrize(("site", "role", "fix"), [
    ("dc1", "primary", "refused the connection; check that Patroni runs there"),
    ("dc2", "standby_leader", "refused the connection; check that Patroni runs there"),
    ("dc2", "replica", "check the host, the port and that sshd runs"),
])
def test_a_member_address_where_nothing_listens(baseline, tmp_path, site, role, fix):
    member = _by_role(baseline, site, role)
    before = _snapshot(baseline)
    inventory = _moved_to_nowhere(baseline, tmp_path, member)
    out = migrate("execute", "-i", inventory, "--dc", "dc2", "--yes",
                  "--state-dir", str(tmp_path / "state"))
    _assert_one_line_and_nothing_changed(baseline, out, before, member, fix)
    check = migrate("check", "-i", inventory)
    assert member in check.stdout and NOWHERE in check.stdout, explain(check)
    assert "Traceback" not in check.stderr


def test_a_member_whose_patroni_is_stopped(baseline, tmp_path):
    replica = MEMBER_BY_NAME[_by_role(baseline, "dc1", "replica")]
    baseline.stop_patroni(replica)  # a clean stop: its PostgreSQL stops with it
    try:
        before = _snapshot(baseline)
        assert before[1][replica.name] is None
        out = migrate("execute", "-i", str(baseline.inventory_path), "--dc", "dc2", "--yes",
                      "--state-dir", str(tmp_path / "state"))
        # Refused at preflight: its version is unknown, so the plan takes the pause path, which
        # needs every dc1 member's REST API (check pause-path-reaches-source).
        _assert_one_line_and_nothing_changed(baseline, out, before, replica.name,
                                             "refused the connection; check that "
                                             "Patroni runs there")
        assert "pause-path-reaches-source" in out.stderr
    finally:
        baseline.start_patroni(replica)
        baseline.wait_healthy(90)


def test_every_host_without_sshd(baseline, tmp_path):
    """The testbed's one sshd serves every member address: stopping it makes every host refuse
    SSH while Patroni and PostgreSQL keep running (the token read and the replication access
    proof need SSH)."""
    source_leader = _by_role(baseline, "dc1", "primary")
    baseline.registry.stop(["sshd"], timeout=10)
    try:
        before = _snapshot(baseline)
        out = migrate("execute", "-i", str(baseline.inventory_path), "--dc", "dc2", "--yes",
                      "--state-dir", str(tmp_path / "state"))
        # Refused at preflight: the token read on the source leader cannot run (token-readable).
        _assert_one_line_and_nothing_changed(baseline, out, before, source_leader,
                                             "check the host, the port and that sshd runs")
        assert ":2222 refused the connection" in out.stderr and "token-readable" in out.stderr
    finally:
        start_sshd(baseline.base, baseline.registry)
