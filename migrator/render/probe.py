"""DR readiness as a monitoring probe: `migrate check --format prometheus|nagios`.

The check proves, every time a scheduler runs it, that the move to the other site (the reverse
path) could start now. Two renderings of the same outcome, both pure:

- Prometheus text exposition format, for node_exporter's textfile collector: one gauge per check
  and site (0 ok, 1 warn, 2 block), readiness, when the check last passed, replay lag per
  member, WAL each site keeps for the other site's slot.
- Nagios/Icinga plugin: one status line with performance data and exit 0 OK, 1 WARNING,
  2 CRITICAL, 3 UNKNOWN.

Metric names and labels are documented in docs/output.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from migrator.model.findings import Finding, Verdict
from migrator.model.state import ServiceState

VERDICT_VALUE = {Verdict.OK: 0, Verdict.WARN: 1, Verdict.BLOCK: 2}
NAGIOS_OK, NAGIOS_WARNING, NAGIOS_CRITICAL, NAGIOS_UNKNOWN = 0, 1, 2, 3
NAGIOS_WORD = {0: "OK", 1: "WARNING", 2: "CRITICAL", 3: "UNKNOWN"}
LAST_SUCCESS = "migrator_check_last_success_timestamp_seconds"


@dataclass(frozen=True)
class ProbeInput:
    """What both renderings need: the outcome of `migrate check`, made plain."""

    service: str
    source: str
    target: str
    ready: bool  # an executable plan for source -> target
    findings: tuple[Finding, ...]
    state: ServiceState | None
    slots_for: dict[str, str]  # slot name -> the site whose standby leader consumes it
    now: float  # UNIX seconds of this check
    error: str | None = None  # the check could not run (observe failed): UNKNOWN / ready 0


# ---- Prometheus ----------------------------------------------------------------------------


def prometheus_text(probe: ProbeInput, previous: str | None = None) -> str:
    """The metrics, in the text exposition format. `previous` is the file this probe wrote last
    time: its last-success timestamp is carried forward while the check fails."""
    out = _Metrics()
    base = {"service": probe.service}
    out.gauge(
        "migrator_check_up", "1 when the check could observe the sites and decide", [(base, 0 if probe.error else 1)]
    )
    out.gauge(
        "migrator_dr_ready",
        "1 when a move from source to target could start now (an executable plan)",
        [({**base, "source": probe.source, "target": probe.target}, 1 if probe.ready and not probe.error else 0)],
    )
    out.gauge("migrator_check_timestamp_seconds", "when this check ran (UNIX time)", [(base, probe.now)])
    last = probe.now if probe.ready and not probe.error else _previous_value(previous, LAST_SUCCESS)
    if last is not None:
        out.gauge(LAST_SUCCESS, "when the check last found the move ready (UNIX time)", [(base, last)])
    out.gauge(
        "migrator_check_verdict",
        "worst verdict of each preflight check per site: 0 ok, 1 warn, 2 block",
        [({**base, "site": site, "check": check}, value) for (check, site), value in _worst(probe.findings).items()],
    )
    counts = {v: sum(1 for f in probe.findings if f.verdict is v) for v in Verdict}
    out.gauge(
        "migrator_check_findings",
        "findings of this check by verdict",
        [({**base, "verdict": v.value}, counts[v]) for v in Verdict],
    )
    if probe.state is not None:
        _lag(out, probe, base)
        _retained(out, probe, base)
    return out.text()


def _worst(findings: Iterable[Finding]) -> dict[tuple[str, str], int]:
    worst: dict[tuple[str, str], int] = {}
    for finding in findings:
        key = (finding.check, finding.site or "")
        worst[key] = max(worst.get(key, 0), VERDICT_VALUE[finding.verdict])
    return dict(sorted(worst.items()))


def _lag(out: _Metrics, probe: ProbeInput, base: dict[str, str]) -> None:
    assert probe.state is not None
    writers = probe.state.writable_members
    head = writers[0].postgres.current_lsn if len(writers) == 1 and writers[0].postgres else None
    seconds = {
        conn.application_name: conn.replay_lag_seconds
        for site in probe.state.sites.values()
        for member in site.members
        for conn in (member.postgres.replication if member.postgres else ())
        if conn.replay_lag_seconds is not None
    }
    by_bytes, by_seconds = [], []
    for site in probe.state.sites.values():
        for member in site.members:
            if member.writable or member.postgres is None:
                continue
            labels = {**base, "site": site.name, "member": member.name}
            position = member.postgres.position
            if head is not None and position is not None:
                by_bytes.append((labels, max(head - position, 0)))
            if member.name in seconds:
                by_seconds.append((labels, seconds[member.name]))
    out.gauge("migrator_replay_lag_bytes", "bytes a standby member has not replayed of the primary's WAL", by_bytes)
    out.gauge("migrator_replay_lag_seconds", "replay_lag its upstream reports (absent while idle)", by_seconds)


def _retained(out: _Metrics, probe: ProbeInput, base: dict[str, str]) -> None:
    """WAL each member keeps in the slot another site's standby leader consumes (or will, after
    the move): a standby site's copy is not advanced, so it grows until roles swap back."""
    assert probe.state is not None
    samples = []
    for site in probe.state.sites.values():
        for member in site.members:
            pg = member.postgres
            if pg is None or pg.position is None:
                continue
            for slot in pg.slots:
                for_site = probe.slots_for.get(slot.name)
                if for_site is None or for_site == site.name or slot.restart_lsn is None:
                    continue
                labels = {**base, "site": site.name, "member": member.name, "slot": slot.name, "for_site": for_site}
                samples.append((labels, max(pg.position - slot.restart_lsn, 0)))
    out.gauge("migrator_wal_retained_bytes", "WAL kept for the other site's slot (position - restart_lsn)", samples)


class _Metrics:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def gauge(self, name: str, help_text: str, samples: Sequence[tuple[dict[str, str], float]]) -> None:
        if not samples:
            return
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for labels, value in samples:
            self.lines.append(f"{name}{_labels(labels)} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _labels(labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def _escape(value: str) -> str:
    # The exposition format's label escapes: backslash, double quote, newline.
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.3f}"


def _previous_value(previous: str | None, name: str) -> float | None:
    if not previous:
        return None
    found = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", previous, re.MULTILINE)
    try:
        return float(found.group(1)) if found else None
    except ValueError:
        return None


# ---- Nagios --------------------------------------------------------------------------------


def nagios_line(probe: ProbeInput) -> tuple[str, int]:
    """One status line `MIGRATOR <STATE> - <summary> | <perfdata>` and the plugin exit code."""
    if probe.error:
        return f"MIGRATOR UNKNOWN - {probe.service}: {_perf_safe(probe.error)}", NAGIOS_UNKNOWN
    blocking = [f for f in probe.findings if f.verdict is Verdict.BLOCK]
    warning = [f for f in probe.findings if f.verdict is Verdict.WARN]
    if blocking or not probe.ready:
        code = NAGIOS_CRITICAL
        what = "; ".join(f"{f.check}{f' ({f.site})' if f.site else ''}: {f.finding}" for f in blocking[:3])
        summary = f"{probe.source} -> {probe.target} not ready: {what or 'no plan can be made'}"
    elif warning:
        code = NAGIOS_WARNING
        names = ", ".join(sorted({f.check for f in warning}))
        summary = f"{probe.source} -> {probe.target} ready with warnings: {names}"
    else:
        code = NAGIOS_OK
        summary = f"{probe.source} -> {probe.target} ready"
    perf = [f"blocking={len(blocking)}", f"warnings={len(warning)}"]
    lag = _max_lag_bytes(probe)
    if lag is not None:
        perf.append(f"max_replay_lag_bytes={lag}B")
    line = f"MIGRATOR {NAGIOS_WORD[code]} - {probe.service}: {_perf_safe(summary)} | {' '.join(perf)}"
    return line, code


def _max_lag_bytes(probe: ProbeInput) -> int | None:
    if probe.state is None:
        return None
    writers = probe.state.writable_members
    head = writers[0].postgres.current_lsn if len(writers) == 1 and writers[0].postgres else None
    positions = [
        m.postgres.position
        for s in probe.state.sites.values()
        for m in s.members
        if not m.writable and m.postgres is not None and m.postgres.position is not None
    ]
    if head is None or not positions:
        return None
    return max(max(head - p, 0) for p in positions)


def _perf_safe(text: str) -> str:
    # "|" starts the performance data in a plugin's output: none in the text part.
    return " ".join(text.replace("|", "/").split())
