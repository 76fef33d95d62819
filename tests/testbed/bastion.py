"""A bastion: an OpenSSH server of its own on 127.<net>.9.1:2222, and an ssh-agent, for the tests
that reach the testbed's members through a jump host with agent-served keys.

Started only by the tests that need them (they cost two processes), stopped when those end. The
bastion has its own host key (not the members' one), so a known_hosts file without its line is a
real "unknown bastion" case. It logs at DEBUG1, where sshd writes one `direct-tcpip` line per
connection it forwards (`server_request_direct_tcpip: originator ..., target <host> port <port>`): the
proof that a connection went through it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .processes import make_dir
from .sshd import SSHD, SshdLayout, _keygen
from .topology import NET, SSH_PORT

BASTION_HOST = f"127.{NET}.9.1"


@dataclass(frozen=True)
class Bastion:
    host: str
    port: int
    dir: Path
    host_key: Path
    known_hosts_line: str  # "[host]:port key-type base64", for a known_hosts file
    log: Path

    def forwarded_to(self, host: str, port: int = SSH_PORT) -> int:
        """How many connections the bastion forwarded to host:port so far (from its log)."""
        return sum(1 for line in self.log.read_text(errors="replace").splitlines()
                   if "server_request_direct_tcpip" in line and line.endswith(f"target {host} port {port}"))


def _wait_listening(host: str, port: int, process: subprocess.Popen, deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bastion sshd exited with {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"bastion sshd not listening on {host}:{port} after {deadline_s}s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def running_bastion(base: Path, ssh: SshdLayout, host: str = BASTION_HOST,
                    trusted_user_ca: Path | None = None) -> Iterator[Bastion]:
    """The bastion sshd on `host`, letting in the testbed's client key (the member sshds do the
    same) or, with `trusted_user_ca`, only certificates that CA signed (TrustedUserCAKeys)."""
    directory = make_dir(base / f"bastion-{host}", 0o755)
    host_key = directory / "ssh_host_ed25519_key"
    _keygen(host_key, "migrator-testbed-bastion")
    authorized = directory / "authorized_keys"
    authorized.write_text("" if trusted_user_ca else Path(f"{ssh.client_key}.pub").read_text())
    trust = f"TrustedUserCAKeys {trusted_user_ca}\n" if trusted_user_ca else ""
    config = directory / "sshd_config"
    log = directory / "sshd.log"
    config.write_text(
        f"ListenAddress {host}:{SSH_PORT}\n"
        f"{trust}"
        f"HostKey {host_key}\n"
        f"AuthorizedKeysFile {authorized}\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        "UsePAM no\n"
        "PermitRootLogin prohibit-password\n"
        "StrictModes no\n"
        "AllowTcpForwarding yes\n"
        f"PidFile {directory / 'sshd.pid'}\n"
        "LogLevel DEBUG1\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True)
    log.write_text("")
    with log.open("a") as out:
        process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=out, stderr=out,
                                   start_new_session=True)
    try:
        _wait_listening(host, SSH_PORT, process, 10)
        key = " ".join(Path(f"{host_key}.pub").read_text().split()[:2])
        yield Bastion(host, SSH_PORT, directory, host_key, f"[{host}]:{SSH_PORT} {key}", log)
    finally:
        _stop(process)


@contextmanager
def running_agent(directory: Path, *keys: Path) -> Iterator[str]:
    """An ssh-agent on its own socket holding `keys` (ssh-add also loads a KEY-cert.pub beside a
    key); yields the socket path, for SSH_AUTH_SOCK."""
    make_dir(directory, 0o700)
    sock = directory / "agent.sock"
    sock.unlink(missing_ok=True)
    process = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ssh-agent did not create its socket")
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        for key in keys:
            subprocess.run(["ssh-add", str(key)], env=env, check=True, capture_output=True, timeout=10)
        yield str(sock)
    finally:
        _stop(process)
        sock.unlink(missing_ok=True)
