"""The global output options every command honours: `-v/--verbose`, `--log-file FILE`,
`--no-color` (and the NO_COLOR convention, https://no-color.org).

Logging goes through the standard `logging` module under the `migrator` logger: `-v` shows INFO
(the journal's events and the progress lines) on stderr, `-vv` DEBUG (every REST call, etcd
endpoint, SSH command, PostgreSQL connection), `-vvv` the libraries' own debug output too
(urllib3, paramiko). `--log-file` always records DEBUG of `migrator`, whatever `-v` says.
Every line is masked with the inventory's secrets before any handler writes it, as the journal
is masked: the secrets are registered when the inventory is loaded.

The options are declared on the root command (so `migrate --help` lists them) and may be given
after the subcommand too (`migrate execute ... -v`): `hoist` moves them in front of it.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from migrator.model.secrets import mask

LOGGER = "migrator"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_secrets: set[str] = set()

# Flags that take no value, and the one that takes a value, as the root command declares them.
FLAGS = ("-v", "-vv", "-vvv", "--verbose", "--no-color")
WITH_VALUE = ("--log-file",)


def remember_secrets(values: Iterable[str]) -> None:
    """Secrets every later log line is masked with (the inventory's, once it is loaded)."""
    _secrets.update(v for v in values if v)


class MaskingFilter(logging.Filter):
    """Replaces the record's message by its masked text (args applied first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if _secrets:
            text = mask(text, _secrets)
        record.msg, record.args = text, None
        if record.exc_info:  # a traceback may quote a password in a frame's repr: not in a log
            record.exc_text = mask(logging.Formatter().formatException(record.exc_info), _secrets)
            record.exc_info = None
        return True


def setup_logging(verbosity: int, log_file: Path | None, stream: TextIO | None = None) -> None:
    """Handlers for this process: stderr at the level `-v` asks for, the file at DEBUG."""
    root = logging.getLogger()
    ours = logging.getLogger(LOGGER)
    for handler in list(root.handlers):
        if getattr(handler, "_migrator", False):
            root.removeHandler(handler)
            handler.close()
    handlers: list[logging.Handler] = []
    if verbosity > 0:
        console = logging.StreamHandler(stream or sys.stderr)
        console.setLevel(logging.INFO if verbosity == 1 else logging.DEBUG)
        handlers.append(console)
    if log_file is not None:
        handlers.append(_file_handler(log_file))
    for handler in handlers:
        handler.addFilter(MaskingFilter())
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._migrator = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    ours.setLevel(logging.DEBUG if handlers else logging.WARNING)
    # The libraries say a lot at DEBUG (paramiko: every packet kind); only with -vvv.
    root.setLevel(logging.DEBUG if verbosity >= 3 else logging.WARNING)


def _file_handler(path: Path) -> logging.Handler:
    """The log file is the operator's own (0600): it names hosts, members and commands."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    path.chmod(0o600)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    return handler


def disable_color() -> None:
    """--no-color: the NO_COLOR convention for this process, which rich honours everywhere."""
    os.environ["NO_COLOR"] = "1"


def color_wanted(stream: TextIO | None = None) -> bool:
    """Colour only on a terminal, and never with NO_COLOR set (to anything but empty)."""
    target = stream or sys.stdout
    return target.isatty() and not os.environ.get("NO_COLOR")


def console(stderr: bool = False) -> Any:
    """The rich console of a command: the terminal's width on a terminal, 160 columns otherwise
    (rich assumes 80, too narrow for the tables), and no escape sequence at all under NO_COLOR
    (rich alone would still send bold and italics)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    plain = {"color_system": None} if os.environ.get("NO_COLOR") else {}
    width = {} if stream.isatty() else {"width": 160}
    return Console(stderr=stderr, **plain, **width)  # type: ignore[arg-type]


def hoist(argv: list[str], commands: Iterable[str]) -> list[str]:
    """`argv` with the global options found after the subcommand moved in front of it, so that
    `migrate execute ... -v --log-file run.log` works as `migrate -v --log-file run.log execute`.
    Nothing after a `--` is touched."""
    names = set(commands)
    at = next((i for i, a in enumerate(argv) if a in names), None)
    if at is None:
        return list(argv)
    end = argv.index("--") if "--" in argv[at:] else len(argv)
    front, moved, rest = list(argv[:at]), [], []
    i = at
    while i < end:
        arg = argv[i]
        if arg in FLAGS:
            moved.append(arg)
        elif arg in WITH_VALUE and i + 1 < end:
            moved += [arg, argv[i + 1]]
            i += 1
        elif any(arg.startswith(f"{name}=") for name in WITH_VALUE):
            moved.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + moved + rest + list(argv[end:])
