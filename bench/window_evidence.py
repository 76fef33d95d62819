"""What only the testbed can see of a switchover's write-unavailability window, as milestones for
migrator/render/window_breakdown.py: Patroni acting on each PATCH and the shutdown checkpoint and
the promotion as the PostgreSQL server logs of the members timed them, and the first commit the
write ledger got acknowledged after the promotion PATCH.

The chain is the issue's: demote PATCH sent -> Patroni acts -> shutdown checkpoint written ->
token read -> catch-up proven -> promote PATCH sent -> Patroni acts -> promotion done -> first
commit acknowledged. The instants of the driver (the tool's journal, or the bare sequence's own
clock) and of the logs are read from one clock: every process of the testbed runs on this machine.

The testbed's PostgreSQL logs to `<member dir>/pglog/postgresql.log` with `log_line_prefix` `%m [%p] `
(milliseconds and the zone: tests/testbed/patroni_config.py). A line that is not in that shape,
or in another zone than UTC, is no evidence: the milestone stays "not measured".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from migrator.render.window_breakdown import Milestone

# The chain, in order, and the stretch of it in which clients cannot commit: from the
# moment PostgreSQL aborts the source's transactions to the first commit on the target.
CHAIN = (
    "demote PATCH sent",
    "Patroni acts (fast shutdown)",
    "shutdown checkpoint written",
    "token read",
    "catch-up proven",
    "promote PATCH sent",
    "Patroni acts (promote)",
    "promotion done",
    "first commit acknowledged",
)
WINDOW = ("Patroni acts (fast shutdown)", "first commit acknowledged")

# What the server logs say at each of those moments (PostgreSQL 15).
FAST_SHUTDOWN = "received fast shutdown request"
SHUTDOWN_CHECKPOINT_START = "checkpoint starting: shutdown"
CHECKPOINT_DONE = "checkpoint complete:"
SHUT_DOWN = "database system is shut down"  # when log_checkpoints is off
PROMOTE_REQUEST = "received promote request"
READY = "database system is ready to accept connections"

_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (\S+) \[\d+\] \S+:\s+(.*)$")


def log_lines(text: str) -> list[tuple[datetime, str]]:
    """(instant, message) of each line in the `%m [%p] ` shape logged in UTC (or GMT)."""
    found = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match and match[2] in ("UTC", "GMT"):
            found.append((datetime.fromisoformat(match[1]).replace(tzinfo=UTC), match[3]))
    return found


def first_after(lines: Iterable[tuple[datetime, str]], needle: str, after: datetime | None) -> datetime | None:
    """The first line at or after `after` whose message starts with `needle`."""
    if after is None:
        return None
    return next((at for at, message in lines if at >= after and message.startswith(needle)), None)


def shutdown_checkpoint(lines: Sequence[tuple[datetime, str]], after: datetime | None) -> datetime | None:
    """When the shutdown checkpoint that followed `after` was complete (pg_control says "shut down"
    from then on): its "checkpoint complete" line, else "database system is shut down"."""
    started = first_after(lines, SHUTDOWN_CHECKPOINT_START, after)
    return first_after(lines, CHECKPOINT_DONE, started) or first_after(lines, SHUT_DOWN, after)


def read_log(path: Path) -> list[tuple[datetime, str]]:
    try:
        return log_lines(path.read_text(errors="replace"))
    except OSError:
        return []


def chain(
    driver: dict[str, datetime | None],
    old_primary_log: Path,
    target_logs: Iterable[Path],
    acks: Iterable[datetime],
) -> list[Milestone]:
    """The issue's chain for one switchover. `driver` holds what the driver timed itself ("demote
    PATCH sent", "token read", "catch-up proven", "promote PATCH sent"); the target member that
    acted on the promotion is the first whose log says so after the promote PATCH."""
    source = read_log(old_primary_log)
    demote_sent, promote_sent = driver.get("demote PATCH sent"), driver.get("promote PATCH sent")
    fast_shutdown = first_after(source, FAST_SHUTDOWN, demote_sent)
    promoted: tuple[datetime, list[tuple[datetime, str]]] | None = None
    for path in target_logs:
        lines = read_log(path)
        at = first_after(lines, PROMOTE_REQUEST, promote_sent)
        if at is not None and (promoted is None or at < promoted[0]):
            promoted = (at, lines)
    first_commit = min((a for a in acks if promote_sent is not None and a > promote_sent), default=None)
    found = {
        **driver,
        "Patroni acts (fast shutdown)": fast_shutdown,
        "shutdown checkpoint written": shutdown_checkpoint(source, fast_shutdown),
        "Patroni acts (promote)": promoted[0] if promoted else None,
        "promotion done": first_after(promoted[1], READY, promoted[0]) if promoted else None,
        "first commit acknowledged": first_commit,
    }
    return [Milestone(name, found.get(name)) for name in CHAIN]
