"""pg_control, the token's source of truth: the one command that reads it on a member (as the
postgres OS user, over SSH), and the parsing of what that command prints."""

from __future__ import annotations

import shlex

from migrator.adapters.remote import as_postgres

# pg_controldata until the cluster has left "in production" / "shutting down" (`wait`), or once
# (`once`: preflight's proof that the token step's very command works on the source leader).
# The paths arrive as positional parameters, so no inventory value is ever pasted inside this
# quoted script; LC_ALL=C keeps the keys parse_controldata matches in English whatever the
# host's locale. A failing pg_controldata ends the script with its exit code and its stderr.
_CONTROLDATA_SCRIPT = (
    'while :; do out=$(LC_ALL=C "$1/pg_controldata" "$2") || exit $?; '
    'case "$out" in *"cluster state:"*"in production"*|*"cluster state:"*"shutting down"*) '
    '[ "$3" = once ] && break; sleep 0.01;; *) break;; esac; done; printf "%s\\n" "$out"'
)


def controldata_command(ssh_user: str, bin_dir: str, data_dir: str, seconds: float, wait: bool) -> str:
    """The one command that reads a member's pg_control as the postgres OS user: the token step
    runs it with `wait`, preflight (observe) without, so a check proves the token read works
    before anything is demoted. `timeout` bounds it on the host (exit 124)."""
    script = (
        f"timeout {max(1, int(seconds))} sh -c {shlex.quote(_CONTROLDATA_SCRIPT)} sh "
        f"{shlex.quote(bin_dir)} {shlex.quote(data_dir)} {'wait' if wait else 'once'}"
    )
    return as_postgres(ssh_user, script)


def parse_controldata(text: str) -> dict[str, str]:
    facts = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            facts[key.strip()] = value.strip()
    return facts


def controldata_failure(exit_code: str, stderr: str) -> str | None:
    """None when the pg_controldata command succeeded, else one line: its exit code and the
    first line it wrote on stderr (the reason: no such file, permission denied, sudo...)."""
    code = exit_code.strip()
    if code == "0":
        return None
    reason = next((line.strip() for line in stderr.splitlines() if line.strip()), "")
    if code == "124":
        reason = reason or "did not finish in time"
    what = f"exit {code}" if code else "no exit code"
    return f"{what}: {reason[:200]}" if reason else what
