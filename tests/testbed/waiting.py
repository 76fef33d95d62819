"""The testbed's one way to wait: poll with a deadline, and fail naming what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class TestbedError(RuntimeError):
    pass


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll until predicate() is truthy; raise naming `what` (and the last error) at the deadline."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - any failure while polling means "not yet"
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error})" if last_error else ""
            raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)
