"""When a streaming gate may pass on evidence instead of a fixed window.

The cascade and repoint gates used to hold "every member streaming, lag under the gate" for
`gates.lag_window_seconds` in a row, to be sure the stream was not flapping. The same certainty,
without waiting out a clock, comes from two pieces of evidence together:

1. our own samples: consecutive samples (at least `MIN_SAMPLES`, none failing in between), each
   seeing every member stream from the right upstream (slot, timeline) with lag under the gate,
   and every member having *replayed up to the mark*: the followed primary's WAL head at the first
   good sample, so WAL written after the stream was seen up has flowed end to end;
2. Patroni's own state: the DCS view (`GET /cluster`, what each member's Patroni wrote in its
   last loop) lists every member of the following site as `streaming` (on the expected timeline
   when one is given), and where it shows a member's replay LSN, that LSN has reached the mark too.
   A member's key is rewritten once per Patroni loop, so on a site taking writes this holds only
   once a loop has run after the first good sample: our samples then span a Patroni loop in which
   Patroni itself found the member streaming (and changed nothing).

The window stays as the other way through (whichever comes first): a DCS view that does not
answer, or an older Patroni without these fields, costs at most the window, never the check.

Pure: plain data in, a verdict and a reason out. `cluster` is a network value: anything of the
wrong shape is "not shown", never an exception.
"""

from __future__ import annotations

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
