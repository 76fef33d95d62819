"""The testbed with TLS everywhere the tool talks HTTP: Patroni's REST API over https, etcd over
https with client certificates required (Patroni's etcd3 client presents one too).

A throw-away CA is made with `openssl` when the variant is built (nothing is committed): one
server certificate per member address and per etcd address, a client certificate for Patroni and
the tool, and, for the tests that must be refused, a second CA nobody trusts with a server and a
client certificate of its own. The variant is built from nothing over the same base directory and
addresses as the plain testbed (so one of the two runs at a time); tests rebuild the plain one
after it.
"""

from __future__ import annotations

import re
import signal
import ssl
import subprocess
from pathlib import Path
from typing import Any

import requests

from .etcd import etcd_dir, etcd_process_name
from .processes import chown_to_os_user, make_dir
from .testbed import HTTP_TIMEOUT, Testbed, wait_until
from .topology import (
    DEFAULT_BASE_DIR, DEFAULT_PATRONI_VERSION, ETCD_CLIENT_PORT, ETCD_PEER_PORT, MEMBER_BY_NAME,
    REST_PORT, REST_USER, SITES, Member, Site,
)

ETCD = "/usr/bin/etcd"
DAYS = "2"
EC_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    """A CA and the certificates issued by it, as files in one directory."""

    def __init__(self, directory: Path, name: str):
        self.dir = directory
        self.name = name
        self.ca_cert = self.dir / f"{name}-ca.crt"
        self.ca_key = self.dir / f"{name}-ca.key"

    def make_ca(self) -> Pki:
        make_dir(self.dir, 0o755)
        _openssl("req", "-x509", *EC_KEY, "-nodes", "-keyout", str(self.ca_key),
                 "-out", str(self.ca_cert), "-days", DAYS, "-subj", f"/CN={self.name} test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=self.dir)
        return self

    def issue(self, name: str, ips: list[str], usage: str = "serverAuth,clientAuth"
              ) -> tuple[Path, Path]:
        """A certificate for `ips` (subjectAltName), readable by the OS user running the servers."""
        cert, key, csr, ext = (self.dir / f"{name}.{end}" for end in ("crt", "key", "csr", "ext"))
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\n"
            f"extendedKeyUsage={usage}\nsubjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
            + (f"subjectAltName={','.join(f'IP:{ip}' for ip in ips)}\n" if ips else ""))
        _openssl("req", *EC_KEY, "-nodes", "-keyout", str(key), "-out", str(csr),
                 "-subj", f"/CN={name}", cwd=self.dir)
        _openssl("x509", "-req", "-in", str(csr), "-CA", str(self.ca_cert),
                 "-CAkey", str(self.ca_key), "-CAcreateserial", "-out", str(cert),
                 "-days", DAYS, "-extfile", str(ext), cwd=self.dir)
        csr.unlink()
        ext.unlink()
        key.chmod(0o600)
        for path in (cert, key):
            chown_to_os_user(path)
        return cert, key


class TlsTestbed(Testbed):
    """The same two sites, with https for Patroni's REST API and for etcd."""

    def __init__(self, base: Path = DEFAULT_BASE_DIR,
                 patroni_version: str = DEFAULT_PATRONI_VERSION):
        super().__init__(base, patroni_version)
        self.pki = Pki(self.base / "tls", "testbed")
        self.rogue = Pki(self.base / "tls" / "rogue", "rogue")

    # ---- certificates ------------------------------------------------------------------------
    def cert(self, name: str) -> tuple[Path, Path]:
        return self.pki.dir / f"{name}.crt", self.pki.dir / f"{name}.key"

    def _make_certificates(self) -> None:
        self.pki.make_ca()
        for member in MEMBER_BY_NAME.values():
            self.pki.issue(member.name, [member.host])
        for site in SITES:
            self.pki.issue(f"etcd-{site.name}", [site.etcd_host])
        self.pki.issue("client", [], usage="clientAuth")
        # What a test must see refused: a CA nobody trusts, and certificates it signed.
        self.rogue.make_ca()
        self.rogue.issue("client", [], usage="clientAuth")

    # ---- life cycle: the plain testbed's, with certificates and https etcd ---------------------
    def up(self, dc2_cluster: bool = True, timeout: float = 120.0) -> float:
        return super().up(dc2_cluster=True, timeout=timeout)

    def _layout(self, dc2_cluster: bool) -> str:
        return super()._layout(dc2_cluster) + "tls=True\n"

    def _start_etcd(self, site: Site) -> None:
        work = make_dir(etcd_dir(self.base, site), 0o700, owned_by_os_user=True)
        peer = f"http://{site.etcd_host}:{ETCD_PEER_PORT}"
        client = f"https://{site.etcd_host}:{ETCD_CLIENT_PORT}"
        cert, key = self.cert(f"etcd-{site.name}")
        name = etcd_process_name(site)
        self.registry.start(name, [
            ETCD, "--name", name, "--data-dir", str(work / "data"),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"{name}={peer}", "--initial-cluster-state", "new",
            "--initial-cluster-token", f"testbed-{site.name}",
            "--cert-file", str(cert), "--key-file", str(key),
            "--client-cert-auth", "--trusted-ca-file", str(self.pki.ca_cert),
            "--logger", "zap", "--log-outputs", "stderr", "--unsafe-no-fsync",
        ], work / "etcd.log", as_os_user=True)

    def _member_config(self, config: dict[str, Any], member: Member) -> dict[str, Any]:
        cert, key = self.cert(member.name)
        client_cert, client_key = self.cert("client")
        ca = str(self.pki.ca_cert)
        # Client certificates required on the REST API too: the tool must present the inventory's.
        config["restapi"].update(certfile=str(cert), keyfile=str(key), cafile=ca,
                                 verify_client="required")
        config["ctl"] = {"cacert": ca, "certfile": str(client_cert), "keyfile": str(client_key)}
        config["etcd3"].update(protocol="https", cacert=ca, cert=str(client_cert),
                               key=str(client_key))
        return config

    def _repair(self, timeout: float) -> None:
        raise RuntimeError("the TLS variant is rebuilt, never repaired")

    # ---- https everywhere --------------------------------------------------------------------
    def api_url(self, member: Member) -> str:
        return f"https://{member.host}:{REST_PORT}"

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False
        session.verify = str(self.pki.ca_cert)
        session.cert = tuple(str(p) for p in self.cert("client"))
        return session

    def patroni_state(self, member: Member) -> dict[str, Any]:
        state = self._session().get(f"{self.api_url(member)}/patroni", timeout=HTTP_TIMEOUT).json()
        if state.get("role") == "master":
            state["role"] = "primary"
        return state

    def etcd_healthy(self, site: Site) -> bool:
        resp = self._session().get(f"https://{site.etcd_host}:{ETCD_CLIENT_PORT}/health",
                                   timeout=HTTP_TIMEOUT)
        return resp.ok and resp.json().get("health") in ("true", True)

    def get_config(self, site: Site) -> dict[str, Any]:
        url = f"{self.api_url(self.live_member(site))}/config"
        return self._session().get(url, timeout=HTTP_TIMEOUT).json()

    def patch_config(self, site: Site, patch: dict[str, Any],
                     member: Member | None = None) -> requests.Response:
        target = member or self.live_member(site)
        resp = self._session().patch(f"{self.api_url(target)}/config", json=patch,
                                     timeout=HTTP_TIMEOUT,
                                     auth=(REST_USER, self.passwords()["restapi"]))
        resp.raise_for_status()
        return resp

    # ---- a certificate swapped under a running Patroni ------------------------------------------
    def serve_rest_certificate(self, member: Member, cert: Path, key: Path,
                               timeout: float = 30.0) -> None:
        """Make `member`'s REST API present `cert`: copy it over the configured files and SIGHUP
        Patroni, which reloads a certificate whose serial number changed (PostgreSQL keeps
        running)."""
        own_cert, own_key = self.cert(member.name)
        pem = cert.read_text()
        own_cert.write_text(pem)
        own_key.write_text(key.read_text())
        self.registry.kill(f"patroni-{member.name}", signal.SIGHUP)
        wait_until(lambda: _served(member) == ssl.PEM_cert_to_DER_cert(pem), timeout,
                   f"{member.name} to serve the new certificate")

    def write_inventory(self, path: Path) -> Path:
        """The plain testbed's inventory with https URLs, the CA and the client certificate."""
        super().write_inventory(path)
        ca = self.pki.ca_cert
        client_cert, client_key = self.cert("client")
        text = path.read_text().replace("api_url: http://", "api_url: https://")
        text = re.sub(r"(\n      endpoints:\n      - )http://(\S+)\n",
                      rf"\1https://\2\n      ca_file: {ca}\n      cert_file: {client_cert}\n"
                      rf"      key_file: {client_key}\n", text)
        text = re.sub(r"(\n    rest_api:\n      username: \S+\n      password: \S+\n)",
                      rf"\1      ca_file: {ca}\n      cert_file: {client_cert}\n"
                      rf"      key_file: {client_key}\n", text)
        path.write_text(text)
        return path


def _served(member: Member) -> bytes:
    """The certificate `member`'s REST API presents, unverified (we only compare it)."""
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((member.host, REST_PORT), timeout=3))

