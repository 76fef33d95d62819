"""A password sent over plain http is warned about in `check` (text and --json) and in the plan
(issue 10, item 10). The testbed is plain http with a REST password, so it shows the warning for
both sites; the warnings go to stdout, stderr stays empty."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_execute import explain, migrate
from tests.testbed import SITE_BY_NAME

pytestmark = pytest.mark.testbed

REST_HTTP = "WARNING: site {site} sends the Patroni REST API password over plain http"


def _named(warnings: list[str], site: str) -> str:
    (found,) = [w for w in warnings if w.startswith(REST_HTTP.format(site=site))]
    return found


def test_check_and_the_json_plan_warn_that_the_rest_password_goes_over_plain_http(baseline):
    inventory = str(baseline.inventory_path)
    check = migrate("check", "-i", inventory)
    assert check.returncode == 0 and check.stderr == "", explain(check)
    as_json = json.loads(migrate("check", "-i", inventory, "--json").stdout)
    plan = migrate("plan", "-i", inventory, "--dc", "dc2", "--format", "json")
    assert plan.returncode == 0 and plan.stderr == "", explain(plan)
    planned = json.loads(plan.stdout)
    for name, site in SITE_BY_NAME.items():
        warning = _named(as_json["warnings"], name)
        assert warning in check.stdout
        for member in site.members:
            assert f"{member.name} {member.api_url}" in warning, warning
        assert _named(planned["warnings"], name) == warning
