"""Inventory loading: the example contract, defaults, and one-line errors with path and line."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from migrator.errors import (
    GateTimeout,
    InventoryError,
    MigratorError,
    PreflightError,
    UnreachableError,
    UnsafeStateError,
    UsageError,
)
from migrator.model.inventory import Inventory, load_inventory, parse_inventory
from migrator.model.secrets import SecretRef, mask

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_INVENTORY = REPO_ROOT / "examples" / "testbed.yml"
EXAMPLE_BASE_DIR = "/tmp/migrator-testbed"
FIXTURE = Path(__file__).parent / "fixtures" / "inventory" / "two_sites.yml"

SUPERUSER_PASSWORD = "su-Secret-1"
REPLICATION_PASSWORD = "repl-Secret-2"
RESTAPI_PASSWORD = "api-Secret-3"
ETCD_PASSWORD = "etcd-Secret-4"
TEST_ENV = {"MIGRATOR_TEST_SUPERUSER": SUPERUSER_PASSWORD, "MIGRATOR_TEST_ETCD": ETCD_PASSWORD}

# Keys whose values are files on the machine running migrate (must exist at load time).
LOCAL_FILE_LINE = re.compile(
    r"^\s*(?:password: file:|key_file: |known_hosts: |ca_file: |cert_file: )(\S+)\s*$", re.M
)


def write_example_inventory(directory: Path) -> Path:
    """examples/testbed.yml with its base directory moved into `directory`, files created."""
    base = directory / "testbed"
    text = EXAMPLE_INVENTORY.read_text().replace(EXAMPLE_BASE_DIR, str(base))
    for local_file in LOCAL_FILE_LINE.findall(text):
        path = Path(local_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"secret-of-{path.name}\n")
    inventory = directory / "inventory.yml"
    inventory.write_text(text)
    return inventory


def write_two_sites(directory: Path, text: str | None = None) -> Path:
    """The two_sites fixture (or an edited copy) next to the files it refers to."""
    (directory / "secrets").mkdir(parents=True, exist_ok=True)
    (directory / "ssh").mkdir(exist_ok=True)
    (directory / "secrets" / "replication").write_text(REPLICATION_PASSWORD + "\n")
    (directory / "secrets" / "restapi").write_text(RESTAPI_PASSWORD + "\n")
    (directory / "ssh" / "id_ed25519").write_text("not a real key\n")
    (directory / "ssh" / "known_hosts").write_text("")
    inventory = directory / "inv.yml"
    inventory.write_text(FIXTURE.read_text() if text is None else text)
    return inventory


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in TEST_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def two_sites(tmp_path: Path, secret_env: None) -> Inventory:
    return load_inventory(write_two_sites(tmp_path))


# --- the example inventory is the contract ---------------------------------------------------


def test_example_testbed_inventory_loads_with_its_sites_members_and_resolved_paths(tmp_path):
    path = write_example_inventory(tmp_path)
    raw = YAML(typ="safe").load(path.read_text())

    inventory = load_inventory(path)

    assert inventory.service == raw["service"]
    assert list(inventory.sites) == ["dc1", "dc2"]
    for site_name, site in inventory.sites.items():
        raw_site = raw["sites"][site_name]
        assert [m.name for m in site.members] == [m["name"] for m in raw_site["members"]]
        assert site.replication_slot == raw_site.get("replication_slot", site_name)
        for member in site.members:
            ssh = site.ssh_for(member)
            assert ssh.host == member.host  # no per-member override in the example
            assert ssh.port == raw_site["ssh"]["port"]
            assert ssh.user == raw_site["ssh"]["user"]
            assert ssh.key_file == Path(raw_site["ssh"]["key_file"])
            assert ssh.key_file.is_file()
            assert ssh.accept_unknown_host_keys is False
            data_dir = site.data_dir_for(member)
            assert data_dir == raw_site["postgres"]["data_dir"].replace("{member}", member.name)
            assert "{" not in data_dir and data_dir.startswith(str(tmp_path))
            assert "{" not in site.patroni_config_for(member)
    assert {m.name for s in inventory.sites.values() for m in s.members} == {
        m["name"] for s in raw["sites"].values() for m in s["members"]
    }
    assert inventory.secrets()  # every secret file was read
    assert all(value.startswith("secret-of-") for value in inventory.secrets())


def test_example_testbed_inventory_validates_without_its_files_when_file_checks_are_off():
    inventory = parse_inventory(
        EXAMPLE_INVENTORY.read_text(), source="testbed.yml", base_dir=REPO_ROOT,
        check_local_files=False,
    )
    assert set(inventory.sites) == {"dc1", "dc2"}


# --- defaults and resolved helpers ------------------------------------------------------------


def test_defaults_are_filled_in_and_urls_and_namespace_normalised(two_sites):
    east, west = two_sites.site("dc-east"), two_sites.site("dc-west")
    assert two_sites.gates.connect_timeout_seconds == 5
    assert two_sites.gates.max_replay_lag_bytes == 16 * 1024 * 1024
    assert two_sites.gates.lock_ttl_seconds == 30
    assert east.namespace == "/service/" and west.namespace == "/service/"
    assert east.dcs.type == "etcd3"
    assert east.dcs.endpoints == ["http://127.0.91.10:2379"]
    assert east.members[0].api_url == "http://127.0.91.1:8008"
    assert east.members[0].pg_port == 5432
    assert east.postgres.data_dir == "/var/lib/postgresql/15/main"
    assert east.patroni.config_file == "/etc/patroni/patroni.yml"
    assert east.patroni.stop_command == "sudo systemctl stop patroni"
    assert east.ssh.port == 22 and east.ssh.user == "postgres"


def test_replication_slot_defaults_to_the_site_name_with_underscores(two_sites):
    assert two_sites.site("dc-east").replication_slot == "dc_east"
    assert two_sites.site("dc-west").replication_slot == "from_west"


def test_relative_local_paths_resolve_against_the_inventory_directory(tmp_path, secret_env, monkeypatch):
    path = write_two_sites(tmp_path / "conf")
    monkeypatch.chdir(tmp_path)  # somewhere else than the inventory's directory
    inventory = load_inventory(path)
    east = inventory.site("dc-east")
    assert east.ssh.key_file == tmp_path / "conf" / "ssh" / "id_ed25519"
    assert inventory.credentials.replication.password.reveal() == REPLICATION_PASSWORD


def test_member_ssh_override_replaces_only_the_fields_it_sets(two_sites):
    east = two_sites.site("dc-east")
    plain, overridden = east.members
    assert east.ssh_for(plain).host == "127.0.91.1"
    resolved = east.ssh_for(overridden)
    assert (resolved.host, resolved.port, resolved.user) == ("127.0.91.99", 2200, "admin")
    assert resolved.key_file == east.ssh.key_file


def test_data_dir_and_patroni_config_expand_the_member_name(two_sites):
    west = two_sites.site("dc-west")
    member = west.members[0]
    assert west.data_dir_for(member) == "/srv/pg/west-1"
    assert west.patroni_config_for(member) == "/etc/patroni/patroni.yml"


def test_member_lookup_returns_its_site(two_sites):
    site_name, site, member = two_sites.member("east-2")
    assert (site_name, member.host) == ("dc-east", "127.0.91.2")
    assert site is two_sites.sites["dc-east"]
    with pytest.raises(UsageError, match="no member 'nope'"):
        two_sites.member("nope")


def test_unknown_site_is_a_usage_error_that_lists_the_sites(two_sites):
    with pytest.raises(UsageError) as caught:
        two_sites.site("dc9")
    assert str(caught.value) == "no site 'dc9' in the inventory; sites: dc-east, dc-west"
    assert caught.value.exit_code == 2


def test_models_are_frozen(two_sites):
    with pytest.raises(Exception):
        two_sites.service = "other"  # type: ignore[misc]


# --- bad inventories: one line with file, YAML path, line and fix ------------------------------

Edit = Callable[[str], str]


def _replace(old: str, new: str, count: int = 1) -> Edit:
    def edit(text: str) -> str:
        assert old in text, f"fixture no longer contains {old!r}"
        return text.replace(old, new, count)

    return edit


def _cut_from(marker: str) -> Edit:
    return lambda text: text[: text.index(marker)]


def _line_of(text: str, marker: str, occurrence: int = 1) -> int:
    lines = [n for n, line in enumerate(text.splitlines(), start=1) if marker in line]
    return lines[occurrence - 1]


BAD_CASES = {
    # id: (edit, YAML path, (line marker, occurrence), fragments the message must contain)
    "unknown key": (
        _replace("    scope: shop-east\n", "    scope: shop-east\n    foo: 1\n"),
        "sites.dc-east.foo", ("    foo: 1", 1),
        ["unknown key 'foo'", "allowed keys here: scope, namespace, replication_slot, dcs"],
    ),
    "wrong type": (
        _replace("      host: 127.0.92.1\n", "      host: 127.0.92.1\n      pg_port: abc\n"),
        "sites.dc-west.members[0].pg_port", ("pg_port: abc", 1),
        ["expected an integer, got 'abc'"],
    ),
    "member name used in two sites": (
        _replace("- name: west-1", "- name: east-2"),
        "sites.dc-west.members[0].name", ("- name: east-2", 2),
        ["member name 'east-2' is also used in site dc-east",
         "Patroni needs member names unique across sites"],
    ),
    "member name used twice in one site": (
        _replace("- name: east-2", "- name: east-1"),
        "sites.dc-east.members[1].name", ("- name: east-1", 2),
        ["member name 'east-1' is used twice in site dc-east"],
    ),
    "inline secret": (
        _replace("password: env:MIGRATOR_TEST_SUPERUSER", "password: hunter2"),
        "credentials.superuser.password", ("password: hunter2", 1),
        ["secret written inline; put it in an environment variable (env:NAME) or a file (file:PATH)"],
    ),
    "missing key file": (
        _replace("key_file: ssh/id_ed25519", "key_file: ssh/no_such_key"),
        "sites.dc-east.ssh.key_file", ("key_file: ssh/no_such_key", 1),
        ["ssh/no_such_key does not exist", "fix the path"],
    ),
    "key file is a directory": (
        _replace("known_hosts: ssh/known_hosts", "known_hosts: ssh", 2),
        "sites.dc-east.ssh.known_hosts", ("known_hosts: ssh", 1),
        ["ssh is not a regular file"],
    ),
    "missing secret file": (
        _replace("password: file:secrets/replication", "password: file:secrets/nope"),
        "credentials.replication.password", ("file:secrets/nope", 1),
        ["secrets/nope does not exist"],
    ),
    "unset environment variable": (
        _replace("env:MIGRATOR_TEST_ETCD", "env:MIGRATOR_TEST_NEVER_SET"),
        "sites.dc-west.dcs.password", ("env:MIGRATOR_TEST_NEVER_SET", 1),
        ["environment variable MIGRATOR_TEST_NEVER_SET is not set", "export it"],
    ),
    "one site only": (
        _cut_from("  dc-west:\n"),
        "sites", ("sites:", 1),
        ["at least two sites are needed, found 1"],
    ),
    "slot used by two sites": (
        _replace("replication_slot: from_west", "replication_slot: dc_east"),
        "sites.dc-west.replication_slot", ("replication_slot: dc_east", 1),
        ["replication slot 'dc_east' is also used by site dc-east", "its own replication_slot"],
    ),
    "two members on one host and port": (
        _replace("host: 127.0.91.2", "host: 127.0.91.1"),
        "sites.dc-east.members[1].host", ("host: 127.0.91.1", 2),
        ["same host and port (127.0.91.1:5432) as member 'east-1'"],
    ),
    "missing required key": (
        _replace("    scope: shop-west\n", ""),
        "sites.dc-west.scope", ("  dc-west:", 1),
        ["missing required key 'scope'"],
    ),
    "port out of range": (
        _replace("port: 2200", "port: 70000"),
        "sites.dc-east.members[1].ssh.port", ("port: 70000", 1),
        ["must be at most 65535, got 70000"],
    ),
    "unsupported dcs": (
        _replace("      endpoints:\n      - https", "      type: consul\n      endpoints:\n      - https"),
        "sites.dc-west.dcs.type", ("type: consul", 1),
        ["expected 'etcd3', got 'consul'"],
    ),
    "gate not positive": (
        _replace("credentials:\n", "gates:\n  catchup_timeout_seconds: 0\ncredentials:\n"),
        "gates.catchup_timeout_seconds", ("catchup_timeout_seconds: 0", 1),
        ["must be greater than 0, got 0"],
    ),
    "lock ttl too short": (
        _replace("credentials:\n", "gates:\n  lock_ttl_seconds: 2\ncredentials:\n"),
        "gates.lock_ttl_seconds", ("lock_ttl_seconds: 2", 1),
        ["must be at least 5, got 2"],
    ),
    "etcd username without password": (
        _replace("      password: env:MIGRATOR_TEST_ETCD\n", ""),
        "sites.dc-west.dcs.username", ("username: root", 1),
        ["username is set but password is not"],
    ),
    "api url without scheme": (
        _replace("api_url: https://127.0.92.1:8008", "api_url: 127.0.92.1:8008"),
        "sites.dc-west.members[0].api_url", ("api_url: 127.0.92.1:8008", 1),
        ["must start with http:// or https://"],
    ),
    "bad site name": (
        _replace("  dc-west:\n", "  DC-West:\n"),
        "sites.DC-West", ("  DC-West:", 1),
        ["site name 'DC-West' is not valid", "lowercase"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_CASES), ids=list(BAD_CASES))
def test_bad_inventory_gives_one_line_with_path_line_and_fix(case, tmp_path, secret_env):
    edit, yaml_path, (marker, occurrence), fragments = BAD_CASES[case]
    text = edit(FIXTURE.read_text())
    path = write_two_sites(tmp_path, text)

    with pytest.raises(InventoryError) as caught:
        load_inventory(path)

    message = str(caught.value)
    line = _line_of(text, marker, occurrence)
    assert message.startswith(f"inventory {path}: {yaml_path} (line {line}): "), message
    for fragment in fragments:
        assert fragment in message
    assert "\n" not in message and "pydantic" not in message
    assert caught.value.exit_code == 2


def test_inline_secret_value_never_appears_in_the_error(tmp_path, secret_env):
    text = FIXTURE.read_text().replace("env:MIGRATOR_TEST_SUPERUSER", "hunter2-value")
    with pytest.raises(InventoryError) as caught:
        load_inventory(write_two_sites(tmp_path, text))
    assert "hunter2-value" not in str(caught.value)


def test_several_problems_report_the_first_in_the_file_and_count_the_rest(tmp_path, secret_env):
    text = FIXTURE.read_text().replace("host: 127.0.92.1", "host: 127.0.92.1\n      bogus: 1")
    text = text.replace("service: shop", "service: Shop!")
    with pytest.raises(InventoryError) as caught:
        load_inventory(write_two_sites(tmp_path, text))
    assert ": service (line 3): service name 'Shop!' is not valid" in str(caught.value)
    assert str(caught.value).endswith("(and 1 more problem(s))")
    assert len(caught.value.problems) == 2
    assert "unknown key 'bogus'" in caught.value.problems[1]


def test_a_misspelt_top_level_key_is_reported_before_the_key_it_leaves_missing(tmp_path, secret_env):
    text = FIXTURE.read_text().replace("credentials:", "credentialz:")
    with pytest.raises(InventoryError) as caught:
        load_inventory(write_two_sites(tmp_path, text))
    line = _line_of(text, "credentialz:")
    assert f"credentialz (line {line}): unknown key 'credentialz'" in str(caught.value)
    assert "missing required key 'credentials'" in caught.value.problems[1]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_key_file_is_reported(tmp_path, secret_env):
    path = write_two_sites(tmp_path)
    (tmp_path / "ssh" / "id_ed25519").chmod(0)
    with pytest.raises(InventoryError, match=r"id_ed25519 is not readable by the current user"):
        load_inventory(path)


def test_empty_environment_variable_is_reported(tmp_path, secret_env, monkeypatch):
    monkeypatch.setenv("MIGRATOR_TEST_ETCD", "")
    with pytest.raises(InventoryError, match=r"MIGRATOR_TEST_ETCD is empty"):
        load_inventory(write_two_sites(tmp_path))


# --- YAML-level problems ----------------------------------------------------------------------


def test_duplicate_yaml_key_is_rejected_with_its_line(tmp_path, secret_env):
    text = FIXTURE.read_text().replace("    scope: shop-west\n", "    scope: shop-west\n    scope: again\n")
    path = write_two_sites(tmp_path, text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    line = _line_of(text, "scope: again")
    assert str(caught.value) == (
        f"inventory {path}: line {line}: key 'scope' appears twice in the same mapping; "
        "keep only one of them"
    )


def test_yaml_syntax_error_names_the_line(tmp_path, secret_env):
    text = FIXTURE.read_text().replace("    scope: shop-west\n", "    scope: [shop-west\n")
    path = write_two_sites(tmp_path, text)
    with pytest.raises(InventoryError) as caught:
        load_inventory(path)
    message = str(caught.value)
    assert message.startswith(f"inventory {path}: line ")
    assert "YAML syntax error" in message and "\n" not in message
    reported = int(re.search(r": line (\d+):", message).group(1))
    assert reported in (_line_of(text, "[shop-west"), _line_of(text, "[shop-west") + 1)


@pytest.mark.parametrize("text", ["", "# only a comment\n"], ids=["empty", "comments only"])
def test_empty_file_is_rejected(tmp_path, text):
    path = tmp_path / "inv.yml"
    path.write_text(text)
    with pytest.raises(InventoryError, match=r"^inventory .*inv\.yml: the file is empty; it needs the keys service"):
        load_inventory(path)


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "inv.yml"
    path.write_text("- service: shop\n")
    with pytest.raises(InventoryError, match=r"the top level is a list, expected a mapping"):
        load_inventory(path)


def test_missing_inventory_file(tmp_path):
    with pytest.raises(InventoryError, match=r"^inventory .*nope\.yml: file not found"):
        load_inventory(tmp_path / "nope.yml")


def test_inventory_path_that_is_a_directory(tmp_path):
    with pytest.raises(InventoryError, match=r"is a directory"):
        load_inventory(tmp_path)


# --- secrets ----------------------------------------------------------------------------------


def test_secret_ref_shows_the_reference_never_the_value(monkeypatch):
    monkeypatch.setenv("PGPASS_TEST", "s3cret-value")
    ref = SecretRef("env:PGPASS_TEST")
    assert repr(ref) == "SecretRef('env:PGPASS_TEST')"
    assert str(ref) == "env:PGPASS_TEST"
    assert ref.reveal() == "s3cret-value"


def test_secret_ref_refuses_an_inline_value():
    with pytest.raises(ValueError, match="secret written inline"):
        SecretRef("hunter2")


def test_file_secret_strips_exactly_one_trailing_newline(tmp_path):
    secret_file = tmp_path / "pw"
    secret_file.write_text("pass word\n\n")
    assert SecretRef(f"file:{secret_file}").reveal() == "pass word\n"


def test_loaded_inventory_never_shows_secret_values(two_sites):
    values = [SUPERUSER_PASSWORD, REPLICATION_PASSWORD, RESTAPI_PASSWORD, ETCD_PASSWORD]
    shown = [
        repr(two_sites), str(two_sites), two_sites.model_dump_json(), str(two_sites.model_dump()),
    ]
    for text in shown:
        for value in values:
            assert value not in text
    dumped = two_sites.model_dump(mode="json")
    assert dumped["credentials"]["superuser"]["password"] == "env:MIGRATOR_TEST_SUPERUSER"
    assert dumped["credentials"]["replication"]["password"].startswith("file:/")


def test_inventory_secrets_lists_every_revealed_value(two_sites):
    assert sorted(two_sites.secrets()) == sorted(
        [SUPERUSER_PASSWORD, REPLICATION_PASSWORD, RESTAPI_PASSWORD, ETCD_PASSWORD]
    )


def test_dumped_inventory_validates_back_to_an_equal_one(two_sites):
    assert Inventory.model_validate(two_sites.model_dump(mode="json")) == two_sites


def test_mask_hides_every_occurrence_of_every_secret():
    text = "psql password=abc host=x; retry password=abc; token abcdef"
    assert mask(text, ["abc", "abcdef", ""]) == (
        "psql password=******** host=x; retry password=********; token ********"
    )
    assert mask("nothing here", []) == "nothing here"
    assert mask("keep", [""]) == "keep"


# --- the error tree ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InventoryError, 2), (UsageError, 2), (UnreachableError, 1), (PreflightError, 1),
        (GateTimeout, 3), (UnsafeStateError, 4),
    ],
)
def test_every_error_has_its_exit_code_and_prints_one_line(error, code):
    instance = error("first line\n  second\tline  ")
    assert isinstance(instance, MigratorError)
    assert instance.exit_code == code
    assert str(instance) == "first line second line"

