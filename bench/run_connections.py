"""How many TCP connections one `migrate` command opens to Patroni's REST API, and its CPU time.

Runs the command in this process with urllib3's new sockets (`_new_conn`, which plain and TLS
connections both go through) and its requests counted (instrumentation lives here, never in the
product), then prints the connections per host:port, the requests per method, port and path, and
the process's CPU seconds (user+sys, every thread). Patroni's REST API answers HTTP/1.0 and
closes each connection, so there connections == requests; etcd's gateway keeps them alive. Usage, on a running testbed:

    .venv/bin/python -m bench.run_connections execute -i INVENTORY --dc dc2 --yes --state-dir DIR

Printed, never asserted; the figures are noisy on a shared machine.
"""

from __future__ import annotations

import atexit
import collections
import os
import runpy
import sys
import threading

import urllib3.connection
import urllib3.connectionpool

CONNECTS: collections.Counter[str] = collections.Counter()
_LOCK = threading.Lock()
REQUESTS: collections.Counter[str] = collections.Counter()
_new_conn = urllib3.connection.HTTPConnection._new_conn
_urlopen = urllib3.connectionpool.HTTPConnectionPool.urlopen


def _counted(self: urllib3.connection.HTTPConnection) -> object:
    with _LOCK:
        CONNECTS[f"{self.host}:{self.port}"] += 1
    return _new_conn(self)


def _counted_request(self: urllib3.connectionpool.HTTPConnectionPool, method: str, url: str, *args, **kwargs):  # type: ignore[no-untyped-def]
    with _LOCK:
        REQUESTS[f"{method} {self.port} {url.split('?')[0]}"] += 1
    return _urlopen(self, method, url, *args, **kwargs)


def _report() -> None:
    times = os.times()
    total = sum(CONNECTS.values())
    print(
        f"bench.run_connections: {total} HTTP(S) connections opened "
        f"({len(CONNECTS)} endpoints: {dict(sorted(CONNECTS.items()))}); "
        f"CPU {times.user + times.system:.2f} s (user {times.user:.2f}, sys {times.system:.2f})",
        file=sys.stderr,
    )
    print(f"bench.run_connections: requests by method, port and path: {dict(REQUESTS.most_common())}", file=sys.stderr)


def main() -> None:
    urllib3.connection.HTTPConnection._new_conn = _counted  # type: ignore[method-assign]
    urllib3.connectionpool.HTTPConnectionPool.urlopen = _counted_request  # type: ignore[method-assign]
    atexit.register(_report)
    sys.argv = ["migrate", *sys.argv[1:]]
    runpy.run_module("migrator.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
