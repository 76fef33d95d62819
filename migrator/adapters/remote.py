"""How a command reaches the PostgreSQL OS user on a site's hosts over SSH.

pg_ctl refuses to run as root, and an SSH login is often an admin account: the command is
prefixed with runuser (as root, which util-linux always has) or sudo (as anyone else)."""

from __future__ import annotations

import shlex

POSTGRES_OS_USER = "postgres"


def as_postgres(ssh_user: str, command: str) -> str:
    if ssh_user == POSTGRES_OS_USER:
        return command
    if ssh_user == "root":
        return f"runuser -u {POSTGRES_OS_USER} -- sh -c {shlex.quote(command)}"
    return f"sudo -n -u {POSTGRES_OS_USER} sh -c {shlex.quote(command)}"


def prefix_for(ssh_user: str) -> str:
    """The same, as a prefix for the manual commands in plans and runbooks."""
    if ssh_user == POSTGRES_OS_USER:
        return ""
    return f"runuser -u {POSTGRES_OS_USER} -- " if ssh_user == "root" else f"sudo -n -u {POSTGRES_OS_USER} "


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
