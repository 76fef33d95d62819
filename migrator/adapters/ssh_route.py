"""How an SSH connection reaches a host the way the operator's own `ssh` would.

Built only from fabric's and paramiko's own facilities: the OpenSSH client config file
(`HostName`, `IdentityFile`, `ProxyJump`, `ConnectTimeout`... through fabric's `Config`), a jump
host (fabric's `gateway`, a `direct-tcpip` channel through the bastion), keys from a running
ssh-agent (paramiko's `Agent`, when the inventory names no key file) and OpenSSH certificates
(paramiko loads `KEY-cert.pub` beside a key it is given or finds).

What fabric does not do here, this module does: every hop of the route (the inventory's jump
host, or the `ProxyJump` hops of the config file, built here in ssh(1)'s order) gets the same
known_hosts and the same refusal of unknown keys as the host itself (fabric's default is to
accept and remember any key), the same connect, banner, auth and channel timeouts, and is opened
one by one (by `SshSession`) so that a failure names the hop that failed.
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
from fabric.connection import derive_shorthand

# paramiko logs a refused channel ("Secsh channel 0 open FAILED: ...") at ERROR; with no handler
# configured Python prints it on stderr, a second line beside the tool's own one-line error.
# Configured logging (a root handler) still receives it.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class JumpTarget(Protocol):
    @property
    def host(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def user(self) -> str | None: ...


class SshTarget(Protocol):
    host: str
    port: int
    user: str
    key_file: Path | None
    known_hosts: Path
    config_file: Path | None
    accept_unknown_host_keys: bool

    @property
    def jump_host(self) -> JumpTarget | None: ...


# Host keys accepted unverified in this process ("host key-type SHA256:..."), for the reports.
# (Not a Python warning: that would print two lines of source location on stderr, whose contract
# is one line.)
accepted_unverified_keys: list[str] = []


class AcceptForThisRunOnly(paramiko.MissingHostKeyPolicy):
    """The explicit opt-in: accept an unknown key without storing it, and say so. Only a host
    absent from known_hosts gets here: paramiko refuses a key that differs from a known one
    (BadHostKeyException) before asking this policy."""

    def missing_host_key(self, client, hostname, key):  # noqa: ANN001 - paramiko's signature
        digest = base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")
        entry = f"{hostname} {key.get_name()} SHA256:{digest}"
        if entry not in accepted_unverified_keys:
            accepted_unverified_keys.append(entry)


def where(conn: Connection) -> str:
    return f"{conn.user}@{conn.host}:{conn.port}"


@dataclass
class Route:
    """The connection to the host and the hops before it, the first hop (the one dialled
    directly) first."""

    conn: Connection
    hops: list[Connection]

    def close(self) -> None:
        # fabric closes only the connection it is asked to: the bastion sessions are ours.
        self.conn.close()
        for hop in reversed(self.hops):
            hop.close()


def connect_kwargs(target: SshTarget, timeout: float) -> dict[str, Any]:
    """paramiko's connect() arguments: the inventory's key alone when it names one (the old,
    exact behaviour); else what ssh(1) tries: the agent's keys, then ~/.ssh/id_* (and the config
    file's IdentityFile, which fabric adds)."""
    kwargs: dict[str, Any] = {
        "banner_timeout": timeout,
        "auth_timeout": timeout,
        # Opening a channel, the direct-tcpip one through a bastion included (paramiko's own
        # default is an hour).
        "channel_timeout": timeout,
    }
    if target.key_file is not None:
        kwargs.update(key_filename=[str(target.key_file)], look_for_keys=False, allow_agent=False)
    else:
        kwargs.update(look_for_keys=True, allow_agent=True)
    return kwargs


def fabric_config(target: SshTarget, timeout: float) -> Config:
    """fabric's config: the inventory's config file alone when it names one, else ~/.ssh/config
    and /etc/ssh/ssh_config (files that do not exist are skipped, as ssh(1) does). The same
    connect arguments and timeout serve the hops fabric builds from a `ProxyJump`."""
    return Config(
        runtime_ssh_path=str(target.config_file) if target.config_file is not None else None,
        overrides={
            "load_ssh_configs": True,
            "connect_kwargs": connect_kwargs(target, timeout),
            "timeouts": {"connect": max(1, int(timeout))},
        },
    )


# Deeper than this, a ProxyJump chain is taken for a loop in the config file.
MAX_HOPS = 10


def _config_gateway(alias: str, config: Config, make: Any, depth: int = 0) -> Connection | str | bool:
    """The gateway the config file gives `alias` (fabric's `gateway` argument): a chain of hop
    Connections for `ProxyJump a,b` (a dialled first, as ssh(1) does: fabric's own builder dials
    them in reverse order, fabric#2203), each hop's own ProxyJump followed; a `ProxyCommand`
    string; or False for a direct connection."""
    entry = config.base_ssh_config.lookup(alias)
    jumps = entry.get("proxyjump", "none").strip()
    if jumps.lower() != "none":
        if depth >= MAX_HOPS:
            raise ValueError(f"ProxyJump chain for {alias} is longer than {MAX_HOPS} hops (a loop?)")
        gateway: Connection | str | bool = False
        for index, hop in enumerate(part.strip() for part in jumps.split(",")):
            hop_alias = derive_shorthand(hop)["host"]
            if hop_alias == alias:  # a wildcard entry that also matches the jump host itself
                return False
            if index == 0:
                gateway = _config_gateway(hop_alias, config, make, depth + 1)
            gateway = make(hop, None, None, gateway)
        return gateway
    command = entry.get("proxycommand", "none").strip()
    return command if command.lower() != "none" else False


def build_route(target: SshTarget, timeout: float) -> Route:
    """The connection (not opened) and its hops, each with known_hosts and the host key policy."""
    config = fabric_config(target, timeout)

    def connection(host: str, user: str | None, port: int | None, gateway: Connection | str | bool) -> Connection:
        return Connection(
            host=host,
            user=user,
            port=port,
            config=config,
            gateway=gateway,
            connect_timeout=max(1, int(timeout)),
            connect_kwargs=connect_kwargs(target, timeout),
        )

    jump = target.jump_host
    if jump is not None:
        gateway = connection(jump.host, jump.user, jump.port, _config_gateway(jump.host, config, connection))
    else:
        gateway = _config_gateway(target.host, config, connection)
    conn = connection(target.host, target.user, target.port, gateway)
    hops: list[Connection] = []
    hop = conn.gateway
    while isinstance(hop, Connection):  # a ProxyCommand (str) ends the chain: a local process
        hops.insert(0, hop)
        hop = hop.gateway
    for each in [*hops, conn]:
        if target.key_file is not None:
            # fabric adds the config file's IdentityFile keys; a key the inventory names is the only one.
            each.connect_kwargs["key_filename"] = [str(target.key_file)]
        each.client.load_host_keys(str(target.known_hosts))
        each.client.set_missing_host_key_policy(
            AcceptForThisRunOnly() if target.accept_unknown_host_keys else paramiko.RejectPolicy()
        )
    return Route(conn, hops)
