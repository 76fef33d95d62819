"""The manual equivalents name `patronictl demote-cluster` / `promote-cluster` (Patroni >= 4.0)
beside the REST PATCH, and the commands the plan prints parse and reach the right cluster on
the real testbed: run without --force and answered "no", patronictl shows the topology and
aborts, so nothing changes."""

from __future__ import annotations

import json
import shlex
import subprocess

import pytest

from tests.e2e.test_execute import explain, migrate
from tests.testbed import SITE_BY_NAME
from tests.testbed.patroni_install import patroni_venv

pytestmark = pytest.mark.testbed


def _manual(plan: dict, step_id: str, word: str) -> str:
    step = next(s for s in plan["steps"] if s["id"] == step_id)
    return next(line for line in step["manual"] if word in line)


def _answer_no(testbed, line: str) -> subprocess.CompletedProcess:
    """The command inside the plan's `ssh ... '<command>'`, run here (the testbed's members are
    local) with the testbed's patronictl, without --force, answering no."""
    inner = shlex.split(line.split(" #", 1)[0])[-1]
    args = shlex.split(inner)
    assert args[0] == "patronictl" and "--force" in args
    args = [str(patroni_venv(testbed.patroni_version) / "bin" / "patronictl")] + [a for a in args[1:] if a != "--force"]
    return subprocess.run(args, input="n\n", capture_output=True, text=True, timeout=60)


def test_demote_and_promote_cluster_lines_parse_and_name_the_right_cluster(baseline):
    out = migrate("plan", "-i", str(baseline.inventory_path), "--dc", "dc2", "--format", "json")
    assert out.returncode == 0, explain(out)
    plan = json.loads(out.stdout)
    demote = _manual(plan, "demote-source", "demote-cluster")
    promote = _manual(plan, "promote-target", "promote-cluster")
    assert "--primary-slot-name dc1" in demote and "--port 5432" in demote and "Patroni >= 4.0" in demote
    configs = {name: baseline.get_config(site) for name, site in SITE_BY_NAME.items()}
    for line, cluster, verb in ((demote, "dc1", "demotion"), (promote, "dc2", "promotion")):
        ran = _answer_no(baseline, line)
        text = ran.stdout + ran.stderr
        assert f"Aborted cluster {verb}" in text, text  # parsed, connected, asked, stopped
        assert f"Cluster: {cluster}" in text, text
    assert {name: baseline.get_config(site) for name, site in SITE_BY_NAME.items()} == configs
