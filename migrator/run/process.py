"""What /proc says about a local process: whether it lives, and its identity (pid and start
time together: a pid alone may be reused by anything once its process ended)."""

from __future__ import annotations

from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command (which may hold spaces and ')'), starting
    with the state (field 3), or None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()


def is_zombie(pid: int) -> bool:
    """A process that has exited and waits for its parent (or init) to reap it."""
    fields = _stat_fields(pid)
    return fields is not None and fields[:1] == ["Z"]


def pid_alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[:1] != ["Z"]


def process_start_ticks(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (stat field 22), or None."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (IndexError, ValueError):
        return None


def same_process(pid: int, start_ticks: int) -> bool:
    """Whether `pid` is still the very process that had `start_ticks`, and alive."""
    return pid_alive(pid) and process_start_ticks(pid) == start_ticks
