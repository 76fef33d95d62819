"""`migrate init` without a network: REST answers of the wrong shape are refused in one line, the
sites are related (who follows whom, which slot), and the written file is commented YAML that the
loader refuses while a placeholder is left and accepts once the references are filled in.

The REST answers here are fakes (`FakeApi`), because the testbed's Patroni never answers with the
wrong types or shapes these tests feed; the happy path against a real Patroni is
tests/e2e/test_init.py."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from migrator import cli
from migrator.errors import InventoryError, MigratorError, UnreachableError, UsageError
from migrator.model.discovered import DiscoveredMember, DiscoveredSite, member_template
from migrator.model.inventory import parse_inventory
from migrator.model.placeholders import PLACEHOLDER
from migrator.observe.discover import discover, parse_site_options, read_site, relate
from migrator.render.inventory_file import InitAnswers, placeholder_count, render_inventory

DC1_URL, DC2_URL = "http://10.0.1.1:8008", "http://10.0.2.1:8008"


def answers_of_a_healthy_pair() -> dict[str, dict[str, Any]]:
    """What the testbed's Patroni 4.1.5 answers (trimmed), per URL and path."""
    return {
        DC1_URL: {
            "/patroni": {
                "role": "primary",
                "database_system_identifier": "7715804341237581010",
                "patroni": {"version": "4.1.5", "scope": "shop-east", "name": "db1"},
                "replication": [{"usename": "replicator", "application_name": "db2"}],
            },
            "/cluster": {
                "scope": "shop-east",
                "members": [
                    {"name": "db1", "role": "leader", "host": "10.0.1.1", "port": 5432,
                     "api_url": "http://10.0.1.1:8008/patroni"},
                    {"name": "db2", "role": "replica", "host": "10.0.1.2", "port": 5432,
                     "api_url": "http://10.0.1.2:8008/patroni"},
                ],
            },  # fmt: skip
            "/config": {"slots": {"west": {"type": "physical"}}},
        },
        DC2_URL: {
            "/patroni": {
                "role": "standby_leader",
                "database_system_identifier": "7715804341237581010",
                "patroni": {"version": "4.1.5", "scope": "shop-west", "name": "db3"},
            },
            "/cluster": {
                "scope": "shop-west",
                "members": [{"name": "db3", "role": "standby_leader", "host": "10.0.2.1", "port": 5433,
                             "api_url": "http://10.0.2.1:8008/patroni"}],
            },  # fmt: skip
            "/config": {
                "slots": {"east": {"type": "physical"}},
                "standby_cluster": {"host": "10.0.1.1,10.0.1.2", "port": 5432, "primary_slot_name": "west"},
            },
        },
    }


class FakeApi:
    """Patroni's REST API as a dict of answers; a URL it does not know does not answer."""

    def __init__(self, answers: dict[str, dict[str, Any]]):
        self.answers = answers

    def get(self, api_url: str, path: str, member: str) -> Any:
        try:
            return self.answers[api_url][path]
        except KeyError:
            raise UnreachableError(f"{member}: Patroni REST API at {api_url} did not answer (connection refused)")


def discovered(answers: dict[str, dict[str, Any]] | None = None) -> list[DiscoveredSite]:
    api = FakeApi(answers or answers_of_a_healthy_pair())
    return relate([read_site(api, "east", DC1_URL), read_site(api, "west", DC2_URL)])  # type: ignore[arg-type]


# --- discovery --------------------------------------------------------------------------------


def test_sites_are_related_by_their_standby_cluster_and_slots():
    east, west = discovered()
    assert (east.scope, west.scope) == ("shop-east", "shop-west")
    assert west.follows == "east" and east.follows is None
    # west's standby leader consumes 'west' (its standby_cluster says so); east's is the slot
    # west keeps for it in its dynamic config.
    assert (east.replication_slot, west.replication_slot) == ("east", "west")
    assert [m.api_url for m in east.members] == ["http://10.0.1.1:8008", "http://10.0.1.2:8008"]
    assert west.members[0].pg_port == 5433
    assert east.replication_user == "replicator"


@pytest.mark.parametrize(
    ("path", "broken", "words"),
    [
        ("/cluster", {"members": "db1"}, "listed no members"),
        ("/cluster", {"members": [{"name": "db1", "host": "10.0.1.1", "port": "5432"}]}, "port of db1"),
        ("/cluster", {"members": [{"name": 7, "host": "10.0.1.1", "port": 5432}]}, "name is missing or not text"),
        ("/cluster", {"members": [{"name": "db1", "host": "a b", "port": 5432}]}, "is not a host name"),
        ("/patroni", {"patroni": "4.1.5"}, "is not a JSON object"),
        ("/config", {"slots": ["west"]}, "'slots' is not a JSON object"),
        ("/config", ["not", "an", "object"], "did not answer a JSON object"),
    ],
)
def test_a_rest_answer_of_the_wrong_shape_is_one_usage_error(path, broken, words):
    answers = answers_of_a_healthy_pair()
    answers[DC1_URL][path] = broken
    with pytest.raises(UsageError) as caught:
        discovered(answers)
    assert words in str(caught.value)
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    assert f"site east ({DC1_URL})" in str(caught.value)


def test_a_site_url_that_does_not_answer_names_the_site_and_the_fix():
    answers = answers_of_a_healthy_pair()
    del answers[DC2_URL]
    with pytest.raises(UsageError, match=r"site west: Patroni REST API at .* did not answer .*check --site west=URL"):
        discovered(answers)


@pytest.mark.parametrize(
    ("values", "words"),
    [
        (["dc1"], "is not NAME=URL"),
        (["DC1=http://a:8008"], "site name 'DC1' is not valid"),
        (["dc1=ftp://a:8008"], "is not an http(s) URL"),
        (["dc1=http://a:port"], "is not an http(s) URL"),
        (["dc1=http://a:8008", "dc1=http://b:8008"], "given twice"),
    ],
)
def test_bad_site_options_are_refused(values, words):
    with pytest.raises(UsageError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_site_options(values)


def test_member_paths_become_one_template_with_the_member_placeholder():
    def site(*paths: str | None) -> DiscoveredSite:
        members = tuple(
            DiscoveredMember(name=f"db{i}", host=f"h{i}", pg_port=5432, api_url=None, role=None, data_dir=p)
            for i, p in enumerate(paths)
        )
        return DiscoveredSite("s", "u", "s", members, None, None, ())

    assert member_template(site("/srv/db0/data", "/srv/db1/data"), "data_dir") == "/srv/{member}/data"
    assert member_template(site("/var/lib/pg", "/var/lib/pg"), "data_dir") == "/var/lib/pg"
    assert member_template(site("/a/db0", "/b/db1"), "data_dir") is None
    assert member_template(site("/srv/db0", None), "data_dir") is None


# --- the written file ---------------------------------------------------------------------------

FILLED = {
    "credentials.superuser.password": "env:PGPASSWORD",
    "credentials.replication.password": "file:secrets/replication",
    "sites.east.rest_api.password": "file:secrets/restapi",
    "sites.west.rest_api.password": "file:secrets/restapi",
    "sites.east.ssh.key_file": "ssh/id_ed25519",
    "sites.west.ssh.key_file": "ssh/id_ed25519",
    "sites.east.ssh.known_hosts": "ssh/known_hosts",
    "sites.west.ssh.known_hosts": "ssh/known_hosts",
}


def test_the_written_inventory_is_refused_until_filled_then_valid_with_what_rest_showed():
    answers = InitAnswers(dcs={"east": ["http://10.0.1.100:2379"], "west": ["http://10.0.2.100:2379"]})
    text = render_inventory(discovered(), answers)
    assert placeholder_count(text) == len(FILLED)
    assert "# east: primary site, leader db1" in text
    assert "# west: standby cluster of east (standby_cluster.host 10.0.1.1,10.0.1.2)" in text

    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, source="init.yml", base_dir=Path("/nowhere"), check_local_files=False)
    assert len(caught.value.problems) == len(FILLED)
    named = {problem.split(": ")[1].split(" (line ")[0] for problem in caught.value.problems}
    assert named == set(FILLED)
    assert all("still the placeholder <FILL IN>" in problem for problem in caught.value.problems)
    lines = [int(problem.split(" (line ")[1].split(")")[0]) for problem in caught.value.problems]
    assert lines == sorted(lines) and all(PLACEHOLDER in text.splitlines()[n - 1] for n in lines)

    tree = YAML(typ="rt").load(text)
    for path, value in FILLED.items():
        *parents, last = path.split(".")
        node = tree
        for part in parents:
            node = node[part]
        assert node[last] == PLACEHOLDER
        node[last] = value
    inventory = parse_inventory(_dump(tree), source="init.yml", base_dir=Path("/nowhere"), check_local_files=False)
    assert inventory.service == "shop-east"
    east, west = inventory.sites["east"], inventory.sites["west"]
    assert (east.scope, west.scope, east.replication_slot, west.replication_slot) == (
        "shop-east", "shop-west", "east", "west")  # fmt: skip
    assert [m.name for m in east.members] == ["db1", "db2"] and west.members[0].pg_port == 5433
    assert inventory.credentials.replication.username == "replicator"
    assert east.dcs.endpoints == ["http://10.0.1.100:2379"]


def test_init_writes_only_the_references_it_was_given_never_a_value(monkeypatch, tmp_path, capsys):
    """The secret given by reference is never read into the file (only the superuser one is read,
    to ask PostgreSQL for paths, and it is not in these fake answers' reach)."""
    monkeypatch.setenv("INIT_TEST_PASSWORD", "s3cret-value")
    answers = InitAnswers(superuser_password="env:INIT_TEST_PASSWORD", rest_password="file:/etc/patroni/rest")
    text = render_inventory(discovered(), answers)
    assert "s3cret-value" not in text
    assert "password: env:INIT_TEST_PASSWORD" in text and text.count("password: file:/etc/patroni/rest") == 2


def test_init_refuses_an_inline_secret_in_one_line_without_echoing_it(tmp_path, capsys):
    code = cli.run(["init", "--site", f"a={DC1_URL}", "--site", f"b={DC2_URL}", "--rest-password", "hunter2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "hunter2" not in err
    assert "--rest-password takes a reference, env:NAME or file:PATH" in err


def test_init_refuses_to_overwrite_an_existing_file(tmp_path, capsys):
    existing = tmp_path / "inventory.yml"
    existing.write_text("keep me\n")
    code = cli.run(["init", "--site", f"a={DC1_URL}", "--site", f"b={DC2_URL}", "--out", str(existing)])
    assert code == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert existing.read_text() == "keep me\n"


def test_init_needs_two_sites(capsys):
    code = cli.run(["init", "--site", f"a={DC1_URL}"])
    assert code == 2
    assert "at least two" in capsys.readouterr().err


def _dump(tree: Any) -> str:
    from io import StringIO

    out = StringIO()
    YAML(typ="rt").dump(copy.deepcopy(tree), out)
    return out.getvalue()


def test_fake_api_itself_refuses_unknown_urls():
    # The other tests rely on it: an unknown URL must look like a member that does not answer.
    with pytest.raises(MigratorError):
        FakeApi({}).get("http://x", "/patroni", "m")


def test_a_placeholder_and_an_unrelated_mistake_are_both_reported():
    text = render_inventory(discovered(), InitAnswers(rest_ca_file="/etc/migrator/patroni-ca.pem"))
    assert text.count("ca_file: /etc/migrator/patroni-ca.pem") == 2
    text = text.replace("pg_port: 5433", "pg_port: 99999")
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, source="init.yml", base_dir=Path("/nowhere"), check_local_files=False)
    problems = caught.value.problems
    assert sum("still the placeholder" in p for p in problems) == placeholder_count(text) == len(FILLED) + 2
    others = [p for p in problems if "still the placeholder" not in p]
    assert len(others) == 1 and "sites.west.members[0].pg_port" in others[0] and "at most 65535" in others[0]
    # The models' own complaints about the placeholders themselves are not repeated.
    assert not any("inline" in p or "does not exist" in p for p in problems)


@pytest.mark.parametrize(
    ("in_dcs", "comment"),
    [
        (True, "# Patroni's keys are under /service/shop-east/ in the site's etcd"),
        (False, "# CHECK: no Patroni keys under /service/shop-east/ in the etcd given"),
        (None, "# CHECK: Patroni's default; REST does not show it"),
    ],
)
def test_the_namespace_comment_says_whether_the_etcd_confirmed_it(in_dcs, comment):
    east, west = discovered()
    text = render_inventory([replace(east, namespace_in_dcs=in_dcs), west], InitAnswers())
    assert f"namespace: /service/  {comment}" in text.split("  west:")[0]


def test_text_from_rest_cannot_leave_its_comment():
    """A hostile or broken REST answer (fake: no real Patroni sends this) must not inject YAML."""
    answers = answers_of_a_healthy_pair()
    answers[DC1_URL]["/cluster"]["members"][0]["role"] = "leader\nservice: evil"
    answers[DC1_URL]["/patroni"]["patroni"]["version"] = "4.1\n  sites: {}"
    answers[DC2_URL]["/config"]["standby_cluster"]["host"] = "10.0.1.1,x\ny: 1"
    east, west = discovered(answers)
    site = replace(east, notes=("db2: it said\nservice: evil2",))
    text = render_inventory([site, west], InitAnswers())
    tree = YAML(typ="safe").load(text)
    assert tree["service"] == "shop-east" and set(tree["sites"]) == {"east", "west"}
    assert "evil" not in str(tree)
    assert "Patroni version unknown" in text and "# not discovered: db2: it said service: evil2" in text


def test_the_same_cluster_given_as_two_sites_is_refused(monkeypatch):
    answers = answers_of_a_healthy_pair()
    answers[DC2_URL] = answers[DC1_URL]
    monkeypatch.setattr("migrator.observe.discover.PatroniApi", lambda **_: FakeApi(answers))
    with pytest.raises(UsageError, match="both list member db1: they are the same Patroni cluster"):
        discover({"east": DC1_URL, "west": DC2_URL}, timeout=1)


def test_an_unset_superuser_reference_is_refused_before_any_site_is_asked(monkeypatch, capsys):
    monkeypatch.delenv("INIT_TEST_UNSET", raising=False)
    code = cli.run(["init", "--site", "a=http://127.0.0.1:9", "--site", "b=http://127.0.0.1:9",
                    "--superuser-password", "env:INIT_TEST_UNSET"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "environment variable INIT_TEST_UNSET is not set" in err and "did not answer" not in err
