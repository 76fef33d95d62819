"""The inventory's SSH section like the operator's ssh (issue 14): `key_file` optional (agent,
config file), `config_file`, `jump_host` in text or mapping form; old inventories unchanged; the
manual commands of a plan carry the same route; every hop fabric would dial gets known_hosts and
the refusal of unknown keys."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from migrator.adapters.ssh_route import build_route, connect_kwargs
from migrator.errors import InventoryError
from migrator.model.inventory import JumpHost, ResolvedSsh, load_inventory
from tests.unit.test_inventory import FIXTURE, TEST_ENV, write_two_sites
from tests.unit.test_planner import example_inventory, make_plan


@pytest.fixture(autouse=True)
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)


EAST_SSH = "    ssh:\n      key_file: ssh/id_ed25519\n      known_hosts: ssh/known_hosts\n"


def load_with_east_ssh(tmp_path: Path, east_ssh: str):
    text = FIXTURE.read_text()
    assert EAST_SSH in text
    return load_inventory(write_two_sites(tmp_path, text.replace(EAST_SSH, east_ssh))), text.replace(EAST_SSH, east_ssh)


def test_an_inventory_without_the_new_keys_resolves_as_before(tmp_path):
    inventory = load_inventory(write_two_sites(tmp_path))
    east = inventory.site("dc-east")
    resolved = east.ssh_for(east.members[0])
    assert resolved.key_file == tmp_path / "ssh" / "id_ed25519"
    assert (resolved.config_file, resolved.jump_host) == (None, None)


def test_key_file_may_be_left_out_for_the_agent(tmp_path):
    inventory, _ = load_with_east_ssh(tmp_path, "    ssh:\n      known_hosts: ssh/known_hosts\n")
    east = inventory.site("dc-east")
    assert east.ssh.key_file is None
    assert east.ssh_for(east.members[0]).key_file is None


@pytest.mark.parametrize("written, host, port, user", [
    ("bastion.example.net", "bastion.example.net", None, None),
    ("admin@bastion.example.net", "bastion.example.net", None, "admin"),
    ("admin@10.0.0.9:2200", "10.0.0.9", 2200, "admin"),
    ("'[2001:db8::9]:22'", "2001:db8::9", 22, None),
    ("{host: bastion, port: 22, user: ops}", "bastion", 22, "ops"),
])
def test_jump_host_in_text_or_mapping_form(tmp_path, written, host, port, user):
    inventory, _ = load_with_east_ssh(tmp_path, EAST_SSH + f"      jump_host: {written}\n")
    east = inventory.site("dc-east")
    assert east.ssh_for(east.members[0]).jump_host == JumpHost(host=host, port=port, user=user)
    west = inventory.site("dc-west")
    assert west.ssh_for(west.members[0]).jump_host is None


def test_a_member_override_of_the_jump_host_wins_for_that_member_only(tmp_path):
    text = FIXTURE.read_text().replace("        user: admin\n", "        user: admin\n        jump_host: other:2222\n")
    inventory = load_inventory(write_two_sites(tmp_path, text.replace(EAST_SSH, EAST_SSH + "      jump_host: b1\n")))
    east = inventory.site("dc-east")
    assert [east.ssh_for(m).jump_host for m in east.members] == [JumpHost(host="b1"), JumpHost(host="other", port=2222)]


def test_config_file_resolves_against_the_inventory_directory(tmp_path):
    (tmp_path / "ssh").mkdir()
    (tmp_path / "ssh" / "config").write_text("Host *\n")
    inventory, _ = load_with_east_ssh(tmp_path, EAST_SSH + "      config_file: ssh/config\n")
    east = inventory.site("dc-east")
    assert east.ssh_for(east.members[1]).config_file == tmp_path / "ssh" / "config"


@pytest.mark.parametrize("line, fragments", [
    ("      jump_host: 'admin@bastion:22:22'\n", ["jump host 'admin@bastion:22:22' is not in the form [user@]host[:port]",
                                                  "write it like admin@bastion.example.net:22"]),
    ("      jump_host: '@bastion'\n", ["jump host '@bastion' is not in the form"]),
    ("      jump_host: 'bastion:99999'\n", ["must be at most 65535, got 99999"]),
    ("      jump_host: {host: bastion, via: x}\n", ["unknown key 'via'"]),
    ("      config_file: ssh/no_such_config\n", ["ssh/no_such_config does not exist"]),
])
def test_a_bad_new_key_is_one_line_with_path_line_and_fix(tmp_path, line, fragments):
    text = FIXTURE.read_text().replace(EAST_SSH, EAST_SSH + line)
    path = write_two_sites(tmp_path, text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    key = line.split(":")[0].strip()
    line_no = next(n for n, text_line in enumerate(text.splitlines(), 1) if text_line.startswith(f"      {key}:"))
    assert message.startswith(f"inventory {path}: sites.dc-east.ssh.{key}"), message
    assert f"(line {line_no})" in message, message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def test_manual_commands_go_through_the_same_config_file_and_jump_host():
    plain = make_plan()
    manual = "\n".join(line for s in plain.steps for line in s.manual)
    assert "ssh -p 2222 root@127.0.1.1 " in manual and " -J " not in manual

    source = (Path(__file__).resolve().parents[2] / "examples" / "testbed.yml").read_text()
    edited = source.replace("      known_hosts:", "      jump_host: ops@bastion.example.net:22\n"
                            "      config_file: /etc/migrator/ssh config\n      known_hosts:")
    routed = make_plan(inventory=example_inventory(edited))
    manual = "\n".join(line for s in routed.steps for line in s.manual)
    assert "ssh -F '/etc/migrator/ssh config' -J ops@bastion.example.net:22 -p 2222 root@127.0.1.1 " in manual


def _target(tmp_path: Path, **changes) -> ResolvedSsh:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("[bastion.example.net]:22 ssh-ed25519 "
                           "AAAAC3NzaC1lZDI1NTE5AAAAIHK1QOw4Vh5wbk8ItqaFMq0Qk4yOvQ5dG4tt2lPppFce\n")
    fields = dict(host="db1.example.net", port=22, user="postgres", key_file=None, known_hosts=known_hosts,
                  config_file=None, jump_host=None, accept_unknown_host_keys=False)
    return ResolvedSsh(**(fields | changes))


def test_a_proxyjump_chain_from_the_config_file_is_dialled_in_order_and_every_hop_refuses_unknown_keys(tmp_path):
    """Construction only (nothing is dialled). `ProxyJump a,b` means a first, then b through a,
    as ssh(1) does (fabric's own builder reverses them); a hop's own ProxyJump is followed; a
    wildcard entry that matches a jump host itself does not send it through itself."""
    config = tmp_path / "ssh_config"
    config.write_text("Host db1.example.net\n    ProxyJump first.example.net,ops@second.example.net:2200\n"
                      "Host first.example.net\n    ProxyJump outer.example.net\n"
                      "Host *.example.net\n    ProxyJump outer.example.net\n")
    route = build_route(_target(tmp_path, config_file=config), timeout=5)
    assert [(h.host, h.port) for h in route.hops] == [
        ("outer.example.net", 22), ("first.example.net", 22), ("second.example.net", 2200)]
    assert route.hops[2].user == "ops"
    for conn in [*route.hops, route.conn]:
        assert isinstance(conn.client._policy, paramiko.RejectPolicy)
        assert conn.client.get_host_keys().lookup("[bastion.example.net]:22") is not None
        assert conn.connect_timeout == 5 and conn.connect_kwargs["channel_timeout"] == 5


def test_a_proxyjump_loop_in_the_config_file_is_refused(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host a\n    ProxyJump b\nHost b\n    ProxyJump a\nHost db1.example.net\n    ProxyJump a\n")
    with pytest.raises(ValueError, match="longer than 10 hops"):
        build_route(_target(tmp_path, config_file=config), timeout=5)


def test_the_inventorys_jump_host_is_the_first_hop(tmp_path):
    route = build_route(_target(tmp_path, jump_host=JumpHost(host="bastion.example.net", user="ops")), timeout=3)
    assert [(h.user, h.host, h.port) for h in route.hops] == [("ops", "bastion.example.net", 22)]
    assert route.conn.gateway is route.hops[0]


def test_keys_the_inventory_names_alone_else_the_agent_and_the_default_keys(tmp_path):
    named = connect_kwargs(_target(tmp_path, key_file=tmp_path / "id"), 5)
    assert (named["key_filename"], named["allow_agent"], named["look_for_keys"]) == ([str(tmp_path / "id")], False, False)
    agent = connect_kwargs(_target(tmp_path), 5)
    assert "key_filename" not in agent and agent["allow_agent"] and agent["look_for_keys"]


def test_the_config_files_identity_file_is_offered_only_when_the_inventory_names_no_key(tmp_path):
    config = tmp_path / "ssh_config"
    config.write_text("Host *\n    IdentityFile ~/.ssh/from_config\n    ProxyJump bastion.example.net\n"
                      "Host bastion.example.net\n    ProxyJump none\n")
    named = build_route(_target(tmp_path, config_file=config, key_file=tmp_path / "id"), timeout=5)
    assert [c.connect_kwargs["key_filename"] for c in [*named.hops, named.conn]] == [[str(tmp_path / "id")]] * 2
    unnamed = build_route(_target(tmp_path, config_file=config), timeout=5)
    for conn in [*unnamed.hops, unnamed.conn]:
        assert [Path(k).name for k in conn.connect_kwargs["key_filename"]] == ["from_config"]
        assert conn.connect_kwargs["allow_agent"]
