"""The extra services' shape, without starting anything: every svc<k> inventory the testbed writes
loads, names its own scopes on demo's etcds, and no two members of the testbed share an address."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from migrator.model.inventory import load_inventory
from tests.testbed import MEMBER_BY_NAME, SITE_BY_NAME, Testbed
from tests.testbed.services import (
    MAX_SERVICES,
    ExtraServices,
    extra_services,
    inventory_file,
    service_member,
)

LOCAL_FILE_LINE = re.compile(r"^\s*(?:password: file:|key_file: |known_hosts: )(\S+)\s*$", re.M)


def test_every_service_inventory_loads_with_its_own_scopes_on_demos_etcds(tmp_path: Path):
    testbed = Testbed(tmp_path / "bed")
    services = ExtraServices(testbed)
    demo = load_inventory_with_files(tmp_path, testbed.inventory_text(), tmp_path / "demo.yml")
    scopes = {(name, site.scope) for name, site in demo.sites.items()}
    for service in extra_services(MAX_SERVICES):
        path = services.write_inventory(service)
        assert path == inventory_file(testbed.base, service)
        inventory = load_inventory_with_files(tmp_path, path.read_text(), path)
        assert inventory.service == service.name
        for name, site in inventory.sites.items():
            assert site.scope == f"{service.name}-{name}"
            assert site.namespace == demo.sites[name].namespace
            assert site.dcs.endpoints == demo.sites[name].dcs.endpoints, "no etcd of its own"
            assert [m.name for m in site.members] == [f"{service.name}-{name}-a"]
            scopes.add((name, site.scope))
    assert len(scopes) == 2 * (MAX_SERVICES + 1), "two services share a scope"


def test_no_two_testbed_members_share_an_address_and_names_resolve_back():
    members = list(MEMBER_BY_NAME.values()) + [m for s in extra_services(MAX_SERVICES) for m in s.members]
    hosts = [m.host for m in members] + [site.etcd_host for site in SITE_BY_NAME.values()]
    assert len(set(hosts)) == len(hosts)
    for member in members[len(MEMBER_BY_NAME) :]:
        assert service_member(member.name) == member
    assert service_member("dc1-a") is None and service_member(f"svc{MAX_SERVICES + 1}-dc1-a") is None


def test_more_services_than_the_testbed_holds_is_refused():
    with pytest.raises(ValueError, match="holds"):
        extra_services(MAX_SERVICES + 1)


def load_inventory_with_files(tmp_path: Path, text: str, path: Path):
    """Create the local files the inventory names (secrets, key, known_hosts), then load it."""
    for local_file in LOCAL_FILE_LINE.findall(text):
        file = Path(local_file)
        file.parent.mkdir(parents=True, exist_ok=True)
        if not file.exists():
            file.write_text(f"secret-of-{file.name}\n")
    path.write_text(text)
    return load_inventory(path)
