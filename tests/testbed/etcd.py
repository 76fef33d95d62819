"""One single-node etcd 3.4 per site, as each data center has its own DCS."""

from __future__ import annotations

from pathlib import Path

from .processes import ProcessRegistry, make_dir
from .topology import ETCD_CLIENT_PORT, ETCD_PEER_PORT, Site

ETCD = "/usr/bin/etcd"


def etcd_process_name(site: Site) -> str:
    return f"etcd-{site.name}"


def etcd_dir(base: Path, site: Site) -> Path:
    return base / "etcd" / site.name


def start_etcd(base: Path, site: Site, registry: ProcessRegistry) -> None:
    work = make_dir(etcd_dir(base, site), 0o700, owned_by_os_user=True)
    peer = f"http://{site.etcd_host}:{ETCD_PEER_PORT}"
    client = f"http://{site.etcd_host}:{ETCD_CLIENT_PORT}"
    name = etcd_process_name(site)
    argv = [
        ETCD, "--name", name, "--data-dir", str(work / "data"),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"{name}={peer}", "--initial-cluster-state", "new",
        "--initial-cluster-token", f"testbed-{site.name}",
        "--logger", "zap", "--log-outputs", "stderr",
        # A testbed on a shared disk: durability of the DCS across a machine crash is not tested.
        "--unsafe-no-fsync",
    ]
    registry.start(name, argv, work / "etcd.log", as_os_user=True)
