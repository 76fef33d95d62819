"""Accepting unknown SSH host keys is an explicit inventory opt-in, repeated as a warning in every
report; a changed host key is refused even then (issue 6, security)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_execute import assert_primary_site, explain, migrate
from tests.testbed import MEMBER_BY_NAME, SITE_BY_NAME

pytestmark = pytest.mark.testbed

OPT_IN = "WARNING: site {site} accepts unknown SSH host keys"


def _inventory(baseline, tmp_path: Path, known_hosts: Path) -> str:
    """The testbed's inventory with the opt-in on both sites and another known_hosts file."""
    text = baseline.inventory_path.read_text().replace(
        f"known_hosts: {baseline.ssh.known_hosts}",
        f"known_hosts: {known_hosts}\n      accept_unknown_host_keys: true")
    assert text.count("accept_unknown_host_keys: true") == 2
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    return str(path)


def _fingerprints(known_hosts: Path) -> dict[str, str]:
    """host -> SHA256 fingerprint, as ssh-keygen prints them, from the testbed's real known_hosts."""
    out = subprocess.run(["ssh-keygen", "-l", "-f", str(known_hosts)], capture_output=True, text=True,
                         check=True).stdout
    found = {}
    for line in out.splitlines():  # "256 SHA256:abc [127.14.1.1]:2222 (ED25519)"
        _, digest, host, _ = line.split(" ", 3)
        found[host] = digest
    return found


def test_unknown_host_keys_accepted_only_with_the_opt_in_and_every_report_says_so(baseline, tmp_path):
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    without = tmp_path / "without.yml"
    without.write_text(baseline.inventory_path.read_text()
                       .replace(str(baseline.ssh.known_hosts), str(empty)))
    refused = migrate("check", "-i", str(without))
    assert "is not in" in refused.stdout + refused.stderr, explain(refused)

    inventory = _inventory(baseline, tmp_path, empty)
    check = migrate("check", "-i", inventory)
    assert check.returncode == 0, explain(check)
    for site in SITE_BY_NAME:
        assert OPT_IN.format(site=site) in check.stdout
    # Each host key the run accepted is named with its real fingerprint, so it can be checked.
    real = _fingerprints(baseline.ssh.known_hosts)
    for member in MEMBER_BY_NAME.values():
        host = f"[{member.host}]:2222"
        accepted = f"WARNING: accepted unverified SSH host key {host} ssh-ed25519 {real[host]}"
        assert accepted in check.stdout
    assert "is not in" not in check.stdout
    as_json = json.loads(migrate("check", "-i", inventory, "--json").stdout)
    for site in SITE_BY_NAME:
        assert any(w.startswith(OPT_IN.format(site=site)) for w in as_json["warnings"])
    assert sum(w.startswith("WARNING: accepted unverified") for w in as_json["warnings"]) == 4
    for fmt in ("json", "runbook"):  # text and md: tests/unit/test_trust.py
        out = migrate("plan", "-i", inventory, "--dc", "dc2", "--format", fmt)
        assert out.returncode == 0, explain(out)
        assert OPT_IN.format(site="dc1") in out.stdout and OPT_IN.format(site="dc2") in out.stdout, fmt
    # Accepted for the run only: nothing was ever written to the known_hosts file.
    assert empty.read_text() == ""


def test_a_changed_host_key_is_refused_even_with_the_opt_in(baseline, tmp_path):
    configs = {name: baseline.get_config(site) for name, site in SITE_BY_NAME.items()}
    # dc1-a's line lists another key: what a man-in-the-middle (or a rebuilt host) looks like.
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    fake = " ".join(Path(f"{other}.pub").read_text().split()[:2])
    dc1_a = SITE_BY_NAME["dc1"].members[0]
    real = baseline.ssh.known_hosts.read_text().splitlines()
    changed = tmp_path / "known_hosts_changed"
    changed.write_text("\n".join([line for line in real if not line.startswith(f"[{dc1_a.host}]:")]
                                 + [f"[{dc1_a.host}]:2222 {fake}", ""]))
    inventory = _inventory(baseline, tmp_path, changed)
    out = migrate("execute", "-i", inventory, "--dc", "dc2", "--yes",
                  "--state-dir", str(tmp_path / "state"))
    assert out.returncode == 1, explain(out)
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr + out.stdout
    assert f"dc1-a: SSH host key of root@{dc1_a.host}:2222 does not match {changed}" in out.stderr
    assert OPT_IN.format(site="dc1") in out.stdout
    assert_primary_site(baseline, SITE_BY_NAME["dc1"])
    assert {name: baseline.get_config(site) for name, site in SITE_BY_NAME.items()} == configs
    assert changed.read_text().count(fake) == 1
