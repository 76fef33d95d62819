"""The fleet's child launcher: one process that imports the tool once and forks every service's
`migrate execute|rollback` run from that warm state.

Why: a fresh `python -m migrator.cli` spends about 0.9 s of CPU before its first network call
(the interpreter, 120 modules, pydantic schemas, the playbook's YAML and its 144 Jinja2
templates) and about 0.6 s on the run itself. K children started at once on a small control
machine queue on that CPU, and the fleet's wall time grew with K. A forked child inherits the
imported modules, the parsed playbooks and the compiled templates; measured on 2 cores, four
children at once took 2.3 s of CPU in all instead of 6.

Each child is what a `migrate` process started by `subprocess` would be: its own session (no
terminal signal reaches it), stdin /dev/null, stdout (its JSON document) and stderr (its progress
lines) on the files it is given, mode 0600, no other descriptor open (in particular not the fleet
lock's: this process is started with none), the default signal dispositions of a new interpreter
(this process changes none), and `migrator.cli.run(args)` as its whole life, ending in its exit
code. The launcher is single-threaded, so forking it is safe.

The protocol is JSON lines. The fleet process writes requests on stdin:
`{"id": N, "args": [...], "out": PATH, "log": PATH}`. The launcher answers on stdout:
`{"ready": true}` once preloaded (or `{"error": ...}` and exits), `{"started": N, "pid": P,
"start_ticks": T}` or `{"refused": N, "error": ...}` per request, and `{"exited": P, "code": C}`
when a child ends. End of stdin (the fleet process ended, or was killed) ends the launcher; its
children run on to their own ends (they are reparented, their results are on disk).

Run as `python -m migrator.launcher` by `migrator/run/launcher_client.py` only.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import select
import sys
import traceback
from typing import Any

from migrator.run.process import process_start_ticks

# How often the launcher looks for ended children while no request comes: an exit is reported to
# the fleet process within this.
REAP_SECONDS = 0.05
LAUNCHER_MODULE = "migrator.launcher"
_FD_LIMIT = 1 << 20


def preload() -> None:
    """Every module of the tool, and the shipped playbooks parsed (their cache is keyed by the
    file's text: an edited playbook is parsed afresh by the child that reads it)."""
    import migrator

    for module in pkgutil.walk_packages(migrator.__path__, "migrator."):
        if module.name != LAUNCHER_MODULE:  # this very module runs as __main__
            importlib.import_module(module.name)
    from migrator.model.playbook import PLAYBOOK_DIR, load_playbook

    for path in sorted(PLAYBOOK_DIR.glob("*.yml")):
        load_playbook(path)


def _send(message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(1, data) :]


def _reap(children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            children.clear()
            return
        if pid == 0:
            return
        children.discard(pid)
        _send({"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _become_child(request: dict[str, Any]) -> None:
    """In the forked child: set up like a fresh `migrate` process, run it, exit. Never returns."""
    code = 1
    try:
        os.setsid()
        stdin = os.open(os.devnull, os.O_RDONLY)
        out = os.open(str(request["out"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(out, 0o600)
        os.fchmod(log, 0o600)
        os.dup2(stdin, 0)
        os.dup2(out, 1)
        os.dup2(log, 2)
        os.closerange(3, _FD_LIMIT)
        args = [str(a) for a in request["args"]]
        sys.argv = ["migrate", *args]
        from migrator.cli import run

        code = run(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - the child's last line of defence: a trace in its log, exit 1
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a full disk must not keep the child from exiting
                pass
        os._exit(code)


def _serve(request: dict[str, Any], children: set[int]) -> None:
    number = request.get("id")
    try:
        pid = os.fork()
    except OSError as exc:
        _send({"refused": number, "error": f"fork: {exc}"})
        return
    if pid == 0:
        _become_child(request)
    children.add(pid)
    _send({"started": number, "pid": pid, "start_ticks": process_start_ticks(pid)})


def main() -> int:
    try:
        preload()
    except Exception as exc:  # noqa: BLE001 - told to the fleet process, which starts its children plainly
        _send({"error": f"preload failed: {type(exc).__name__}: {exc}"})
        return 1
    _send({"ready": True})
    children: set[int] = set()
    pending = b""
    try:
        while True:
            readable, _, _ = select.select([0], [], [], REAP_SECONDS)
            _reap(children)
            if not readable:
                continue
            chunk = os.read(0, 65536)
            if not chunk:
                return 0  # the fleet process is done or gone; the children live on
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                _serve(json.loads(line), children)
    except BrokenPipeError:
        return 0  # the fleet process is gone; the children live on


if __name__ == "__main__":
    sys.exit(main())
