"""Run commands on a site's hosts over SSH (fabric), with host keys verified.

Fabric's own default accepts and remembers any host key it has not seen; a tool that stops and
starts databases must not talk to a host that merely claims to be one. Keys come only from the
inventory's known_hosts file; an unknown or changed key is refused unless the inventory opts in
explicitly (`accept_unknown_host_keys`), and then the key is accepted for this run only, never
written anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paramiko
from fabric import Config, Connection

from migrator.adapters.net_errors import what_happened
from migrator.errors import UnreachableError

log = logging.getLogger("migrator.ssh")


class SshTarget(Protocol):
    host: str
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    accept_unknown_host_keys: bool


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


# Host keys accepted unverified in this process ("host key-type SHA256:..."), for the reports.
# (Not a Python warning: that would print two lines of source location on stderr, whose contract
# is one line.)
accepted_unverified_keys: list[str] = []


class _AcceptForThisRunOnly(paramiko.MissingHostKeyPolicy):
    """The explicit opt-in: accept an unknown key without storing it, and say so. Only a host
    absent from known_hosts gets here: paramiko refuses a key that differs from a known one
    (BadHostKeyException) before asking this policy."""

    def missing_host_key(self, client, hostname, key):  # noqa: ANN001 - paramiko's signature
        digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
        entry = f"{hostname} {key.get_name()} SHA256:{digest}"
        if entry not in accepted_unverified_keys:
            accepted_unverified_keys.append(entry)


class SshSession:
    """One SSH connection to one host; use as a context manager."""

    def __init__(self, member_name: str, target: SshTarget, timeout: float):
        self.member_name = member_name
        self.target = target
        self.timeout = timeout
        config = Config(overrides={"load_ssh_configs": False})
        self._conn = Connection(
            host=target.host,
            user=target.user,
            port=target.port,
            config=config,
            connect_timeout=max(1, int(timeout)),
            connect_kwargs={
                "key_filename": str(target.key_file),
                "look_for_keys": False,
                "allow_agent": False,
                "banner_timeout": timeout,
                "auth_timeout": timeout,
            },
        )
        client = self._conn.client
        client.load_host_keys(str(target.known_hosts))
        client.set_missing_host_key_policy(
            _AcceptForThisRunOnly() if target.accept_unknown_host_keys else paramiko.RejectPolicy()
        )

    def __enter__(self) -> SshSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return f"{self.target.user}@{self.target.host}:{self.target.port}"

    def open(self) -> None:
        try:
            self._conn.open()
        except paramiko.BadHostKeyException:
            raise UnreachableError(
                f"{self.member_name}: SSH host key of {self.where} does not match "
                f"{self.target.known_hosts}; if the host was really rebuilt, verify and replace "
                "its line in that file"
            ) from None
        except paramiko.AuthenticationException:
            raise UnreachableError(
                f"{self.member_name}: SSH login as {self.where} with key {self.target.key_file} "
                "was refused; install the public key in that user's authorized_keys"
            ) from None
        except paramiko.SSHException as exc:
            if "known_hosts" in str(exc):
                raise UnreachableError(
                    f"{self.member_name}: SSH host key of {self.where} is not in "
                    f"{self.target.known_hosts}; add it after verifying it "
                    f"(ssh-keyscan -p {self.target.port} {self.target.host})"
                ) from None
            raise UnreachableError(
                f"{self.member_name}: SSH to {self.where} {what_happened(exc, self.timeout)}"
            ) from None
        except (TimeoutError, OSError, EOFError) as exc:
            raise UnreachableError(
                f"{self.member_name}: SSH to {self.where} {what_happened(exc, self.timeout)}; check the "
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
        self._conn.close()
