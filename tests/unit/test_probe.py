"""`migrate check --format prometheus|nagios` renderings, on the observed testbed snapshot: valid
text exposition format with the documented metrics, the last success carried forward while the
check fails, and one Nagios line with the plugin exit codes."""

from __future__ import annotations

import re

import pytest

from migrator import cli
from migrator.model.findings import Finding, Verdict
from migrator.render.probe import ProbeInput, nagios_line, prometheus_text
from tests.helpers.snapshots import load_baseline

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})? (-?[0-9.eE+]+)$')
OK = Finding(check="paused", verdict=Verdict.OK, finding="no site paused", site="dc2")
WARN = Finding(check="watchdog", verdict=Verdict.WARN, finding="no watchdog", fix="enable it", site="dc2")
BLOCK = Finding(check="dcs-quorum", verdict=Verdict.BLOCK, finding="dc2's etcd refused the connection",
                fix="restore it", site="dc2")


def probe(*findings: Finding, ready: bool = True, now: float = 1000.0, error: str | None = None) -> ProbeInput:
    return ProbeInput("demo", "dc1", "dc2", ready, findings, None if error else load_baseline(),
                      {"dc1": "dc1", "dc2": "dc2"}, now, error)


def samples(text: str) -> dict[str, float]:
    """Every sample line, validated against the exposition format, by `name{labels}`."""
    found, declared = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind == "gauge"
            declared.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        match = SAMPLE.match(line)
        assert match, f"not exposition format: {line!r}"
        assert match.group(1) in declared, f"{match.group(1)} sampled before its TYPE line"
        assert match.group(1).startswith("migrator_")
        found[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return found


def test_a_ready_check_exposes_readiness_verdicts_lag_and_retained_wal():
    seen = samples(prometheus_text(probe(OK, WARN)))
    assert seen['migrator_check_up{service="demo"}'] == 1
    assert seen['migrator_dr_ready{service="demo",source="dc1",target="dc2"}'] == 1
    assert seen['migrator_check_last_success_timestamp_seconds{service="demo"}'] == 1000
    assert seen['migrator_check_verdict{service="demo",site="dc2",check="paused"}'] == 0
    assert seen['migrator_check_verdict{service="demo",site="dc2",check="watchdog"}'] == 1
    assert seen['migrator_check_findings{service="demo",verdict="warn"}'] == 1
    # The baseline: dc2-a and dc2-b are standbys with a replayed position; dc1-a the primary.
    assert {k for k in seen if k.startswith("migrator_replay_lag_bytes")} >= {
        'migrator_replay_lag_bytes{service="demo",site="dc2",member="dc2-a"}',
        'migrator_replay_lag_bytes{service="demo",site="dc2",member="dc2-b"}'}
    retained = [k for k in seen if k.startswith("migrator_wal_retained_bytes")]
    assert any('site="dc1"' in k and 'slot="dc2"' in k and 'for_site="dc2"' in k for k in retained), retained
    assert all(seen[k] >= 0 for k in retained)


def test_a_blocked_check_keeps_the_last_success_of_the_previous_file():
    before = prometheus_text(probe(OK, now=1000.0))
    after = samples(prometheus_text(probe(BLOCK, ready=False, now=1060.0), previous=before))
    assert after['migrator_dr_ready{service="demo",source="dc1",target="dc2"}'] == 0
    assert after['migrator_check_last_success_timestamp_seconds{service="demo"}'] == 1000
    assert after['migrator_check_timestamp_seconds{service="demo"}'] == 1060
    assert after['migrator_check_verdict{service="demo",site="dc2",check="dcs-quorum"}'] == 2


def test_no_success_yet_means_no_last_success_sample():
    seen = samples(prometheus_text(probe(BLOCK, ready=False)))
    assert not any(k.startswith("migrator_check_last_success") for k in seen)


def test_a_check_that_could_not_observe_is_down_not_ready():
    seen = samples(prometheus_text(probe(ready=False, error="dc1's etcd at http://h:2379 refused the connection")))
    assert seen['migrator_check_up{service="demo"}'] == 0
    assert seen['migrator_dr_ready{service="demo",source="dc1",target="dc2"}'] == 0


def test_label_values_are_escaped():
    odd = Finding(check='a"b\\c', verdict=Verdict.OK, finding="x", site="dc\n1")
    text = prometheus_text(probe(odd))
    assert 'check="a\\"b\\\\c"' in text and 'site="dc\\n1"' in text
    samples(text)


@pytest.mark.parametrize(
    ("findings", "ready", "error", "code", "starts"),
    [
        ((OK,), True, None, 0, "MIGRATOR OK - demo: dc1 -> dc2 ready |"),
        ((OK, WARN), True, None, 1, "MIGRATOR WARNING - demo: dc1 -> dc2 ready with warnings: watchdog |"),
        ((WARN, BLOCK), False, None, 2, "MIGRATOR CRITICAL - demo: dc1 -> dc2 not ready: dcs-quorum (dc2): dc2's"),
        ((), False, "no etcd | answered", 3, "MIGRATOR UNKNOWN - demo: no etcd / answered"),
    ],
)
def test_nagios_one_line_and_plugin_exit_code(findings, ready, error, code, starts):
    line, exit_code = nagios_line(probe(*findings, ready=ready, error=error))
    assert exit_code == code and line.startswith(starts) and "\n" not in line
    assert line.count("|") == (0 if error else 1)
    if not error:
        assert re.search(r"\| blocking=\d+ warnings=\d+ max_replay_lag_bytes=\d+B$", line), line


def test_nagios_on_an_unreadable_inventory_is_unknown_exit_3(tmp_path, capsys):
    assert cli.run(["check", "-i", str(tmp_path / "nope.yml"), "--format", "nagios"]) == 3
    out = capsys.readouterr().out
    assert out.startswith("MIGRATOR UNKNOWN - inventory") and out.count("\n") == 1
