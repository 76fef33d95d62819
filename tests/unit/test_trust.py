"""The unknown-host-key opt-in is repeated as a warning in every report format, the JSON plan
included, and a plan read back from its file still carries it."""

from __future__ import annotations

import json

import pytest

from migrator.model.plan import Plan
from migrator.render.plan_report import render, render_runbook
from migrator.rules.trust import (
    insecure_ssh_sites, insecure_transport_warnings, unknown_host_key_warnings,
)
from tests.unit.test_planner import EXAMPLE_INVENTORY, example_inventory, make_plan

OPT_IN = "WARNING: site dc2 accepts unknown SSH host keys"


def _opted_in_plan() -> Plan:
    text = EXAMPLE_INVENTORY.read_text()
    dc2 = text.index("  dc2:")
    marker = "known_hosts: /tmp/migrator-testbed/ssh/known_hosts"
    text = text[:dc2] + text[dc2:].replace(marker, marker + "\n      accept_unknown_host_keys: true", 1)
    inventory = example_inventory(text)
    assert insecure_ssh_sites(inventory) == ("dc2",)
    return make_plan(inventory=inventory)


@pytest.mark.parametrize("fmt", ["text", "md", "json", "runbook"])
def test_every_plan_format_carries_the_opt_in_warning(fmt):
    plan = _opted_in_plan()
    report = render_runbook(plan) if fmt == "runbook" else render(plan, fmt)
    assert OPT_IN in report
    plain = make_plan()
    plain_report = render_runbook(plain) if fmt == "runbook" else render(plain, fmt)
    assert "accepts unknown SSH host keys" not in plain_report


def test_the_json_plan_names_the_warning_and_reads_back_with_the_same_fingerprint():
    plan = _opted_in_plan()
    data = json.loads(plan.to_json())
    # The example inventory is the testbed's: plain http with a REST password, warned about too.
    assert data["warnings"] == unknown_host_key_warnings(["dc2"]) + list(plan.insecure_transport)
    assert plan.insecure_transport
    again = Plan.from_json(plan.to_json(pretty=True))
    assert again == plan and again.warnings == plan.warnings and again.verify_fingerprint()
    # The opt-in is a report matter, not a topology change: the fingerprint does not move.
    assert plan.fingerprint == make_plan().fingerprint


# --- passwords over plain http, TLS not verified (issue 10, item 10) ------------------------------

REST_HTTP = "WARNING: site {site} sends the Patroni REST API password over plain http"
REST_UNVERIFIED = "WARNING: site {site} does not verify the TLS certificates of its Patroni REST API"
ETCD_HTTP = "WARNING: site {site} sends the etcd password (sites.{site}.dcs.password) over plain http"


def _site_block(text: str, site: str) -> tuple[int, int]:
    start = text.index(f"  {site}:\n")
    following = [text.index(f"  {other}:\n") for other in ("dc1", "dc2")
                 if text.index(f"  {other}:\n") > start]
    return start, min(following, default=len(text))


def _edited(site: str, *replacements: tuple[str, str]) -> str:
    """examples/testbed.yml with text replaced inside one site's block only."""
    text = EXAMPLE_INVENTORY.read_text()
    start, end = _site_block(text, site)
    block = text[start:end]
    for old, new in replacements:
        assert old in block, old
        block = block.replace(old, new)
    return text[:start] + block + text[end:]


def _over_https(text: str, site: str, verify: bool = True) -> str:
    start, end = _site_block(text, site)
    block = text[start:end].replace("api_url: http://", "api_url: https://")
    if not verify:
        block = block.replace("      password: file:/tmp/migrator-testbed/secrets/restapi\n",
                              "      password: file:/tmp/migrator-testbed/secrets/restapi\n"
                              "      verify_tls: false\n")
    return text[:start] + block + text[end:]


def _warnings(text: str) -> tuple[str, ...]:
    return insecure_transport_warnings(example_inventory(text))


def test_the_testbed_inventory_warns_once_per_site_of_the_rest_password_over_http_naming_the_urls():
    found = _warnings(EXAMPLE_INVENTORY.read_text())
    assert len(found) == 2, found
    dc1, dc2 = found
    assert dc1.startswith(REST_HTTP.format(site="dc1"))
    assert "dc1-a http://127.0.1.1:8008, dc1-b http://127.0.1.2:8008" in dc1
    assert "https://" in dc1 and "sites.dc1.rest_api.ca_file" in dc1  # the fix
    assert dc2.startswith(REST_HTTP.format(site="dc2")) and "dc2-b http://127.0.2.2:8008" in dc2
    assert all("\n" not in w for w in found)


def test_https_with_verification_is_not_warned_about_and_only_the_http_members_are_named():
    text = _over_https(EXAMPLE_INVENTORY.read_text(), "dc1")
    assert [w for w in _warnings(text) if "site dc1" in w] == []
    mixed = _edited("dc2", ("api_url: http://127.0.2.1:8008", "api_url: https://127.0.2.1:8008"))
    (dc2,) = [w for w in _warnings(mixed) if "site dc2" in w]
    assert "(dc2-b http://127.0.2.2:8008)" in dc2 and "dc2-a" not in dc2


def test_rest_tls_verification_switched_off_is_warned_about_where_tls_is_spoken():
    text = _over_https(EXAMPLE_INVENTORY.read_text(), "dc1", verify=False)
    (dc1,) = [w for w in _warnings(text) if "site dc1" in w]
    assert dc1.startswith(REST_UNVERIFIED.format(site="dc1"))
    assert "sites.dc1.rest_api.verify_tls: false" in dc1 and "members dc1-a, dc1-b" in dc1
    assert "sites.dc1.rest_api.ca_file" in dc1
    # verify_tls: false on plain http adds nothing to the plain-http warning.
    plain = _edited("dc2", ("      password: file:/tmp/migrator-testbed/secrets/restapi\n",
                            "      password: file:/tmp/migrator-testbed/secrets/restapi\n"
                            "      verify_tls: false\n"))
    assert [w[:60] for w in _warnings(plain) if "site dc2" in w] == [REST_HTTP.format(site="dc2")[:60]]


def test_an_etcd_password_over_http_is_warned_about_and_one_over_https_or_no_password_is_not():
    auth = ("      - http://127.0.1.100:2379\n",
            "      - http://127.0.1.100:2379\n      username: root\n      password: env:ETCD_PASSWORD\n")
    (etcd,) = [w for w in _warnings(_edited("dc1", auth)) if w.startswith(ETCD_HTTP.format(site="dc1"))]
    assert "(http://127.0.1.100:2379)" in etcd and "sites.dc1.dcs.ca_file" in etcd
    over_tls = _edited("dc1", auth, ("- http://127.0.1.100:2379", "- https://127.0.1.100:2379"))
    assert not [w for w in _warnings(over_tls) if "etcd" in w]
    assert not [w for w in _warnings(EXAMPLE_INVENTORY.read_text()) if "etcd" in w]


def test_no_secret_value_and_no_secret_reference_is_in_a_warning(monkeypatch):
    monkeypatch.setenv("ETCD_PASSWORD", "s3cret-etcd")
    text = _edited("dc1", ("      - http://127.0.1.100:2379\n",
                           "      - http://127.0.1.100:2379\n      username: root\n"
                           "      password: env:ETCD_PASSWORD\n"))
    joined = "\n".join(_warnings(text))
    assert "s3cret-etcd" not in joined and "ETCD_PASSWORD" not in joined
    assert "secrets/restapi" not in joined


@pytest.mark.parametrize("fmt", ["text", "md", "json", "runbook"])
def test_every_plan_format_carries_the_plain_http_warning(fmt):
    plan = make_plan()
    report = render_runbook(plan) if fmt == "runbook" else render(plan, fmt)
    for site in ("dc1", "dc2"):
        assert REST_HTTP.format(site=site) in report, fmt
    tls = example_inventory(_over_https(_over_https(EXAMPLE_INVENTORY.read_text(), "dc1"), "dc2"))
    quiet = make_plan(inventory=tls)
    quiet_report = render_runbook(quiet) if fmt == "runbook" else render(quiet, fmt)
    assert "WARNING" not in quiet_report, fmt


def test_the_plain_http_warning_reads_back_from_the_plan_file_and_leaves_the_fingerprint_alone():
    plan = make_plan()
    again = Plan.from_json(plan.to_json(pretty=True))
    assert again.warnings == plan.warnings == list(insecure_transport_warnings(example_inventory()))
    # A report matter, not a step: the same plan without the warnings has the same fingerprint
    # (execute prints the inventory's current warnings when it starts).
    assert plan.model_copy(update={"insecure_transport": ()}).compute_fingerprint() == plan.fingerprint
    assert again.verify_fingerprint()


@pytest.mark.parametrize("command", ["execute", "rollback"])
def test_execute_and_rollback_print_the_warnings_first_and_put_them_in_the_run_report(
        command, monkeypatch, tmp_path, capsys):
    """The run itself is replaced by one that only returns its outcome: what is tested is what
    the command prints before the run and writes after it."""
    from migrator import cli
    from migrator.run.engine import Outcome

    printed_before_the_run: list[str] = []

    def run(*_args, **_kwargs):
        printed_before_the_run.append(capsys.readouterr().out)
        return Outcome(0, "done", "m1", "done")

    monkeypatch.setattr(f"migrator.run.commands.{command}", run)
    inventory = example_inventory()
    if command == "execute":
        code = cli.run_execute(inventory, "dc2", None, False, True, tmp_path)
    else:
        code = cli.run_rollback(inventory, True, tmp_path)
    assert code == 0
    expected = insecure_transport_warnings(inventory)
    (before,) = printed_before_the_run
    assert before.splitlines() == list(expected)  # one line each, nothing else before the run
    report = (tmp_path / inventory.service / "report-m1.md").read_text()
    for warning in expected:
        assert f"**{warning}**" in report
