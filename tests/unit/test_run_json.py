"""The JSON documents of execute / rollback / status hold to the keys docs/output.md documents,
carry "schema": 1, and mask every secret."""

from __future__ import annotations

import json
import re
from pathlib import Path

from migrator.render.run_json import (
    ERROR_KEYS,
    MEMBER_KEYS,
    RUN_KEYS,
    SCHEMA,
    SITE_KEYS,
    STATUS_KEYS,
    STEP_KEYS,
    dumps,
    error_document,
    run_document,
    status_document,
)
from migrator.run.engine import Outcome
from migrator.run.journal import Journal
from tests.helpers.snapshots import load_baseline

DOC = Path(__file__).resolve().parents[2] / "docs" / "output.md"
SECRET = "s3cr3t-pw"


def _documented_keys() -> set[str]:
    """Every key named in the first column of a table in docs/output.md's JSON part (the
    monitoring metrics follow it)."""
    keys: set[str] = set()
    json_part = DOC.read_text().split("# Monitoring")[0]
    for line in json_part.splitlines():
        if line.startswith("| `"):
            keys.update(re.findall(r"`([a-z_]+)`", line.split("|")[1]))
    return keys


def _journal(tmp_path) -> Journal:
    """A run as the engine journals it (fixed timestamps): demoted, token read, a DCS hold,
    promoted, then a failed step whose error quotes a secret."""
    journal = Journal(tmp_path, [SECRET])
    records = [
        ("migration-started", {"plan_file": "p", "source": "dc1", "target": "dc2"}, "03:00:00.000"),
        ("step-started", {"step": "demote-source"}, "03:00:01.000"),
        ("step-done", {"step": "demote-source", "facts": {"source_read_only_at": "2026-11-21T03:00:01.200+00:00"}},
         "03:00:01.250"),
        ("step-started", {"step": "read-token"}, "03:00:01.300"),
        ("step-done", {"step": "read-token", "facts": {"token": 84214360, "token_text": "0/5050258",
                                                       "token_state": "shut down", "token_timeline": 4}},
         "03:00:01.400"),
        ("dcs-back", {"before": "promote-target", "held_seconds": 3}, "03:00:02.000"),
        ("step-started", {"step": "promote-target"}, "03:00:02.100"),
        ("step-done", {"step": "promote-target", "facts": {"primary": "dc2-a", "timeline_before": 4,
                                                           "new_timeline": 5,
                                                           "target_writable_at": "2026-11-21T03:00:02.500+00:00"}},
         "03:00:02.600"),
        ("step-started", {"step": "wait-repoint"}, "03:00:03.000"),
        ("step-failed", {"step": "wait-repoint", "error": f"password {SECRET} refused"}, "03:00:09.000"),
    ]
    with journal.path.open("a") as out:
        for event, fields, at in records:
            out.write(json.dumps({"event": event, "migration": "m1", **fields, "ts": f"2026-11-21T{at}+00:00"}) + "\n")
    return journal


def test_a_run_document_has_exactly_the_documented_keys_and_values(tmp_path):
    journal = _journal(tmp_path)
    outcome = Outcome(4, f"stopped: password {SECRET} refused", "m1", "stopped-unsafe")
    document = json.loads(dumps(run_document("execute", "demo", journal, outcome, ["WARNING: x"], "r.md"), [SECRET]))
    assert set(document) == RUN_KEYS
    assert document["schema"] == SCHEMA == 1 and document["kind"] == "run"
    assert (document["source"], document["target"], document["exit_code"], document["verdict"]) == (
        "dc1", "dc2", 4, "stopped-unsafe")
    assert document["token"] == {"lsn": "0/5050258", "pg_control_state": "shut down", "timeline": 4}
    assert document["timelines"] == {"before": 4, "after": 5} and document["new_primary"] == "dc2-a"
    assert document["write_unavailable_seconds"] == 1.3
    steps = {s["id"]: s for s in document["steps"]}
    assert [s["id"] for s in document["steps"]] == ["demote-source", "read-token", "promote-target", "wait-repoint"]
    assert all(set(s) == STEP_KEYS for s in steps.values())
    assert steps["demote-source"]["seconds"] == 0.25 and steps["demote-source"]["status"] == "done"
    assert steps["wait-repoint"]["status"] == "failed" and steps["wait-repoint"]["done"] is None
    assert [e["event"] for e in document["events"]] == ["dcs-back"]
    text = dumps(run_document("execute", "demo", journal, outcome, [], None), [SECRET])
    assert SECRET not in text and "********" in text


def test_a_status_document_has_exactly_the_documented_keys():
    document = json.loads(dumps(status_document(load_baseline()), []))
    assert set(document) == STATUS_KEYS and document["schema"] == 1 and document["kind"] == "status"
    assert [s["name"] for s in document["sites"]] == ["dc1", "dc2"]
    assert all(set(s) == SITE_KEYS for s in document["sites"])
    members = [m for s in document["sites"] for m in s["members"]]
    assert all(set(m) == MEMBER_KEYS for m in members)
    assert document["writable_members"] == ["dc1-a"] and document["split_brain"] is False
    by_name = {m["name"]: m for m in members}
    assert by_name["dc1-a"]["writable"] and by_name["dc1-a"]["lag_bytes"] == 0
    assert by_name["dc2-a"]["streams_from"]["member"] == "dc1-a"
    assert {s["cluster"] for s in document["sites"]} == {"primary", "standby"}


def test_an_error_document_has_exactly_the_documented_keys():
    document = error_document("rollback", "demo", 5, "another run holds the lock", [])
    assert set(document) == ERROR_KEYS and document["exit_code"] == 5 and document["kind"] == "error"


def test_docs_output_md_documents_every_key_and_no_other():
    documented = _documented_keys()
    produced = RUN_KEYS | STEP_KEYS | STATUS_KEYS | SITE_KEYS | MEMBER_KEYS | ERROR_KEYS
    from migrator.render.fleet_status import FLEET_STATUS_KEYS, FLEET_STATUS_SERVICE_KEYS

    produced |= FLEET_STATUS_KEYS | FLEET_STATUS_SERVICE_KEYS  # migrate fleet status --json
    assert produced <= documented, sorted(produced - documented)
    assert documented <= produced, sorted(documented - produced)


def test_docs_output_md_lists_every_metric_the_probe_writes():
    from migrator.render.probe import ProbeInput, prometheus_text
    from migrator.model.findings import Finding, Verdict

    text = prometheus_text(ProbeInput("demo", "dc1", "dc2", True, (Finding(check="x", verdict=Verdict.OK, finding="y"),),
                                      load_baseline(), {"dc1": "dc1", "dc2": "dc2"}, 1.0))
    written = set(re.findall(r"^# TYPE (\S+) gauge$", text, re.MULTILINE))
    documented = set(re.findall(r"^\| `(migrator_[a-z_]+)` \|", DOC.read_text(), re.MULTILINE))
    assert written and written <= documented, sorted(written - documented)
