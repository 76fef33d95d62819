"""`migrate init` against the real testbed: the inventory it discovers from one REST URL per site
passes `migrate check` once only the secret references (passwords, SSH key, known_hosts) are
filled in; a site that does not answer is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from migrator.model.placeholders import PLACEHOLDER
from tests.testbed import SITE_BY_NAME

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]


def migrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrator.cli", *args], capture_output=True, text=True,
                          timeout=120)


def load(path: Path):
    return YAML(typ="rt").load(path.read_text())


def fill_secret_references(written: Path, reference: Path) -> list[str]:
    """Replace each <FILL IN> with the testbed inventory's value at the same path, and return
    the paths filled: the test asserts they are only secret references and SSH credentials."""
    mine, theirs = load(written), load(reference)
    filled: list[str] = []

    def walk(node, other, path):
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, value in items:
            if value == PLACEHOLDER:
                node[key] = other[key]
                filled.append(".".join(str(p) for p in (*path, key)))
            else:
                walk(value, other[key], (*path, key))

    walk(mine, theirs, ())
    with written.open("w") as out:
        YAML(typ="rt").dump(mine, out)
    return filled


def test_init_discovers_the_testbed_and_check_passes_after_only_the_secret_references(baseline, tmp_path):
    written = tmp_path / "inventory.yml"
    seed_urls = {"dc1": DC1.members[1].api_url, "dc2": DC2.members[1].api_url}  # replicas: any member will do
    out = migrate(
        "init",
        "--site", f"dc1={seed_urls['dc1']}", "--site", f"dc2={seed_urls['dc2']}",
        "--dcs", f"dc1={DC1.etcd_url}", "--dcs", f"dc2={DC2.etcd_url}",
        "--service", "demo", "--ssh-user", "root", "--ssh-port", "2222",
        "--superuser-password", f"file:{baseline.secrets_dir / 'superuser'}",
        "--out", str(written),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    assert "7 value(s) to fill in" in out.stdout
    text = written.read_text()
    # No secret value is written, only references; the unfilled ones are marked for the operator.
    for password in baseline.passwords().values():
        assert password not in text
    assert text.count("# FILL IN:") == text.count(f": {PLACEHOLDER}") == 7, text
    assert "standby cluster of dc1" in text
    # The namespace, which REST does not show, was looked up in each site's etcd.
    assert "namespace: /service/  # Patroni's keys are under /service/dc1/ in the site's etcd" in text
    assert "namespace: /service/  # Patroni's keys are under /service/dc2/ in the site's etcd" in text

    # What REST (and PostgreSQL, with the superuser reference) showed equals the testbed's own inventory.
    mine, theirs = load(written), load(baseline.inventory_path)
    for site in ("dc1", "dc2"):
        got, want = mine["sites"][site], theirs["sites"][site]
        for key in ("scope", "namespace", "replication_slot"):
            assert got[key] == want[key], (site, key)
        assert list(got["dcs"]["endpoints"]) == list(want["dcs"]["endpoints"])
        assert got["postgres"]["data_dir"] == want["postgres"]["data_dir"]
        assert got["postgres"]["bin_dir"] == want["postgres"]["bin_dir"]
        assert [dict(m) for m in got["members"]] == [dict(m) for m in want["members"]]
    assert mine["credentials"]["replication"]["username"] == theirs["credentials"]["replication"]["username"]

    # Unfilled, the file is refused with every placeholder named by path and line (exit 2).
    refused = migrate("check", "--inventory", str(written))
    assert refused.returncode == 2
    lines = refused.stderr.splitlines()
    assert len(lines) == 7 and all("still the placeholder <FILL IN>" in line for line in lines), refused.stderr
    assert any("sites.dc2.ssh.key_file (line " in line for line in lines)

    filled = fill_secret_references(written, baseline.inventory_path)
    assert set(filled) == {
        "credentials.replication.password",
        "sites.dc1.rest_api.password", "sites.dc2.rest_api.password",
        "sites.dc1.ssh.key_file", "sites.dc2.ssh.key_file",
        "sites.dc1.ssh.known_hosts", "sites.dc2.ssh.known_hosts",
    }  # fmt: skip

    checked = migrate("check", "--inventory", str(written), "--json")
    assert "Traceback" not in checked.stderr
    report = json.loads(checked.stdout)
    blocking = [f for f in report["findings"] if f["verdict"] == "block"]
    assert checked.returncode == 0, blocking
    assert (report["source"], report["target"]) == ("dc1", "dc2")


def test_init_with_a_site_that_does_not_answer_is_one_line_and_exit_2(baseline, tmp_path):
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens there
    out = migrate("init", "--site", f"dc1={DC1.members[0].api_url}", "--site", f"dc2={dead}",
                  "--out", str(tmp_path / "inv.yml"))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("migrate: error: site dc2: Patroni REST API at http://127.0.0.1:9 refused the connection")
    assert "--site dc2=URL" in lines[0]
    assert not (tmp_path / "inv.yml").exists()
