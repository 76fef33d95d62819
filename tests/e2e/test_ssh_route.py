"""SSH like the operator's own `ssh` (issue 14): every member reached only through a bastion, with
the keys an ssh-agent serves and no `key_file`; the bastion's host key verified like the
members'; OpenSSH certificates offered from beside the key.

The bastion is a second, real sshd on 127.<net>.9.1 with its own host key (tests/testbed/bastion.py).
Proof that a connection went through it: its DEBUG1 log line for each forwarded connection
(`server_request_direct_tcpip ... target <member> port 2222`), and that a known_hosts without the
bastion's line (the members' lines all there) leaves every member unreachable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrator.adapters.ssh import SshSession
from migrator.errors import UnreachableError
from migrator.model.inventory import JumpHost, ResolvedSsh
from tests.e2e.test_execute import assert_primary_site, explain, writable
from tests.helpers.ledger import WriteLedger, WriterSampler, assert_no_acknowledged_commit_lost
from tests.testbed import MEMBER_BY_NAME, SITE_BY_NAME
from tests.testbed.bastion import running_agent, running_bastion
from tests.testbed.topology import NET, SSH_PORT

pytestmark = pytest.mark.testbed

MIGRATE = [sys.executable, "-m", "migrator.cli"]
DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]


@pytest.fixture(scope="module")
def bastion(testbed):
    with running_bastion(testbed.base, testbed.ssh) as started:
        yield started


@pytest.fixture(scope="module")
def agent(testbed):
    with running_agent(testbed.base / "agent", testbed.ssh.client_key) as sock:
        yield sock


def via_bastion(baseline, bastion, tmp_path: Path, known_hosts: Path | None = None) -> Path:
    """The testbed's inventory with no key_file, every site behind the bastion, and a
    known_hosts with the members' keys and the bastion's."""
    if known_hosts is None:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(baseline.ssh.known_hosts.read_text() + bastion.known_hosts_line + "\n")
    text = baseline.inventory_path.read_text()
    key_line = f"      key_file: {baseline.ssh.client_key}\n"
    assert text.count(key_line) == 2
    text = text.replace(key_line, f"      jump_host: root@{bastion.host}:{bastion.port}\n")
    text = text.replace(f"known_hosts: {baseline.ssh.known_hosts}", f"known_hosts: {known_hosts}")
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    return path


def migrate(tmp_path: Path, agent_sock: str | None, *args: str, timeout: float = 300):
    """The CLI with a HOME of its own (no ~/.ssh keys, no ~/.ssh/config to fall back on) and,
    when given, the test's agent as its only source of keys."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"} | {"HOME": str(home)}
    if agent_sock:
        env["SSH_AUTH_SOCK"] = agent_sock
    return subprocess.run([*MIGRATE, *args], capture_output=True, text=True, timeout=timeout, env=env)


def forwarded(bastion) -> dict[str, int]:
    return {name: bastion.forwarded_to(member.host) for name, member in MEMBER_BY_NAME.items()}


def test_check_and_plan_reach_every_member_through_the_bastion_with_the_agents_key(
        baseline, bastion, agent, tmp_path):
    inventory = str(via_bastion(baseline, bastion, tmp_path))
    before = forwarded(bastion)
    check = migrate(tmp_path, agent, "check", "-i", inventory)
    assert check.returncode == 0, explain(check)
    after_check = forwarded(bastion)
    assert all(after_check[name] > before[name] for name in MEMBER_BY_NAME), (before, after_check)

    plan = migrate(tmp_path, agent, "plan", "-i", inventory, "--dc", "dc2")
    assert plan.returncode == 0, explain(plan)
    after_plan = forwarded(bastion)
    assert all(after_plan[name] > after_check[name] for name in MEMBER_BY_NAME), (after_check, after_plan)

    # The agent was the only key: without it, the same inventory cannot log in, in one line.
    no_agent = migrate(tmp_path, None, "execute", "-i", inventory, "--dc", "dc2", "--yes",
                       "--state-dir", str(tmp_path / "state"))
    assert no_agent.returncode == 1, explain(no_agent)
    assert no_agent.stderr.count("\n") == 1 and "Traceback" not in no_agent.stderr + no_agent.stdout
    assert f"no SSH key to log in as jump host root@{bastion.host}:{SSH_PORT}" in no_agent.stderr
    assert_primary_site(baseline, DC1)


def test_an_unknown_bastion_key_is_refused_in_one_line_and_nothing_changes(baseline, bastion, agent, tmp_path):
    # Every member's key is known; only the bastion's is not.
    inventory = str(via_bastion(baseline, bastion, tmp_path, known_hosts=baseline.ssh.known_hosts))
    configs = {name: baseline.get_config(site) for name, site in SITE_BY_NAME.items()}
    before = forwarded(bastion)
    out = migrate(tmp_path, agent, "execute", "-i", inventory, "--dc", "dc2", "--yes",
                  "--state-dir", str(tmp_path / "state"))
    assert out.returncode == 1, explain(out)
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr + out.stdout
    assert (f"SSH host key of jump host root@{bastion.host}:{SSH_PORT} is not in {baseline.ssh.known_hosts}; "
            f"add it after verifying it (ssh-keyscan -p {SSH_PORT} {bastion.host})") in out.stderr
    assert forwarded(bastion) == before  # refused before any forwarding was asked for
    assert_primary_site(baseline, DC1)
    assert {name: baseline.get_config(site) for name, site in SITE_BY_NAME.items()} == configs
    assert bastion.known_hosts_line not in baseline.ssh.known_hosts.read_text()  # never learned


def test_an_openssh_certificate_logs_in_where_only_the_ca_is_trusted_from_a_file_or_the_agent(
        testbed, tmp_path, monkeypatch):
    """A throw-away user CA; an sshd that trusts only it (TrustedUserCAKeys, no authorized_keys);
    a key whose KEY-cert.pub the CA signed for principal root. The same key without its
    certificate is refused; with it, it logs in from key_file and, with no key_file, from an
    ssh-agent that ssh-add gave the key and its certificate."""
    ca, user_key = tmp_path / "ca", tmp_path / "id_ed25519"
    for path in (ca, user_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    host = f"127.{NET}.9.2"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh keys to fall back on
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    with running_bastion(testbed.base, testbed.ssh, host=host, trusted_user_ca=Path(f"{ca}.pub")) as ca_only:
        known_hosts = tmp_path / "known_hosts"
        known_hosts.write_text(ca_only.known_hosts_line + "\n")
        target = ResolvedSsh(host=host, port=SSH_PORT, user="root", key_file=user_key, known_hosts=known_hosts,
                             config_file=None, jump_host=None, accept_unknown_host_keys=False)
        with pytest.raises(UnreachableError, match=f"SSH login as root@{host}:{SSH_PORT} with key {user_key} "
                                                   "was refused"):
            with SshSession("ca-only", target, 5):
                pass
        subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", "migrator-test", "-n", "root", "-V", "+1h",
                        f"{user_key}.pub"], check=True)
        assert Path(f"{user_key}-cert.pub").exists()
        with SshSession("ca-only", target, 5) as session:
            result = session.run("id -un")
        assert (result.exit_code, result.stdout.strip()) == (0, "root")
        assert ca_only.log.read_text().count('Accepted certificate ID "migrator-test"') == 1

        with running_agent(tmp_path / "agent", user_key) as sock:
            monkeypatch.setenv("SSH_AUTH_SOCK", sock)
            with SshSession("ca-only", target.model_copy(update={"key_file": None}), 5) as session:
                result = session.run("id -un")
        assert (result.exit_code, result.stdout.strip()) == (0, "root")
        assert ca_only.log.read_text().count('Accepted certificate ID "migrator-test"') == 2


def test_a_connection_the_bastion_cannot_forward_is_one_line_naming_both_ends(baseline, bastion, tmp_path):
    """In a process of its own with no logging set up, like the CLI: paramiko logs the refused
    channel at ERROR, which Python would print on stderr beside the tool's one line."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(baseline.ssh.known_hosts.read_text() + bastion.known_hosts_line + "\n")
    member = MEMBER_BY_NAME["dc1-a"]
    closed_port = 2999  # nothing listens there
    script = (
        "import sys\n"
        "from migrator.adapters.ssh import SshSession\n"
        "from migrator.errors import UnreachableError\n"
        "from migrator.model.inventory import JumpHost, ResolvedSsh\n"
        f"target = ResolvedSsh(host={member.host!r}, port={closed_port}, user='root',\n"
        f"    key_file={str(baseline.ssh.client_key)!r}, known_hosts={str(known_hosts)!r},\n"
        f"    jump_host=JumpHost(host={bastion.host!r}, port={bastion.port}, user='root'),\n"
        "    accept_unknown_host_keys=False)\n"
        "try:\n"
        f"    SshSession({member.name!r}, target, 5).open()\n"
        "except UnreachableError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout == (
        f"dc1-a: jump host root@{bastion.host}:{SSH_PORT} could not open a connection to "
        f"{member.host}:{closed_port} (Connect failed); check that it may reach that host and port "
        "(AllowTcpForwarding on the jump host)\n"), explain(out)
    assert out.stderr == ""
    assert bastion.forwarded_to(member.host, closed_port) >= 1


def test_a_jump_host_from_the_ssh_config_file_gets_the_same_host_key_check(baseline, bastion, agent, tmp_path):
    """`ssh.config_file` with a ProxyJump for the members: fabric builds that hop itself; it must
    be verified against known_hosts like the inventory's own jump host."""
    config = tmp_path / "ssh_config"
    config.write_text(f"Host 127.{NET}.*.* !{bastion.host}\n    ProxyJump root@{bastion.host}:{bastion.port}\n")
    member = MEMBER_BY_NAME["dc1-a"]

    def target(known_hosts: Path) -> ResolvedSsh:
        return ResolvedSsh(host=member.host, port=SSH_PORT, user="root", key_file=baseline.ssh.client_key,
                           known_hosts=known_hosts, config_file=config, jump_host=None,
                           accept_unknown_host_keys=False)

    with pytest.raises(UnreachableError, match=f"SSH host key of jump host root@{bastion.host}:{SSH_PORT} is not in"):
        with SshSession(member.name, target(baseline.ssh.known_hosts), 5):
            pass
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(baseline.ssh.known_hosts.read_text() + bastion.known_hosts_line + "\n")
    before = bastion.forwarded_to(member.host)
    with SshSession(member.name, target(known_hosts), 5) as session:
        assert session.run("true").exit_code == 0
    assert bastion.forwarded_to(member.host) == before + 1


@pytest.mark.slow
def test_execute_and_rollback_through_the_bastion_lose_nothing(baseline, bastion, agent, tmp_path):
    """The SSH steps (token read, controldata, seeding checks) all run through the bastion."""
    inventory = str(via_bastion(baseline, bastion, tmp_path))
    state = str(tmp_path / "state")
    before = forwarded(bastion)
    with WriterSampler(baseline) as sampler, WriteLedger(baseline, table="ledger_bastion") as ledger:
        out = migrate(tmp_path, agent, "execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", state)
        assert out.returncode == 0, explain(out)
        assert_primary_site(baseline, DC2)
        out = migrate(tmp_path, agent, "rollback", "-i", inventory, "--yes", "--state-dir", state)
        assert out.returncode == 0, explain(out)
        assert_primary_site(baseline, DC1)
    assert sampler.violations == []
    assert_no_acknowledged_commit_lost(baseline, ledger)
    assert len(writable(baseline)) == 1
    after = forwarded(bastion)
    assert all(after[name] > before[name] for name in MEMBER_BY_NAME), (before, after)
