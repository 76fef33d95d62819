"""Run commands on a site's hosts over SSH (fabric), with host keys verified.

Fabric's own default accepts and remembers any host key it has not seen; a tool that stops and
starts databases must not talk to a host that merely claims to be one. Keys come only from the
inventory's known_hosts file; an unknown or changed key is refused unless the inventory opts in
explicitly (`accept_unknown_host_keys`), and then the key is accepted for this run only, never
written anywhere. The route to the host (OpenSSH config file, jump host, agent, certificates) is
`ssh_route`'s job; a jump host's key is verified the same way.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import paramiko
from fabric import Connection

from migrator.adapters.net_errors import what_happened
from migrator.adapters.ssh_route import (
    Route,
    SshTarget,
    accepted_unverified_keys,
    build_route,
    where,
)
from migrator.errors import UnreachableError

__all__ = ["SshResult", "SshSession", "SshTarget", "accepted_unverified_keys"]

log = logging.getLogger("migrator.ssh")


@dataclass(frozen=True)
class SshResult:
    host: str
    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class SshSession:
    """One SSH connection to one host (through its jump host, if any); use as a context manager."""

    def __init__(self, member_name: str, target: SshTarget, timeout: float):
        self.member_name = member_name
        self.target = target
        self.timeout = timeout
        self._route: Route | None = None
        # Several threads may start commands on one session at once (channels of one transport);
        # only one of them opens the connection.
        self._opening = threading.Lock()

    def __enter__(self) -> SshSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return f"{self.target.user}@{self.target.host}:{self.target.port}"

    @property
    def _conn(self) -> Connection:
        if self._route is None:
            self._route = self._build()
        return self._route.conn

    def _build(self) -> Route:
        try:
            return build_route(self.target, self.timeout)
        except paramiko.ssh_exception.ConfigParseError as exc:
            raise UnreachableError(
                f"{self.member_name}: SSH config file {self.target.config_file or '~/.ssh/config'} "
                f"cannot be read: {exc}; fix that line or name another file in ssh.config_file"
            ) from None
        except (OSError, ValueError) as exc:
            raise UnreachableError(
                f"{self.member_name}: SSH config for {self.where} is not usable: {exc}; fix the "
                "OpenSSH config file or ssh.config_file / ssh.jump_host in the inventory"
            ) from None

    def open(self) -> None:
        route = self._route or self._build()
        self._route = route
        for hop in route.hops:
            self._open(hop, f"jump host {where(hop)}")
        self._open(route.conn, where(route.conn), through=route.hops[-1] if route.hops else None)

    def _keys(self) -> str:
        if self.target.key_file is not None:
            return f"with key {self.target.key_file}"
        return "with the ssh-agent's keys (SSH_AUTH_SOCK) and the default ~/.ssh keys"

    def _open(self, conn: Connection, what: str, through: Connection | None = None) -> None:
        """Open one hop; every failure becomes one line that names the hop and the fix."""
        known_hosts = self.target.known_hosts
        try:
            conn.open()
        except paramiko.BadHostKeyException:
            raise UnreachableError(
                f"{self.member_name}: SSH host key of {what} does not match {known_hosts}; if the "
                "host was really rebuilt, verify and replace its line in that file"
            ) from None
        except paramiko.AuthenticationException:
            raise UnreachableError(
                f"{self.member_name}: SSH login as {what} {self._keys()} was refused; install the "
                "public key in that user's authorized_keys"
            ) from None
        except paramiko.ChannelException as exc:
            raise UnreachableError(
                f"{self.member_name}: jump host {where(through) if through else '?'} could not open "
                f"a connection to {conn.host}:{conn.port} ({exc.text or exc}); check that it may "
                "reach that host and port (AllowTcpForwarding on the jump host)"
            ) from None
        except paramiko.SSHException as exc:
            if "known_hosts" in str(exc):
                raise UnreachableError(
                    f"{self.member_name}: SSH host key of {what} is not in {known_hosts}; add it "
                    f"after verifying it (ssh-keyscan -p {conn.port} {conn.host})"
                ) from None
            if "No authentication methods available" in str(exc):
                raise UnreachableError(
                    f"{self.member_name}: no SSH key to log in as {what}: set ssh.key_file in the "
                    "inventory or load a key into a running ssh-agent (ssh-add; SSH_AUTH_SOCK set)"
                ) from None
            raise UnreachableError(f"{self.member_name}: SSH to {what} {what_happened(exc, self.timeout)}") from None
        except (TimeoutError, OSError, EOFError) as exc:
            raise UnreachableError(
                f"{self.member_name}: SSH to {what} {what_happened(exc, self.timeout)}; check the "
                "host, the port and that sshd runs"
            ) from None

    def run(self, command: str, timeout: float | None = None, stdin: str | None = None) -> SshResult:
        """Run one command; a non-zero exit is data (in the result), not an exception.

        Straight on the paramiko channel of fabric's connection: invoke's runner adds about
        0.1 s of thread polling per command, which observe pays for every member. `stdin` is
        sent to the command and then closed."""
        return self.finish(self.start(command, timeout, stdin), timeout)

    def start(self, command: str, timeout: float | None = None, stdin: str | None = None) -> Any:
        """Start a command and return its channel without waiting for it (see `finish`)."""
        with self._opening:
            if not self._conn.is_connected:
                self.open()
        limit = timeout or self.timeout
        log.debug("%s: ssh %s: %s", self.member_name, self.where, command)
        try:
            channel = self._conn.client.get_transport().open_session(timeout=limit)
            channel.settimeout(limit)
            channel.exec_command(command)
            if stdin is not None:
                # Secrets travel on stdin, never on a command line that `ps` would show.
                channel.sendall(stdin.encode())
                channel.shutdown_write()
        except Exception as exc:  # noqa: BLE001 - socket timeouts and SSH errors alike
            raise self._failed(exc) from None
        channel.command = command
        return channel

    def finish(self, channel: Any, timeout: float | None = None) -> SshResult:
        """Wait for a started command and collect what it printed."""
        try:
            channel.settimeout(timeout or self.timeout)
            stdout = channel.makefile("rb").read().decode(errors="replace")
            stderr = channel.makefile_stderr("rb").read().decode(errors="replace")
            code = channel.recv_exit_status()
            channel.close()
        except Exception as exc:  # noqa: BLE001 - socket timeouts and SSH errors alike
            raise self._failed(exc) from None
        return SshResult(self.target.host, channel.command, code, stdout, stderr)

    def _failed(self, exc: Exception) -> UnreachableError:
        # The deadline of this command may not be self.timeout: say "in time", not a number.
        return UnreachableError(f"{self.member_name}: a command over SSH to {self.where} {what_happened(exc)}")

    def close(self) -> None:
        if self._route is not None:
            self._route.close()
