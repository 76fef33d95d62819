"""When a streaming gate may pass on evidence instead of a fixed window.

The cascade and repoint gates used to hold "every member streaming, lag under the gate" for
`gates.lag_window_seconds` in a row, to be sure the stream was not flapping. The same certainty,
without waiting out a clock, comes from our own samples (1.) together with either of two proofs
that the stream has lasted (2. or 3.):

1. our own samples: consecutive samples (at least `MIN_SAMPLES`, none failing in between), each
   seeing every member stream from the right upstream (slot, timeline) with lag under the gate,
   and every member having *replayed up to the mark*: the followed primary's WAL head at the first
   good sample, so WAL written after the stream was seen up has flowed end to end;
2. Patroni's own state: the DCS view (`GET /cluster`, what each member's Patroni wrote in its
   last loop) lists every member of the following site as `streaming` (on the expected timeline
   when one is given), and where it shows a member's replay LSN, that LSN has reached the mark too.
   A member's key is rewritten once per Patroni loop, so on a site taking writes this holds only
   once a loop has run after the first good sample: our samples then span a Patroni loop in which
   Patroni itself found the member streaming (and changed nothing);
3. PostgreSQL's own clock: every member's WAL receiver has run for at least the window. The
   process lives exactly as long as its connection (a lost connection ends it; the next one is a
   new process), so the window's claim, "no break for that long", is read from the stream's
   start instead of waited out from our first sample. The youngest member decides: a replica's
   connection to its standby leader can outlive a timeline switch upstream, but the standby
   leader's own connection to a primary that changed cannot. A stream that has run for hours (a cascade
   set up long before the change window) passes at once; a stream that just started (the repoint)
   is not helped, and 2. or the window decides. What it does not show is the lag before our first
   sample: only the lag now matters to the switchover, and 1. proves it.

The window stays as the other way through (whichever comes first): a DCS view that does not
answer, or an older Patroni without these fields, costs at most the window, never the check.

Pure: plain data in, a verdict and a reason out. `cluster` is a network value: anything of the
wrong shape is "not shown", never an exception.
"""

from __future__ import annotations

import math
from typing import Any

from migrator.model.state import lsn_text, lsn_value

MIN_SAMPLES = 2


def _lsn(value: Any) -> int | None:
    if not isinstance(value, str):
        return None
    try:
        return lsn_value(value)
    except ValueError:
        return None


def patroni_shows_streaming(cluster: Any, members: list[str], timeline: int | None, mark: int) -> tuple[bool, str]:
    """Whether Patroni's DCS view shows every one of `members` streaming (on `timeline` when
    given) and, where it shows a replay LSN, up to `mark`; the reason when not."""
    listed = cluster.get("members") if isinstance(cluster, dict) else None
    by_name: dict[str, dict[str, Any]] = {}
    for entry in listed if isinstance(listed, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            by_name[entry["name"]] = entry
    for name in members:
        entry = by_name.get(name)
        if entry is None:
            return False, f"Patroni's DCS view does not list {name}"
        if entry.get("state") != "streaming":
            return False, f"Patroni's DCS view shows {name} {entry.get('state')!s:.40}, not streaming"
        seen = entry.get("timeline")
        if timeline is not None and (not isinstance(seen, int) or isinstance(seen, bool) or seen != timeline):
            return False, f"Patroni's DCS view shows {name} on timeline {seen!r:.20}, not {timeline}"
        replayed = _lsn(entry.get("replay_lsn"))
        if "replay_lsn" in entry and (replayed is None or replayed < mark):
            shown = f"{entry.get('replay_lsn')!s:.20}"
            return False, f"Patroni's DCS view shows {name} replayed to {shown}, not yet {lsn_text(mark)}"
    return True, "Patroni's DCS view shows every member streaming"


def evidence_holds(good_samples: int, least_replayed: int | None, mark: int | None) -> tuple[bool, str]:
    """Our own half: enough consecutive good samples, every member replayed up to the mark."""
    if mark is None or good_samples < MIN_SAMPLES:
        return False, f"{good_samples} of {MIN_SAMPLES} consecutive samples"
    if least_replayed is None or least_replayed < mark:
        return False, f"a member has not yet replayed to {lsn_text(mark)}"
    return True, f"{good_samples} consecutive samples, every member replayed to {lsn_text(mark)}"


def connections_span_window(youngest_seconds: float | None, window: float) -> tuple[bool, str]:
    """Whether every member's stream has been one connection for the whole window (3. above):
    `youngest_seconds` is the shortest-lived WAL receiver's age, None when one's age is not shown."""
    if youngest_seconds is None or not math.isfinite(youngest_seconds) or youngest_seconds < 0:
        return False, "a member's WAL receiver does not show how long it has run"
    if youngest_seconds < window:
        return False, f"the newest stream has run {youngest_seconds:.1f}s, not yet the {window:.0f}s window"
    return True, f"every member's stream one connection for {youngest_seconds:.0f}s, over the {window:.0f}s window"
