"""One OpenSSH server for every testbed host, with a generated ed25519 key pair and known_hosts.

It listens on port 2222 of 127.<net>.0.1 and of every member's own address, so the tool reaches each
"host" by its own name over real SSH, and verifies host keys against the known_hosts file written
here (never auto-adding one). Password logins are off; the client key is the only way in.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .processes import ProcessRegistry, make_dir
from .topology import NET, SITES, SPARE_MEMBERS, SSH_PORT

SSHD = "/usr/sbin/sshd"


def ssh_hosts() -> list[str]:
    return [f"127.{NET}.0.1"] + [m.host for s in SITES for m in s.members] + [m.host for m in SPARE_MEMBERS]


class SshdLayout:
    def __init__(self, base: Path):
        self.dir = base / "ssh"
        self.client_key = self.dir / "id_ed25519"
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.authorized_keys = self.dir / "authorized_keys"
        self.known_hosts = self.dir / "known_hosts"
        self.config = self.dir / "sshd_config"
        self.log = self.dir / "sshd.log"


def _keygen(path: Path, comment: str) -> None:
    if not path.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                       check=True)


def _make_keys(layout: SshdLayout) -> str:
    """The client and host key pairs (kept if present); returns the host's public key line."""
    make_dir(layout.dir, 0o755)
    _keygen(layout.client_key, "migrator-testbed-client")
    _keygen(layout.host_key, "migrator-testbed-host")
    layout.authorized_keys.write_text(Path(f"{layout.client_key}.pub").read_text())
    return " ".join(Path(f"{layout.host_key}.pub").read_text().split()[:2])


def write_sshd_config(layout: SshdLayout, hosts: list[str], config: Path, pid_file: Path,
                      known_hosts: Path) -> None:
    """An sshd config listening on port 2222 of `hosts` (at most 16: sshd refuses more listen
    sockets), with the layout's keys, and the known_hosts lines a client needs for those hosts."""
    if len(hosts) > 16:
        raise ValueError(f"one sshd listens on at most 16 addresses, not {len(hosts)}")
    host_pub = _make_keys(layout)
    known_hosts.write_text("".join(f"[{h}]:{SSH_PORT} {host_pub}\n" for h in hosts))
    listen = "".join(f"ListenAddress {h}:{SSH_PORT}\n" for h in hosts)
    config.write_text(
        f"{listen}"
        f"HostKey {layout.host_key}\n"
        f"AuthorizedKeysFile {layout.authorized_keys}\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "PubkeyAuthentication yes\n"
        "UsePAM no\n"
        "PermitRootLogin prohibit-password\n"
        # The key files sit under /tmp (world-writable): StrictModes would refuse them.
        "StrictModes no\n"
        f"PidFile {pid_file}\n"
        "Subsystem sftp internal-sftp\n"
        "LogLevel VERBOSE\n"
        # Debian's bash runs ~/.bashrc in every command an sshd starts, unless it is a nested
        # shell (SHLVL >= 1 on entry). The testbed logs in as this machine's root, whose .bashrc
        # may set up developer tools (a pyenv init takes about 0.1 s of CPU): a database host's
        # shell would not, and at 7 sessions per run that CPU skewed every parallel figure.
        "SetEnv SHLVL=1\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    subprocess.run([SSHD, "-t", "-f", str(config)], check=True)


def prepare_sshd(base: Path) -> SshdLayout:
    layout = SshdLayout(base)
    write_sshd_config(layout, ssh_hosts(), layout.config, layout.dir / "sshd.pid", layout.known_hosts)
    return layout


def start_sshd(base: Path, registry: ProcessRegistry) -> SshdLayout:
    layout = prepare_sshd(base)
    registry.start("sshd", [SSHD, "-D", "-e", "-f", str(layout.config)], layout.log, as_os_user=False)
    return layout
