"""The one line a waiting run shows: rewritten in place on a terminal, a plain progress line
every few seconds otherwise (the journal keeps a sample every second either way)."""

from __future__ import annotations

import shutil
import sys
import time
from typing import IO, Any

# Without a terminal: one progress line per this many seconds of waiting.
PLAIN_LINE_EVERY_SECONDS = 5.0


class WaitLine:
    """What an operator sees while the run waits (a gate, a DCS hold): on a terminal, one line on
    stderr rewritten in place (and erased afterwards); without one, a plain progress line every
    few seconds, so a log shows the wait without a line per second and stderr keeps only the
    final one-line verdict."""

    def __init__(self, progress: Any, stream: IO[str] | None = None, clock: Any = time.monotonic):
        self.progress = progress
        self.stream = stream or sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock
        # The hold's opening line was just printed: the first plain line follows a period later.
        self._next_plain = clock() + PLAIN_LINE_EVERY_SECONDS

    def show(self, text: str) -> None:
        if self.live:
            # One physical line, or the erase sequence leaves the wrapped part behind.
            width = shutil.get_terminal_size().columns - 1
            self.stream.write("\r\033[K" + (text if len(text) <= width else text[: width - 3] + "..."))
            self.stream.flush()
            return
        now = self.clock()
        if now >= self._next_plain:
            self.progress(text)
            self._next_plain = now + PLAIN_LINE_EVERY_SECONDS

    def clear(self) -> None:
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()
