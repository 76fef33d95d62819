"""`--format json` on the real testbed: `execute` and `rollback` print exactly one JSON document
on stdout (progress and the text report on stderr) that agrees with the sites, and `status --json`
shows the roles the testbed has; `plan --out` writes the JSON plan whatever the printed format,
and `migrate show` renders it again without any site."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_execute import assert_primary_site, explain, migrate
from tests.testbed import SITE_BY_NAME

pytestmark = pytest.mark.testbed

DC1, DC2 = SITE_BY_NAME["dc1"], SITE_BY_NAME["dc2"]


def _one_document(out) -> dict:
    document = json.loads(out.stdout)  # the whole of stdout is one document, nothing else
    assert document["schema"] == 1, document
    return document


def _timeline(testbed, site) -> int:
    leader = next(m for m in site.members if testbed.sql(m, "SELECT NOT pg_is_in_recovery()")[0][0])
    return testbed.sql(leader, "SELECT timeline_id FROM pg_control_checkpoint()")[0][0]


@pytest.mark.slow
def test_execute_and_rollback_print_one_json_document_each(baseline, tmp_path):
    inventory, state = str(baseline.inventory_path), str(tmp_path / "state")
    out = migrate("execute", "-i", inventory, "--dc", "dc2", "--yes", "--state-dir", state, "--format", "json")
    assert out.returncode == 0, explain(out)
    run = _one_document(out)
    assert_primary_site(baseline, DC2)
    assert (run["kind"], run["command"], run["verdict"], run["exit_code"]) == ("run", "execute", "done", 0)
    assert (run["source"], run["target"]) == ("dc1", "dc2")
    assert run["new_primary"].startswith("dc2-")
    assert run["timelines"]["after"] == run["timelines"]["before"] + 1
    assert 0 < run["write_unavailable_seconds"] < 30
    assert run["token"]["pg_control_state"] == "shut down" and run["token"]["lsn"].count("/") == 1
    assert run["steps"] and all(s["status"] == "done" and s["seconds"] is not None for s in run["steps"])
    assert "write unavailability:" in out.stderr  # the text report went to stderr
    assert open(run["journal_file"]).read().count(run["migration"]) > 0
    # The streaming gates' lag as data: each ended with its passing measurement, under the gate,
    # at a replay LSN no later than the new primary's position now.
    final = {s["step"]: s for s in run["gate_samples"] if s["final"]}
    assert set(final) == {"wait-cascade", "wait-repoint"}, run["gate_samples"]
    now_lsn = baseline.sql(next(m for m in DC2.members if m.name == run["new_primary"]),
                           "SELECT (pg_current_wal_lsn() - '0/0')::bigint")[0][0]
    for sample in final.values():
        high, low = sample["replay_lsn"].split("/")
        assert 0 <= sample["lag_bytes"] <= 16 * 1024 * 1024 and 0 < (int(high, 16) << 32 | int(low, 16)) <= now_lsn

    status = migrate("status", "-i", inventory, "--json")
    assert status.returncode == 0, explain(status)
    seen = _one_document(status)
    assert seen["writable_members"] == [run["new_primary"]] and not seen["split_brain"]
    assert {s["name"]: s["cluster"] for s in seen["sites"]} == {"dc1": "standby", "dc2": "primary"}
    timeline = _timeline(baseline, DC2)
    assert all(m["timeline"] == timeline for s in seen["sites"] for m in s["members"]), seen

    back = migrate("rollback", "-i", inventory, "--yes", "--state-dir", state, "--json")
    assert back.returncode == 0, explain(back)
    undone = _one_document(back)
    assert_primary_site(baseline, DC1)
    assert (undone["command"], undone["verdict"], undone["source"], undone["target"]) == (
        "rollback", "done", "dc2", "dc1")
    assert undone["timelines"]["before"] == run["timelines"]["after"]
    assert undone["migration"] != run["migration"]


def test_plan_out_is_the_json_plan_whatever_is_printed_and_show_renders_it(baseline, tmp_path):
    saved = tmp_path / "plan.json"
    out = migrate("plan", "-i", str(baseline.inventory_path), "--dc", "dc2", "--format", "md", "--out", str(saved))
    assert out.returncode == 0, explain(out)
    assert out.stdout.startswith("#") and "written to" in out.stderr  # Markdown printed, JSON kept
    plan = json.loads(saved.read_text())
    assert plan["source"] == "dc1" and plan["target"] == "dc2" and plan["steps"]
    assert oct(saved.stat().st_mode & 0o777) == "0o600"
    for fmt, looks in (("md", "| "), ("text", plan["fingerprint"][:12]), ("runbook", "demote")):
        shown = migrate("show", str(saved), "--format", fmt)
        assert shown.returncode == 0 and looks in shown.stdout and shown.stderr == "", explain(shown)
    again = migrate("show", str(saved), "--format", "json")
    assert json.loads(again.stdout)["fingerprint"] == plan["fingerprint"]
    # The saved plan is what `execute --plan` accepts as the reviewed one (exit 6 if it were not).
    run = migrate("execute", "-i", str(baseline.inventory_path), "--dc", "dc2", "--plan", str(saved),
                  "--until", "preflight", "--yes", "--state-dir", str(tmp_path / "state"))
    assert run.returncode == 0, explain(run)
