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
