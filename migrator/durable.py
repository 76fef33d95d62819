"""Files that survive a power cut and that only their owner reads: the journal's appends and the
whole-file writes of plans and reports. A module of its own, below every layer, because the
plan file (model), the journal (run) and the CLI all write this way."""

from __future__ import annotations

import os
from pathlib import Path


def write_all(fd: int, data: bytes) -> None:
    """os.write may write fewer bytes than asked (a full disk, a signal): write the rest."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"write made no progress with {len(view)} bytes left")
        view = view[written:]


def fsync_directory(path: Path) -> None:
    """Make a file's creation or rename in `path` durable (the entry lives in the directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_private(path: Path, text: str) -> None:
    """Plans, reports and journals are readable by their owner only (0600), also when the file
    was already there with a looser mode. Written to a temporary file, fsync'd and renamed over
    `path`, then the directory fsync'd: after a power cut `path` is the old or the new content,
    never a mix or an empty file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older temporary file may have had another mode
        write_all(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_directory(path.parent)
